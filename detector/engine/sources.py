"""Partitions of a log: whole local days, or slices of them by account, read a few row
groups at a time.

A :class:`ParquetSource` plans partitions from the row groups' timestamp
statistics (no data read): consecutive local days are grouped until a
partition holds about ``target_rows`` events, and a partition reads only the
row groups whose time span overlaps its days (push-down on row-group
statistics), then keeps the rows of its days. Days larger than that are cut
by account into slices (:data:`~detector.features.kernel.ACCOUNT_BUCKETS`
hashed buckets, a range of them per slice): every window (account, day) and
every account's first uses stay in one slice. A log whose row groups are not
time-clustered (no statistics, text timestamps, or planning would read the
file more than :data:`MAX_REREAD` times over) is first copied once into a
temporary day-clustered dataset, one row group at a time (bounded memory).

A :class:`FrameSource` does the same for a log already in memory. Both re-read
the events of chosen windows (account, day) for the replay behind
``detected_at``.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from collections import deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from detector.engine.storage import open_parquet
from detector.features.kernel import ACCOUNT_BUCKETS, account_buckets, local_days, lookup
from detector.schema import (
    FAR_OFF_DAYS,
    REJECT_FAR_OFF,
    SPAN_QUANTILES,
    EventLog,
    far_off_notice,
    log_schema,
    normalise,
    normalise_table,
    read_row_groups,
    repaired_notice,
)

TARGET_ROWS = 2_000_000  # events per partition read by a worker: bounds its memory
STREAM_ROWS = 500_000  # events per partition streamed to local workers (a day or a few)
SLICE_ROWS = 1_000_000  # a range of days above 1.5 times this is cut by account (streamed)
MAX_REREAD = 1.6  # planned reading beyond this many times the log: cluster it first
_DAY_NS = 86_400 * 10**9
ROW = "_row"  # each event's 0-based row position in the input (the contract's default event_id)


@dataclass(frozen=True)
class Partition:
    """Local days ``[first_day, end_day)`` and the row groups that may hold their events.

    ``slice`` of ``slices``: the events of the accounts whose bucket is in
    :attr:`buckets` (all of them when ``slices`` is 1).
    """

    index: int
    first_day: int
    end_day: int
    pieces: tuple[tuple[str, int, int], ...]  # (file, row group, row offset of the group)
    rows: int  # estimated events
    slice: int = 0
    slices: int = 1

    @property
    def buckets(self) -> tuple[int, int]:
        """The account buckets ``[first, end)`` of this slice."""
        return slice_buckets(self.slice, self.slices)

    def label(self) -> str:
        first = pd.Timestamp(self.first_day, unit="D").date()
        last = pd.Timestamp(self.end_day - 1, unit="D").date()
        days = str(first) if first == last else f"{first}..{last}"
        return days if self.slices == 1 else f"{days}, accounts {self.slice + 1}/{self.slices}"


def slice_buckets(number: int, slices: int) -> tuple[int, int]:
    """Account buckets ``[first, end)`` of slice ``number`` of ``slices``."""
    return number * ACCOUNT_BUCKETS // slices, (number + 1) * ACCOUNT_BUCKETS // slices


def slices_of(rows: float, slice_rows: int) -> int:
    """Into how many account slices a range of days of ``rows`` events is cut."""
    if rows <= 1.5 * slice_rows:
        return 1
    return min(int(np.ceil(rows / slice_rows)), ACCOUNT_BUCKETS)


def in_slice(account_id, partition: Partition) -> np.ndarray | None:
    """Per event: is its account in the partition's slice? (None: a whole partition.)"""
    if partition.slices == 1:
        return None
    first, end = partition.buckets
    bucket = account_buckets(account_id)
    return (bucket >= first) & (bucket < end)


def _day_span(timestamps: np.ndarray, timezone: str) -> np.ndarray:
    return local_days(np.asarray(timestamps, dtype=np.int64), timezone)[0]


def _group_days(
    days: np.ndarray, rows: np.ndarray, target_rows: int, crossed: np.ndarray | None = None
) -> list[tuple[int, int]]:
    """Consecutive days grouped into ``[first, end)`` ranges of about ``target_rows`` events.

    ``crossed[i]`` marks a boundary after ``days[i]`` that a row group spans (cutting
    there reads that group twice): such a cut waits until the range holds 1.5 times
    the target.
    """
    ranges, start, total = [], None, 0
    counts = rows.tolist()
    for i, (day, count) in enumerate(zip(days.tolist(), counts, strict=True)):
        if start is None:
            start = day
        total += count
        clean = crossed is None or not crossed[i]
        # With crossed cuts, a range closes before the next day would take it beyond 1.5
        # times the target, where it would be cut by account: each slice reads all the
        # range's groups again, where a crossed cut reads one group twice.
        coming = counts[i + 1] if crossed is not None and i + 1 < len(counts) else 0
        full = total >= 1.5 * target_rows or total + coming > 1.5 * target_rows
        if (total >= target_rows and clean) or full:
            ranges.append((start, day + 1))
            start, total = None, 0
    if start is not None:
        ranges.append((start, int(days[-1]) + 1))
    return ranges


