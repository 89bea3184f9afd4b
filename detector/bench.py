"""Compare rule sets on generated attacks: the orchestration behind `detector bench`.

For each data set (one per seed, holding every selected scenario): generate it once
into a cache, prepare it once, then detect per (rule set, mode) and score the
alerts against the ground truth with :mod:`detector.metrics`. The detector does
not import the generator: callers pass a ``generate`` function (the CLI passes one
built on ``synthetic_logs``), keeping the data flow one way.

Notebook use::

    from detector import bench, plots
    from synthetic_logs.bench_data import generate_for_bench
    result = bench.run_bench(generate_for_bench, rulesets=["naive", "default"], seeds=[1])
    print(bench.format_summary(result))
    plots.bench_figure(result.rows, result.knob)

It returns data only: the figures are :mod:`detector.plots`'.
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

import pandas as pd

from detector import metrics
from detector.errors import DetectorError, InputError
from detector.metrics import summary_table
from detector.outputs import atomic_path
from detector.privacy import Pseudonymiser
from detector.schema import sibling
from detector.vocabulary import DEFAULT_TIMEZONE, MODES, SEVERITIES, Mode

#: The four documented attacks, in the generator's names (scenario family "documented").
DOCUMENTED: tuple[str, ...] = (
    "cap_emploi",
    "kairos_infostealer",
    "ouiform_account_creation",
    "imilo_night_bi",
)
#: Issue 9's quiet attack classes (scenario family "quiet").
QUIET: tuple[str, ...] = (
    "insider_misuse",
    "session_replay",
    "search_enumeration",
    "offday_takeover",
    "quiet_account_creation",
)
#: Every built-in scenario: what the bench runs unless told otherwise.
SCENARIOS: tuple[str, ...] = DOCUMENTED + QUIET
#: The generator's look-alike set: "extended" adds the organisation-wide changes the
#: shipped detector still alerts on (browser roll-out, VPN migration...), "default" leaves
#: them out, "basic" draws none of the organisation-wide ones.
DEFAULT_LOOKALIKES = "extended"
DEFAULT_MODES: tuple[str, ...] = (Mode.RULES.value, Mode.BOTH.value)
DEFAULT_SEEDS: tuple[int, ...] = (1, 2, 3)
DEFAULT_CACHE_DIR = ".cache/bench"
#: Rule-set label of the model-alone mode, which does not depend on a rule set.
NO_RULESET = "(none)"

#: Stealth knobs of the scenarios and the values a sweep tries by default. A knob is
#: applied to the scenarios that have it; the others run as written (their rows carry
#: ``knob_applied = 0`` and the summary names them).
SWEEP_KNOBS: dict[str, tuple[Any, ...]] = {
    # Every scenario has these.
    "rate_multiple": (1.0, 2.0, 5.0, 10.0, 50.0),
    "office_hours_only": (False, True),
    "reuse_victim_address": (False, True),
    "reuse_victim_client": (False, True),
    "duration_days": (1, 3, 7, 14),  # how many days the attack runs
    # Only the scenarios whose steps set them.
    "per_day": (10, 20, 30, 45, 60, 100),  # records read a day (insider, quiet creation)
    "daily_multiple": (1.5, 2.0, 4.0, 8.0),  # times the victim's usual day (session replay)
    "searches_per_day": (25, 50, 100, 200, 400),  # search enumeration
    "records_per_search": (5, 10, 20, 40),  # persons per search (enumeration, infostealer)
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
    knobs: tuple[tuple[str, Any], ...] = ()  # stealth overrides, to the scenarios that have them
    lookalikes: str = DEFAULT_LOOKALIKES  # the generator's look-alike set
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
    knobs_applied: dict[str, list[str]] | None = None  # of the last data set read
    files: list[Path] = field(default_factory=list)


# --------------------------------------------------------------------------- data sets


def cached_dataset(
    spec: DatasetSpec,
    generate: GenerateFn,
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
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
    knobs: dict[str, list[str]] | None = None  # per scenario name, the swept knobs it took


def read_ground_truth(log: str | Path) -> GroundTruth:
    """Read ``NAME.attacks.json``, ``NAME.truth.parquet`` and, when present, ``NAME.lookalikes.json``
    and the bench's ``NAME.knobs.json`` (which knobs each scenario took)."""
    log = Path(log)
    attacks_path, truth_path = sibling(log, ".attacks.json"), sibling(log, ".truth.parquet")
    for path in (attacks_path, truth_path):
        if not path.exists():
            raise InputError(f"no ground truth beside the log: {path} is missing")
    try:
        attacks = json.loads(attacks_path.read_text())
        lookalikes_path = sibling(log, ".lookalikes.json")
        lookalikes = json.loads(lookalikes_path.read_text()) if lookalikes_path.exists() else None
        knobs_path = sibling(log, ".knobs.json")
        knobs = json.loads(knobs_path.read_text()) if knobs_path.exists() else None
    except json.JSONDecodeError as error:
        raise InputError(f"unreadable ground truth beside {log}: {error}") from None
    return GroundTruth(
        attacks=attacks, truth=pd.read_parquet(truth_path), lookalikes=lookalikes, knobs=knobs
    )


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
        if mode == Mode.MODEL:
            runs.append((NO_RULESET, None, mode))
        else:
            runs.extend((getattr(r, "name", str(r)), r, mode) for r in rulesets)
    return runs


