"""Saved state for incremental scoring: ``detector score today/ --state state/``.

A state directory keeps what history the detector needs, never events:

```
state/
  manifest.json           {"format": "logsentinel-state/6", "version": 7, "current": "v000007",
                           "tables": {"windows": [{"file": ..., "days": [...]}, ...], ...},
                           "judged": [...], "hours_before": ..., ...}
  v000007/
    windows.<v>.parquet   the kernel's per-window aggregates (sums, hour histogram, instants),
                          one file per run that added days (a segment); from /5 with each
                          window's novelty counts (features.table.CARRIED)
    judged.<v>.<day>.parquet   from /6: the accumulation's terms of each of the last 15 days
                          (features.table.Judged), which a night reads instead of working them out
    hours.parquet         from /6: each account's summed hours before the last stored day
                          (features.table.Hours), which a night's rare hours read
    first_seen.<column>.<v>.parquet   (account_id, value, day): first use of each address,
                          client, application; a segment per run, each pair in one of them
                          (read dictionary-encoded: millions of pairs, few distinct values)
    created.parquet       (account_id, day): accounts created by create_account
    model.skops           the fitted window model (when one was fitted)
    kept_events.arrow     the (validated) events of the last stored day, which a log cut
                          at midnight continues (Arrow IPC; kept_events.parquet up to /3)
    caseloads.{pairs,accounts,starts}.arrow   the caseload file's index
                          (kernel.CaseloadIndex), reused while the file's hash is the same
    links.parquet         (creator, target, timestamp): accounts created or granted
    alerted.parquet       the alerts of the stored days (window, detection), for incidents
    summary.parquet       with --keep-days: per account, what the dropped days leave
                          (detector.features.history)
```

A run writes a new version directory, then swaps the manifest with an atomic
rename: a crash at any point leaves the previous version current and usable.
Only the current and the previous versions are kept.

The state grows by appending. The windows and first-seen tables are sets of
segment files; the manifest names each segment and the local days its rows
hold (a day's rows are in one segment). A run hard-links into the new version
every segment it leaves unchanged (no stored day of it is scored again or
pruned) and writes only the new days' windows and the pairs first seen on them
as new segments, the last day in a file of its own (the kept day, which the
next log may complete: only that file is then written again). The stored pairs
are not deduplicated again: the new ones are anti-joined against them. Once a
week (``WEEK_DAYS``, counted from day 0) is over, its files, one per run, are
merged into one; rows written in one go are split by week, so that pruning
rewrites at most one week's file. The model, kept events and summary are
linked when unchanged.
Files are never modified once written, so a link shared with the previous
version cannot change it. States of ``logsentinel-state/1`` and ``/2`` (one
``windows.parquet`` and one file per first-seen column) are read as one
segment each; the first run rewrites them as ``/4``. ``/4`` is ``/3`` with the
kept events as Arrow IPC instead of Parquet (a national day's events took seconds to
encode and decode as Parquet, with dictionaries of millions of record ids) and the
caseload index kept; ``/3`` states are read, their Parquet kept events included.

Overlap between a new log and the state is decided per local day:

- a day not in the state is scored;
- the last stored day, whose events are kept, is *completed* when the new log
  holds events of it (a log cut at midnight carries the night's early hours
  into the next file): the new events are merged with the kept ones (once
  each: by the whole row, or by ``event_id`` when both have one), the day's
  aggregates are rebuilt from them and the day is scored again;
- another day already in the state is *re-delivered* when the new log holds at
  least as many events for it as the state counted: its aggregates replace
  the stored ones and it is scored again;
- otherwise the new log's events of that day are *late events* of a day
  already scored: they are ignored (a notice counts them), never added twice.

Within a run, events repeating an ``event_id`` are counted once.

Pruning (``keep_days``): the windows of days older than the last ``keep_days``
stored days are folded into the per-account summary and dropped; first-seen
pairs, creations, links and alerts are kept whole (they are per account and
value, compact). A log's events of a dropped day are ignored, as late events.
A pruned state's manifest says ``pruned_through``, the last dropped day
(pruned states of the older layout said ``logsentinel-state/2``, so that a
detector without pruning refused them rather than scoring without the summary).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections import Counter
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from detector.engine.storage import local_path
from detector.errors import DetectorError
from detector.features import history as summaries
from detector.features.accumulation import HORIZON_DAYS
from detector.features.baselines import HISTORY_DAYS
from detector.features.kernel import (
    NOVELTY,
    Aggregates,
    CaseloadIndex,
    arrow_categories,
    in_days,
    lookup,
    partition_aggregates,
)
from detector.features.table import CARRIED, Hours, Judged
from detector.incidents import creation_pairs
from detector.schema import normalise_table, validated_frame

FORMAT = "logsentinel-state/1"  # one windows file, one file per first-seen column
PRUNED_FORMAT = "logsentinel-state/2"  # the same, with summary.parquet and pruned_through
SEGMENTED_FORMAT = "logsentinel-state/3"  # tables as segments named by the manifest
# The same, the kept events as an Arrow IPC file (KEPT_ARROW): writing and reading a day of
# events as Parquet took seconds (dictionaries of millions of record ids), IPC a fraction.
KEPT_ARROW_FORMAT = "logsentinel-state/4"
# The same, each window with its novelty counts that the next night reads rather than
# finding them again from every stored first-seen pair (features.table.CARRIED). A /4
# state is read and scored the long way; its first run writes every window again, as /5.
CARRIED_FORMAT = "logsentinel-state/5"
# The same, with the accumulation's terms of the last days (JUDGED: features.table.Judged),
# which the next night reads instead of working out 14 days of them again. A /5 state is
# scored the long way, and its first run writes the terms.
JUDGED_FORMAT = "logsentinel-state/6"
FORMATS = (
    FORMAT,
    PRUNED_FORMAT,
    SEGMENTED_FORMAT,
    KEPT_ARROW_FORMAT,
    CARRIED_FORMAT,
    JUDGED_FORMAT,
)
SEGMENTED = (SEGMENTED_FORMAT, KEPT_ARROW_FORMAT, CARRIED_FORMAT, JUDGED_FORMAT)
WINDOWS = "windows"
SEGMENT_READERS = 4  # stored segment files read at once (threads; joined before any fork)
JUDGED = "judged"  # a file per day: (account, day) -> the accumulation's reference and shift
# From /6: per account, the summed hours of its stored windows before the last stored day
# (features.table.Hours; the manifest's ``hours_before``), which a night's rare hours read.
HOURS_FILE = "hours.parquet"
WEEK_DAYS = 7  # days of one file once their week is over: pruning rewrites at most a week
SUMMARY = "summary.parquet"
# The baselines of the next day read the HISTORY_DAYS days before it; its accumulated
# excess (features.accumulation) reads the HORIZON_DAYS before it, each judged against its
# own baselines; and the last stored day is scored again when the next log completes it.
MIN_KEEP_DAYS = HISTORY_DAYS + HORIZON_DAYS + 1
MANIFEST = "manifest.json"
KEPT = "kept_events.parquet"  # states up to /3
KEPT_ARROW = "kept_events.arrow"  # from /4: Arrow IPC, LZ4-compressed
# From /4: the caseload table's CaseloadIndex (pairs grouped by account, accounts with
# their rank, each rank's first pair), kept for the next run given the same caseload file (its bytes' hash).
CASELOAD_INDEX = {
    "pairs": "caseloads.pairs.arrow",
    "accounts": "caseloads.accounts.arrow",
    "starts": "caseloads.starts.arrow",
}
LINKS = "links.parquet"
ALERTED = "alerted.parquet"
ALERTED_COLUMNS = ["account_id", "window_start", "window_end", "detected_at", "day"]
HOURS = [f"h{h:02d}" for h in range(24)]
PAIR_KEYS = ("account_id", "value")  # a first-seen pair's text columns
_PAIR_KEY = pa.dictionary(pa.int32(), pa.string())  # as the kernel gives them and they are read
REFIT_AFTER_DAYS = 7  # a stored model older than this many new days is fitted again
FULL_HISTORY_DAYS = 28  # a model fitted on fewer days than this is fitted again next run


class StateError(DetectorError):
    """A state directory that cannot be used."""


@dataclass(frozen=True)
class Segment:
    """One file of a stored table (in the version directory) and the local days its rows hold."""

    file: str
    days: tuple[int, ...]


def _first_seen_name(column: str) -> str:
    return f"first_seen.{column}"


@dataclass
class State:
    """A state directory's current version: stored aggregates, model and bookkeeping."""

    path: Path
    version: int = 0
    timezone: str | None = None
    first_day: int | None = None
    history: Aggregates | None = None
    model_path: Path | None = None
    model_days: int = 0  # days the stored model was fitted on
    model_age: int = 0  # days scored since it was fitted
    kept_day: int | None = None  # the stored day whose raw events are kept
    kept_ids: bool = False  # the kept events carry the log's own event_id
    kept_file: str = KEPT_ARROW  # the kept events' file name (KEPT in states up to /3)
    caseload_key: str | None = None  # hash of the caseload file whose index is stored
    caseloads_now: tuple[str, Any] | None = None  # (hash, CaseloadIndex) of this run's caseloads
    links: pd.DataFrame = field(default_factory=lambda: creation_pairs(pd.DataFrame()))
    alerted: pd.DataFrame = field(default_factory=lambda: empty_alerted())
    notices: list[str] = field(default_factory=list)
    summary: pd.DataFrame | None = None  # per account, what the dropped days leave
    pruned_through: int | None = None  # the last local day dropped (None: nothing pruned)
    segments: dict[str, list[Segment]] = field(default_factory=dict)  # table -> its files
    carries: bool = False  # every stored window holds its CARRIED counts
    judged: Judged | None = None  # the accumulation's terms of the last stored days
    hours: Hours | None = None  # each account's summed hours before the last stored day

    @property
    def kept_path(self) -> Path | None:
        """The Parquet file of the kept day's events (None when none are kept)."""
        if self.kept_day is None:
            return None
        return self.path / f"v{self.version:06d}" / self.kept_file

    def day_events(self) -> pd.Series:
        """Events per stored local day."""
        if self.history is None:
            return pd.Series(dtype=np.int64)
        return self.history.windows.groupby("day")["events"].sum().astype(np.int64)


