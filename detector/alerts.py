"""The alerts table: fuse rule hits and model scores into alerts, write the table, read it back.

The one module that knows the table's format: `build_alerts` makes it,
`write_alerts` writes it (Parquet, JSON lines, CSV), and `read_alerts` /
`normalise_alerts` read it back for the report, the bench and notebooks, also
when another tool wrote it with the contract columns only.

One alert per account and window. ``detected_at`` is the first event at which
a rule's condition (or the model's threshold) held on the window's events up to
that instant (see :mod:`detector.features.prefix`): never the window's end by
default, never anything later.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from detector.errors import DetectorError, InputError
from detector.features.catalogue import BASELINED_VOLUMES, FEATURES
from detector.features.prefix import Replay, prefix_parts, replay_events
from detector.features.table import FeatureTable
from detector.rules import RuleSet, format_value
from detector.timeutil import to_utc
from detector.vocabulary import (
    OWN_MEDIAN,
    PEER_P95,
    SEVERITIES,
    SEVERITIES_URGENT_FIRST,
    SEVERITY_SCORE,
    Severity,
    baseline_name,
    baseline_volume,
)

NEVER = np.iinfo(np.int64).min  # first-hold instant of a condition that never held
MODEL_POINTS_PER_WINDOW = 256  # prefix points the model is scored at, per alerted window
COARSE_POINTS_PER_WINDOW = 32  # points per window checked first, to skip what follows an instant
REPLAY_CHUNK_EVENTS = 100_000  # replayed events whose prefix features are held at once (per core)
# The columns the data contract promises (section 4); the others are extensions.
CONTRACT_COLUMNS = (
    "account_id",
    "window_start",
    "window_end",
    "detected_at",
    "score",
    "severity",
    "rules",
    "reason",
)
ALERT_COLUMNS = [
    "alert_id",
    "account_id",
    "account_type",
    "window_start",
    "window_end",
    "detected_at",
    "score",
    "severity",
    "rules",
    "rule_times",
    "model_score",
    "top_features",
    "reason",
    "evidence",
    "incident_id",  # set by detector.incidents.group_incidents (null until grouped)
]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def empty_alerts() -> pd.DataFrame:
    """An alerts table with no rows and the right columns and types."""
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in ALERT_COLUMNS})
    for column in ("window_start", "window_end", "detected_at"):
        frame[column] = pd.Series(dtype="datetime64[ns, UTC]")
    frame["score"] = pd.Series(dtype=np.float64)
    frame["model_score"] = pd.Series(dtype=np.float64)
    return frame


def first_hold_times(
    feature_table: FeatureTable,
    windows: np.ndarray,
    conditions: dict[str, Callable[[Mapping[str, np.ndarray]], np.ndarray]],
    sparse: frozenset[str] = frozenset(),
    replay: Replay | None = None,
    wanted: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """For each condition, the first instant (ns UTC, or ``NEVER``) it held in each given window.

    Conditions named in ``sparse`` are costly (the model): they are checked at
    most ``MODEL_POINTS_PER_WINDOW`` evenly spaced events per window (always
    including the last), so their instant may be slightly late, never early.
    ``wanted`` maps a condition to a bool per window: where its instant is
    needed (a rule where it fired); it is not checked elsewhere (``NEVER``).
    The windows' events are re-read (only theirs) unless ``replay`` already holds them.
    """
    if len(windows) == 0:
        return {name: np.zeros(0, dtype=np.int64) for name in conditions}
    windows = np.asarray(windows, dtype=np.int64)
    if replay is None:
        replay = replay_events(feature_table, windows)
    everywhere = np.ones(len(windows), dtype=bool)
    wanted = {name: np.asarray((wanted or {}).get(name, everywhere), bool) for name in conditions}
    # A bulk theft can hold millions of events, each with ~80 prefix features:
    # windows are replayed in chunks of about REPLAY_CHUNK_EVENTS events, two at a
    # time on two cores (numpy releases the GIL on such arrays).
    sizes = feature_table.table["events"].to_numpy()[windows]
    chunk = np.cumsum(sizes) // REPLAY_CHUNK_EVENTS
    parts = [np.flatnonzero(chunk == value) for value in np.unique(chunk)]
    times = {name: np.full(len(windows), NEVER, dtype=np.int64) for name in conditions}

    def replay_part(part: np.ndarray) -> None:
        needed = {name: mask[part] for name, mask in wanted.items()}
        found = _first_hold_chunk(feature_table, windows[part], conditions, sparse, replay, needed)
        for name in conditions:
            times[name][part] = found[name]

    with ThreadPoolExecutor(max_workers=min(_cores(), len(parts))) as pool:
        list(pool.map(replay_part, parts))
    return times


class _Rows(Mapping):
    """Some rows of columns, each column gathered on first use (a rule reads a few)."""

    def __init__(self, columns: Mapping[str, np.ndarray], rows: np.ndarray):
        self._columns, self._rows, self._taken = columns, rows, {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._taken:
            self._taken[name] = self._columns[name][self._rows]
        return self._taken[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def _first_hold_chunk(
    feature_table: FeatureTable,
    windows: np.ndarray,
    conditions: dict[str, Callable[[Mapping[str, np.ndarray]], np.ndarray]],
    sparse: frozenset[str],
    replay: Replay,
    wanted: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    # Prefix features of REPLAY_CHUNK_EVENTS events at a time, even within one window, and
    # only of the events a condition is checked at: those of the windows that need its
    # instant (a sparse condition's sampled events only), and of them first a few per
    # window (COARSE_POINTS_PER_WINDOW), then only those earlier than the first instant
    # found so far. Every event earlier than the final instant is checked, so it is the
    # first; a window's events after it are never derived.
    never = np.iinfo(np.int64).max
    first = {name: np.full(len(windows), never) for name in conditions}
    checked = [name for name in conditions if wanted[name].any()]
    index = pd.Index(windows)
    for part in prefix_parts(feature_table, windows, replay, REPLAY_CHUNK_EVENTS):
        slot = index.get_indexer(part.window)  # every window has an event
        rank, size, stamps = part.rank, part.size, part.timestamp
        last = rank == size - 1
        stride = np.maximum(1, np.ceil(size / MODEL_POINTS_PER_WINDOW)).astype(np.int64)
        sampled = (rank % stride == 0) | last
        every = np.maximum(1, np.ceil(size / COARSE_POINTS_PER_WINDOW)).astype(np.int64)
        coarse = (rank % every == 0) | last
        sparse_coarse = sampled & (((rank // stride) % np.maximum(1, every // stride) == 0) | last)
        masks, early = {}, {}
        for name in checked:
            masks[name] = wanted[name][slot] & (sampled if name in sparse else True)
            early[name] = masks[name] & (sparse_coarse if name in sparse else coarse)
        for stage in (early, {name: masks[name] & ~early[name] for name in checked}):
            rows = {
                name: np.flatnonzero(mask & (stamps < first[name][slot]))
                for name, mask in stage.items()
            }
            chosen = np.unique(np.concatenate([np.zeros(0, np.int64), *rows.values()]))
            if not len(chosen):
                continue
            prefix = part.columns(chosen)
            for name, some in rows.items():
                if not len(some):
                    continue
                at = np.searchsorted(chosen, some)  # their positions among the chosen
                columns = prefix if len(at) == len(chosen) else _Rows(prefix, at)
                held = some[conditions[name](columns)]
                np.minimum.at(first[name], slot[held], stamps[held])
            del prefix
    return {name: np.where(found == never, NEVER, found) for name, found in first.items()}


def _evidence(row: pd.Series, names: list[str]) -> str:
    items = []
    for name in names:
        volume = name if name in BASELINED_VOLUMES else None
        items.append(
            {
                "feature": name,
                "doc": FEATURES[name].doc,
                "value": _json_number(row[name]),
                "own_median": _baseline(row, OWN_MEDIAN, volume),
                "peer_p95": _baseline(row, PEER_P95, volume),
            }
        )
    return json.dumps(items)


def _baseline(row: pd.Series, stat: str, volume: str | None) -> float | None:
    return _json_number(row[baseline_name(stat, volume)]) if volume else None


def _evidence_features(names: list[str]) -> list[str]:
    """The observed features behind a list of names: baselines stand for their volume.

    A baseline (``own_median_records_read``) is shown beside its volume
    (``records_read``), not as a row of its own.
    """
    shown = []
    for name in names:
        name = baseline_volume(name) or name
        if name in FEATURES and name not in shown:
            shown.append(name)
    return shown


def write_alerts(alerts: pd.DataFrame, path: str | Path, fmt: str = "parquet") -> Path:
    """Write alerts as Parquet, JSON lines or CSV (lists JSON-encoded in CSV), atomically."""
    from detector.outputs import atomic_path

    path = Path(path)
    if fmt not in ("parquet", "jsonl", "csv"):
        raise DetectorError(f"unknown alerts format {fmt!r}; expected parquet, jsonl or csv")
    with atomic_path(path) as temporary:
        if fmt == "parquet":
            alerts.to_parquet(temporary, index=False)
        elif fmt == "jsonl":
            alerts.to_json(
                temporary, orient="records", lines=True, date_format="iso", date_unit="us"
            )
        else:
            flat = alerts.copy()
            flat["rules"] = flat["rules"].map(lambda v: json.dumps(list(v)))
            flat["top_features"] = flat["top_features"].map(lambda v: json.dumps(list(v)))
            flat["rule_times"] = flat["rule_times"].map(
                lambda v: json.dumps([t.isoformat() for t in v])
            )
            # Every text quoted: a bare CR or a NUL in an account id must not split a row.
            flat.to_csv(temporary, index=False, quoting=csv.QUOTE_NONNUMERIC)
    return path


def _json_number(value: float) -> float | None:
    value = float(value)
    return None if not np.isfinite(value) else value


def _model_reason(row: pd.Series, drivers: list[str], score: float) -> str:
    parts = []
    for name in drivers:
        text = f"{name} {format_value(row[name])}"
        if name in BASELINED_VOLUMES:
            text += (
                f" (own median {format_value(row[baseline_name(OWN_MEDIAN, name)])}, "
                f"peers' 95th percentile {format_value(row[baseline_name(PEER_P95, name)])})"
            )
        parts.append(text)
    detail = "; ".join(parts) if parts else "an unusual combination of features"
    return f"unusual window for the model (score {score:.2f}): {detail}"


def build_alerts(
    feature_table: FeatureTable,
    windows: np.ndarray,
    fired: pd.DataFrame,
    times: dict[str, np.ndarray],
    ruleset: RuleSet | None,
    model_scores: np.ndarray | None,
    model_flags: np.ndarray | None,
    drivers: list[list[str]] | None,
) -> pd.DataFrame:
    """The alerts of the given windows (rows of the feature table).

    ``fired`` holds one bool column per rule (rows aligned with ``windows``),
    ``times`` the first-hold instant of each rule and of ``"model"``.
    """
    if len(windows) == 0:
        return empty_alerts()
    table = feature_table.table.iloc[windows].reset_index(drop=True)
    fired_values = fired.to_numpy(dtype=bool)
    # Each rule's features once (a walk of its expression), not once per alert.
    rule_features = (
        {rid: sorted(ruleset.rule(rid).features()) for rid in fired.columns}
        if ruleset is not None
        else {}
    )
    records = []
    for i, row in table.iterrows():  # one iteration per alert (tens to hundreds)
        hits = [
            rid
            for j, rid in enumerate(fired.columns)
            if fired_values[i, j] and times[rid][i] != NEVER
        ]
        hits.sort(key=lambda rid: times[rid][i])
        model_hit = model_flags is not None and bool(model_flags[i]) and times["model"][i] != NEVER
        instants = [times[rid][i] for rid in hits] + ([times["model"][i]] if model_hit else [])
        if not instants:
            continue
        rules = [ruleset.rule(rid) for rid in hits] if ruleset is not None else []
        severity = max(
            (r.severity for r in rules), key=SEVERITIES.index, default=Severity.LOW.value
        )
        rule_score = max((SEVERITY_SCORE[r.severity] for r in rules), default=0.0)
        rule_score = min(0.95, rule_score + 0.03 * max(0, len(rules) - 1))
        model_score = float(model_scores[i]) if model_scores is not None else float("nan")
        score = max(rule_score, model_score if model_hit else 0.0)
        reasons = [r.render_reason(row) for r in rules]
        # Drivers read as the behaviour they measure: z_peer_records_read -> records_read.
        top = _evidence_features(drivers[i]) if (model_hit and drivers is not None) else []
        if model_hit:
            reasons.append(_model_reason(row, top, model_score))
        shown = _evidence_features([f for rid in hits for f in rule_features[rid]] + top)
        records.append(
            {
                "account_id": row["account_id"],
                "account_type": row["account_type"],
                "window_start": row["window_start"],
                "window_end": row["window_end"],
                "detected_at": pd.Timestamp(min(instants), tz="UTC"),
                "score": float(np.clip(score, 0.0, 1.0)),
                "severity": severity,
                "rules": hits,
                "rule_times": [pd.Timestamp(times[rid][i], tz="UTC") for rid in hits],
                "model_score": model_score,
                "top_features": top,
                "reason": "; ".join(reasons),
                "evidence": _evidence(row, shown),
            }
        )
    if not records:
        return empty_alerts()
    alerts = pd.DataFrame(records)
    alerts = alerts.sort_values(["score", "detected_at"], ascending=[False, True], kind="stable")
    alerts.insert(0, "alert_id", alert_ids(len(alerts)))
    alerts["incident_id"] = None
    return alerts.reset_index(drop=True)[ALERT_COLUMNS]


# --------------------------------------------------------------------------- reading

# Most urgent first: 0 for high, then medium, then low (a severity the vocabulary
# does not know sorts last).
URGENCY = {severity: rank for rank, severity in enumerate(SEVERITIES_URGENT_FIRST)}
_TIME_COLUMNS = ("window_start", "window_end", "detected_at")


def alert_ids(n: int) -> list[str]:
    """`A00001`, `A00002`...: the ids of `n` alerts in order."""
    return [f"A{i + 1:05d}" for i in range(n)]


def read_alerts(path: str | Path) -> pd.DataFrame:
    """Read an alerts table (Parquet; `.jsonl` and `.csv` accepted too), normalised.

    Raises `InputError` when the file is missing, unreadable or lacks a
    contract column. See `normalise_alerts` for what the result holds.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"alerts file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            table = pd.read_json(path, lines=True, dtype=False)
        elif suffix == ".csv":
            table = pd.read_csv(path)
        else:
            table = pd.read_parquet(path)
    except Exception as error:  # pyarrow/pandas raise many types for a bad file
        kind = {".jsonl": "JSON lines", ".csv": "CSV"}.get(suffix, "Parquet")
        raise InputError(f"cannot read alerts file {path}: not a valid {kind} file") from error
    return normalise_alerts(table, source=str(path))