def evaluate_dataset(
    log: str | Path,
    rulesets: Sequence[Any],
    modes: Sequence[str] = DEFAULT_MODES,
    engine: Engine | None = None,
    timezone: str = DEFAULT_TIMEZONE,
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
    result = BenchResult(
        rows=_concat(rows), rule_counts=_concat(rule_counts), lookalikes=_concat(lookalikes)
    )
    result.knobs_applied = answer.knobs
    return result


# --------------------------------------------------------------------------- runs


def run_bench(
    generate: GenerateFn,
    rulesets: Sequence[Any] | None = None,
    scenarios: Sequence[str] = SCENARIOS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    accounts: int | None = None,
    days: int | None = None,
    lookalikes: str = DEFAULT_LOOKALIKES,
    modes: Sequence[str] = DEFAULT_MODES,
    knob: str | None = None,
    knob_values: Sequence[Any] | None = None,
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
    timezone: str = DEFAULT_TIMEZONE,
    generator: str = "",
    engine: Engine | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Benchmark rule sets on generated data sets: one per seed (and per knob value).

    ``rulesets``: names, paths or RuleSet objects (None: every shipped rule set).
    ``scenarios``: generator names or files (default: every built-in, documented and
    quiet). ``lookalikes``: the generator's look-alike set (default ``extended``).
    ``knob``: a stealth knob to sweep over ``knob_values`` (default
    ``SWEEP_KNOBS[knob]``); rows then carry ``knob``, ``knob_value`` and, when the
    generator says which scenarios took the knob, ``knob_applied`` (0: the scenario
    lacks the knob and ran as written).
    ``generator`` names the generator's version in the cache key.
    """
    if rulesets is None:
        from detector.rules import builtin_rulesets

        rulesets = builtin_rulesets()
    loaded = _load_rulesets(rulesets)
    _runs(loaded, modes)  # reject a bad mode before generating anything
    if not seeds:
        raise DetectorError("no seed to run")
    if not scenarios:
        raise DetectorError("no scenario to run")
    values: Sequence[Any] = [None] if knob is None else knob_settings(knob, knob_values)

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
                lookalikes=lookalikes,
                generator=generator,
            )
            log = cached_dataset(spec, generate, cache_dir, progress)
            part = evaluate_dataset(log, loaded, modes, engine, timezone, progress)
            extra = {"seed": int(seed), "dataset": spec.key()}
            if knob is not None:
                extra.update(knob=knob, knob_value=value)
            for name in ("rows", "rule_counts", "lookalikes"):
                setattr(part, name, getattr(part, name).assign(**extra))
            if knob is not None and part.knobs_applied is not None and len(part.rows):
                took = [name for name, knobs in part.knobs_applied.items() if knob in knobs]
                part.rows["knob_applied"] = part.rows["scenario"].isin(took).astype(int)
            parts.append(part)
    result = BenchResult(
        rows=_order(_concat([p.rows for p in parts])),
        rule_counts=_concat([p.rule_counts for p in parts]),
        lookalikes=_concat([p.lookalikes for p in parts]),
        knob=knob,
    )
    result.notes.extend(_knob_notes(result.rows, knob))
    result.notes.extend(_lookalike_notes(result.rows))
    return result


def knob_settings(knob: str, values: Sequence[Any] | None = None) -> list[Any]:
    """The values to sweep ``knob`` over (default ``SWEEP_KNOBS[knob]``), checked and typed.

    DetectorError for an unknown knob, and for a value of the wrong kind: a switch takes
    true or false, a count whole numbers above 0, a multiple numbers above 0.
    """
    if knob not in SWEEP_KNOBS:
        raise DetectorError(f"unknown stealth knob {knob!r}; choose among {', '.join(SWEEP_KNOBS)}")
    values = list(values) if values else list(SWEEP_KNOBS[knob])
    kind = type(SWEEP_KNOBS[knob][0])
    out: list[Any] = []
    for value in values:
        if kind is bool:
            if not isinstance(value, bool):
                raise DetectorError(f"stealth knob {knob} takes true or false, got {value!r}")
            out.append(value)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise DetectorError(f"stealth knob {knob} takes numbers above 0, got {value!r}")
        if kind is int and value != int(value):
            raise DetectorError(f"stealth knob {knob} takes whole numbers, got {value!r}")
        out.append(kind(value))
    return out


def run(
    generate: GenerateFn,
    out: str | Path | None = None,
    pseudonymiser: Pseudonymiser | None = None,
    **options: Any,
) -> BenchResult:
    """:func:`run_bench`, then write the CSV (``out``) when named.

    The figure is drawn apart from the data: ``detector.plots.bench_figure(result.rows,
    result.knob)``, as ``detector bench --plot`` and notebook 02 do.

    With a ``pseudonymiser``, any account column of the tables is pseudonymised
    first (today's tables are per scenario and per rule and hold none). The paths written are listed in
    ``result.files``.
    """
    result = run_bench(generate, **options)
    if pseudonymiser is not None:
        result.rows = pseudonymiser.frame(result.rows, PSEUDONYMISED_COLUMNS)
        result.rule_counts = pseudonymiser.frame(result.rule_counts, PSEUDONYMISED_COLUMNS)
        looks = result.lookalikes
        result.lookalikes = pseudonymiser.frame(looks, PSEUDONYMISED_COLUMNS)
        if "accounts" in looks:
            # Here a count of the instance's accounts, not the incidents' list of ids.
            result.lookalikes["accounts"] = looks["accounts"]
    if out is not None:
        result.files.extend(write_csv(result, out))
    return result


def _knob_notes(rows: pd.DataFrame, knob: str | None) -> list[str]:
    """One line naming the scenarios that lack the swept knob and ran as written."""
    if knob is None or rows.empty or "knob_applied" not in rows:
        return []
    lacking = list(dict.fromkeys(rows.loc[rows["knob_applied"] == 0, "scenario"]))
    if not lacking:
        return []
    return [
        f"{knob} is not a knob of {', '.join(lacking)}: they ran as written at every value "
        "(rows with knob_applied = 0, left out of the sweep table)"
    ]


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
    """Write the rows to ``path``, and beside it the per-rule counts (``<stem>.rules.csv``)
    and the outcome of each look-alike instance (``<stem>.lookalikes.csv``)."""
    path = Path(path)
    written = [path, rules_csv_path(path), lookalikes_csv_path(path)]
    frames = [result.rows, result.rule_counts, result.lookalikes]
    for target, frame in zip(written, frames, strict=True):
        with atomic_path(target) as temporary:
            frame.to_csv(temporary, index=False, float_format="%.6g")
    return written


def rules_csv_path(path: str | Path) -> Path:
    """Where :func:`write_csv` puts the per-rule counts: ``<stem>.rules.csv`` beside ``path``."""
    path = Path(path)
    return path.with_name(path.stem + ".rules.csv")


def lookalikes_csv_path(path: str | Path) -> Path:
    """Where :func:`write_csv` puts the look-alike outcomes: ``<stem>.lookalikes.csv``."""
    path = Path(path)
    return path.with_name(path.stem + ".lookalikes.csv")


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


def lookalike_table(lookalikes: pd.DataFrame) -> pd.DataFrame:
    """Per (ruleset, mode, look-alike kind): instances, accounts, accounts alerted, max severity.

    Sums over data sets (seeds, knob values); every kind drawn has a row, alerted or not.
    """
    if lookalikes.empty:
        return pd.DataFrame()
    ranks = lookalikes["max_severity"].map({s: i for i, s in enumerate(SEVERITIES)})
    table = (
        lookalikes.assign(rank=ranks)
        .groupby(["ruleset", "mode", "kind"], sort=False)
        .agg(
            instances=("kind", "size"),
            accounts=("accounts", "sum"),
            alerted=("accounts_alerted", "sum"),
            alerted_high=("accounts_alerted_high", "sum"),
            rank=("rank", "max"),
        )
        .reset_index()
    )
    table["max_severity"] = [None if pd.isna(r) else SEVERITIES[int(r)] for r in table["rank"]]
    return table.drop(columns="rank")


def _lookalike_grid(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`lookalike_table` with one column per (rule set, mode): ``alerted/high severity``."""
    cells = table["alerted"].astype(str) + "/" + table["alerted_high"].astype(str)
    cells = cells.where(table["alerted"] == 0, cells + " " + table["max_severity"].astype(str))
    grid = table.assign(
        run=table["ruleset"].astype(str) + " / " + table["mode"].astype(str), cell=cells
    ).pivot(index=["kind", "instances", "accounts"], columns="run", values="cell")
    runs = list(dict.fromkeys(table["ruleset"].astype(str) + " / " + table["mode"].astype(str)))
    kinds = list(dict.fromkeys(table["kind"]))
    grid = grid[runs].reset_index()
    grid.columns.name = None
    return grid.sort_values("kind", key=lambda k: k.map(kinds.index), kind="stable")


def format_summary(result: BenchResult) -> str:
    """The terminal report: medians per rule set and mode, first rules, look-alikes, false alerts."""
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
        swept = rows[rows["knob_applied"] != 0] if "knob_applied" in rows else rows
        pivot = swept.pivot_table(
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
    looks = lookalike_table(result.lookalikes)
    if len(looks):
        lines.append("")
        lines.append(
            "Look-alikes: accounts alerted during them / at high severity, and the highest "
            "severity, summed over data sets"
        )
        lines.append(_text(_lookalike_grid(looks)))
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
