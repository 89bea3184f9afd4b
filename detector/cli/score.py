"""`detector score` and `detector fit`: thin glue over detector.pipeline."""

from __future__ import annotations

import time
from pathlib import Path

import click

from detector.cli.options import caseloads_option, engine_option, timezone_option

FORMATS = ("parquet", "jsonl", "csv")


_STARTED = time.perf_counter()


def _say(message: str) -> None:
    """A progress line on stderr, with the seconds elapsed since the command started."""
    click.echo(f"[{time.perf_counter() - _STARTED:5.1f} s] {message}", err=True)


def _default_out(log: Path, fmt: str) -> Path:
    from detector.schema import sibling  # imported with the command, not with `--help`

    return sibling(log, f".alerts.{fmt}")


def _local(stamp, timezone: str) -> str:
    return stamp.tz_convert(timezone).strftime("%Y-%m-%d %H:%M")


def _top_table(alerts, timezone: str, top: int) -> str:
    rows = [("account", "severity", "score", f"detected ({timezone})", "reason")]
    for _, alert in alerts.head(top).iterrows():
        reason = alert["reason"] if len(alert["reason"]) <= 100 else alert["reason"][:99] + "…"
        rows.append(
            (
                alert["account_id"],
                alert["severity"],
                f"{alert['score']:.2f}",
                _local(alert["detected_at"], timezone),
                reason,
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    lines = [
        "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(r[:4])) + "  " + r[4]
        for r in rows
    ]
    return "\n".join(lines)


@click.command()
@click.argument("log", type=click.Path(path_type=Path))
@caseloads_option
@click.option(
    "--rules", default="default", show_default=True, help="Built-in rule set name or a TOML file."
)
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    help="Model saved by `detector fit` (default: fit on LOG itself).",
)
@click.option(
    "--mode",
    type=click.Choice(["rules", "model", "both"]),
    default="both",
    show_default=True,
    help="What raises alerts.",
)
@timezone_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Alerts file (default: <stem>.alerts.<format> beside LOG).",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="parquet", show_default=True)
@click.option("--top", default=10, show_default=True, help="Alerts shown in the terminal.")
@click.option(
    "--features-out",
    type=click.Path(path_type=Path),
    help="Also write the feature table (Parquet).",
)
@click.option(
    "--state",
    type=click.Path(path_type=Path, file_okay=False),
    help="State directory: score only LOG's new days against the stored history, then update it.",
)
@engine_option
def score(
    log, caseloads, rules, model, mode, timezone, out, fmt, top, features_out, state, engine,
    workers, scheduler,
):
    """Score LOG (a Parquet file or directory in the contract's format) and write alerts.

    Rows that cannot be used are written to <alerts stem>.rejects.parquet beside
    the alerts, and counted. Exit status 0 whenever scoring ran.

    \b
    Examples:
      detector score data/demo/logs.parquet
      detector score export/ --caseloads caseloads.parquet --rules strict --out alerts.jsonl --format jsonl
      detector score big.parquet --workers 2
      detector score today/ --state state/           # nightly: today against the stored past
      detector score s3://bucket/logs/ --engine dask --scheduler tcp://scheduler:8786
    """
    from detector.alerts import write_alerts
    from detector.pipeline import score_log

    started = time.perf_counter()
    result = score_log(
        log,
        caseloads=caseloads,
        rules=rules,
        mode=mode,
        model=model,
        timezone=timezone,
        progress=_say,
        engine=engine,
        workers=workers,
        scheduler=scheduler,
        state=state,
    )
    out = out or _default_out(log, fmt)
    write_alerts(result.alerts, out, fmt)
    for notice in result.notices:
        click.echo(f"Notice: {notice}", err=True)
    if len(result.rejects):
        rejects_path = out.with_name(f"{out.name.rsplit('.', 1)[0]}.rejects.parquet")
        result.rejects.astype(
            {c: "string" for c in result.rejects.columns if c not in ("row",)}
        ).to_parquet(rejects_path, index=False)
        click.echo(
            f"Notice: {len(result.rejects):,} rejected rows written to {rejects_path}", err=True
        )
    if features_out:
        result.features.to_parquet(features_out, index=False)
    alerts = result.alerts
    if len(alerts):
        click.echo(_top_table(alerts, timezone, top))
        click.echo("")
    counts = alerts["severity"].value_counts() if len(alerts) else {}
    by_severity = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("high", "medium", "low"))
    click.echo(
        f"{len(alerts)} alerts ({by_severity}) on {alerts['account_id'].nunique() if len(alerts) else 0} "
        f"of {result.accounts:,} accounts, {result.events:,} events, "
        f"in {time.perf_counter() - started:.1f} s -> {out}"
    )


@click.command()
@click.argument("log", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Where to save the model (skops format).",
)
@caseloads_option
@timezone_option
def fit(log, out, caseloads, timezone):
    """Fit the IsolationForest on LOG (e.g. a known-clean month) and save it.

    The model is saved with skops, which loads without running code from the file.

    \b
    Example:
      detector fit january.parquet --out model.skops
      detector score february.parquet --model model.skops
    """
    from detector.pipeline import fit_model

    model = fit_model(log, caseloads=caseloads, timezone=timezone, progress=_say)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    click.echo(f"model fitted on {log} (alert threshold {model.threshold_:.3f}) -> {out}")