def load_state(path: str | Path, timezone: str) -> State:
    """The current version of a state directory (an empty state when it does not exist)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        if path.exists() and not path.is_dir():
            raise StateError(f"{path}: not a state directory")
        return State(path)
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        raise StateError(f"{manifest_path}: unreadable state manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        raise StateError(
            f"{manifest_path}: not a logsentinel state manifest ({FORMATS[0]} to {FORMATS[-1]})"
        )
    if manifest["timezone"] != timezone:
        raise StateError(f"{path} was built with time zone {manifest['timezone']}, not {timezone}")
    current = path / manifest["current"]
    try:
        segments = _segments_of(manifest, current)
        windows = _read_segments(current, segments[WINDOWS]).to_pandas()
        first_seen = {
            column: _read_segments(current, segments[_first_seen_name(column)], PAIR_KEYS)
            for column, _ in NOVELTY
            if segments.get(_first_seen_name(column))
        }
        created = pq.read_table(current / "created.parquet")
        links = _read_optional(current / LINKS, creation_pairs(pd.DataFrame()))
        alerted = _read_optional(current / ALERTED, empty_alerted())
        pruned_through = manifest.get("pruned_through")
        summary = None if pruned_through is None else pq.read_table(current / SUMMARY).to_pandas()
        # The terms' files are listed apart from the tables: a file per day, not per week.
        segments[JUDGED] = [
            Segment(str(s["file"]), tuple(int(d) for d in s["days"]))
            for s in manifest.get(JUDGED, [])
        ]
        judged = _read_judged(current, segments[JUDGED], manifest.get("judged_caseloads"))
        summed = _read_hours(current, manifest.get("hours_before"))
    except (OSError, pa.ArrowInvalid, KeyError, TypeError, ValueError) as error:
        raise StateError(f"{current}: unreadable state ({error})") from None
    if manifest["format"] not in SEGMENTED:  # one file per table, holding every day
        segments[WINDOWS] = [Segment("windows.parquet", _days_of(windows["day"]))]
        for column, table in first_seen.items():
            name = _first_seen_name(column)
            segments[name] = [Segment(f"{name}.parquet", _days_of(table["day"]))]
    hours = windows[HOURS].to_numpy(dtype=np.int32)
    carried = [CARRIED[name] for name in CARRIED]
    carries = set(carried) <= set(windows.columns) and not windows[carried].isna().any().any()
    history = Aggregates(
        windows.drop(columns=HOURS), hours, first_seen, created, events=int(windows["events"].sum())
    )
    model = current / "model.skops"
    kept_file = KEPT_ARROW if (current / KEPT_ARROW).exists() else KEPT
    return State(
        path,
        version=int(manifest["version"]),
        timezone=timezone,
        first_day=int(manifest["first_day"]),
        history=history,
        model_path=model if model.exists() else None,
        model_days=int(manifest.get("model_days", 0)),
        model_age=int(manifest.get("model_age", 0)),
        kept_day=manifest.get("kept_day") if (current / kept_file).exists() else None,
        kept_ids=bool(manifest.get("kept_ids", False)),
        kept_file=kept_file,
        caseload_key=manifest.get("caseload_key"),
        links=links,
        alerted=alerted,
        summary=summary,
        pruned_through=None if pruned_through is None else int(pruned_through),
        segments=segments,
        carries=carries,
        judged=judged,
        hours=summed,
    )


def _read_hours(current: Path, before: Any) -> Hours | None:
    """The stored accounts' summed hours (None in states before /6)."""
    if before is None or not (current / HOURS_FILE).exists():
        return None
    table = pq.read_table(current / HOURS_FILE)
    counts = np.stack([table[h].to_numpy() for h in HOURS], axis=1).astype(np.int64)
    return Hours(int(before), table["account_id"], counts)


def _read_judged(current: Path, segments: list[Segment] | None, caseloads: Any) -> Judged | None:
    """The stored accumulation terms (None in states before /6)."""
    if not segments:
        return None
    frame = _read_segments(current, segments, ("account_id",))
    days = np.array(sorted({d for s in segments for d in s.days}), dtype=np.int64)
    return Judged(days, frame, bool(caseloads))


def _segments_of(manifest: dict, current: Path) -> dict[str, list[Segment]]:
    """The segments of each stored table, from the manifest (the older layouts: one file
    each, whose days are read from the file)."""
    if manifest["format"] in SEGMENTED:
        return {
            table: [Segment(str(s["file"]), tuple(int(d) for d in s["days"])) for s in listed]
            for table, listed in manifest["tables"].items()
        }
    segments = {WINDOWS: [Segment("windows.parquet", ())]}
    for column, _ in NOVELTY:
        name = _first_seen_name(column)
        if (current / f"{name}.parquet").exists():
            segments[name] = [Segment(f"{name}.parquet", ())]
    return segments


