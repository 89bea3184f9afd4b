"""Compare rule sets on generated attacks: the orchestration behind `detector bench`.

For each data set (one per seed, holding every selected scenario): generate it once
into a cache, prepare it once, then detect per (rule set, mode) and score the
alerts against the ground truth with :mod:`detector.metrics`. The detector does
not import the generator: callers pass a ``generate`` function (the CLI passes one
built on ``synthetic_logs``), keeping the data flow one way.

Notebook use::

    from detector import bench
    result = bench.run_bench(my_generate, rulesets=["naive", "default"], seeds=[1])
    print(bench.format_summary(result))
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from detector import metrics
from detector.errors import DetectorError, InputError
from detector.outputs import atomic_path
from detector.privacy import Pseudonymiser
from detector.schema import sibling

#: The four documented attacks, in the generator's names.
SCENARIOS: tuple[str, ...] = (
    "cap_emploi",
    "kairos_infostealer",
    "ouiform_account_creation",
    "imilo_night_bi",
)
MODES: tuple[str, ...] = ("rules", "model", "both")
DEFAULT_MODES: tuple[str, ...] = ("rules", "both")
DEFAULT_SEEDS: tuple[int, ...] = (1, 2, 3)
#: Rule-set label of the model-alone mode, which does not depend on a rule set.
NO_RULESET = "(none)"

#: Stealth knobs of the scenarios and the values a sweep tries by default.
SWEEP_KNOBS: dict[str, tuple[Any, ...]] = {
    "rate_multiple": (1.0, 2.0, 5.0, 10.0, 50.0),
    "office_hours_only": (False, True),
    "reuse_victim_address": (False, True),
    "reuse_victim_client": (False, True),
}

#: The CSV's leading columns (the issue's list); more follow.
MAIN_COLUMNS: tuple[str, ...] = (
    "ruleset",
    "mode",
    "scenario",
    "seed",
    "detected",
    "time_to_detect_h",
    "exposed_before_detection",
    "benign_accounts_alerted",
    "fp_per_1000_account_days",
    "precision",
    "recall",
    "alerts_total",
)

Progress = Callable[[str], None]
#: Columns of the bench's tables that hold account ids, for ``--pseudonymise``.
PSEUDONYMISED_COLUMNS: dict[str, str] = {"first_account": "acct", "account_id": "acct"}


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that determines a generated data set; its hash names the cache entry."""

    seed: int
    scenarios: tuple[str, ...] = SCENARIOS
    accounts: int | None = None  # None: the generator's default
    days: int | None = None
    knobs: tuple[tuple[str, Any], ...] = ()  # stealth overrides applied to every scenario
    generator: str = ""  # fingerprint of the generator's code: new code, new data

    def key(self) -> str:
        """A short stable hash of the settings."""
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


#: Writes a data set for a spec at the given log path (with truth files beside it).
GenerateFn = Callable[[Path, DatasetSpec], Any]


@dataclass
class BenchResult:
    """Everything a bench run measured; each table has ruleset, mode and seed columns."""

    rows: pd.DataFrame  # one row per (ruleset, mode, scenario, seed[, knob_value])
    rule_counts: pd.DataFrame  # per rule: false alerts and alerts on attack accounts
    lookalikes: pd.DataFrame  # per look-alike instance: accounts alerted, max severity
    knob: str | None = None
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------- data sets


