"""Features of windows cut at each of their events: what was knowable at that instant.

``detected_at`` is the first event at which an alert's condition held. To find
it, the selected windows are replayed: their events are re-read (only theirs:
:meth:`read_windows` of the table's source pushes the account and day down to
the log's row groups), the kernel's per-event counts are computed again, and
each event gets the features its window had *up to and including* that event
(cumulative sums, running hourly peak), with the window's baselines, which
come from earlier days anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from detector.features.derive import SUMS, WINDOW_CONSTANTS, derive
from detector.features.kernel import (
    NOVELTY,
    EventCounts,
    arrow_categories,
    event_counts,
    first_uses,
    lookup,
)
from detector.features.table import RARE_NOVELTY, FeatureTable

# Columns the kernel reads for a window's attributes and links, but not to count its
# events: the replay does not read them again (event_id, a million ids, costs most).
NOT_REPLAYED = ("event_id", "account_type", "target_account_id")


@dataclass
class Replay:
    """The re-read events of some windows and their per-event counts (``window`` = table row)."""

    frame: pd.DataFrame
    counts: EventCounts


def replay_events(feature_table: FeatureTable, windows: np.ndarray) -> Replay:
    """Re-read the events of the given table rows and count them as the kernel did."""
    table = feature_table.table
    windows = np.asarray(windows, dtype=np.int64)
    accounts = table["account_id"].iloc[windows].to_numpy()  # not the whole column
    days = table["_day"].to_numpy()[windows] + feature_table.first_day
    frame = feature_table.source.read_windows(accounts, days, skip=NOT_REPLAYED)
    # The row groups were decoded in threads that are gone: Arrow's allocator keeps their
    # freed blocks (0.15 GB for 1M re-read events) until asked to give them back.
    pa.default_memory_pool().release_unused()
    counts = event_counts(
        frame, feature_table.timezone, feature_table.caseloads, feature_table.out_mode
    )
    if len(frame) == 0:
        return Replay(frame, counts)
    names = np.asarray(frame["account_id"].cat.categories.astype(str))
    rows = feature_table.rows_of(names[counts.window_account], counts.window_day)
    firsts = {column: first_uses(frame, counts, column) for column, _ in NOVELTY}
    counts.window = rows[counts.window]  # from here on, windows are rows of the table
    counts.counts["rare_hour_events"] = feature_table.rare_hours[counts.window, counts.hour]
    rare = tuple((column, name, f"{column}~rare") for column, name in RARE_NOVELTY)
    # The replayed windows as a mask over table rows: a gather per first use (millions
    # of them) instead of sorting them all to match against the windows.
    replayed = np.zeros(len(table), dtype=bool)
    replayed[windows] = True
    for column, name, key in tuple((c, n, c) for c, n in NOVELTY) + rare:
        novel = feature_table.novel.get(key)
        first = firsts[column]
        if novel is None or not first.any():
            continue
        keep = np.flatnonzero(replayed[novel.window])
        # (window, value) pairs matched as integers: values as positions among the
        # re-read column's categories (-1: none of them), compared per distinct value.
        categories = frame[column].cat.categories
        n_values = len(categories) + 1
        value = lookup(pc.take(novel.values, pa.array(keep)), arrow_categories(categories))
        candidates = np.flatnonzero(first)
        code = frame[column].cat.codes.to_numpy()[candidates].astype(np.int64)
        found = _known_pairs(
            (counts.window[candidates], code + 1),
            (novel.window[keep][value >= 0], value[value >= 0] + 1),
            n_values,
            windows,
            len(table),
        )
        flags = np.zeros(len(frame), dtype=bool)
        flags[candidates[found]] = True
        counts.counts[name] = flags
    return Replay(frame, counts)


DENSE_PAIRS = 64_000_000  # (replayed windows x values) up to which pairs are flagged densely


def _known_pairs(
    pairs: tuple[np.ndarray, np.ndarray],
    known: tuple[np.ndarray, np.ndarray],
    n_values: int,
    windows: np.ndarray,
    n_rows: int,
) -> np.ndarray:
    """Per (table row, value) pair: is it one of the ``known`` pairs? Known rows are among
    the replayed ``windows`` of a table of ``n_rows``; values are below ``n_values``.

    A flag per (replayed window, value) and a gather: 798 windows of 50,000 addresses
    are 40 MB, and a million pairs are looked up in milliseconds (a hash table of the
    pairs took 0.1-0.2 s); larger products are matched by :func:`_member`.
    """
    window, value = pairs
    known_window, known_value = known
    if len(windows) * n_values > DENSE_PAIRS:
        return _member(window * n_values + value, known_window * n_values + known_value)
    slot = np.full(n_rows, -1)  # each table row's place among the replayed windows
    slot[windows] = np.arange(len(windows))
    flag = np.zeros(len(windows) * n_values, dtype=bool)
    flag[slot[known_window] * n_values + known_value] = True
    at = np.where(window >= 0, slot[window], -1)
    return (at >= 0) & flag[np.maximum(at, 0) * n_values + value]


def _member(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``np.isin(values, known)`` for int64 keys, by pandas' hash table.

    numpy 2.4's ``isin`` sorts or hashes both arrays slowly (seconds for a
    million wide keys); pandas' int64 hash table takes about 0.06 s.
    """
    return pd.Series(values, copy=False).isin(known).to_numpy()