def as_list(value: object) -> list:
    """A list from a Parquet list cell, a JSON-encoded list (CSV) or nothing."""
    if value is None:
        return []
    if isinstance(value, float) and np.isnan(value):
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            return [part.strip() for part in text.split(",") if part.strip()]
        return list(parsed) if isinstance(parsed, list) else [parsed]
    return list(value)


def normalise_alerts(alerts: pd.DataFrame, source: str = "alerts") -> pd.DataFrame:
    """The alerts with every column the report reads, most urgent first.

    Contract columns are required (an empty table may have none). Extensions
    absent from alerts written by other tools are filled: `alert_id`
    (`A00001`... in input order, the ids `build_alerts` gives), `account_type` (""), `rule_times` (nulls),
    `model_score` (NaN), `top_features` ([]), `evidence` ("[]"). Times become
    UTC; order is severity, then score descending, then detection time.
    """
    if len(alerts) == 0 and not set(CONTRACT_COLUMNS) <= set(alerts.columns):
        alerts = pd.DataFrame({column: pd.Series(dtype=object) for column in CONTRACT_COLUMNS})
    missing = [column for column in CONTRACT_COLUMNS if column not in alerts]
    if missing:
        raise InputError(f"{source} lacks column(s): {', '.join(missing)}")
    alerts = alerts.reset_index(drop=True).copy()
    unnamed = int(alerts["account_id"].isna().sum())
    if unnamed:
        raise InputError(f"{source}: {unnamed:,} alert(s) without an account_id")
    alerts["account_id"] = alerts["account_id"].astype(str)
    numbered = pd.Series(alert_ids(len(alerts)), dtype=object)
    if "alert_id" not in alerts:
        alerts["alert_id"] = numbered
    # An empty id (a hand-edited CSV) gets its position's number, never NaN.
    alerts["alert_id"] = (
        alerts["alert_id"].astype(object).where(alerts["alert_id"].notna(), numbered)
    )
    alerts["alert_id"] = alerts["alert_id"].astype(str)
    for column in _TIME_COLUMNS:
        try:
            alerts[column] = to_utc(alerts[column])
        except InputError as error:
            raise InputError(f"{source}: column {column} does not hold timestamps") from error
    alerts["score"] = pd.to_numeric(alerts["score"], errors="coerce")
    alerts["severity"] = alerts["severity"].astype(str).str.lower()
    alerts["reason"] = alerts["reason"].fillna("").astype(str)
    alerts["rules"] = alerts["rules"].map(lambda v: [str(r) for r in as_list(v)])
    if "account_type" not in alerts:
        alerts["account_type"] = ""
    alerts["account_type"] = alerts["account_type"].fillna("").astype(str)
    if "rule_times" in alerts:
        try:
            alerts["rule_times"] = alerts["rule_times"].map(
                lambda v: [pd.Timestamp(t) if t is not None else None for t in as_list(v)]
            )
        except (ValueError, TypeError) as error:
            raise InputError(f"{source}: column rule_times does not hold timestamps") from error
    else:
        alerts["rule_times"] = alerts["rules"].map(lambda rules: [None] * len(rules))
    alerts["model_score"] = pd.to_numeric(alerts.get("model_score", np.nan), errors="coerce")
    if "top_features" not in alerts:
        alerts["top_features"] = [[] for _ in range(len(alerts))]
    alerts["top_features"] = alerts["top_features"].map(lambda v: [str(f) for f in as_list(v)])
    if "evidence" not in alerts:
        alerts["evidence"] = "[]"
    alerts["evidence"] = alerts["evidence"].fillna("[]")
    rank = alerts["severity"].map(URGENCY).fillna(len(URGENCY))
    order = np.lexsort(
        (alerts["detected_at"].to_numpy(), -alerts["score"].fillna(0).to_numpy(), rank.to_numpy())
    )
    return alerts.iloc[order].reset_index(drop=True)