_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def _timestamps_ns(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(ns since 1970 UTC, valid) of a timestamp or ISO-8601 text column.

    Instants nanoseconds cannot hold (year 2500) are not valid: they belong to
    no day, and validation rejects them with their reason.
    """
    if pa.types.is_timestamp(column.type):
        per_tick = _NS[column.type.unit]
        limit = np.iinfo(np.int64).max // per_tick
        if column.null_count == 0 and len(column):  # the usual case: one pass, not six
            ticks = _one_chunk(column).view(pa.int64()).to_numpy()
            if -limit < ticks.min() and ticks.max() < limit:
                stamps = ticks * per_tick if per_tick != 1 else ticks.copy()
                return stamps, np.ones(len(ticks), dtype=bool)
        ticks = pc.cast(column, pa.int64())
        present = pc.is_valid(ticks).to_numpy(zero_copy_only=False)
        ticks = pc.fill_null(ticks, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        valid = present & (np.abs(ticks) < limit)
        return np.where(valid, ticks, 0) * per_tick, valid
    parsed = pd.to_datetime(
        pd.Series(column.to_pandas()).astype("string"), utc=True, format="ISO8601", errors="coerce"
    )
    valid = parsed.notna().to_numpy()
    return parsed.dt.as_unit("ns").fillna(pd.Timestamp(0, tz="UTC")).astype(
        "int64"
    ).to_numpy(), valid


class FrameSource:
    """A validated log in memory, cut into partitions of whole local days (large ones
    into slices by account)."""

    def __init__(
        self,
        log: EventLog,
        timezone: str,
        target_rows: int = TARGET_ROWS,
        slice_rows: int | None = None,
    ):
        self.log = log
        self.name = log.source
        self.timezone = timezone
        self.target_rows = target_rows
        self.slice_rows = slice_rows  # None: twice SLICE_ROWS, as workers reading their own
        self.columns = set(log.events.columns)
        stamps = pd.DatetimeIndex(log.events["timestamp"]).asi8
        self._day = _day_span(stamps, timezone) if len(stamps) else np.zeros(0, np.int64)

    def partitions(self) -> list[Partition]:
        if len(self._day) == 0:
            return []
        days, rows = np.unique(self._day, return_counts=True)
        partitions: list[Partition] = []
        for a, b in _group_days(days, rows, self.target_rows):
            events = int(rows[(days >= a) & (days < b)].sum())
            k = slices_of(events, self.slice_rows or 2 * SLICE_ROWS)
            partitions += [
                Partition(len(partitions) + i, a, b, (), events // k, i, k) for i in range(k)
            ]
        return partitions

    def has_values(self, column: str) -> bool:
        """Does any event hold a value in ``column``?"""
        events = self.log.events
        return column in events and bool(events[column].notna().any())

    def read(self, partition: Partition) -> EventLog:
        keep = (self._day >= partition.first_day) & (self._day < partition.end_day)
        inside = in_slice(self.log.events["account_id"], partition)
        rows = np.flatnonzero(keep if inside is None else keep & inside)
        return EventLog(self.log.events.iloc[rows].reset_index(drop=True), _no_rejects())

    def rejects(self) -> EventLog:
        """Rows set aside when the log was validated, and the notices of that validation."""
        return EventLog(self.log.events.iloc[:0], self.log.rejects, list(self.log.notices))

    def read_windows(
        self, accounts: np.ndarray, days: np.ndarray, skip: Collection[str] = ()
    ) -> pd.DataFrame:
        events = self.log.events  # in memory already: ``skip`` saves nothing
        keep = _in_windows(events["account_id"], self._day, accounts, days)
        return events.iloc[np.flatnonzero(keep)].reset_index(drop=True)


def normalise_rows(table: pa.Table, rows: np.ndarray, name: str) -> EventLog:
    """Validate raw events whose input row positions are ``rows`` (rejects keep their row)."""
    if "event_id" not in table.column_names:  # the contract's default: the row position
        table = table.append_column("event_id", pa.array(rows, pa.int64()))
    log = normalise_table(table, name)
    if len(log.rejects):
        log.rejects["row"] = rows[log.rejects["row"].to_numpy()]
        log.rejects = log.rejects.drop(columns=["event_id"], errors="ignore")
    return log


def _select(table: pa.Table, keep: np.ndarray) -> pa.Table:
    """The rows of ``table`` where ``keep``: a slice (no copy) when they are consecutive,
    as in a time-ordered row group; else a copy."""
    first = int(np.argmax(keep))
    count = int(keep.sum())
    if keep[first : first + count].all():
        return table.slice(first, count)
    return table.filter(pa.array(keep))


def _one_chunk(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def malloc_policy(mmap_threshold: int, trim_threshold: int | None = None) -> None:
    """Set glibc's thresholds for this process: blocks of ``mmap_threshold`` bytes and
    more are mapped on their own (and unmapped when freed); freed heap beyond
    ``trim_threshold`` bytes is given back to the system. A no-op where the C library
    is not glibc (it keeps its own policy)."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
        if trim_threshold is not None:
            libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    except (AttributeError, OSError):
        pass


def release_memory() -> None:
    """Give memory freed by Python back to the system (glibc keeps it otherwise).

    Unpickled aggregates and assembly's temporaries leave most of a gigabyte
    of freed heap in the parent, counted in its footprint until the end of
    the run. A no-op where the C library has no ``malloc_trim``.
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _no_rejects() -> pd.DataFrame:
    return pd.DataFrame({"row": pd.Series(dtype=np.int64), "reason": pd.Series(dtype=object)})


def _positions(account_id, wanted: pd.Index) -> np.ndarray:
    """Position of each event's account among ``wanted`` (-1 elsewhere), decided per distinct value."""
    if isinstance(account_id, pd.Series) and isinstance(account_id.dtype, pd.CategoricalDtype):
        found = lookup(account_id.cat.categories, wanted)
        codes = account_id.cat.codes.to_numpy()
        return np.where(codes >= 0, found[np.maximum(codes, 0)] if len(found) else -1, -1)
    column = account_id.combine_chunks() if isinstance(account_id, pa.ChunkedArray) else account_id
    if pa.types.is_dictionary(column.type):
        found = np.r_[lookup(column.dictionary, wanted), -1]
        indices = pc.fill_null(column.indices, -1).to_numpy(zero_copy_only=False)
        return found[indices]
    return lookup(column, wanted)


_DENSE_WINDOW_KEYS = 50_000_000  # (accounts x days) up to which windows are flagged densely


def _in_windows(account_id, day: np.ndarray, accounts: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Per event: is (its account, its day) one of the given windows?"""
    wanted = pd.Index(np.unique(np.asarray(accounts, dtype=str)))
    position = _positions(account_id, wanted)
    first, n_days = int(np.min(days)), int(np.max(days)) - int(np.min(days)) + 1
    keys = np.unique(lookup(accounts, wanted) * n_days + (np.asarray(days) - first))
    offset = day - first
    inside = (position >= 0) & (offset >= 0) & (offset < n_days)
    event_keys = np.where(inside, position * n_days + offset, 0)
    if len(wanted) * n_days > _DENSE_WINDOW_KEYS:
        return inside & np.isin(event_keys, keys)
    # A gather from a flag per (account, day): numpy's isin sorts millions of keys.
    flag = np.zeros(len(wanted) * n_days, dtype=bool)
    flag[keys] = True
    return inside & flag[event_keys]


def _window_events(
    table: pa.Table, timezone: str, accounts: np.ndarray, days: np.ndarray
) -> np.ndarray:
    """Per raw event (``timestamp``, ``account_id``): is it in one of the given windows?

    The accounts are matched first, on the column's dictionary: only their events'
    local days are computed (a night's 46 alerted accounts of 90,000 own a few
    thousand of its 3.9M events).
    """
    wanted = pd.Index(np.unique(np.asarray(accounts, dtype=str)))
    ours = np.flatnonzero(_positions(table["account_id"], wanted) >= 0)
    keep = np.zeros(table.num_rows, dtype=bool)
    if len(ours):
        chosen = pa.array(ours)
        stamps, valid = _timestamps_ns(table["timestamp"].take(chosen))
        day = _day_span(stamps, timezone)
        keep[ours] = valid & _in_windows(table["account_id"].take(chosen), day, accounts, days)
    return keep


@dataclass(frozen=True)
class _RowGroup:
    file: str
    index: int
    offset: int  # rows of the log before this group
    rows: int
    first_day: int | None  # local days spanned, None without statistics
    last_day: int | None
    nulls: int | None  # null timestamps (None: unknown)
    far_off: int = 0  # events on far-off days (not counted in rows, nor in the day span)


class ParquetSource:
    """A Parquet log (file or directory) read one partition of whole local days at a time."""

    def __init__(
        self,
        path: str | Path,
        timezone: str,
        target_rows: int = TARGET_ROWS,
        streaming: bool = False,
        slice_rows: int | None = None,
    ):
        self.name = str(path)
        self.slice_rows = slice_rows  # None: SLICE_ROWS when streaming, else twice that
        self.streaming = False  # planning for the clustering check reads groups per partition
        self.timezone = timezone
        self.target_rows = target_rows
        self.files, self.schema = log_schema(path)
        self.repaired: dict[str, int] = {}  # text values repaired by reads in this process
        self.read_columns = list(self.schema.names)
        self.columns = set(self.read_columns)
        self._groups = self._row_groups()
        self._spill: tempfile.TemporaryDirectory | None = None
        self._spill_rejects: EventLog | None = None
        self._accepted_days: tuple[int, int] | None = None
        if all(g.first_day is not None for g in self._groups if g.rows):
            self._set_far_off_aside()
        if self.files and not self._clustered():
            self._cluster()
            self._set_far_off_aside()
        self.streaming = streaming  # read by the parent, one group at a time (stream())

    # -- planning ---------------------------------------------------------------------------

    def _row_groups(self) -> list[_RowGroup]:
        groups, offset = [], 0
        for file in self.files:
            metadata = open_parquet(file).metadata
            schema = metadata.schema.to_arrow_schema()
            column = schema.get_field_index("timestamp")
            is_time = column >= 0 and pa.types.is_timestamp(schema.field(column).type)
            for index in range(metadata.num_row_groups):
                group = metadata.row_group(index)
                stats = group.column(column).statistics if is_time else None
                span = nulls = None
                if stats is not None and stats.has_min_max:
                    try:
                        bounds = pd.DatetimeIndex([stats.min, stats.max])
                        bounds = bounds.tz_localize("UTC") if bounds.tz is None else bounds
                        span = _day_span(bounds.as_unit("ns").asi8, self.timezone)
                    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
                        span = None  # beyond nanoseconds: planned as if without statistics
                if stats is not None and stats.has_null_count:
                    nulls = stats.null_count
                first, last = (int(span[0]), int(span[1])) if span is not None else (None, None)
                groups.append(_RowGroup(file, index, offset, group.num_rows, first, last, nulls))
                offset += group.num_rows
        return groups

    def _set_far_off_aside(self) -> None:
        """Leave out of every partition the days far outside the log's central span.

        The rule of :func:`detector.schema.accepted_span` (1st to 99th percentile,
        ``FAR_OFF_DAYS`` either side), decided on local days: a partition sees only
        its own days, so the span comes first, from the timestamp column alone,
        one row group at a time. Skipped when the statistics span fewer days than
        that (nothing can be far off: the usual case, no extra read).
        """
        spans = [(g.first_day, g.last_day) for g in self._groups if g.rows]
        if not spans or max(b for _, b in spans) - min(a for a, _ in spans) <= FAR_OFF_DAYS:
            return
        days_of = {}
        for g in self._groups:
            if g.rows:
                table, _ = read_row_groups(g.file, [g.index], self._read_schema(["timestamp"]))
                stamps, valid = _timestamps_ns(table["timestamp"])
                days_of[g] = _day_span(stamps[valid], self.timezone)
        days, counts = np.unique(np.concatenate(list(days_of.values())), return_counts=True)
        cumulative = np.cumsum(counts) / counts.sum()
        low, high = (int(days[np.searchsorted(cumulative, q)]) for q in SPAN_QUANTILES)
        first, last = low - FAR_OFF_DAYS, high + FAR_OFF_DAYS
        self._accepted_days = (first, last)
        groups = []
        for g in self._groups:
            day = days_of.get(g)
            if day is None or not ((day < first) | (day > last)).any():
                groups.append(g)
                continue
            kept = day[(day >= first) & (day <= last)]
            groups.append(
                replace(
                    g,
                    rows=len(kept),
                    first_day=int(kept.min()) if len(kept) else g.first_day,
                    last_day=int(kept.max()) if len(kept) else g.last_day,
                    far_off=len(day) - len(kept),
                )
            )
        self._groups = groups
        self._central = (low, high)

    def _plan(self) -> list[tuple[int, int, int]]:
        """Ranges of days ``(first, end, slices)``: days grouped, large ranges cut by account."""
        groups = [g for g in self._groups if g.first_day is not None and g.rows]
        if not groups:
            return []
        first = min(g.first_day for g in groups)
        last = max(g.last_day for g in groups)
        rows = np.zeros(last - first + 1)
        for g in groups:  # a group's rows spread evenly over its days (an estimate)
            rows[g.first_day - first : g.last_day - first + 1] += g.rows / (
                g.last_day - g.first_day + 1
            )
        days = np.arange(first, last + 1)
        active = rows > 0
        if self.streaming:  # each group is read once, whatever the cuts
            ranges = _group_days(days[active], rows[active], STREAM_ROWS)
        else:
            crossed = np.zeros(len(days), dtype=bool)  # a group spans the boundary after the day
            for g in groups:
                crossed[g.first_day - first : g.last_day - first] = True
            ranges = _group_days(days[active], rows[active], self.target_rows, crossed[active])
        # Workers reading their own slices read the day's row groups once per slice: fewer.
        per_slice = self.slice_rows or (SLICE_ROWS if self.streaming else 2 * SLICE_ROWS)
        return [(a, b, slices_of(rows[a - first : b - first].sum(), per_slice)) for a, b in ranges]

    def _overlapping(self, first_day: int, end_day: int) -> list[_RowGroup]:
        return [
            g
            for g in self._groups
            if g.rows
            and g.first_day is not None
            and g.first_day < end_day
            and g.last_day >= first_day
        ]

    def _clustered(self) -> bool:
        if any(g.first_day is None for g in self._groups if g.rows):
            return False  # no statistics (or text timestamps): nothing to push down
        total = sum(g.rows for g in self._groups)
        planned = sum(g.rows for a, b, _ in self._plan() for g in self._overlapping(a, b))
        return planned <= MAX_REREAD * max(total, 1)

    def partitions(self) -> list[Partition]:
        partitions: list[Partition] = []
        for a, b, k in self._plan():
            groups = self._overlapping(a, b)
            pieces = tuple((g.file, g.index, g.offset) for g in groups)
            rows = sum(g.rows for g in groups) // k
            partitions += [
                Partition(len(partitions) + i, a, b, pieces, rows, i, k) for i in range(k)
            ]
        return partitions

    def has_values(self, name: str) -> bool:
        """Does any row hold a value in column ``name``? (From null counts when the files have them.)"""
        for file in self.files:
            metadata = open_parquet(file).metadata
            schema = metadata.schema.to_arrow_schema()
            column = schema.get_field_index(name)
            if column < 0:
                continue
            for index in range(metadata.num_row_groups):
                group = metadata.row_group(index)
                stats = group.column(column).statistics
                if stats is None or not stats.has_null_count or stats.null_count < group.num_rows:
                    return True
        return False

    # -- reading ----------------------------------------------------------------------------

    def _read_schema(self, columns: list[str]) -> pa.Schema:
        """The log's schema for ``columns`` (and, in a clustered copy, the row numbers)."""
        fields = [self.schema.field(c) for c in columns]
        if self._spill:
            fields.append(pa.field(ROW, pa.int64()))
        return pa.schema(fields)

    def _read_groups(
        self, pieces, columns: list[str], repaired: dict[str, int] | None = None
    ) -> tuple[pa.Table, np.ndarray]:
        """The row groups' events and each one's row position in the input.

        Text values repaired on the way are counted in ``repaired`` (default: the source's).
        """
        repaired = self.repaired if repaired is None else repaired
        tables, rows = [], []
        for file, index, offset in pieces:
            table, bad = read_row_groups(file, [index], self._read_schema(columns))
            for column, count in bad.items():
                repaired[column] = repaired.get(column, 0) + count
            if self._spill:
                rows.append(table[ROW].to_numpy())
                table = table.drop_columns([ROW])
            else:
                rows.append(offset + np.arange(table.num_rows, dtype=np.int64))
            tables.append(table)
        if not tables:
            return pa.schema([self.schema.field(c) for c in columns]).empty_table(), np.zeros(
                0, np.int64
            )
        return pa.concat_tables(tables, promote_options="permissive"), np.concatenate(rows)

    def _normalise(self, table: pa.Table, rows: np.ndarray) -> EventLog:
        return normalise_rows(table, rows, self.name)

    def stream(self) -> Iterator[tuple[Partition, pa.Table, np.ndarray]]:
        """Every partition's raw events, each row group read once, in time order.

        Row groups are read in the order of their first day; a partition is
        complete once no later group can hold its days. Only the groups not
        yet complete are held: with time-clustered groups, about one.
        """
        groups = sorted(
            (g for g in self._groups if g.rows and g.first_day is not None),
            key=lambda g: (g.first_day, g.offset),
        )
        # (events, rows, day, where each slice starts when the group was cut by account already)
        pending: list[tuple[pa.Table, np.ndarray, np.ndarray, np.ndarray | None]] = []
        plan = self._plan()
        n, index = len(plan), 0
        ranges = list(plan)
        reads = _ahead(lambda g: self._read_dated(g, ranges), groups, _cores())
        for position, g in enumerate(groups + [None]):
            if g is not None:
                table, rows, day, repaired, bounds = next(reads)
                for column, count in repaired.items():
                    self.repaired[column] = self.repaired.get(column, 0) + count
                pending.append((table, rows, day, bounds))
            next_first = groups[position + 1].first_day if position + 1 < len(groups) else None
            while plan and (next_first is None or plan[0][1] <= next_first):
                a, b, k = plan.pop(0)
                tables, rows_out, cuts, kept = [], [], [], []
                for table, rows, day, bounds in pending:
                    inside = (day >= a) & (day < b)
                    if inside.all():  # the whole group, cut by its reading thread if sliced
                        tables.append(table)
                        rows_out.append(rows)
                        cuts.append(bounds)
                        continue
                    if inside.any():
                        tables.append(_select(table, inside))
                        rows_out.append(rows[inside])
                        cuts.append(None)
                    if not inside.any():  # another range's group: as it is
                        kept.append((table, rows, day, bounds))
                    else:
                        kept.append((_select(table, ~inside), rows[~inside], day[~inside], None))
                pending = [k for k in kept if len(k[1])]
                slices = self._slices(tables, rows_out, k, cuts)
                for i, (events, events_rows) in enumerate(slices):
                    part = Partition(index, a, b, (), len(events_rows), i, k)
                    yield part, events, events_rows
                    index += 1
                del tables, rows_out
            if g is None and not plan:
                break
        assert n == 0 or not plan

    def _read_dated(
        self, g: _RowGroup, ranges: list[tuple[int, int, int]] = ()
    ) -> tuple[pa.Table, np.ndarray, np.ndarray, dict, np.ndarray | None]:
        """One row group's events with a usable timestamp, their rows, their local days, the
        text values repaired, and where each slice starts (a thread of :meth:`stream` reads
        it). A group wholly inside one range of ``ranges`` cut by account is cut here, in
        the reading thread, as :meth:`_slices` would (else None)."""
        repaired: dict[str, int] = {}
        table, rows = self._read_groups([(g.file, g.index, g.offset)], self.read_columns, repaired)
        stamps, valid = _timestamps_ns(table["timestamp"])
        day = _day_span(stamps, self.timezone)
        if not valid.all():
            table, rows, day = table.filter(pa.array(valid)), rows[valid], day[valid]
        bounds = None
        if len(day):
            low, high = int(day.min()), int(day.max())
            for a, b, k in ranges:
                if k > 1 and a <= low and high < b:
                    order, bounds = _slice_order(table, k)
                    table, rows, day = table.take(pa.array(order)), rows[order], day[order]
                    break
        return table, rows, day, repaired, bounds

    def _slices(
        self,
        tables: list[pa.Table],
        rows: list[np.ndarray],
        slices: int,
        cuts: list[np.ndarray | None] | None = None,
    ) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """A range's events (pieces of row groups) cut into ``slices`` by account, in time
        order within each. Each piece is ordered by slice on its own (one dictionary per
        column: a take of the whole range had to unite the groups' dictionaries first),
        and a slice is its pieces' parts, joined without a copy."""
        if not tables:
            empty = self._read_groups((), self.read_columns)[0]
            for _ in range(slices):
                yield empty, np.zeros(0, np.int64)
            return
        if slices == 1:
            yield pa.concat_tables(tables, promote_options="permissive"), np.concatenate(rows)
            return
        cuts = cuts or [None] * len(tables)  # pieces cut already: (table, rows) in slice order
        cut = [
            (table, row, bounds) if bounds is not None else _by_slice(table, row, slices)
            for table, row, bounds in zip(tables, rows, cuts, strict=True)
        ]
        for i in range(slices):
            yield (
                pa.concat_tables(
                    [t.slice(b[i], b[i + 1] - b[i]) for t, _, b in cut],
                    promote_options="permissive",
                ),
                np.concatenate([r[b[i] : b[i + 1]] for _, r, b in cut]),
            )

    def read(self, partition: Partition) -> EventLog:
        repaired: dict[str, int] = {}  # said in this partition's notices (it may run elsewhere)
        table, rows = self._read_groups(partition.pieces, self.read_columns, repaired)
        stamps, valid = _timestamps_ns(table["timestamp"])
        day = _day_span(stamps, self.timezone)
        keep = valid & (day >= partition.first_day) & (day < partition.end_day)
        inside = in_slice(table["account_id"], partition)
        if inside is not None:
            keep &= inside
        log = self._normalise(table.filter(pa.array(keep)), rows[keep])
        if repaired:
            log.notices.append(repaired_notice(repaired))
        return log

    def rejects(self) -> EventLog:
        """Rows that belong to no day: no usable timestamp, or a far-off one, with their reasons."""
        log = self._spill_rejects if self._spill_rejects is not None else self._unusable()
        far_off = [(g.file, g.index, g.offset) for g in self._groups if g.far_off]
        if not far_off:
            return log
        table, rows = self._read_groups(far_off, self.read_columns)
        stamps, valid = _timestamps_ns(table["timestamp"])
        day = _day_span(stamps, self.timezone)
        first, last = self._accepted_days
        far = valid & ((day < first) | (day > last))
        frame = table.filter(pa.array(far)).to_pandas()
        frame.insert(0, "row", rows[far])
        frame.insert(1, "reason", REJECT_FAR_OFF)
        rejects = pd.concat([r for r in (log.rejects, frame) if len(r)], ignore_index=True)
        low, high = (day * _DAY_NS for day in self._central)
        notice = far_off_notice(len(frame), low, high)
        return EventLog(log.events, rejects, [*log.notices, notice], log.source)

    def _unusable(self) -> EventLog:
        pieces = [
            (g.file, g.index, g.offset)
            for g in self._groups
            if g.nulls != 0 and (g.rows or g.far_off)  # a group of far-off rows may hold nulls too
        ]
        if not pieces:
            return EventLog(pd.DataFrame(), _no_rejects())
        table, rows = self._read_groups(pieces, self.read_columns)
        _, valid = _timestamps_ns(table["timestamp"])
        return self._normalise(table.filter(pa.array(~valid)), rows[~valid])

    def read_windows(
        self, accounts: np.ndarray, days: np.ndarray, skip: Collection[str] = ()
    ) -> pd.DataFrame:
        """The events of the given windows (account, local day), in time order.

        Only row groups whose time span holds one of the days are read, and
        of them not the columns in ``skip`` (the caller does not need them).
        """
        columns = [c for c in self.read_columns if c not in skip]
        if len(days) == 0:
            return normalise_table(self._read_groups((), columns)[0], self.name).events
        release_memory()  # what fitting the model freed, before reading events again
        wanted_days = np.unique(days)
        groups = [
            g
            for g in self._groups
            if g.rows
            and g.first_day is not None
            and ((wanted_days >= g.first_day) & (wanted_days <= g.last_day)).any()
        ]

        keys = ["timestamp", "account_id"]
        rest = [c for c in columns if c not in keys]

        def window_rows(g: _RowGroup) -> tuple[pa.Table, np.ndarray, dict[str, int]]:
            # The keys first; the other columns (record ids...) are checked for the
            # windows' rows only, a tenth of the group or less.
            repaired: dict[str, int] = {}
            table, row = self._read_groups([(g.file, g.index, g.offset)], keys, repaired)
            keep = _window_events(table, self.timezone, accounts, days)
            table = table.filter(pa.array(keep))
            others, bad = read_row_groups(g.file, [g.index], self._read_schema(rest), keep)
            for column, count in bad.items():
                repaired[column] = repaired.get(column, 0) + count
            for name in rest:
                table = table.append_column(others.schema.field(name), others[name])
            return table.select(columns), row[keep], repaired

        # Row groups read in threads: decoding Parquet and filtering release the GIL.
        tables, rows = [], []
        with ThreadPoolExecutor(max_workers=_cores()) as pool:
            for table, row, repaired in pool.map(window_rows, groups):
                for column, count in repaired.items():
                    self.repaired[column] = self.repaired.get(column, 0) + count
                if len(row):
                    tables.append(table)
                    rows.append(row)
        if not tables:
            return normalise_table(self._read_groups((), columns)[0], self.name).events
        table = pa.concat_tables(tables, promote_options="permissive")
        return self._normalise(table, np.concatenate(rows)).events

    # -- clustering a log whose row groups are not in time order ---------------------------

    def _cluster(self) -> None:
        """Copy the log once into a temporary dataset of one directory per local day.

        One row group at a time: memory is bounded by the largest row group.
        Rows without a usable timestamp are set aside as rejects on the way.
        """
        self._spill = tempfile.TemporaryDirectory(prefix="logsentinel-days-")
        root = Path(self._spill.name)
        bad_tables, bad_rows = [], []
        for g in self._groups:
            if not (g.rows or g.far_off):  # far-off rows are copied too: rejected after the copy
                continue
            table, bad = read_row_groups(g.file, [g.index], self.schema)
            for column, count in bad.items():
                self.repaired[column] = self.repaired.get(column, 0) + count
            rows = g.offset + np.arange(table.num_rows, dtype=np.int64)
            stamps, valid = _timestamps_ns(table["timestamp"])
            if not valid.all():
                bad_tables.append(table.filter(pa.array(~valid)))
                bad_rows.append(rows[~valid])
            table = table.filter(pa.array(valid))
            stamps, rows = stamps[valid], rows[valid]
            table = table.set_column(
                table.schema.get_field_index("timestamp"),
                "timestamp",
                pa.array(stamps, pa.timestamp("ns", tz="UTC")),
            ).append_column(ROW, pa.array(rows, pa.int64()))
            table = _decode_dictionaries(table)
            day = _day_span(stamps, self.timezone)
            for value in np.unique(day):
                part = table.filter(pa.array(day == value))
                folder = root / f"day={int(value)}"
                folder.mkdir(exist_ok=True)
                pq.write_table(part, folder / f"part-{g.offset:012d}.parquet")
        if bad_tables:
            table = pa.concat_tables(bad_tables, promote_options="permissive")
            self._spill_rejects = self._normalise(table, np.concatenate(bad_rows))
        else:
            self._spill_rejects = EventLog(pd.DataFrame(), _no_rejects())
        self.files = sorted(str(p) for p in root.glob("day=*/*.parquet"))
        # The copy holds UTC nanosecond timestamps, whatever the log held (text included).
        position = self.schema.get_field_index("timestamp")
        self.schema = self.schema.set(position, pa.field("timestamp", pa.timestamp("ns", tz="UTC")))
        self._groups = self._row_groups()


def _ahead(read: Callable[[Any], Any], items: list, threads: int) -> Iterator[Any]:
    """``read`` of each item, in order, up to ``threads`` of them read ahead in threads
    (decoding Parquet releases the interpreter): the row groups of a national day are
    read side by side while the workers wait for its slices. Bounded: at most
    ``threads`` results wait. The threads end with the iterator (started after the
    workers fork: see :func:`detector.engine.local._pool`)."""
    if threads <= 1 or len(items) <= 1:
        yield from (read(item) for item in items)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        queued: deque = deque()
        upcoming = iter(items)
        try:
            for item in upcoming:
                queued.append(pool.submit(read, item))
                if len(queued) >= threads:
                    break
            while queued:
                result = queued.popleft().result()
                for item in upcoming:
                    queued.append(pool.submit(read, item))
                    break
                yield result
        finally:
            for future in queued:
                future.cancel()


def _by_slice(
    events: pa.Table, rows: np.ndarray, slices: int
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """(events, rows) ordered by account slice, time order kept within each, and where
    each slice starts: one copy of the day, then slices without a copy."""
    order, bounds = _slice_order(events, slices)
    return events.take(pa.array(order)), rows[order], bounds


def _slice_order(events: pa.Table, slices: int) -> tuple[np.ndarray, np.ndarray]:
    """The order putting ``events`` by account slice (time order kept within each), and
    where each slice starts in it."""
    bucket = account_buckets(events["account_id"]) if events.num_rows else np.zeros(0, np.int64)
    starts = np.array([slice_buckets(i, slices)[0] for i in range(slices)])
    number = (np.searchsorted(starts, bucket, side="right") - 1).astype(np.int16)
    order = np.argsort(number, kind="stable")  # a radix sort of small integers
    return order, np.r_[0, np.cumsum(np.bincount(number, minlength=slices))]


def _decode_dictionaries(table: pa.Table) -> pa.Table:
    """Plain strings, so that files written from different row groups share one schema."""
    for i, column in enumerate(table.schema):
        if pa.types.is_dictionary(column.type):
            table = table.set_column(
                i, column.name, pc.cast(table[column.name], column.type.value_type)
            )
    return table


def source_of(log: str | Path | EventLog, timezone: str, streaming: bool = True):
    """The partition source of a log path or a validated log in memory.

    ``streaming``: the parent reads each row group once and hands out
    partitions (the local engine); otherwise workers read their own
    partitions (a cluster).
    """
    if isinstance(log, EventLog):
        return FrameSource(log, timezone)
    return ParquetSource(log, timezone, streaming=streaming)


__all__ = ["FrameSource", "ParquetSource", "Partition", "normalise", "source_of"]