def _group_cumsum(values: np.ndarray, starts: np.ndarray, group_of_row: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at each group (rows grouped contiguously)."""
    total = np.cumsum(values, dtype=np.float64)
    before_group = np.concatenate([[0.0], total])[starts]
    return total - before_group[group_of_row]


def _group_running_max(values: np.ndarray, group_of_row: np.ndarray) -> np.ndarray:
    """Running maximum restarting at each group (non-negative values, contiguous groups)."""
    if len(values) == 0:
        return values.astype(np.float64)
    offset = (values.max() + 1.0) * group_of_row  # later groups always exceed earlier ones
    return np.maximum.accumulate(values + offset) - offset


def prefix_features(
    feature_table: FeatureTable, windows: np.ndarray, replay: Replay | None = None
) -> dict[str, np.ndarray]:
    """Columns with one value per event of the given window rows: the features known then.

    Keys: ``window`` (row of the feature table), ``timestamp`` (ns UTC, int64),
    and the catalogue's features. Rows are ordered by window, then time. A dict
    of arrays, not a DataFrame: an alerted bulk theft can hold millions of
    events, and building a frame of them would cost more than the replay.
    ``replay`` reuses events already re-read by :func:`replay_events`.
    """
    columns, _, _ = next(prefix_slices(feature_table, windows, replay))
    return columns


def prefix_slices(
    feature_table: FeatureTable,
    windows: np.ndarray,
    replay: Replay | None = None,
    max_events: int | None = None,
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    """:func:`prefix_features` of the given windows, ``max_events`` events at a time (all
    at once without it): per slice, (its columns, each event's rank in its window, the
    window's number of events).

    A bulk theft's window can hold millions of events, each with ~80 prefix features:
    its events are cut into slices too. The sums and the hourly peak of a window
    cut between two slices carry over, so that every slice holds the values that
    :func:`prefix_features` gives its events (the counts are whole numbers: the
    sums are exact either way).
    """
    for part in prefix_parts(feature_table, windows, replay, max_events):
        yield part.columns(), part.rank, part.size


@dataclass
class PrefixPart:
    """A slice of replayed events (by window, then time) with their running sums; the
    features of any of its events are derived on demand (:meth:`columns`)."""

    feature_table: FeatureTable
    window: np.ndarray  # per event: its table row
    rank: np.ndarray  # per event: its rank in its window
    size: np.ndarray  # per event: its window's number of events
    timestamp: np.ndarray  # per event: ns UTC
    peak: np.ndarray  # per event: the window's hourly peak of records so far
    # A window's sum at an event is the slice's running total there less the total
    # before the window began (plus, in a window begun in the previous slice, what
    # that slice carried): worked out for the events asked for only.
    totals: dict[str, np.ndarray]  # per counted sum: running total over the slice
    before: dict[str, np.ndarray]  # per counted sum, per window of the slice
    group: np.ndarray  # per event: its window's number in the slice
    carry: dict[str, float] | None  # the sums carried into the slice's first window
    head: int  # events of the slice's first window

    def sums(self, chosen: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The window's sums up to and including each event at ``chosen`` (all without it)."""
        n = len(self.window) if chosen is None else len(chosen)
        group = self.group if chosen is None else self.group[chosen]
        sums = {}
        for name in SUMS:
            if name not in self.totals:  # zero in every re-read event
                sums[name] = np.zeros(n)
                continue
            total = self.totals[name] if chosen is None else self.totals[name][chosen]
            values = total - self.before[name][group]
            if self.carry is not None:
                head = slice(0, self.head) if chosen is None else chosen < self.head
                values[head] += self.carry[name]
            sums[name] = values
        sums["peak_hourly_records"] = self.peak if chosen is None else self.peak[chosen]
        return sums

    def columns(self, chosen: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``window``, ``timestamp`` and the catalogue's features of the events at the
        positions ``chosen`` (ascending; all without it). Each feature is a function
        of its own event's sums and window: a subset's values are the whole's."""
        window, stamps, sums = self.window, self.timestamp, self.sums(chosen)
        if chosen is not None:
            window, stamps = window[chosen], stamps[chosen]
        # Each window's constants repeated over its events (rows are grouped by window):
        # a gather of one value per window, not one per event.
        starts = _run_starts(window)
        lengths = np.diff(np.r_[starts, len(window)])
        first_rows = window[starts]
        constants = {
            name: np.repeat(self.feature_table.constants(name, first_rows), lengths)
            for name in WINDOW_CONSTANTS
        }
        return {"window": window, "timestamp": stamps, **derive(sums, constants)}


def prefix_parts(
    feature_table: FeatureTable,
    windows: np.ndarray,
    replay: Replay | None = None,
    max_events: int | None = None,
) -> Iterator[PrefixPart]:
    """The given windows' replayed events, ``max_events`` at a time, as :class:`PrefixPart`:
    what :func:`prefix_slices` derives, before deriving it."""
    events = (replay or replay_events(feature_table, windows)).counts
    selected = np.zeros(len(feature_table.table), dtype=bool)
    selected[np.asarray(windows, dtype=np.int64)] = True
    rows = np.flatnonzero(selected[events.window])
    rows = rows[np.argsort(events.window[rows], kind="stable")]  # by window, then time
    window = events.window[rows]
    n_rows = len(rows)
    window_starts = _run_starts(window)
    window_sizes = np.diff(np.r_[window_starts, n_rows])
    # A count that is zero in every re-read event (a column the log lacks, no failed
    # login...) sums to zero everywhere: no gather, no running sum.
    counted = {name: events.counts[name] for name in SUMS if events.counts[name].any()}
    step = max(int(max_events), 1) if max_events is not None else max(n_rows, 1)
    carry = dict.fromkeys(SUMS, 0.0)  # the sums at the end of the previous slice
    in_hour_before = peak_before = 0.0  # records touched in its last hour, its peak
    for first in range(0, max(n_rows, 1), step):  # no rows: one empty slice
        part = rows[first : first + step]
        part_window = window[first : first + step]
        # The slice's first window began in the previous slice: its sums go on.
        goes_on = first > 0 and len(part) > 0 and window[first - 1] == part_window[0]
        starts = _run_starts(part_window)
        group = (
            np.cumsum(np.r_[True, part_window[1:] != part_window[:-1]]) - 1 if len(part) else starts
        )
        head = int(starts[1]) if len(starts) > 1 else len(part)  # rows of that first window

        totals, before = {}, {}
        for name, values in counted.items():
            totals[name] = np.cumsum(values[part], dtype=np.float64)
            before[name] = np.concatenate([[0.0], totals[name]])[starts]
        hour = events.hour[part]
        hour_change = (
            np.r_[True, (part_window[1:] != part_window[:-1]) | (hour[1:] != hour[:-1])]
            if len(part)
            else np.array([], bool)
        )
        hour_starts = np.flatnonzero(hour_change)
        hour_group = np.cumsum(hour_change) - 1
        in_hour = _group_cumsum(events.touched[part].astype(np.float64), hour_starts, hour_group)
        if goes_on and hour[0] == events.hour[rows[first - 1]]:  # the same hour goes on too
            in_hour[: int(hour_starts[1]) if len(hour_starts) > 1 else len(part)] += in_hour_before
        peak = _group_running_max(in_hour, group)
        if goes_on:
            np.maximum(peak[:head], peak_before, out=peak[:head])
        prefix = PrefixPart(
            feature_table,
            part_window,
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            events.timestamp[part],
            peak,
            totals,
            before,
            group,
            carry if goes_on else None,
            head,
        )
        if len(part):
            at_end = prefix.sums(np.array([len(part) - 1]))
            carry = {name: float(values[-1]) for name, values in at_end.items()}
            in_hour_before, peak_before = float(in_hour[-1]), float(peak[-1])

        position = first + np.arange(len(part))
        run = np.searchsorted(window_starts, position, side="right") - 1
        prefix.rank, prefix.size = position - window_starts[run], window_sizes[run]
        yield prefix


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Where each run of equal consecutive values begins."""
    if not len(values):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