def cached_dataset(
    spec: DatasetSpec,
    generate: GenerateFn,
    cache_dir: str | Path = ".cache/bench",
    progress: Progress | None = None,
) -> Path:
    """The log of a spec's data set, generated on first use and reused afterwards."""
    folder = Path(cache_dir) / spec.key()
    log = folder / "logs.parquet"
    done = folder / "spec.json"
    if done.exists() and log.exists():
        _say(progress, f"seed {spec.seed}: cached data set {folder}")
        return log
    _say(progress, f"seed {spec.seed}: generating into {folder}")
    # Generate into a scratch folder and rename it, so an interrupted run leaves no
    # half-written entry that a later run would take for complete.
    scratch = folder.with_name(folder.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    began = time.perf_counter()
    generate(scratch / "logs.parquet", spec)
    _say(progress, f"seed {spec.seed}: generated in {time.perf_counter() - began:.1f} s")
    if not (scratch / "logs.parquet").exists():
        raise DetectorError(f"the generate function wrote no log at {scratch / 'logs.parquet'}")
    (scratch / "spec.json").write_text(json.dumps(asdict(spec), default=str, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    scratch.rename(folder)
    return log


@dataclass
class GroundTruth:
    """The generator's answer key for one log."""

    attacks: list[dict]
    truth: pd.DataFrame
    lookalikes: list[dict] | None


def read_ground_truth(log: str | Path) -> GroundTruth:
    """Read ``NAME.attacks.json``, ``NAME.truth.parquet`` and, when present, ``NAME.lookalikes.json``."""
    log = Path(log)
    attacks_path, truth_path = sibling(log, ".attacks.json"), sibling(log, ".truth.parquet")
    for path in (attacks_path, truth_path):
        if not path.exists():
            raise InputError(f"no ground truth beside the log: {path} is missing")
    try:
        attacks = json.loads(attacks_path.read_text())
        lookalikes_path = sibling(log, ".lookalikes.json")
        lookalikes = json.loads(lookalikes_path.read_text()) if lookalikes_path.exists() else None
    except json.JSONDecodeError as error:
        raise InputError(f"unreadable ground truth beside {log}: {error}") from None
    return GroundTruth(attacks=attacks, truth=pd.read_parquet(truth_path), lookalikes=lookalikes)


# --------------------------------------------------------------------------- one data set


@dataclass(frozen=True)
class Engine:
    """The detector functions the bench drives; replaceable in tests and notebooks."""

    prepare: Callable[..., Any]
    detect: Callable[..., pd.DataFrame]
    read_events: Callable[[Path], pd.DataFrame]


def default_engine() -> Engine:
    """The real pipeline: ``detector.pipeline.prepare``/``detect`` and ``detector.schema.read_events``."""
    from detector.pipeline import detect, prepare
    from detector.schema import read_events

    return Engine(prepare=prepare, detect=detect, read_events=read_events)


def _events_of(prepared: Any, log: Path, engine: Engine) -> pd.DataFrame:
    """The validated events the prepared data set holds (``prepared.log.events``), else read again."""
    held = getattr(getattr(prepared, "log", None), "events", None)
    if held is None:
        held = getattr(prepared, "events", None)
    if isinstance(held, pd.DataFrame) and "timestamp" in held.columns:
        return held
    return engine.read_events(log)


def _load_rulesets(rulesets: Sequence[Any]) -> list[Any]:
    """Rule sets loaded once (names, paths or RuleSet objects), so a bad file fails early."""
    from detector.rules import load_ruleset

    return [r if hasattr(r, "rules") else load_ruleset(r) for r in rulesets]


def _runs(rulesets: Sequence[Any], modes: Sequence[str]) -> list[tuple[str, Any, str]]:
    """(label, rule set, mode) to run; the model alone runs once, whatever the rule sets."""
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise DetectorError(f"unknown mode {bad[0]!r}; choose among {', '.join(MODES)}")
    runs = []
    for mode in dict.fromkeys(modes):
        if mode == "model":
            runs.append((NO_RULESET, None, mode))
        else:
            runs.extend((getattr(r, "name", str(r)), r, mode) for r in rulesets)
    return runs


def evaluate_dataset(
    log: str | Path,
    rulesets: Sequence[Any],
    modes: Sequence[str] = DEFAULT_MODES,
    engine: Engine | None = None,
    timezone: str = "Europe/Paris",
    progress: Progress | None = None,
) -> BenchResult:
    """Score one generated log: prepare it once, detect per (rule set, mode), measure.

    ``rulesets`` are RuleSet objects (or anything with ``.name`` that ``detect``
    accepts). Rows carry no seed; :func:`run_bench` adds it.
    """
    engine = engine or default_engine()
    log = Path(log)
    answer = read_ground_truth(log)
    caseloads = sibling(log, ".caseloads.parquet")
    _say(progress, f"preparing {log}")
    began = time.perf_counter()
    prepared = engine.prepare(log, caseloads if caseloads.exists() else None, timezone=timezone)
    _say(progress, f"  prepared in {time.perf_counter() - began:.1f} s")
    events = _events_of(prepared, log, engine)

    # What depends on the log alone, computed once for every (rule set, mode).
    exposure = metrics.record_exposure(events, answer.truth)
    active_days = metrics.account_days(events, timezone)
    rows, rule_counts, lookalikes = [], [], []
    for label, ruleset, mode in _runs(rulesets, modes):
        began = time.perf_counter()
        alerts = engine.detect(prepared, rules=ruleset, mode=mode)
        _say(
            progress,
            f"  {label} / {mode}: {len(alerts)} alerts in {time.perf_counter() - began:.1f} s",
        )
        keys = {"ruleset": label, "mode": mode}
        table = metrics.scenario_metrics(
            alerts,
            answer.attacks,
            answer.truth,
            events,
            timezone,
            exposure=exposure,
            active_days=active_days,
        )
        looks = metrics.lookalike_outcomes(alerts, answer.lookalikes)
        for key, value in metrics.lookalike_summary(alerts, answer.lookalikes).items():
            table[key] = value
        rows.append(table.assign(**keys))
        rule_counts.append(metrics.rule_alert_counts(alerts, answer.attacks).assign(**keys))
        lookalikes.append(looks.assign(**keys))
    return BenchResult(
        rows=_concat(rows), rule_counts=_concat(rule_counts), lookalikes=_concat(lookalikes)
    )


# --------------------------------------------------------------------------- runs


def run_bench(
    generate: GenerateFn,
    rulesets: Sequence[Any] | None = None,
    scenarios: Sequence[str] = SCENARIOS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    accounts: int | None = None,
    days: int | None = None,
    modes: Sequence[str] = DEFAULT_MODES,
    knob: str | None = None,
    knob_values: Sequence[Any] | None = None,
    cache_dir: str | Path = ".cache/bench",
    timezone: str = "Europe/Paris",
    generator: str = "",
    engine: Engine | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Benchmark rule sets on generated data sets: one per seed (and per knob value).

    ``rulesets``: names, paths or RuleSet objects (None: every shipped rule set).
    ``knob``: a stealth knob to sweep over ``knob_values`` (default
    ``SWEEP_KNOBS[knob]``); rows then carry ``knob`` and ``knob_value``.
    ``generator`` names the generator's version in the cache key.
    """
    if rulesets is None:
        from detector.rules import builtin_rulesets

        rulesets = builtin_rulesets()
    loaded = _load_rulesets(rulesets)
    _runs(loaded, modes)  # reject a bad mode before generating anything
    if not seeds:
        raise DetectorError("no seed to run")
    if knob is not None and knob not in SWEEP_KNOBS:
        raise DetectorError(f"unknown stealth knob {knob!r}; choose among {', '.join(SWEEP_KNOBS)}")
    values: Sequence[Any] = [None] if knob is None else (knob_values or SWEEP_KNOBS[knob])

    parts: list[BenchResult] = []
    for value in values:
        knobs = () if knob is None else ((knob, value),)
        for seed in seeds:
            spec = DatasetSpec(
                seed=int(seed),
                scenarios=tuple(scenarios),
                accounts=accounts,
                days=days,
                knobs=knobs,
                generator=generator,
            )
            log = cached_dataset(spec, generate, cache_dir, progress)
            part = evaluate_dataset(log, loaded, modes, engine, timezone, progress)
            extra = {"seed": int(seed), "dataset": spec.key()}
            if knob is not None:
                extra.update(knob=knob, knob_value=value)
            for name in ("rows", "rule_counts", "lookalikes"):
                setattr(part, name, getattr(part, name).assign(**extra))
            parts.append(part)
    result = BenchResult(
        rows=_order(_concat([p.rows for p in parts])),
        rule_counts=_concat([p.rule_counts for p in parts]),
        lookalikes=_concat([p.lookalikes for p in parts]),
        knob=knob,
    )
    result.notes.extend(_lookalike_notes(result.rows))
    return result


def run(
    generate: GenerateFn,
    out: str | Path | None = None,
    plot: str | Path | None = None,
    pseudonymiser: Pseudonymiser | None = None,
    **options: Any,
) -> BenchResult:
    """:func:`run_bench`, then write the CSV (``out``) and the PNG (``plot``) when named.

    With a ``pseudonymiser``, any account column of the tables is pseudonymised
    first (today's tables are per scenario and per rule and hold none). The paths written are listed in
    ``result.files``.
    """
    result = run_bench(generate, **options)
    if pseudonymiser is not None:
        result.rows = pseudonymiser.frame(result.rows, PSEUDONYMISED_COLUMNS)
        result.rule_counts = pseudonymiser.frame(result.rule_counts, PSEUDONYMISED_COLUMNS)
        result.lookalikes = pseudonymiser.frame(result.lookalikes, PSEUDONYMISED_COLUMNS)
    if out is not None:
        result.files.extend(write_csv(result, out))
    if plot is not None:
        result.files.append(plot_bench(result, plot))
    return result


def _lookalike_notes(rows: pd.DataFrame) -> list[str]:
    """One line per (rule set, mode) that alerted a look-alike account at high severity."""
    if rows.empty:
        return []
    per_dataset = rows.drop_duplicates(["ruleset", "mode", "dataset"])
    high = per_dataset.groupby(["ruleset", "mode"], sort=False).agg(
        accounts=("lookalike_accounts_alerted_high", "sum"),
        datasets=("lookalike_accounts_alerted_high", lambda h: int((h > 0).sum())),
        total=("dataset", "size"),
    )
    return [
        f"{ruleset} / {mode}: {row.accounts} look-alike account(s) alerted at high severity "
        f"({row.datasets} of {row.total} data sets)"
        for (ruleset, mode), row in high[high["accounts"] > 0].iterrows()
    ]


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f.columns)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _order(rows: pd.DataFrame) -> pd.DataFrame:
    """The issue's columns first, then the knob, then the rest."""
    if rows.empty:
        return rows
    head = [c for c in (*MAIN_COLUMNS[:4], "knob", "knob_value", *MAIN_COLUMNS[4:]) if c in rows]
    return rows[head + [c for c in rows.columns if c not in head]]


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


# --------------------------------------------------------------------------- output


def write_csv(result: BenchResult, path: str | Path) -> list[Path]:
    """Write the rows to ``path`` and the per-rule counts to ``<stem>.rules.csv`` beside it."""
    path = Path(path)
    rules_path = rules_csv_path(path)
    with atomic_path(path) as temporary:
        result.rows.to_csv(temporary, index=False, float_format="%.6g")
    with atomic_path(rules_path) as temporary:
        result.rule_counts.to_csv(temporary, index=False)
    return [path, rules_path]


def rules_csv_path(path: str | Path) -> Path:
    """Where :func:`write_csv` puts the per-rule counts: ``<stem>.rules.csv`` beside ``path``."""
    path = Path(path)
    return path.with_name(path.stem + ".rules.csv")


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Medians over seeds per (ruleset, mode, scenario[, knob_value])."""
    keys = ["ruleset", "mode", "scenario"] + (["knob_value"] if "knob_value" in rows else [])
    grouped = rows.groupby(keys, sort=False, dropna=False)
    out = grouped.agg(
        seeds=("seed", "nunique"),
        detected=("detected", "sum"),
        ttd_h=("time_to_detect_h", "median"),  # NaN (missed) seeds are skipped
        exposed=("exposed_before_detection", "median"),
        benign_alerted=("benign_accounts_alerted", "median"),
        fp_per_1000=("fp_per_1000_account_days", "median"),
        precision=("precision", "median"),
        recall=("recall", "median"),
        alerts=("alerts_total", "median"),
    )
    return out.reset_index()


def first_rule_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (ruleset, mode, scenario): the rules that fired first, with their seed counts."""
    detected = rows[rows["detected"] == 1]
    keys = ["ruleset", "mode", "scenario"]
    counts = detected.groupby(keys + ["first_rule"], sort=False).size().rename("n").reset_index()
    counts["first_rules"] = counts["first_rule"] + " (" + counts["n"].astype(str) + ")"
    return counts.groupby(keys, sort=False)["first_rules"].agg(", ".join).reset_index()


def false_alert_table(rule_counts: pd.DataFrame) -> pd.DataFrame:
    """Per (ruleset, mode, rule): median false alerts and alerts on attack accounts over seeds."""
    if rule_counts.empty:
        return rule_counts
    keys = ["ruleset", "mode", "rule"]
    out = rule_counts.groupby(keys, sort=False)[["false_alerts", "attack_account_alerts"]].median()
    return out.reset_index().sort_values(
        ["ruleset", "mode", "false_alerts"], ascending=[True, True, False]
    )


def format_summary(result: BenchResult) -> str:
    """The terminal report: medians per rule set and mode, first rules, false alerts per rule."""
    rows = result.rows
    if rows.empty:
        return "no results"
    table = summary_table(rows)
    table["detected"] = table["detected"].astype(int).astype(str) + "/" + table["seeds"].astype(str)
    table = table.drop(columns="seeds")
    lines = []
    sweep = f" against {result.knob}" if result.knob else ""
    lines.append(
        f"Medians over seeds{sweep} (ttd_h over detected seeds; exposed: share of records)"
    )
    for (ruleset, mode), part in table.groupby(["ruleset", "mode"], sort=False):
        lines.append("")
        lines.append(f"== {ruleset} / {mode}")
        lines.append(_text(part.drop(columns=["ruleset", "mode"])))
    if result.knob:
        lines.append("")
        lines.append(
            f"Detected seeds by {result.knob} (where each rule set stops seeing the attacker)"
        )
        pivot = rows.pivot_table(
            index=["ruleset", "mode", "scenario"],
            columns="knob_value",
            values="detected",
            aggfunc="sum",
            sort=False,
        )
        lines.append(_text(pivot.reset_index()))
    firsts = first_rule_table(rows)
    if len(firsts):
        lines.append("")
        lines.append("First rule to fire on each attack (seeds)")
        lines.append(_text(firsts))
    false_alerts = false_alert_table(result.rule_counts)
    if len(false_alerts):
        lines.append("")
        lines.append("Alerts per rule, median over data sets (false: on benign accounts)")
        lines.append(_text(false_alerts))
    for note in result.notes:
        lines.append("")
        lines.append(f"NOTE: {note}")
    return "\n".join(lines)


def _text(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3g}", na_rep="-")


def plot_bench(result: BenchResult, path: str | Path) -> Path:
    """A PNG comparing rule sets: median time to detect per scenario, and false alerts.

    In a sweep, detection rate and median exposure against the knob's values instead.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    rows = result.rows
    if rows.empty:
        raise DetectorError("nothing to plot: the bench produced no rows")
    rows = rows.assign(run=rows["ruleset"] + " / " + rows["mode"])
    if result.knob:
        fig = _plot_sweep(plt, rows, result.knob)
    else:
        fig = _plot_comparison(plt, rows)
    try:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _plot_comparison(plt, rows: pd.DataFrame):
    runs = list(dict.fromkeys(rows["run"]))
    scenarios = list(dict.fromkeys(rows["scenario"]))
    ttd = rows.groupby(["run", "scenario"])["time_to_detect_h"].median()
    hit = rows.groupby(["run", "scenario"])["detected"].mean()
    fp = (
        rows.drop_duplicates(["run", "dataset"]).groupby("run")["fp_per_1000_account_days"].median()
    )

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), width_ratios=[2, 1])
    colours = [plt.get_cmap("tab10")(i % 10) for i in range(len(runs))]
    width = 0.8 / len(runs)
    x = np.arange(len(scenarios))
    top = max(float(np.nanmax(ttd.to_numpy())) if ttd.notna().any() else 1.0, 1.0)
    for i, run in enumerate(runs):
        heights = np.array([ttd.get((run, s), np.nan) for s in scenarios], dtype=float)
        missed = np.isnan(heights)
        bars = left.bar(
            x + i * width,
            np.where(missed, top * 1.5, heights),
            width,
            label=run,
            color=colours[i],
            edgecolor=colours[i],
        )
        for bar, gone, scenario in zip(bars, missed, scenarios, strict=True):
            if gone:  # a missed attack: an empty hatched bar reaching past every detection
                bar.set_fill(False)
                bar.set_hatch("//")
            rate = hit.get((run, scenario), 0.0)
            left.text(
                bar.get_x() + width / 2,
                bar.get_height(),
                f"{rate:.0%}",
                ha="center",
                va="bottom",
                fontsize=7,
            )
    # Detection times span seconds to days: linear below 6 minutes, logarithmic above.
    left.set_yscale("symlog", linthresh=0.1)
    left.set_xticks(x + width * (len(runs) - 1) / 2, scenarios, rotation=15)
    left.set_ylabel("median time to detect (h)")
    left.set_title("Time to detect (hatched: missed; label: share of seeds detected)")
    left.legend(fontsize=8)
    right.barh(runs, [fp.get(r, np.nan) for r in runs], color=colours)
    right.set_xlabel("false alerts per 1000 benign account-days (median)")
    right.set_title("False alerts")
    right.invert_yaxis()
    fig.tight_layout()
    return fig


def _plot_sweep(plt, rows: pd.DataFrame, knob: str):
    scenarios = list(dict.fromkeys(rows["scenario"]))
    values = list(dict.fromkeys(rows["knob_value"]))
    fig, axes = plt.subplots(2, len(scenarios), figsize=(4 * len(scenarios), 7), squeeze=False)
    positions = np.arange(len(values))
    for j, scenario in enumerate(scenarios):
        mine = rows[rows["scenario"] == scenario]
        for run, part in mine.groupby("run", sort=False):
            by = part.groupby("knob_value", sort=False)
            rate = by["detected"].mean().reindex(values)
            exposed = by["exposed_before_detection"].median().reindex(values)
            axes[0, j].plot(positions, rate.to_numpy(dtype=float), marker="o", label=run)
            axes[1, j].plot(positions, exposed.to_numpy(dtype=float), marker="o", label=run)
        axes[0, j].set_title(scenario)
        for row in (0, 1):
            axes[row, j].set_xticks(positions, [str(v) for v in values])
            axes[row, j].set_ylim(-0.05, 1.05)
        axes[1, j].set_xlabel(knob)
    axes[0, 0].set_ylabel("share of seeds detected")
    axes[1, 0].set_ylabel("exposed before detection (median)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig
