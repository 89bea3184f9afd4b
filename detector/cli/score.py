"""`detector score` and `detector fit`: thin glue over detector.pipeline."""

from __future__ import annotations

import time
from pathlib import Path

import click

from detector.cli.input_options import log_input_options
from detector.cli.options import (
    OUTPUT_PATH,
    PATH_OR_URL,
    LocalPath,
    caseloads_option,
    engine_option,
    pseudonymise_options,
    pseudonymiser,
    timezone_option,
)
from detector.vocabulary import DEFAULT_MODE, MODES, SEVERITIES_URGENT_FIRST

FORMATS = ("parquet", "jsonl", "csv", "ocsf")  # ocsf: Detection Findings, JSON lines


_STARTED = time.perf_counter()


def _say(message: str) -> None:
    """A progress line on stderr, with the seconds elapsed since the command started."""
    click.echo(f"[{time.perf_counter() - _STARTED:5.1f} s] {message}", err=True)


def _default_out(log: Path | str, fmt: str) -> Path:
    from detector.engine.storage import local_path
    from detector.errors import InputError
    from detector.formats.staging import log_sibling  # imported with the command, not `--help`

    if local_path(log) is None:  # outputs are local files: none can go beside a remote log
        raise InputError(f"{log} is a URL: give --out (outputs are written to local files)")
    return log_sibling(
        local_path(log), ".findings.ocsf.jsonl" if fmt == "ocsf" else f".alerts.{fmt}"
    )


def _rejects_path(out: Path) -> Path:
    from detector.outputs import side_file

    return side_file(out, "rejects")


def _inputs(log: Path, caseloads: Path | None, **files: str | Path | None) -> dict[str, Path]:
    """The local files a run reads, by label: outputs must never land on (or inside) one."""
    from detector.engine.storage import local_path
    from detector.schema import found_caseloads

    if caseloads is None:
        caseloads = found_caseloads(log)
    found = {"the log": log, "the caseloads file": caseloads}
    for label, value in files.items():
        # A rule set is a built-in name or a file: only an existing file is an input here.
        if value is not None and Path(value).is_file():
            found[f"the {label.replace('_', ' ')}"] = Path(value)
    # (A remote input is no local file: a local output cannot land on it.)
    local = {label: local_path(path) for label, path in found.items() if path is not None}
    return {label: path for label, path in local.items() if path is not None}


def _local(stamp, timezone: str) -> str:
    return stamp.tz_convert(timezone).strftime("%Y-%m-%d %H:%M")


REASON_WIDTH = 100  # characters of a reason shown on a wide terminal
NARROW_REASON = 40  # below this much room beside the columns, reasons go on lines of their own