def _read_segments(
    current: Path, segments: list[Segment], dictionaries: tuple[str, ...] = ()
) -> pa.Table:
    """A stored table: its segments' rows, one after the other (the text columns
    ``dictionaries`` as Parquet stores them, dictionary-encoded: millions of first-seen
    pairs hold a few thousand distinct values, which are all that is decoded and hashed)."""

    def read(segment: Segment) -> pa.Table:
        return pq.read_table(current / segment.file, read_dictionary=list(dictionaries))

    # Side by side in threads (decoding Parquet releases the interpreter): a 28-day state
    # holds a few dozen small files, each read alone leaving the other core idle.
    with ThreadPoolExecutor(max_workers=SEGMENT_READERS) as pool:
        tables = list(pool.map(read, segments))
    # Permissive: segments written before a column was carried lack it (read as missing).
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")


def _days_of(day: Any) -> tuple[int, ...]:
    """The distinct local days of a day column (Series, array or Arrow column)."""
    values = day.to_numpy() if hasattr(day, "to_numpy") else np.asarray(day)
    return tuple(int(d) for d in np.unique(np.asarray(values, dtype=np.int64)))


def check_keep_days(keep_days: int | None) -> None:
    """Refuse a ``--keep-days`` that would drop days the baselines still read."""
    if keep_days is not None and keep_days < MIN_KEEP_DAYS:
        raise StateError(
            f"--keep-days {keep_days}: keep at least {MIN_KEEP_DAYS} days (the {HISTORY_DAYS}"
            f" days the baselines read, the {HORIZON_DAYS} days the accumulated excess reads"
            " before them, and the last stored day, which the next log may complete)"
        )


def empty_alerted() -> pd.DataFrame:
    """The stored alerts' table with no rows."""
    frame = pd.DataFrame({c: pd.Series(dtype="datetime64[ns, UTC]") for c in ALERTED_COLUMNS})
    frame["account_id"] = pd.Series(dtype=object)
    frame["day"] = pd.Series(dtype=object)
    return frame


def _read_optional(path: Path, empty: pd.DataFrame) -> pd.DataFrame:
    """A small table of the state, or ``empty`` for a state written before it existed."""
    return pq.read_table(path).to_pandas() if path.exists() else empty


def _only_days(part: Aggregates, keep) -> Aggregates:
    """The part of an aggregate whose days pass ``keep`` (a function of a day array)."""
    rows = keep(part.windows["day"].to_numpy())
    first_seen = {
        column: _kept_rows(table, keep(table["day"].to_numpy().astype(np.int64)))
        for column, table in part.first_seen.items()
    }
    created = part.created.filter(pa.array(keep(part.created["day"].to_numpy().astype(np.int64))))
    leading = _leading(rows)
    if leading is not None:  # the stored days before the last one's segment: no copy
        windows, hours = part.windows.iloc[:leading], part.hours[:leading]
    else:
        windows, hours = part.windows.loc[rows].reset_index(drop=True), part.hours[rows]
    return Aggregates(windows, hours, first_seen, created, int(windows["events"].sum()))


def _leading(rows: np.ndarray) -> int | None:
    """n when ``rows`` selects exactly the first n rows, else None.

    The last stored day is in segments of its own, read last: dropping it (a
    completed day) keeps a leading run of rows, which a slice keeps without
    copying millions of windows.
    """
    n = int(rows.argmin()) if len(rows) and not rows.all() else len(rows)
    return n if not rows[n:].any() else None


def _kept_rows(table: pa.Table, rows: np.ndarray) -> pa.Table:
    leading = _leading(rows)
    return table.slice(0, leading) if leading is not None else table.filter(pa.array(rows))


def _date(day: int) -> str:
    return str(pd.Timestamp(int(day), unit="D").date())


def merge(
    state: State, parts: list[Aggregates], completed: set[int] | frozenset = frozenset()
) -> tuple[list[Aggregates], set[int], list[str]]:
    """(history then new aggregates, days to score, notices), by the overlap rule above.

    ``completed`` are stored days whose aggregates in ``parts`` were rebuilt
    from the kept events and the new log's (:func:`continue_kept_day`): they
    replace the stored ones whatever their counts.
    """
    stored = state.day_events()
    counted = [p.windows[["day", "events"]] for p in parts if len(p.windows)]
    new_days = (  # a log of no usable event (empty, or every row rejected) has none
        pd.concat(counted).groupby("day")["events"].sum() if counted else pd.Series(dtype=int)
    )
    overlap = [d for d in new_days.index.intersection(stored.index) if d not in completed]
    replaced = [d for d in overlap if new_days[d] >= stored[d]]
    late = [d for d in overlap if new_days[d] < stored[d]]
    notices = []
    if replaced:
        notices.append(
            f"{len(replaced)} day(s) already in the state re-delivered, replaced and scored again: "
            + ", ".join(_date(d) for d in replaced)
        )
    if late:
        notices.append(
            f"{int(new_days[late].sum()):,} events of {len(late)} day(s) already scored ignored"
            " (late events; re-deliver the whole day to replace it): "
            + ", ".join(_date(d) for d in late)
        )
    through = state.pruned_through
    pruned = [int(d) for d in new_days.index if through is not None and d <= through]
    if pruned:
        notices.append(
            f"{int(new_days[pruned].sum()):,} events of {len(pruned)} day(s) older than the"
            " state keeps ignored (pruned by --keep-days): " + ", ".join(_date(d) for d in pruned)
        )
    late = late + pruned
    late_days = np.array(late, dtype=np.int64)
    dropped = np.array(replaced + sorted(completed), dtype=np.int64)
    merged = []
    if state.history is not None and len(dropped):
        merged.append(_only_days(state.history, lambda d: ~np.isin(d, dropped)))
    elif state.history is not None:  # nothing stored is replaced: no copy of it
        merged.append(state.history)
    merged += [_only_days(p, lambda d: ~np.isin(d, late_days)) for p in parts]
    scored = set(int(d) for d in new_days.index) - set(int(d) for d in late)
    return merged, scored, notices


# -- the kept day: a log cut at midnight continues the last stored day ----------------------


@dataclass
class Continuation:
    """The last stored day completed by a new log: its events once each, and their aggregates."""

    day: int
    events: pd.DataFrame  # validated events of the whole day, in time order
    aggregates: Aggregates
    notice: str


def read_day(source: Any, day: int) -> pd.DataFrame:
    """The validated events of one local day of a partition source (its rejects were counted)."""
    for partition in source.partitions():
        if partition.first_day <= day < partition.end_day:
            whole = replace(partition, first_day=day, end_day=day + 1, slice=0, slices=1)
            return source.read(whole).events
    return pd.DataFrame()


def once_each(events: pd.DataFrame, by_id: bool) -> pd.DataFrame:
    """``events`` without repeated ``event_id`` values (when the log has its own ids)."""
    if by_id and "event_id" in events and len(events):
        repeated = events["event_id"].duplicated(keep="first").to_numpy()
        if repeated.any():
            return events.loc[~repeated].reset_index(drop=True)
    return events


def _row_keys(events: pd.DataFrame, columns: list[str], ranked: bool) -> pd.Series:
    """A 64-bit key per row: the hash of its values (and of its rank among identical rows).

    Ranked, identical rows in one log are kept as many times as the larger side has them.
    """
    hashed = pd.util.hash_pandas_object(events[columns], index=False).to_numpy()
    if ranked:
        rank = pd.Series(hashed).groupby(hashed).cumcount().to_numpy().astype(np.uint64)
        hashed = hashed ^ (rank * np.uint64(0x9E3779B97F4A7C15))
    return pd.Series(hashed)


def not_kept(kept: pa.Table, new: pd.DataFrame, by_id: bool) -> np.ndarray:
    """Which rows of ``new`` the kept events do not already hold.

    A row is known when the kept events hold the same row (every column but
    the id; identical rows count as many times as the larger side has them),
    or, ``by_id`` (both sides carry the log's own ids), the same ``event_id``
    at the same instant for the same account: a re-delivered event whose other
    columns changed. Row positions standing in for missing ids (or given by
    staging) differ between files and never match alone.
    """
    if not kept.num_rows or not len(new):
        return np.ones(len(new), dtype=bool)
    # Only kept events within the new ones' time span can match (a continuation: none).
    span = pd.DatetimeIndex(new["timestamp"])
    instant = pc.cast(kept["timestamp"], pa.timestamp("ns", tz="UTC"))
    lo, hi = (pa.scalar(t, pa.timestamp("ns", tz="UTC")) for t in (span.min(), span.max()))
    kept = kept.filter(pc.and_(pc.greater_equal(instant, lo), pc.less_equal(instant, hi)))
    if not kept.num_rows:
        return np.ones(len(new), dtype=bool)
    columns = sorted((set(kept.column_names) & set(new.columns)) - {"event_id"})
    old = kept.select(columns + (["event_id"] if by_id else [])).to_pandas()
    known = _row_keys(new, columns, True).isin(_row_keys(old, columns, True)).to_numpy(copy=True)
    if by_id:
        ids = ["event_id", "timestamp", "account_id"]
        known |= _row_keys(new, ids, False).isin(_row_keys(old, ids, False)).to_numpy()
    return ~known


def concat_events(parts: list[pd.DataFrame | pa.Table]) -> pd.DataFrame:
    """Validated events (frames or tables) as one frame, validated again: categories
    united, actions, time order.

    Through Arrow, as a log is read: its hashing of text columns is much faster
    than uniting pandas categories of high cardinality (record ids). A column
    that is dictionary-encoded in every part stays so (one index type): the
    parts' dictionaries are united, where decoding them hashed every row again
    (a second for the ~700k events of a completed national day).
    """
    tables = [
        part if isinstance(part, pa.Table) else pa.Table.from_pandas(part, preserve_index=False)
        for part in parts
    ]
    tables = [t.replace_schema_metadata(None) for t in tables if t.num_columns]
    if not tables:
        return pd.DataFrame()
    encoded = _encoded_everywhere(tables)
    for n, table in enumerate(tables):
        for i, column in enumerate(table.schema):
            if pa.types.is_dictionary(column.type):
                value_type = column.type.value_type
                target = (
                    pa.dictionary(pa.int32(), value_type) if column.name in encoded else value_type
                )
                if column.type != target:
                    table = table.set_column(i, column.name, pc.cast(table[column.name], target))
        tables[n] = table
    table = pa.concat_tables(tables, promote_options="permissive")
    events = normalise_table(table, "kept events").events
    for name in events.columns:  # (actions have the vocabulary's fixed categories)
        if name != "action" and isinstance(events[name].dtype, pd.CategoricalDtype):
            events[name] = _in_sorted_order(events[name])
    return events


def _in_sorted_order(values: pd.Series) -> pd.Series:
    """A categorical with only its used categories, in sorted order, as text decoded and
    encoded again gives them (the kernel's windows and first-seen pairs come in category
    order: the state's tables stay as they were)."""
    categories = values.cat.categories
    codes = values.cat.codes.to_numpy()
    used = np.flatnonzero(np.bincount(codes[codes >= 0], minlength=len(categories)))
    names = arrow_categories(categories).take(pa.array(used))
    order = used[pc.sort_indices(names).to_numpy()]
    if len(order) == len(categories) and (order[1:] > order[:-1]).all():
        return values
    place = np.full(len(categories), -1, dtype=np.int32)
    place[order] = np.arange(len(order), dtype=np.int32)
    codes = np.where(codes >= 0, place[np.maximum(codes, 0)], -1)
    dtype = pd.CategoricalDtype(categories[order])
    return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype, validate=False), copy=False)


def _encoded_everywhere(tables: list[pa.Table]) -> set[str]:
    """The columns dictionary-encoded, with one value type, in every table holding them
    (a column of nulls only, which any type holds, does not count)."""
    types: dict[str, set] = {}
    for table in tables:
        for column in table.schema:
            if not pa.types.is_null(column.type):
                types.setdefault(column.name, set()).add(
                    column.type.value_type if pa.types.is_dictionary(column.type) else None
                )
    return {name for name, kinds in types.items() if len(kinds) == 1 and None not in kinds}


def read_kept(state: State) -> pa.Table:
    """The kept day's events as stored (an empty table when none are kept)."""
    return _read_kept_at(state.kept_path)