def _top_table(alerts, timezone: str, top: int) -> str:
    """The first ``top`` alerts as a table fitted to the terminal's width.

    On a narrow terminal each reason goes on its own indented lines, wrapped to
    the width, instead of running past the right edge.
    """
    import shutil
    import textwrap

    from detector.textsafe import visible  # text from the log: no raw ESC, CR/LF, bidi

    rows = [("account", "severity", "score", f"detected ({timezone})", "reason")]
    for _, alert in alerts.head(top).iterrows():
        rows.append(
            (
                visible(alert["account_id"]),
                visible(alert["severity"]),
                f"{alert['score']:.2f}",
                _local(alert["detected_at"], timezone),
                visible(alert["reason"]),
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    columns = shutil.get_terminal_size((REASON_WIDTH + sum(widths) + 8, 24)).columns
    room = min(REASON_WIDTH, columns - sum(widths) - 8)
    lines = []
    for row in rows:
        fixed = "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row[:4]))
        reason, limit = row[4], room if room >= NARROW_REASON else REASON_WIDTH
        reason = reason if len(reason) <= limit else reason[: limit - 1] + "…"
        if room >= NARROW_REASON:
            lines.append(f"{fixed}  {reason}")
        else:
            lines.append(fixed.rstrip())
            width = max(20, columns - 4)
            lines.extend(
                textwrap.wrap(reason, width, initial_indent="    ", subsequent_indent="    ")
            )
    return "\n".join(lines)


@click.command()
@click.argument("log", type=PATH_OR_URL)
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
    type=click.Choice(MODES),
    default=DEFAULT_MODE,
    show_default=True,
    help="What raises alerts.",
)
@timezone_option
@click.option(
    "--out",
    type=OUTPUT_PATH,
    help="Alerts file, a local path (default: <stem>.alerts.<format> beside a local LOG).",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="parquet", show_default=True)
@click.option("--top", default=10, show_default=True, help="Alerts shown in the terminal.")
@click.option(
    "--features-out",
    type=OUTPUT_PATH,
    help="Also write the feature table (Parquet).",
)
@click.option(
    "--state",
    type=LocalPath(
        "the state is replaced by an atomic rename, which object stores lack", file_okay=False
    ),
    help="State directory, a local path: score only LOG's new days against the stored history,"
    " then update it.",
)
@click.option(
    "--keep-days",
    type=int,
    help="With --state: keep the windows of the last N days (at least 43), the older ones"
    " summarised per account (default: keep every day).",
)
@engine_option
@pseudonymise_options
@log_input_options
def score(
    log,
    caseloads,
    rules,
    model,
    mode,
    timezone,
    out,
    fmt,
    top,
    features_out,
    state,
    keep_days,
    engine,
    workers,
    scheduler,
    pseudonymise,
    pseudonym_key_file,
    **inputs,
):
    """Score LOG (Parquet, NDJSON or CSV; the contract's fields or --schema/--mapping) and write alerts.

    LOG and --caseloads may be local paths or URLs (file://, s3://, gs://, abfs://,
    hdfs://, or any fsspec protocol; contract Parquet only): the Dask engine's
    workers read the URL themselves. Outputs and --state are local paths.

    Rows that cannot be used are written to <alerts stem>.rejects.parquet beside
    the alerts, and counted. Exit status 0 whenever scoring ran.

    \b
    Examples:
      detector score data/demo/logs.parquet
      detector score export/ --caseloads caseloads.parquet --rules strict --out alerts.jsonl --format jsonl
      detector score big.parquet --workers 2
      detector score today/ --state state/           # nightly: today against the stored past
      detector score /shared/logs/2024-03/ --engine dask --scheduler tcp://scheduler:8786
      detector score s3://bucket/logs/2024-03/ --engine dask --scheduler tcp://scheduler:8786 --out alerts.parquet
    """
    from detector.alerts import write_alerts
    from detector.formats.staging import contract_log
    from detector.incidents import incidents_path, write_incidents
    from detector.model import WindowModel
    from detector.outputs import atomic_path, check_outputs
    from detector.pipeline import score_log
    from detector.rules import load_ruleset

    started = time.perf_counter()
    # Everything that can be refused is checked before the log is read.
    if keep_days is not None:
        from detector.engine.state import StateError, check_keep_days

        if state is None:
            raise StateError("--keep-days needs --state (it prunes a state directory)")
        check_keep_days(keep_days)
    out = out or _default_out(log, fmt)
    rejects_path = _rejects_path(out)
    check_outputs(
        {
            "--out": out,
            "the rejects file": rejects_path,
            "the incidents file": incidents_path(out),
            "--features-out": features_out,
        },
        _inputs(
            log,
            caseloads,
            rules_file=rules,
            model_file=model,
            mapping_file=inputs.get("mapping"),
            pseudonym_key_file=pseudonym_key_file,
        ),
    )
    hide = pseudonymiser(pseudonymise, pseudonym_key_file)
    ruleset = load_ruleset(rules) if mode in ("rules", "both") else rules
    loaded = WindowModel.load(model) if model is not None and mode != "rules" else model
    with contract_log(log, caseloads=caseloads, **inputs) as source:
        result = score_log(
            source.path,
            caseloads=source.caseloads,
            rules=ruleset,
            mode=mode,
            model=loaded,
            timezone=timezone,
            progress=_say,
            engine=engine,
            workers=workers,
            scheduler=scheduler,
            state=state,
            keep_days=keep_days,
        )
    result.rejects = source.merge_rejects(result.rejects)
    result.notices[:0] = source.notices
    if hide is not None:
        result.alerts = hide.frame(result.alerts)
        result.features = hide.frame(result.features)
        result.incidents = hide.frame(result.incidents)
    if fmt == "ocsf":
        from detector.ocsf import write_findings

        write_findings(result.alerts, out, rules)
    else:
        write_alerts(result.alerts, out, fmt)
    write_incidents(result.incidents, incidents_path(out))
    from detector.textsafe import visible

    for notice in result.notices:  # notices quote values from the log (unknown actions...)
        click.echo(f"Notice: {visible(notice)}", err=True)
    if len(result.rejects):
        # Raw rows as text: a reject is kept as it came, whatever its types.
        rejects = result.rejects.astype(
            {c: "string" for c in result.rejects.columns if c not in ("row",)}
        )
        if hide is not None:
            rejects = hide.frame(rejects)
        with atomic_path(rejects_path) as temporary:
            rejects.to_parquet(temporary, index=False)
        click.echo(
            f"Notice: {len(result.rejects):,} rejected rows written to {rejects_path}", err=True
        )
    if features_out:
        with atomic_path(features_out) as temporary:
            result.features.to_parquet(temporary, index=False)
    alerts = result.alerts
    if len(alerts) and top > 0:
        click.echo(_top_table(alerts, timezone, top))
        click.echo("")
    if len(result.incidents):
        click.echo(f"{len(result.incidents)} incidents -> {incidents_path(out)}")
    counts = alerts["severity"].value_counts() if len(alerts) else {}
    by_severity = ", ".join(f"{counts.get(s, 0)} {s}" for s in SEVERITIES_URGENT_FIRST)
    click.echo(
        f"{len(alerts)} alerts ({by_severity}) on {alerts['account_id'].nunique() if len(alerts) else 0} "
        f"of {result.accounts:,} accounts, {result.events:,} events, "
        f"in {time.perf_counter() - started:.1f} s -> {out}"
    )


@click.command()
@click.argument("log", type=PATH_OR_URL)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Where to save the model (skops format).",
)
@caseloads_option
@timezone_option
@log_input_options
def fit(log, out, caseloads, timezone, **inputs):
    """Fit the IsolationForest on LOG (e.g. a known-clean month) and save it.

    The model is saved with skops, which loads without running code from the file.

    \b
    Example:
      detector fit january.parquet --out model.skops
      detector score february.parquet --model model.skops
    """
    from detector.formats.staging import contract_log
    from detector.outputs import check_outputs
    from detector.pipeline import fit_model

    check_outputs({"--out": out}, _inputs(log, caseloads, mapping_file=inputs.get("mapping")))
    with contract_log(log, caseloads=caseloads, **inputs) as source:
        model = fit_model(source.path, caseloads=source.caseloads, timezone=timezone, progress=_say)
    model.save(out)
    click.echo(f"model fitted on {log} (alert threshold {model.threshold_:.3f}) -> {out}")