def _read_kept_at(path: Path | None) -> pa.Table:
    if path is None:
        return pa.table({})
    try:
        if path.name == KEPT:  # states up to /3
            return pq.read_table(path)
        return _read_ipc(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise StateError(f"{path}: unreadable kept events ({error})") from None


def caseload_key(location: Any) -> str | None:
    """A hash of a local caseload file's bytes (None for a directory, a URL or a frame)."""
    path = local_path(location) if isinstance(location, str | Path) else None
    if path is None or not path.is_file():
        return None
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def stored_caseload_index(state: State, key: str | None) -> CaseloadIndex | None:
    """The caseload index a state keeps for the caseload file of hash ``key`` (None: none
    kept, or kept for another file). Mapped, not copied."""
    if key is None or state.caseload_key != key:
        return None
    return _mapped_caseload_index(state.path / f"v{state.version:06d}")


def caseload_index_at(path: str | Path, key: str | None) -> tuple[CaseloadIndex, int] | None:
    """:func:`stored_caseload_index` of the state directory ``path`` read from its manifest
    alone, with the version it belongs to: mapped beside :func:`load_state` (in a thread)
    rather than after it. The caller checks the version against the loaded state's (a run
    may have swapped the manifest in between). None: none kept for ``key``, or unreadable."""
    if key is None:
        return None
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
        if manifest.get("format") not in FORMATS or manifest.get("caseload_key") != key:
            return None
        current, version = Path(path) / str(manifest["current"]), int(manifest["version"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # load_state says what is wrong with the manifest
    index = _mapped_caseload_index(current)
    return None if index is None else (index, version)


def _mapped_caseload_index(current: Path) -> CaseloadIndex | None:
    """The caseload index files of a version directory, mapped (None: absent or unreadable)."""
    try:
        pairs, accounts, starts = (
            _read_ipc(current / CASELOAD_INDEX[name]) for name in ("pairs", "accounts", "starts")
        )
    except (OSError, pa.ArrowInvalid):
        return None  # unreadable: built again, as without a state
    if not {"record_id", "account", "key"} <= set(pairs.column_names):
        return None  # another layout of the index (before its keys): built again
    return CaseloadIndex(
        _mapped(pairs["record_id"]),
        _mapped(pairs["account"]).to_numpy(),
        _mapped(accounts["account_id"]),
        _mapped(accounts["rank"]).to_numpy(),
        _mapped(starts["account_start"]).to_numpy(),
        _mapped(pairs["key"]).to_numpy(),
    )


def _mapped(column: pa.ChunkedArray) -> pa.Array:
    """A mapped column as one array: its chunk as it is when it has one (the index's
    files are written in one batch), where combining copied the 15M pairs' record ids."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _index_kept(folder: Path) -> bool:
    """Does ``folder`` hold a caseload index of the current layout (its pairs with keys)?"""
    if not all((folder / file).exists() for file in CASELOAD_INDEX.values()):
        return False
    try:
        with pa.memory_map(str(folder / CASELOAD_INDEX["pairs"])) as source:
            return "key" in pa.ipc.open_file(source).schema.names
    except (OSError, pa.ArrowInvalid):
        return False


def _write_caseload_index(index: CaseloadIndex, folder: Path) -> None:
    """The index as three Arrow IPC files: the pairs (grouped by account), the accounts
    with their rank, and each rank's first pair (one more row than accounts)."""
    tables = {
        "pairs": pa.table(
            {"record_id": index.records, "account": index.account, "key": index.keys}
        ),
        "accounts": pa.table({"account_id": index.accounts, "rank": index.rank}),
        "starts": pa.table({"account_start": index.account_start}),
    }
    for name, table in tables.items():
        _write_ipc(table, folder / CASELOAD_INDEX[name])


def write_kept(events: pd.DataFrame | pa.Table, path: Path) -> Path:
    """Write a day's validated events as the state keeps them (Arrow IPC, LZ4)."""
    if isinstance(events, pd.DataFrame):
        events = pa.Table.from_pandas(events, preserve_index=False)
    _write_ipc(events, path, compression="lz4")
    return path


def _any_repeated(ids: pd.Series) -> bool:
    """Does a value repeat? Dense integer ids (a log's row numbers) are marked in a flag per
    value in their span: a tenth of hashing millions of them."""
    values = ids.to_numpy()
    if len(values) and values.dtype.kind in "iu" and not ids.isna().any():
        low = int(values.min())
        span = int(values.max()) - low + 1
        if span <= 8 * len(values):
            seen = np.zeros(span, dtype=bool)
            seen[values - low] = True
            return int(np.count_nonzero(seen)) < len(values)
    return bool(ids.duplicated().any())


def handed_kept(files: list[str], by_id: bool) -> pa.Table | None:
    """A day's validated events from the files its partitions wrote (``KeepDay`` of
    :mod:`detector.engine.local`), each event once as :func:`once_each` keeps it (None:
    a file is missing). Each partition counted its events once; an ``event_id`` in two
    slices (under two accounts) is kept at its earliest instant (at the same instant, in
    the first slice). Dictionaries are kept (a file of dictionaries is half the size of
    plain text, and read back five times faster): the slices of one range share theirs and
    are stacked batch after batch (uniting and copying a national day's 3.9M events took
    about a second); other files' dictionaries are united.
    """
    if not files or not all(os.path.exists(f) for f in files):
        return None
    tables = [_read_ipc(Path(file)).replace_schema_metadata(None) for file in files]
    if _same_dictionaries(tables):  # the slices of one range: stacked as they are
        table = pa.concat_tables(tables)
    else:
        for n, table in enumerate(tables):
            for i, column in enumerate(table.schema):
                if pa.types.is_dictionary(column.type):  # one index type in every slice
                    wide = pa.dictionary(pa.int32(), column.type.value_type)
                    table = table.set_column(i, column.name, pc.cast(table[column.name], wide))
            tables[n] = table
        table = pa.concat_tables(tables, promote_options="permissive")
        table = table.unify_dictionaries().combine_chunks()
    if by_id and len(tables) > 1 and "event_id" in table.column_names and table.num_rows:
        ids = pd.Series(table["event_id"].to_numpy(zero_copy_only=False))
        if _any_repeated(ids):
            stamps = pc.cast(table["timestamp"], pa.int64()).to_numpy(zero_copy_only=False)
            order = np.argsort(stamps, kind="stable")  # a slice's copy before a later slice's
            first = np.zeros(len(ids), dtype=bool)
            first[order] = ~ids.iloc[order].duplicated().to_numpy()
            table = table.filter(pa.array(first))
    return table


def _same_dictionaries(tables: list[pa.Table]) -> bool:
    """Do the tables share one schema and, per dictionary column, one dictionary? (The
    slices of a range of days do: each united the same row groups' dictionaries.) Then
    they are written as they are, batch after batch, without uniting or copying them."""
    first = tables[0]
    if any(not t.schema.equals(first.schema) for t in tables[1:]):
        return False
    dictionaries = {}
    for table in tables:
        for name, column in zip(table.column_names, table.columns, strict=True):
            if not pa.types.is_dictionary(column.type):
                continue
            for chunk in column.chunks:
                if name not in dictionaries:
                    dictionaries[name] = chunk.dictionary
                elif not chunk.dictionary.equals(dictionaries[name]):
                    return False
    return True


def _write_ipc(table: pa.Table, path: Path, compression: str | None = None) -> None:
    """``table`` as an Arrow IPC file (mapped, not decoded, when read again)."""
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with (
        pa.OSFile(str(path), "wb") as sink,
        pa.ipc.new_file(sink, table.schema, options=options) as writer,
    ):
        writer.write_table(table)


def _read_ipc(path: Path) -> pa.Table:
    """An Arrow IPC file, memory-mapped (compressed buffers are decompressed on read)."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def kept_scratch(state: State) -> Path:
    """Where a run writes the day it will keep before the new version exists (in the state
    directory, so that the new version takes it by a rename)."""
    state.path.mkdir(parents=True, exist_ok=True)
    return state.path / f".kept.{os.getpid()}.{threading.get_ident()}.tmp"


@dataclass(frozen=True)
class KeptDay:
    """The stored kept day, for the kernel's partition of that day to complete: in a
    worker, beside the other partitions, instead of in the parent once they are done."""

    day: int
    path: Path
    by_id: bool  # both the kept events and the log carry their own event_id

    def holds(self, partition: Any) -> bool:
        """Does ``partition`` hold every new event of the day, and no other day?"""
        return (
            partition.first_day == self.day
            and partition.end_day == self.day + 1
            and partition.slices == 1
        )

    def complete(
        self, new: pd.DataFrame, timezone: str, caseloads: Any, out_mode: str | None
    ) -> Continuation:
        """The day completed with ``new``, its validated events in this log (once each)."""
        kept = _read_kept_at(self.path)
        return _completed(self.day, kept, new, self.by_id, timezone, caseloads, out_mode)


def kept_day_of(state: State, has_ids: bool) -> KeptDay | None:
    """The state's kept day, for the kernel to complete (None: none kept)."""
    path = state.kept_path
    if state.kept_day is None or path is None:
        return None
    return KeptDay(state.kept_day, path, has_ids and state.kept_ids)


def continue_kept_day(
    state: State,
    source: Any,
    days: set[int],
    caseloads: pd.DataFrame | None,
    timezone: str,
    out_mode: str | None,
    has_ids: bool,
    handed: list[str] | None = None,
) -> Continuation | None:
    """The kept day completed with the new log's events of it (None: the log has none).

    ``days`` are the local days the new log holds; ``has_ids``: it has its own
    ``event_id`` column. ``handed``: the files the kernel's partitions wrote of that
    day's events (``KeepDay``), read instead of the day's row groups (whole ones: a
    few thousand events of the day cost a million decoded).
    """
    day = state.kept_day
    if day is None or day not in days:
        return None
    kept = read_kept(state)
    new = handed_kept(handed, has_ids) if handed else None
    if new is not None:
        new = validated_frame(new)
    else:
        new = once_each(read_day(source, day), has_ids)
    by_id = has_ids and state.kept_ids
    return _completed(day, kept, new, by_id, timezone, caseloads, out_mode)


def _completed(
    day: int,
    kept: pa.Table,
    new: pd.DataFrame,
    by_id: bool,
    timezone: str,
    caseloads: Any,
    out_mode: str | None,
) -> Continuation:
    """``day`` completed: its ``kept`` events and those of ``new`` they do not hold."""
    kept, new = _ids_alike(kept, new)
    try:
        fresh = not_kept(kept, new, by_id)
        events = concat_events([kept, new.loc[fresh]])
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as error:
        raise StateError(
            f"the kept events of {_date(day)} and this log's events of that day"
            f" cannot be merged ({error})"
        ) from None
    aggregates = partition_aggregates(events, timezone, caseloads, out_mode)
    added, known = int(fresh.sum()), int(len(fresh) - fresh.sum())
    notice = (
        f"day {_date(day)} completed with {added:,} events of this log"
        + (f" ({known:,} already counted)" if known else "")
        + f" and scored again ({len(events):,} events)"
    )
    return Continuation(day, events, aggregates, notice)


def _ids_alike(kept: pa.Table, new: pd.DataFrame) -> tuple[pa.Table, pd.DataFrame]:
    """The kept and the new events' ids as one type: text on both sides when one export
    gave integers and the other text (a Parquet export one night, an NDJSON one the next:
    JSON ids are read as text), so that they merge and the same event is recognised."""
    if "event_id" not in kept.column_names or "event_id" not in new:
        return kept, new
    kept_text = not pa.types.is_integer(kept.schema.field("event_id").type)
    new_text = not pd.api.types.is_integer_dtype(new["event_id"].dtype)
    if kept_text == new_text:
        return kept, new
    if not kept_text:
        position = kept.schema.get_field_index("event_id")
        kept = kept.set_column(position, "event_id", pc.cast(kept["event_id"], pa.large_string()))
    if not new_text:
        new = new.assign(event_id=new["event_id"].astype(str).to_numpy(dtype=object))
    return kept, new


def without_day(parts: list[Aggregates], day: int) -> list[Aggregates]:
    """``parts`` without one local day (links, which are per event, are kept)."""
    kept = []
    for part in parts:
        trimmed = _only_days(part, lambda d: d != day)
        trimmed.links = part.links
        kept.append(trimmed)
    return kept


class ContinuedSource:
    """A log's partition source whose completed day is read from the merged events.

    The replay behind ``detected_at`` reads the completed day's windows from the
    kept and new events together, as the aggregates were built; everything
    else is the wrapped source's.
    """

    def __init__(self, source: Any, day: int, events: pd.DataFrame):
        self.source, self.day, self.events = source, day, events

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def read_windows(
        self, accounts: np.ndarray, days: np.ndarray, skip: Collection[str] = ()
    ) -> pd.DataFrame:
        accounts, days = np.asarray(accounts), np.asarray(days, dtype=np.int64)
        here = days == self.day
        frames = []
        if (~here).any():
            frames.append(self.source.read_windows(accounts[~here], days[~here], skip))
        if here.any():
            wanted = self.events["account_id"].isin(np.unique(accounts[here].astype(str)))
            frames.append(self.events.loc[wanted.to_numpy()])
        if not here.any():
            return frames[0]
        return concat_events(frames) if len(frames) > 1 else frames[0].reset_index(drop=True)


def combine(parts: list[Aggregates]) -> Aggregates:
    """One aggregate of many: windows and first-seen pairs stacked.

    A pair may be stacked more than once (stored, and used again by a new day):
    :func:`save_state` keeps each pair's first day.
    """
    parts = [p for p in parts if len(p.windows)]
    windows = pd.concat([p.windows for p in parts], ignore_index=True)
    hours = np.concatenate([p.hours for p in parts]) if parts else np.zeros((0, 24), np.int32)
    created = pa.concat_tables([p.created for p in parts]) if parts else pa.table({})
    return Aggregates(windows, hours, _stacked_pairs(parts), created, int(windows["events"].sum()))


def _stacked_pairs(parts: list[Aggregates]) -> dict[str, pa.Table]:
    """The parts' first-seen pairs of each column, stacked (Arrow: no copy)."""
    first_seen = {}
    for column, _ in NOVELTY:
        tables = [p.first_seen[column] for p in parts if column in p.first_seen]
        if tables:
            # Stored pairs are read dictionary-encoded, as the kernel gives its own.
            tables = [_encoded_pairs(t) for t in tables]
            first_seen[column] = pa.concat_tables(tables, promote_options="permissive")
    return first_seen


def _encoded_pairs(table: pa.Table) -> pa.Table:
    """First-seen pairs with dictionary-encoded text keys (of one type, whatever was read)."""
    for name in PAIR_KEYS:
        if name in table.column_names:
            table = table.set_column(
                table.schema.get_field_index(name), name, _pair_key(table[name])
            )
    return table


def _pair_key(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column if column.type == _PAIR_KEY else pc.cast(column, _PAIR_KEY)


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    encoded = pc.dictionary_encode(column.combine_chunks())
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _first_days(seen: pa.Table) -> pa.Table:
    """Each (account_id, value) pair once, with its first day (one hashing pass, in Arrow codes)."""
    day = seen["day"].to_numpy().astype(np.int64)
    order = np.argsort(day, kind="stable")
    account, value = _codes(seen["account_id"]), _codes(seen["value"])
    key = (account * (int(value.max()) + 1 if len(value) else 1) + value)[order]
    keep = order[~pd.Series(key).duplicated(keep="first").to_numpy()]
    kept = seen.take(pa.array(keep))
    return pa.table(
        {
            "account_id": pc.cast(kept["account_id"], pa.string()),
            "value": pc.cast(kept["value"], pa.string()),
            "day": pc.cast(kept["day"], pa.int32()),
        }
    )


def _not_in(pairs: pa.Table, known: pa.Table) -> pa.Table:
    """The rows of ``pairs`` whose (account_id, value) ``known`` does not hold, in their order.

    An anti-join in Arrow, hashing the few new pairs and probing the many stored
    ones, instead of deduplicating all of them again.
    """
    if not pairs.num_rows or not known.num_rows:
        return pairs
    keys = list(PAIR_KEYS)
    numbered = pairs.select(keys).append_column("_row", pa.array(np.arange(pairs.num_rows)))
    # Stored pairs are read dictionary-encoded: a join wants plain text (decoding is cheap).
    plain = pa.table({key: pc.cast(known[key], pa.string()) for key in keys})
    absent = plain.join(numbered, keys=keys, join_type="right anti")
    return pairs.take(pa.array(np.sort(absent["_row"].to_numpy())))


@dataclass
class Kept:
    """The events of the last stored day, kept for a log that continues it."""

    day: int
    events: pd.DataFrame | None
    ids: bool  # the events carry the log's own event_id
    file: Path | None = None  # the events already written (write_kept), taken by a rename


def save_state(
    state: State,
    history: Aggregates | list[Aggregates],
    first_day: int,
    model=None,
    model_days: int = 0,
    model_age: int = 0,
    kept: Kept | None = None,
    links: pd.DataFrame | None = None,
    alerted: pd.DataFrame | None = None,
    keep_days: int | None = None,
    scored: set[int] | None = None,
    judged: Judged | None = None,
    hours: Hours | None = None,
) -> Path:
    """Write a new version of the state, then make it current by an atomic manifest swap.

    ``history``: the stored and new aggregates stacked (:func:`combine`), or the list of
    them (their windows are then not stacked: only the rows written are taken);
    ``scored``: the local days whose aggregates this run built (new, re-delivered or
    completed; None: every day), the others being the stored ones, unchanged;
    ``kept``: the last day's events to keep (None: the stored ones stay);
    ``links`` and ``alerted``: the tables that replace the stored ones (None: unchanged);
    ``keep_days``: windows of days older than the last ``keep_days`` are folded into
    the summary and dropped (None: every day is kept); ``judged``: the accumulation's
    terms worked out by this run (kept with the stored ones of other recent days);
    ``hours``: each account's summed hours before the last day, by this run.
    """
    check_keep_days(keep_days)
    summary, through = state.summary, state.pruned_through
    if isinstance(history, Aggregates) or keep_days is not None:  # pruning reads every window
        whole = history if isinstance(history, Aggregates) else combine(history)
        history, summary, through = prune(whole, first_day, keep_days, state)
        if hours is not None and history is not whole:  # the dropped windows' hours, taken off
            hours = _without_dropped(hours, whole, whole.windows["day"].to_numpy() <= through)
        parts = [history]
    else:
        parts = [p for p in history if len(p.windows)]
    state.path.mkdir(parents=True, exist_ok=True)
    version = state.version + 1
    name = f"v{version:06d}"
    previous = state.path / f"v{state.version:06d}"
    staging = state.path / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    writer = _SegmentWriter(state, previous, staging, version, scored)
    tables = {WINDOWS: writer.windows([(p.windows, p.hours) for p in parts])}
    for column, seen in _stacked_pairs(parts).items():
        tables[_first_seen_name(column)] = writer.first_seen(column, seen)
    days = set().union(*(pd.unique(p.windows["day"]).tolist() for p in parts))
    last = int(max(days)) if days else None
    judged_segments, judged_caseloads = writer.judged(judged, last)
    if hours is not None:
        _write_hours(hours, staging / HOURS_FILE)
    created = pa.concat_tables([p.created for p in parts]) if parts else pa.table({})
    pq.write_table(created, staging / "created.parquet")
    if model is not None:
        model.save(staging / "model.skops")
    elif state.model_path is not None:
        _link(state.model_path, staging / "model.skops")
    if kept is not None and kept.file is not None:
        os.replace(kept.file, staging / KEPT_ARROW)
    elif kept is not None:
        write_kept(kept.events, staging / KEPT_ARROW)
    elif state.kept_path is not None:
        _link(state.kept_path, staging / state.kept_path.name)
        kept = Kept(state.kept_day, None, state.kept_ids)
    links = state.links if links is None else links
    alerted = state.alerted if alerted is None else alerted
    pq.write_table(pa.Table.from_pandas(links, preserve_index=False), staging / LINKS)
    pq.write_table(pa.Table.from_pandas(alerted, preserve_index=False), staging / ALERTED)
    caseloads = state.caseloads_now
    stored_index = _index_kept(previous)
    if caseloads is not None and caseloads[0] == state.caseload_key and stored_index:
        for file in CASELOAD_INDEX.values():
            _link(previous / file, staging / file)
    elif caseloads is not None:
        _write_caseload_index(caseloads[1], staging)
    if through is not None:
        if summary is state.summary and (previous / SUMMARY).exists():  # nothing folded now
            _link(previous / SUMMARY, staging / SUMMARY)
        else:
            pq.write_table(pa.Table.from_pandas(summary, preserve_index=False), staging / SUMMARY)
    final = state.path / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)  # the new version is complete before the manifest names it
    manifest = {
        "format": JUDGED_FORMAT,
        "version": version,
        "current": name,
        "timezone": state.timezone,
        "first_day": first_day,
        "days": len(days),
        "model_days": model_days,
        "model_age": model_age,
        "kept_day": None if kept is None else int(kept.day),
        "kept_ids": bool(kept is not None and kept.ids),
        "tables": {
            table: [{"file": s.file, "days": list(s.days)} for s in segments]
            for table, segments in tables.items()
        },
    }
    if judged_caseloads is not None:
        manifest[JUDGED] = [{"file": s.file, "days": list(s.days)} for s in judged_segments]
        manifest["judged_caseloads"] = judged_caseloads
    if hours is not None:
        manifest["hours_before"] = int(hours.before)
    if caseloads is not None:
        manifest["caseload_key"] = caseloads[0]
    if through is not None:
        manifest["pruned_through"] = through
    temporary = state.path / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps(manifest, indent=2))
    os.replace(temporary, state.path / MANIFEST)  # the swap: atomic on POSIX file systems
    for old in state.path.glob("v*"):  # keep the current and the previous version
        if old.is_dir() and old.name not in (name, previous.name):
            shutil.rmtree(old, ignore_errors=True)
    for scratch in state.path.glob(".kept.*.tmp"):  # left by runs that did not finish
        scratch.unlink(missing_ok=True)
    return final


def _without_dropped(hours: Hours, history: Aggregates, dropped: np.ndarray) -> Hours | None:
    """``hours`` less the hours of the ``dropped`` windows of ``history`` (pruned days);
    None when they do not hold a dropped window's account (the next night reads every
    stored window's hours)."""
    accounts = history.windows["account_id"].to_numpy()[dropped]
    row = lookup(accounts, hours.accounts)
    if (row < 0).any():
        return None
    counts = hours.counts.copy()
    np.subtract.at(counts, row, history.hours[dropped].astype(np.int64))
    return Hours(hours.before, hours.accounts, counts)


def _write_hours(hours: Hours, path: Path) -> None:
    """The accounts' summed hours, those with any."""
    some = hours.counts.any(axis=1)
    accounts = hours.accounts
    ids = (
        accounts
        if isinstance(accounts, pa.Array | pa.ChunkedArray)
        else pa.array(np.asarray(accounts.astype(str)), pa.string())
    )
    table = {"account_id": pc.cast(ids, pa.string()).filter(pa.array(some))}
    for h, column in enumerate(HOURS):
        table[column] = pa.array(hours.counts[some, h])
    pq.write_table(pa.table(table), path)


def _link(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy where the file system has none).

    Stored files are never modified once written: a version sharing one with the
    previous version cannot change it.
    """
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class _SegmentWriter:
    """Writes a new version's tables: stored segments still valid linked, the rest written.

    A windows segment stays valid while its days all come before the first scored
    day (a window's carried novelty counts depend on the days before it) and none was
    pruned; a first-seen segment while its days all come before the first
    scored day (a pair first seen then cannot have an earlier first day now).
    """

    def __init__(
        self, state: State, previous: Path, staging: Path, version: int, scored: set[int] | None
    ):
        self.state, self.previous, self.staging, self.version = state, previous, staging, version
        self.scored = None if scored is None else {int(d) for d in scored}

    def _valid(self, table: str, keep) -> list[Segment]:
        """The stored segments of ``table`` to link: those ``keep`` accepts, but the
        files of a past week, one per run, which are merged into one."""
        if self.scored is None or self.state.history is None:
            return []
        valid = [s for s in self.state.segments.get(table, []) if s.days and keep(s)]
        if not self.scored:
            return valid
        this_week = min(self.scored) // WEEK_DAYS
        weeks = [_week(s) for s in valid]
        files = Counter(w for w in weeks if w is not None)
        merged = {w for w, n in files.items() if w < this_week and n > 1}
        return [s for s, w in zip(valid, weeks, strict=True) if w not in merged]

    def _write(self, table: str, valid: list[Segment], new: pa.Table) -> list[Segment]:
        """The table's segments: the valid ones linked, ``new`` written a file per week.

        The last day of ``new`` gets a file of its own: it is the kept day that the
        next log may complete, and only that small file is then written again.
        """
        for segment in valid:
            _link(self.previous / segment.file, self.staging / segment.file)
        if not new.num_rows and valid:
            return valid
        day = new["day"].to_numpy().astype(np.int64)
        week = np.where(day == day.max(), -1, day // WEEK_DAYS) if len(day) else day
        segments = []
        for key in sorted(set(week.tolist()), key=lambda w: (w < 0, w)) or [None]:
            rows = new if key is None else new.filter(pa.array(week == key))
            suffix = "" if key is None else ".last" if key < 0 else f".w{key}"
            segment = Segment(f"{table}.{self.version:06d}{suffix}.parquet", _days_of(rows["day"]))
            pq.write_table(rows, self.staging / segment.file)
            segments.append(segment)
        return sorted([*valid, *segments], key=lambda s: min(s.days, default=0))

    def windows(self, parts: list[tuple[pd.DataFrame, np.ndarray]]) -> list[Segment]:
        """``parts``: the windows (and their hours) of the stored and new aggregates; only
        the rows not in linked segments are taken (and stacked)."""
        days = set().union(*(pd.unique(windows["day"]).tolist() for windows, _ in parts))
        scored = self.scored or set()
        # A stored window's novelty counts (CARRIED) depend on every day before it: a day
        # scored again changes those of the stored days after it, which are written again.
        start = min(scored, default=np.iinfo(np.int64).max)
        valid = self._valid(WINDOWS, lambda s: set(s.days) <= days and max(s.days) < start)
        carried = [CARRIED[name] for name in CARRIED]
        if not self.state.carries and all(set(carried) <= set(w.columns) for w, _ in parts):
            valid = []  # stored windows without their counts: every window written with them
        linked = [d for s in valid for d in s.days]
        taken = []
        for windows, hours in parts:
            rows = ~in_days(windows["day"].to_numpy(), linked)
            if rows.any():
                taken.append((windows.loc[rows], hours[rows]))
        columns = list(dict.fromkeys(c for windows, _ in parts for c in windows.columns))
        if taken:
            new = pd.concat([w for w, _ in taken], ignore_index=True)
            hours = np.concatenate([h for _, h in taken])
        else:
            new, hours = parts[0][0].iloc[:0].copy(), np.zeros((0, 24), np.int32)
        if list(new.columns) != columns:  # as stacking every part would give
            new = new.reindex(columns=columns)
        for h, column in enumerate(HOURS):
            new[column] = hours[:, h]
        return self._write(WINDOWS, valid, pa.Table.from_pandas(new, preserve_index=False))

    def first_seen(self, column: str, seen: pa.Table) -> list[Segment]:
        """``seen``: the stored pairs and the new ones stacked, a pair maybe more than once."""
        table = _first_seen_name(column)
        start = min(self.scored or (), default=np.iinfo(np.int64).max)
        valid = self._valid(table, lambda s: max(s.days) < start)
        linked = [d for s in valid for d in s.days]
        stored = in_days(seen["day"].to_numpy(), linked)
        # Each pair is in one stored segment: only those not linked are deduplicated again.
        new = _first_days(seen.filter(pa.array(~stored)))
        return self._write(table, valid, _not_in(new, self._linked_rows(column, valid, linked)))

    def judged(self, found: Judged | None, last: int | None) -> tuple[list[Segment], bool | None]:
        """The accumulation terms' files, one per day, of the HORIZON_DAYS + 1 last days:
        the stored ones of days not worked out again (nor scored) linked, ``found``'s
        written; and whether out-of-caseload reads were known for them."""
        stored = self.state.judged
        if last is None or (found is None and stored is None):
            return [], None
        since = last - HORIZON_DAYS
        caseloads = found.caseloads if found is not None else stored.caseloads
        again = set(self.scored or ()) | set(() if found is None else found.days.tolist())
        valid = [
            s
            for s in self.state.segments.get(JUDGED, [])
            if stored is not None
            and stored.caseloads == caseloads
            and self.scored is not None
            and s.days
            and min(s.days) >= since
            and not set(s.days) & again
        ]
        for segment in valid:
            _link(self.previous / segment.file, self.staging / segment.file)
        segments = list(valid)
        if found is not None:
            day = found.frame["day"].to_numpy()
            for d in found.days.tolist():
                if d < since:
                    continue
                segment = Segment(f"{JUDGED}.{self.version:06d}.{d}.parquet", (int(d),))
                rows = found.frame.filter(pa.array(day == d))
                pq.write_table(rows, self.staging / segment.file)
                segments.append(segment)
        return sorted(segments, key=lambda s: min(s.days)), caseloads

    def _linked_rows(self, column: str, valid: list[Segment], linked: list[int]) -> pa.Table:
        """The stored pairs of the ``valid`` segments (whose days are ``linked``)."""
        rows = self.state.history.first_seen.get(column) if self.state.history else None
        if rows is None or not valid:
            return pa.table({"account_id": pa.array([], pa.string())})  # no rows: nothing known
        if len(valid) == sum(1 for s in self.state.segments[_first_seen_name(column)] if s.days):
            return rows  # every stored pair: no copy
        return rows.filter(pa.array(in_days(rows["day"].to_numpy(), linked)))


def _week(segment: Segment) -> int | None:
    """The week a segment's days lie in (None: they span more than one)."""
    weeks = {d // WEEK_DAYS for d in segment.days}
    return weeks.pop() if len(weeks) == 1 else None


def prune(
    history: Aggregates, first_day: int, keep_days: int | None, state: State
) -> tuple[Aggregates, pd.DataFrame | None, int | None]:
    """(the windows to store, the summary, the last dropped day) after keeping the last
    ``keep_days`` days: older windows fold into the state's summary."""
    summary, through = state.summary, state.pruned_through
    if keep_days is None or not len(history.windows):
        return history, summary, through
    cut = int(history.windows["day"].max()) - keep_days
    if cut < first_day:  # nothing stored is that old
        return history, summary, through
    old = history.windows["day"].to_numpy() <= cut
    if old.any():
        summary = summaries.summarise(history.windows.loc[old], history.hours[old], summary)
        windows = history.windows.loc[~old].reset_index(drop=True)
        history = replace(
            history, windows=windows, hours=history.hours[~old], events=int(windows["events"].sum())
        )
    # Days up to the cut are never stored again, even those without events now.
    return (
        history,
        summaries.empty_summary() if summary is None else summary,
        max(cut, through or cut),
    )
