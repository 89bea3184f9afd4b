"""The feature table: one row per (account, local day) window, from the kernel's aggregates.

The kernel (:mod:`detector.features.kernel`) turns each partition of events
into per-window sums, hour histograms and first-seen pairs. This module works
on those small tables only:

1. windows of every partition, ordered by account then day;
2. what needs other days: novelty (first-seen pairs), rare hours (earlier
   hour histograms), history, account age;
3. own/peer baselines from earlier days (:mod:`detector.features.baselines`);
4. :func:`detector.features.derive.derive` turns sums and constants into the
   catalogue's features.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from detector.features import accumulation, baselines, calendar, history
from detector.features.catalogue import BASELINED_VOLUMES, FEATURES
from detector.features.derive import (
    BASELINE_CONSTANTS,
    PLAIN_CONSTANTS,
    SUMS,
    WINDOW_CONSTANTS,
    derive,
    window_features,
)
from detector.features.kernel import (
    DAY_NS,
    NOVELTY,
    Aggregates,
    Caseloads,
    caseload_sizes,
    forget_caseload_index,
    in_days,
    local_wall_ns,  # noqa: F401  (part of this module's interface)
    lookup,
)
from detector.schema import EventLog
from detector.vocabulary import (
    DEFAULT_TIMEZONE,
    OWN_MAX,
    OWN_MEDIAN,
    OWN_SCALE,
    PEER_MEDIAN,
    PEER_P95,
    PEER_SCALE,
    baseline_name,
)

RARE_HOUR_SHARE = 0.01
RARE_HOUR_MIN_HISTORY = 50  # earlier events needed before an hour can be called rare
NOVELTY_MIN_HISTORY = 5  # earlier active days needed before a value can be called new
MIN_NOVELTY_PEERS = 20  # accounts of a type able to see a new value, before a share is called
COMMON_SHARE = 0.05  # a value used by this share of an account type's accounts is no longer rare
COMMON_MIN = 3  # ... and by at least this many of them
# New values that few peers had used: (column, sum name); "new" is the column's NOVELTY sum.
RARE_NOVELTY = (("src_ip", "new_rare_addresses"), ("user_agent", "new_rare_clients"))
NOVELTY_SPREAD_DAYS = 3  # a roll-out reaches accounts as they log in: today and the 2 days before
# Novelty columns whose same-day share among peers is a feature (organisation-wide changes).
PEER_NOVELTY = {
    "new_addresses": "peer_new_addresses_share",
    "new_clients": "peer_new_clients_share",
}
# Novelty sums a state stores with each window (column name in its windows table): a
# night then finds only its own days' first uses, instead of ordering every stored
# first-seen pair again (millions of structures). The columns judged for rarity read
# every pair anyway (their pairs are few).
CARRIED = {
    name: f"_carried_{name}"
    for column, name in NOVELTY
    if column not in {rare_column for rare_column, _ in RARE_NOVELTY}
}
_ROWS_PER_CHUNK = 65_536  # windows per chunk where (windows x 24) temporaries are made
_DENSE_WINDOW_KEYS = 50_000_000  # accounts x days up to which windows are found by a gather
KEYS = ["account_id", "account_type", "organization_id", "day", "window_start", "window_end"]


@dataclass
class Novel:
    """Values of one column first used by an account in a window (history permitting)."""

    window: np.ndarray  # row of the feature table
    values: pa.Array  # the value (string), one per row of ``window``
    pairs: Any = None  # (account, value code, first day, judged) of every first use


# The accumulation's terms of each (account, day) that a state carries for the next night
# (features.accumulation): the reference the day was judged against and its same-day shift.
JUDGED_COLUMNS = [
    f"{stat}_{volume}"
    for volume in accumulation.CUSUM_VOLUMES
    for stat in ("centre", "scale", "shift")
]


@dataclass
class Judged:
    """Per (account, local day): the CUSUM's reference (centre, scale) and same-day shift of
    each accumulated volume, as :func:`assemble` worked them out.

    ``frame``: account_id, day (local day number) and JUDGED_COLUMNS, a row per account
    with a reference or a shift that day (a missing row: NaN, NaN, 0); ``days``: the days
    it covers; ``caseloads``: whether out-of-caseload reads were known. A night reads the
    stored days' rows instead of ordering 28 days of history for each of the 14 days the
    sums look back over, and computing every same-day shift again.
    """

    days: np.ndarray
    frame: pd.DataFrame
    caseloads: bool


@dataclass
class Hours:
    """Per account: the summed 24-hour histograms of its stored windows of days before
    ``before`` (a local day number): what rare hours read of the days a night does not
    score, instead of every stored window's histogram."""

    before: int
    accounts: Any  # account ids (pd.Index or Arrow strings), one per row of ``counts``
    counts: np.ndarray  # (accounts x 24) int64


@dataclass
class Internal:
    """Per-window numbers only the replay reads (the baselines' scales, the accumulation's
    terms), kept apart from the table: detection keeps its candidates' rows only.

    ``block`` holds one row per name; its columns are the table rows ``rows``
    (ascending), or every table row when ``rows`` is None.
    """

    names: list[str]
    block: np.ndarray
    rows: np.ndarray | None = None

    def values(self, name: str, windows: np.ndarray) -> np.ndarray:
        """Column ``name`` at the given table rows (which must be kept)."""
        row = self.block[self.names.index(name)]
        if self.rows is None:
            return row[windows]
        position = np.searchsorted(self.rows, windows)
        if len(windows) and (
            position.max() >= len(self.rows) or (self.rows[position] != windows).any()
        ):
            raise ValueError("internal columns asked for windows that were not kept")
        return row[position]

    def keep(self, windows: np.ndarray) -> None:
        """Keep the given table rows only; the others' numbers are freed."""
        windows = np.unique(np.asarray(windows, dtype=np.int64))
        columns = windows if self.rows is None else np.searchsorted(self.rows, windows)
        self.block = self.block[:, columns]  # a copy: the whole block can go
        self.rows = windows


@dataclass
class FeatureTable:
    """The feature table and what the replay behind ``detected_at`` needs from other days."""

    table: pd.DataFrame  # window keys, catalogue features, internal `_` integer columns
    timezone: str
    notices: list[str] = field(default_factory=list)
    has_caseload_data: bool = True
    rare_hours: np.ndarray = field(default_factory=lambda: np.zeros((0, 24), bool))
    novel: dict[str, Novel] = field(default_factory=dict)
    first_day: int = 0  # local day number of day index 0
    source: Any = None  # where the replay re-reads windows' events (detector.engine.sources)
    caseloads: Caseloads | None = None  # the broadcast table (or its index) the kernel used
    out_mode: str | None = "caseloads"  # how out-of-caseload reads were known
    rejects: pd.DataFrame = field(default_factory=pd.DataFrame)  # rows set aside, with reasons
    n_events: int = 0  # events the table was built from
    links: pd.DataFrame = field(default_factory=pd.DataFrame)  # creator, target, timestamp
    accounts: int | None = None  # accounts of every window read (None: those of the table)
    internal: Internal = field(default_factory=lambda: _no_internal(0))
    # With ``carry``: per CARRIED sum, every window's count in the order of the stacked
    # partitions' windows (what a state stores beside its windows).
    carried: dict[str, np.ndarray] = field(default_factory=dict)
    judged: Judged | None = None  # the accumulation's terms of the days worked out (for a state)
    hours: Hours | None = None  # each account's summed hours before the last day (for a state)

    def constants(self, name: str, windows: np.ndarray) -> np.ndarray:
        """A window constant (feature or internal number) at the given table rows."""
        if name in self.internal.names:
            return self.internal.values(name, windows)
        return self.table[name].to_numpy()[windows]

    @property
    def features(self) -> pd.DataFrame:
        """Only the window keys and the catalogue's features (what users look at)."""
        return self.table[KEYS + list(FEATURES)]

    def rows_of(self, accounts: np.ndarray, days: np.ndarray) -> np.ndarray:
        """Rows of the given (account_id, local day number) windows (-1 when absent)."""
        account = lookup(accounts, self.table["account_id"].iloc[self._account_starts()].to_numpy())
        n_days = int(self.table["_day"].max()) + 1 if len(self.table) else 1
        keys = self._keys(n_days)
        day = np.asarray(days, dtype=np.int64) - self.first_day
        wanted = np.where((account >= 0) & (day >= 0) & (day < n_days), account * n_days + day, -1)
        position = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
        return np.where((wanted >= 0) & (keys[position] == wanted), position, -1)

    def _account_starts(self) -> np.ndarray:
        account = self.table["_account"].to_numpy()
        return np.flatnonzero(np.r_[True, account[1:] != account[:-1]]) if len(account) else account

    def _keys(self, n_days: int) -> np.ndarray:
        return self.table["_account"].to_numpy() * n_days + self.table["_day"].to_numpy()


def _packed(high: np.ndarray, low: np.ndarray, low_span: int) -> tuple[np.ndarray, int] | None:
    """``high`` and ``low`` (0 <= low < low_span) in one int64 that sorts as the pair
    (with the number of bits given to ``low``); None when they do not fit.

    numpy sorts plain int64 keys several times faster than it argsorts them or
    hashes them, so pairs are sorted packed and unpacked with shifts.
    """
    bits = max(int(low_span - 1).bit_length(), 1)
    largest = max(abs(int(high.min())), abs(int(high.max())) + 1) if len(high) else 0
    if largest >= 2 ** (62 - bits):
        return None
    packed = high if high.dtype == np.int64 else high.astype(np.int64)
    packed <<= bits  # in place: callers pass their own temporaries
    packed |= low
    return packed, bits


def _first_per_key(keys: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (ascending) and each one's smallest day."""
    if len(keys) == 0:
        return keys, day
    earliest = int(day.min())
    day -= earliest  # the caller's temporary
    packed = _packed(keys, day, int(day.max()) + 1)
    if packed is None:
        order = np.lexsort((day, keys))
        keys, day = keys[order], day[order]
    else:
        del keys, day
        pairs, bits = packed
        pairs.sort()
        keys = pairs >> bits
        day = pairs
        day &= (1 << bits) - 1
    first = np.empty(len(keys), dtype=bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return keys[first], day[first] + earliest


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _rows_of_keys(window_keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of each (account, day) key among the ascending ``window_keys``.

    A key that is absent (a day pruned from a state) gets some row whose key
    differs: callers compare. A gather from a dense key -> row array when the key
    space is small (accounts x days); ten million binary searches cost seconds.
    """
    if len(window_keys) == 0:
        return np.zeros(len(wanted), dtype=np.int64)
    n_keys = int(window_keys[-1]) + 1
    if n_keys > _DENSE_WINDOW_KEYS:
        return np.minimum(np.searchsorted(window_keys, wanted), len(window_keys) - 1)
    row = np.zeros(n_keys, dtype=np.int32 if len(window_keys) < 2**31 else np.int64)
    row[window_keys] = np.arange(len(window_keys), dtype=row.dtype)
    return row[np.clip(wanted, 0, n_keys - 1)].astype(np.int64)


def _rare_hours(
    hours: np.ndarray,
    first_of_account: np.ndarray,
    w_acc: np.ndarray,
    dropped: np.ndarray | None = None,
    held: np.ndarray | None = None,
    upto: tuple[np.ndarray, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(windows x 24): local hours which, with their two neighbours, hold < 1 % of the
    account's earlier events (working half an hour late is not rare; 3 a.m. is); and
    per window, its events in such hours; and with ``upto`` (each row's day, a day), per
    account the summed hours of its rows before that day (what a state carries).

    Rows are ordered by account (``w_acc``), ``first_of_account`` the first row of
    each; ``dropped``: (accounts x 24) the account's hours of days pruned from a state,
    or not given as rows; ``held``: the rows to give (None: every row).
    """
    # Running sums over all rows, less the sum before the account's first row: the
    # account's earlier windows. int32 holds them whenever the whole log's events fit.
    small = int(hours.sum(dtype=np.int64)) < np.iinfo(np.int32).max
    running = np.cumsum(hours, axis=0, dtype=np.int32 if small else np.int64)
    base = np.zeros((len(first_of_account), hours.shape[1]), dtype=running.dtype)
    after = first_of_account > 0  # an account whose rows start at 0 has nothing before
    base[after] = running[first_of_account[after] - 1]
    totals = None
    if upto is not None:
        rows = np.flatnonzero(upto[0] < upto[1])
        last = np.full(len(first_of_account), -1, dtype=np.int64)
        last[w_acc[rows]] = rows  # written last: each account's last such row
        has = last >= 0
        totals = np.zeros((len(first_of_account), hours.shape[1]), dtype=np.int64)
        totals[has] = running[last[has]] - base[has]
        del rows, last, has
    n_held = len(hours) if held is None else len(held)
    rare = np.zeros((n_held, hours.shape[1]), dtype=bool)
    rare_events = np.zeros(n_held)
    for first in range(0, n_held, _ROWS_PER_CHUNK):  # bounded temporaries
        at = slice(first, first + _ROWS_PER_CHUNK)
        rows = at if held is None else held[at]
        before = running[rows] - hours[rows]
        before -= base[w_acc[rows]]
        if dropped is not None:
            before = before + dropped[w_acc[rows]]
        around = before.copy()
        around[:, 1:] += before[:, :-1]
        around[:, 0] += before[:, -1]
        around[:, :-1] += before[:, 1:]
        around[:, -1] += before[:, 0]
        history_events = before.sum(axis=1, dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = around / history_events[:, None]
        rare[at] = (history_events >= RARE_HOUR_MIN_HISTORY)[:, None] & (share < RARE_HOUR_SHARE)
        rare_events[at] = (hours[rows] * rare[at]).sum(axis=1)
    return rare, rare_events, totals


def _ordered_rare_hours(
    parts: Sequence[Aggregates],
    order: np.ndarray,
    windows: tuple[np.ndarray, np.ndarray, np.ndarray],
    prior: history.Prior | None,
    held: np.ndarray | None,
    stored: tuple[np.ndarray, int] | None = None,
    upto: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`_rare_hours` of the partitions' windows in table order (``order``), and with
    ``upto`` (a day index) the summed hours of each account's windows before that day.

    ``windows``: each row's account, day index, and each account's first row.
    ``stored``: the state's summed hours of each account's windows before a day, which
    every held window comes after: only the windows from that day on are read (a night
    reads its new days, not every stored window's histogram).
    """
    w_acc, w_day, first_of_account = windows
    dropped = None if prior is None else prior.hours
    if stored is None:
        hours = np.concatenate([p.hours for p in parts])[order]
        wanted = None if upto is None else (w_day, upto)
        return _rare_hours(hours, first_of_account, w_acc, dropped, held, wanted)
    totals, since = stored
    recent = np.flatnonzero(w_day >= since)  # table rows (by account, then day)
    hours = _stacked_rows(parts, order[recent])
    acc = w_acc[recent]
    first = np.searchsorted(acc, np.arange(len(first_of_account)))
    wanted = None if upto is None else (w_day[recent], upto)
    rare, rare_events, found = _rare_hours(
        hours,
        first,
        acc,
        totals if dropped is None else totals + dropped,
        None if held is None else np.searchsorted(recent, held),
        wanted,
    )
    return rare, rare_events, None if found is None else found + totals


def _stacked_rows(parts: Sequence[Aggregates], rows: np.ndarray) -> np.ndarray:
    """The hour histograms of the given rows of the partitions' stacked windows, without
    stacking every partition's."""
    ends = np.cumsum([len(p.hours) for p in parts])
    part = np.searchsorted(ends, rows, side="right")
    out = np.zeros((len(rows), 24), dtype=parts[0].hours.dtype if parts else np.int32)
    for i, p in enumerate(parts):
        mine = np.flatnonzero(part == i)
        if len(mine):
            out[mine] = p.hours[rows[mine] - (ends[i] - len(p.hours))]
    return out


def _novelty(
    parts: Sequence[Aggregates],
    column: str,
    accounts: pd.Index,
    window_keys: np.ndarray,
    first_day: int,
    n_days: int,
    has_history: np.ndarray,
) -> tuple[np.ndarray, Novel]:
    """(new values per window, the new values themselves) of one column."""
    tables = [p.first_seen[column] for p in parts if column in p.first_seen]
    n_win = len(window_keys)
    if not tables:
        return np.zeros(n_win), Novel(np.zeros(0, np.int64), pa.array([], pa.string()))
    account_code, account_names = _codes([t["account_id"] for t in tables])
    account = np.r_[lookup(account_names, pa.array(accounts.astype(str), pa.string())), -1]
    account = account[account_code]
    del account_code
    value, dictionary = _codes([t["value"] for t in tables])
    n_values = len(dictionary)
    account *= n_values
    account += value  # (account, value) keys
    del value
    keys, first = _first_per_key(
        account, np.concatenate([t["day"].to_numpy() for t in tables]).astype(np.int64) - first_day
    )
    del account
    wanted = keys // n_values * n_days + first
    window = _rows_of_keys(window_keys, wanted)
    # A pair first seen on a day pruned from a state has no window of its own: not new.
    new = has_history[window] & (window_keys[window] == wanted)
    del wanted
    counts = np.bincount(window[new], minlength=n_win).astype(np.float64)
    values = pc.take(dictionary, pa.array(keys[new] % n_values))
    novel = Novel(window[new], values)
    del window
    # For rarity among peers; an account with no stored window (all its days pruned)
    # has no known peer group, and is left out. Kept small: codes and days fit int32.
    known = keys >= 0
    keys, first, new = keys[known], first[known], new[known]
    novel.pairs = (
        _narrow(keys // n_values),
        _narrow(keys % n_values),
        _narrow(first),
        new,
    )
    return counts, novel


def _carried_counts(parts: Sequence[Aggregates], name: str, order: np.ndarray) -> np.ndarray | None:
    """The stored windows' counts of a CARRIED sum in table order (NaN for the others),
    or None when they cannot stand: the first part (a state's history) must carry them
    for each of its windows, and every other part's days must come after all of its
    days (a re-delivered earlier day changes later first uses: all are found again)."""
    column = CARRIED.get(name)
    if column is None or len(parts) < 2 or column not in parts[0].windows:
        return None
    stored = parts[0].windows[column].to_numpy(dtype=np.float64)
    if np.isnan(stored).any() or any(column in p.windows for p in parts[1:]):
        return None
    last = int(parts[0].windows["day"].max())
    if min(int(p.windows["day"].min()) for p in parts[1:]) <= last:
        return None
    later = sum(len(p.windows) for p in parts[1:])
    return np.concatenate([stored, np.full(later, np.nan)])[order]


def _novelty_after(
    parts: Sequence[Aggregates],
    column: str,
    accounts: pd.Index,
    window_keys: np.ndarray,
    first_day: int,
    n_days: int,
    has_history: np.ndarray,
    known: np.ndarray,
) -> tuple[np.ndarray, Novel]:
    """:func:`_novelty` when the stored windows' counts are ``known`` (NaN for the new
    days' windows, which all come after them): only the new days' pairs are ordered,
    and a pair is new when the stored pairs (the first part's) do not hold it."""
    counts = np.nan_to_num(known, nan=0.0)
    tables = [p.first_seen[column] for p in parts[1:] if column in p.first_seen]
    empty = Novel(np.zeros(0, np.int64), pa.array([], pa.string()))
    if not tables:
        return counts, empty
    account_code, account_names = _codes([t["account_id"] for t in tables])
    account_ids = pa.array(accounts.astype(str), pa.string())
    account = np.r_[lookup(account_names, account_ids), -1][account_code]
    del account_code
    value, dictionary = _codes([t["value"] for t in tables])
    n_values = len(dictionary)
    account *= n_values
    account += value
    del value
    keys, first = _first_per_key(
        account, np.concatenate([t["day"].to_numpy() for t in tables]).astype(np.int64) - first_day
    )
    keys, first = keys[keys >= 0], first[keys >= 0]
    # The pairs' text, to match against the stored pairs (an Arrow anti-join).
    account_text = pc.take(account_ids, pa.array(keys // n_values))
    values = pc.take(dictionary, pa.array(keys % n_values))
    unseen = _not_stored(account_text, values, parts[0].first_seen.get(column))
    keys, first, values = keys[unseen], first[unseen], pc.filter(values, pa.array(unseen))
    wanted = keys // n_values * n_days + first
    window = _rows_of_keys(window_keys, wanted)
    new = has_history[window] & (window_keys[window] == wanted)
    counts += np.bincount(window[new], minlength=len(window_keys))
    return counts, Novel(window[new], pc.filter(values, pa.array(new)))


def _not_stored(account: pa.Array, value: pa.Array, stored: pa.Table | None) -> np.ndarray:
    """Which (account, value) pairs ``stored`` (first-seen pairs, maybe dictionary-encoded)
    does not hold: the few new pairs hashed, the stored ones probed."""
    if stored is None or not stored.num_rows or not len(account):
        return np.ones(len(account), dtype=bool)
    numbered = pa.table(
        {"account_id": account, "value": value, "_row": pa.array(np.arange(len(account)))}
    )
    plain = pa.table({key: pc.cast(stored[key], pa.string()) for key in ("account_id", "value")})
    absent = plain.join(numbered, keys=["account_id", "value"], join_type="right anti")
    unseen = np.zeros(len(account), dtype=bool)
    unseen[absent["_row"].to_numpy()] = True
    return unseen


def _some_novelty(
    parts: Sequence[Aggregates],
    column: tuple[str, str],
    accounts: pd.Index,
    window_keys: np.ndarray,
    days: tuple[int, int],
    has_history: np.ndarray,
    order: np.ndarray,
    release: bool,
) -> tuple[np.ndarray, Novel]:
    """:func:`_novelty` of a (column, sum name), from the counts a state carries when
    they can stand (:func:`_carried_counts`); with ``release``, the partitions' first-seen
    pairs of the column are dropped once it is found."""
    (column, name), (first_day, n_days) = column, days
    known = _carried_counts(parts, name, order)
    if known is None:
        found = _novelty(parts, column, accounts, window_keys, first_day, n_days, has_history)
    else:
        found = _novelty_after(
            parts, column, accounts, window_keys, first_day, n_days, has_history, known
        )
    for part in parts if release else ():
        part.first_seen.pop(column, None)
    return found


def _narrow(values: np.ndarray) -> np.ndarray:
    """int32 when every value fits (the same numbers, half the memory)."""
    small = len(values) == 0 or (
        values.min() >= np.iinfo(np.int32).min and values.max() <= np.iinfo(np.int32).max
    )
    return values.astype(np.int32) if small else values


def _rare(
    novel: Novel, n_win: int, peer_group: np.ndarray, able: np.ndarray, n_days: int
) -> tuple[np.ndarray, Novel]:
    """(new values per window that few peers had used by that day, those values).

    A value is common once COMMON_SHARE of the account type's accounts able to
    see novelty (and COMMON_MIN of them) had used it, that day included: a
    browser rolled out to most accounts is nobody's new device. The count only
    grows during a day, so the day's verdict is never "rare" where an instant
    of it would have said "common".
    """
    account, value, first, new = novel.pairs
    n_values = int(value.max()) + 1 if len(value) else 1
    group = peer_group[account]
    users = _users_by_then(group * n_values + value, first, n_days)[new]
    # Only the new pairs are judged.
    threshold = COMMON_SHARE * able[group[new] * n_days + first[new]]
    rare = users < np.maximum(COMMON_MIN, threshold)
    counts = np.bincount(novel.window[rare], minlength=n_win).astype(np.float64)
    return counts, Novel(novel.window[rare], pc.filter(novel.values, pa.array(rare)))


def _users_by_then(group_value: np.ndarray, first: np.ndarray, n_days: int) -> np.ndarray:
    """Per (account, value) pair: how many pairs of the same (peer group, value) were
    first seen on its first day or before, itself included.

    One sort, then run boundaries: binary searches of ten million random keys
    cost seconds (cache misses), a sort a fraction of that.
    """
    if len(group_value) == 0:
        return np.zeros(0, dtype=np.int64)
    key = group_value * (n_days + 1)
    key += first
    packed = _packed(key, np.arange(len(key)), len(key))
    if packed is None:
        order = np.argsort(key)  # the order among equal keys does not matter
        ordered = key[order]
    else:
        del key
        ordered, bits = packed
        ordered.sort()
        order = ordered & ((1 << bits) - 1)
        ordered >>= bits
    n = len(ordered)
    # Runs of equal keys (same group, value and day), and where each group's run begins.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if n else ordered[:0]
    group = ordered[starts] // (n_days + 1)
    del ordered
    group_start = np.where(np.r_[True, group[1:] != group[:-1]], starts, 0)
    np.maximum.accumulate(group_start, out=group_start)
    ends = np.r_[starts[1:], n]
    users = np.empty(n, dtype=np.int64)
    users[order] = np.repeat(ends - group_start, ends - starts)
    return users


_TEXT_DICTIONARY = pa.dictionary(pa.int32(), pa.string())


def _codes(columns: list[pa.ChunkedArray]) -> tuple[np.ndarray, pa.Array]:
    """(a code per row of the stacked text columns, the distinct values they index).

    The kernel gives dictionary arrays: only their dictionaries are hashed, to
    unify them; plain strings (stored state) are encoded first.
    """
    chunks = [
        (chunk if pa.types.is_dictionary(chunk.type) else pc.dictionary_encode(chunk)).cast(
            _TEXT_DICTIONARY
        )
        for column in columns
        for chunk in column.chunks
    ]
    if not chunks:
        return np.zeros(0, np.int64), pa.array([], pa.string())
    unified = pa.chunked_array(chunks, type=_TEXT_DICTIONARY).unify_dictionaries()
    codes = [c.indices.fill_null(-1).to_numpy(zero_copy_only=False) for c in unified.chunks]
    return np.concatenate(codes).astype(np.int64), unified.chunk(0).dictionary


def _account_attribute(
    parts: Sequence[Aggregates],
    name: str,
    order: np.ndarray,
    w_acc: np.ndarray,
    first_of_account: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Each account's type or structure: its first event's, else its first non-missing one;
    and the table row it was taken from.

    Only the accounts' first windows are read (``order``: table row -> stacked
    window), not a Python string per window.
    """
    first = pd.concat([p.windows[f"_{name}_first"] for p in parts], ignore_index=True)
    value = first.take(order[first_of_account]).to_numpy(dtype=object)
    source = first_of_account.copy()  # the row each account's value comes from
    missing = np.flatnonzero(pd.isna(value))
    if len(missing):  # rare: look further, in those accounts' rows only
        rows = np.flatnonzero(np.isin(w_acc, missing))
        any_value = _stacked_column(parts, f"_{name}_any", order[rows], object)
        present = pd.notna(any_value)
        later, any_value = rows[present], any_value[present]
        found = pd.Series(np.arange(len(later))).groupby(w_acc[later]).first()
        value[found.index.to_numpy()] = any_value[found.to_numpy()]
        source[found.index.to_numpy()] = later[found.to_numpy()]
    return value, source


class _Columns:
    """The table's float columns as the rows of one (columns x windows) block.

    Sums, constants and baselines are written straight into their rows, so the
    table's numbers exist once: the DataFrame is made over the block without a copy.
    """

    def __init__(
        self,
        names: Sequence[str],
        n_rows: int,
        internal: Sequence[str] = (),
        out: np.ndarray | None = None,
    ):
        self.out = out  # the windows the table holds (None: every window)
        held = n_rows if out is None else len(out)
        self.block = np.empty((len(names), held))
        self.names = list(names)
        self.rows = {name: self.block[i] for i, name in enumerate(names)}
        # Numbers the table does not show, in a block of their own (FeatureTable.internal).
        self.internal = np.empty((len(internal), held))
        self.rows.update({name: self.internal[i] for i, name in enumerate(internal)})

    def __getitem__(self, name: str) -> np.ndarray:
        return self.rows[name]

    def put(self, name: str, values: np.ndarray) -> None:
        """Write ``values`` (one per window) into the column: those of the windows the table
        holds (nothing to do when ``values`` is the column itself)."""
        row = self.rows[name]
        if values is not row:
            row[:] = values if self.out is None else values[self.out]

    def keep(self, name: str, values: np.ndarray) -> np.ndarray:
        """:meth:`put`, then what stands for every window's values: the column itself when
        the table holds every window, else ``values``."""
        self.put(name, values)
        return self.rows[name] if self.out is None else values

    def every(self, name: str, n_windows: int) -> np.ndarray:
        """An array to write every window's values of a column into: the column itself
        when the table holds every window."""
        return self.rows[name] if self.out is None else np.empty(n_windows)


# Float columns of the table, in order: the catalogue's features; the internal numbers
# are kept beside it (FeatureTable.internal).
FLOAT_COLUMNS = list(FEATURES)
INTERNAL_COLUMNS = [name for name in WINDOW_CONSTANTS if name.startswith("_")]


def _volume_inputs() -> frozenset[str]:
    """The sums the baselined volumes are made of, found by changing each sum in turn in
    :func:`window_features` (the one definition): a table of a few scored days needs only
    these for the other windows (their baselines), the rest for the windows it holds."""
    rng = np.random.default_rng(0)
    names = [*SUMS, "peak_hourly_records"]
    sums = {name: rng.uniform(1.0, 2.0, 4) for name in names}
    constants = {name: rng.uniform(1.0, 2.0, 4) for name in PLAIN_CONSTANTS}
    base = window_features(sums, constants)
    read = set()
    for name in names:
        changed = window_features({**sums, name: sums[name] + 1.0}, constants)
        if any(not np.array_equal(base[v], changed[v]) for v in BASELINED_VOLUMES):
            read.add(name)
    return frozenset(read)


_VOLUME_SUMS = _volume_inputs()
INSTANTS = ("window_start", "window_end")
# Window columns assembly reads after the sums (keys, instants, account attributes).
_LATER_COLUMNS = ("account_id", "day", "window_start", "window_end") + tuple(
    f"_{name}_{kind}" for name in ("type", "org") for kind in ("first", "any")
)


def _release_windows(parts: Sequence[Aggregates]) -> None:
    """The partitions' windows without the columns assembly has read (a copy of the others,
    so that the old frames' blocks are freed)."""
    for part in parts:
        kept = [name for name in part.windows.columns if name in _LATER_COLUMNS]
        part.windows = part.windows[kept].copy(deep=True)


def _give_back() -> None:
    """Freed heap and Arrow buffers returned to the system (counted in the footprint else)."""
    from detector.engine.sources import release_memory  # the engine imports this module

    release_memory()
    pa.default_memory_pool().release_unused()


def _ordered(parts: Sequence[Aggregates], name: str, order: np.ndarray, dtype: Any = None):
    """A column of every partition's windows, in table order."""
    return np.concatenate([p.windows[name].to_numpy(dtype=dtype) for p in parts])[order]


def _stacked_column(
    parts: Sequence[Aggregates], name: str, rows: np.ndarray, dtype: Any
) -> np.ndarray:
    """A column of the partitions' stacked windows at the given rows, read from the parts
    that hold them only (a night's few held windows, not a state's millions stacked)."""
    ends = np.cumsum([len(p.windows) for p in parts])
    part = np.searchsorted(ends, rows, side="right")
    values = np.empty(len(rows), dtype=dtype)
    for i, p in enumerate(parts):
        mine = np.flatnonzero(part == i)
        if len(mine):
            taken = p.windows[name].iloc[rows[mine] - (ends[i] - len(p.windows))]
            values[mine] = taken.to_numpy(dtype=dtype)
    return values


def assemble(
    parts: Sequence[Aggregates],
    caseloads: Caseloads | None,
    timezone: str,
    notices: list[str] | None = None,
    has_caseload_data: bool = True,
    first_day: int | None = None,
    baseline_days: set[int] | None = None,
    summary: pd.DataFrame | None = None,
    carry: bool = False,
    release: bool = False,
    judged: Judged | None = None,
    hours: Hours | None = None,
) -> FeatureTable:
    """The feature table of a log from its partitions' aggregates.

    With ``baseline_days`` (local day numbers: the days a run with saved state
    scores), the table holds the windows of those days only: the other windows
    are read as their history (baselines, novelty, rare hours, account age...),
    and no feature is derived for them. ``summary``: what a pruned state keeps
    of its dropped days (:mod:`detector.features.history`), read wherever the
    whole past of an account counts. ``carry``: keep the CARRIED sums of every window
    (``FeatureTable.carried``) for a state to store; a first part that carries them (a
    state's history) spares finding them again (:func:`_carried_counts`); with ``carry``
    the accumulation's terms of the last days are kept too (``FeatureTable.judged``), and
    ``judged``, the state's, spares working out those of its days again
    (:func:`_stored_terms`); and each account's summed hours before the last day
    (``FeatureTable.hours``), of which ``hours``, the state's, spares reading every
    stored window's (:func:`_stored_hours`). ``release``:
    the caller keeps nothing of ``parts`` but their links, so their sums, hours and
    first-seen pairs are dropped once read (the peak of a large log is at the table's end).
    """
    parts = [p for p in parts if len(p.windows)]
    notices = list(notices or [])
    if not parts:
        return _empty_table(timezone, notices, has_caseload_data)
    account_codes, accounts = pd.factorize(
        pd.concat([p.windows["account_id"] for p in parts], ignore_index=True), sort=True
    )
    days = np.concatenate([p.windows["day"].to_numpy() for p in parts]).astype(np.int64)
    order = np.lexsort((days, account_codes))
    w_acc = account_codes[order].astype(np.int64)
    del account_codes
    first_day = int(days.min()) if first_day is None else first_day
    w_day = days[order] - first_day
    del days
    n_win, n_acc, n_days = len(w_acc), len(accounts), int(w_day.max()) + 1
    window_keys = w_acc * n_days + w_day
    out = None  # the windows the table holds (None: every window)
    if baseline_days is not None:
        wanted_days = np.array(sorted(baseline_days), dtype=np.int64) - first_day
        out = np.flatnonzero(in_days(w_day, wanted_days))
    columns = _Columns(FLOAT_COLUMNS, n_win, INTERNAL_COLUMNS, out)
    held = slice(None) if out is None else out

    first_of_account = np.full(n_acc, n_win, dtype=np.int64)
    first_of_account[w_acc[::-1]] = np.arange(n_win)[::-1]
    history_days = np.arange(n_win) - first_of_account[w_acc]
    prior = None if summary is None else history.align(summary, accounts, first_day)
    if prior is not None:
        history_days = history_days + prior.days[w_acc]

    sums: dict[str, np.ndarray] = {}
    for name in [*SUMS, "peak_hourly_records"]:
        if name not in parts[0].windows:
            continue
        sums[name] = columns.every(name, n_win) if name in columns.rows else np.empty(n_win)
        if out is None or name in _VOLUME_SUMS:
            values = np.concatenate([p.windows[name].to_numpy(dtype=np.float64) for p in parts])
            np.take(values, order, out=sums[name])
        else:  # read for the held windows only: the others' are never derived (zeros)
            sums[name][:] = 0.0
            sums[name][out] = _stacked_column(parts, name, order[out], np.float64)
    if release:  # the sums are in the table's columns now
        _release_windows(parts)
    stored_hours = None
    if carry:  # the state's summed hours, when every scored day comes after their days
        stored_hours = _stored_hours(hours, parts, baseline_days, first_day, accounts)
    rare_hours = partial(
        _ordered_rare_hours,
        parts,
        order,
        (w_acc, w_day, first_of_account),
        prior,
        out,
        stored_hours,
        int(w_day.max()) if carry else None,
    )
    # A table of a few scored days finds its rare hours in a thread beside the rest (numpy
    # releases the GIL); the whole log's table first, so that their temporaries (windows
    # x 24) are gone before the baselines' matrices are made.
    beside = ThreadPoolExecutor(max_workers=1) if out is not None else None
    found_rare = beside.submit(rare_hours) if beside is not None else None
    rare, rare_events, totals = rare_hours() if found_rare is None else (None, None, None)
    if release and found_rare is None:
        for part in parts:
            part.hours = np.zeros((0, 24), dtype=part.hours.dtype)
    novel: dict[str, Novel] = {}
    has_history = history_days >= NOVELTY_MIN_HISTORY
    # Novelty that is baselined (new structures) first; the rest is found, in its
    # column, while the baselines are computed.
    for column, name in NOVELTY:
        if name in BASELINED_VOLUMES:
            sums[name], novel[column] = _some_novelty(
                parts,
                (column, name),
                accounts,
                window_keys,
                (first_day, n_days),
                has_history,
                order,
                release,
            )
        else:
            sums[name] = columns[name]  # found below: not a volume
    if not has_caseload_data:
        sums["out_of_caseload_reads"] = np.full(n_win, np.nan)
    for name, values in sums.items():  # the sums that are catalogue features, in their column
        if name in columns.rows:
            sums[name] = columns.keep(name, values)
    if rare_events is not None:
        columns["rare_hour_events"][:] = rare_events  # of the windows held: not a volume
    sums["rare_hour_events"] = columns["rare_hour_events"]

    created = np.full(n_acc, np.iinfo(np.int64).max)
    made = pa.concat_tables([p.created for p in parts], promote_options="permissive")
    made_acc = lookup(made["account_id"], pa.array(accounts.astype(str), pa.string()))
    made_day = made["day"].to_numpy().astype(np.int64) - first_day
    np.minimum.at(created, made_acc[made_acc >= 0], made_day[made_acc >= 0])
    first_seen = np.minimum(w_day[np.minimum(first_of_account, n_win - 1)], created)
    if prior is not None:
        first_seen = np.minimum(first_seen, prior.first_day)
    caseload_size = np.zeros(n_acc) if caseloads is None else caseload_sizes(caseloads, accounts)
    if isinstance(caseloads, pd.DataFrame):
        # The index the kernel built of a caseload table read from a file (0.35 GB at 100M
        # events) is not read again here: dropped now, not at detection, as assembly nears
        # its peak. The replay indexes its candidates' rows only (or the table again).
        forget_caseload_index()
    plain: dict[str, np.ndarray] = {
        "caseload_size": caseload_size[w_acc],
        "history_days": history_days.astype(np.float64),
        "log_days": w_day.astype(np.float64),
        "account_age_days": (w_day - first_seen[w_acc]).astype(np.float64),
        "created_in_log": (created[w_acc] <= w_day).astype(np.float64),
        **_calendar(
            w_day + first_day,
            first_seen[w_acc] + first_day,
            first_of_account[w_acc],
            None if prior is None else prior.off_days[w_acc],
        ),
    }
    constants: dict[str, np.ndarray] = {}
    for name, values in plain.items():
        constants[name] = columns.keep(name, values)
    del plain
    account_type, type_row = _account_attribute(parts, "type", order, w_acc, first_of_account)
    organization, org_row = _account_attribute(parts, "org", order, w_acc, first_of_account)
    moved = _moved_attributes(
        (type_row, org_row), w_day, first_of_account, baseline_days, first_day, prior
    )
    del type_row, org_row
    if prior is not None:
        account_type = history.attribute(prior, "type", account_type)
        organization = history.attribute(prior, "org", organization)
    peer_group = pd.factorize(account_type)[0].astype(np.int64) + 1  # 0 = unknown type
    eligible = _eligible_day(w_day, w_acc, history_days >= NOVELTY_MIN_HISTORY, n_acc, prior)
    able = _able(peer_group, eligible, n_days)
    for feature in PEER_NOVELTY.values():  # written below, while the baselines are computed
        constants[feature] = columns[feature]
    for _, name in RARE_NOVELTY:  # likewise
        sums[name] = columns[name]
    # The volumes of every window (baselines read them); derived in their columns below.
    volumes = window_features(sums, constants, columns.rows if out is None else None)
    # Baseline matrices have a column per day that holds events, not per calendar day:
    # a log with a far-off stray day must not span decades of empty columns.
    present, w_col = _day_columns(w_day)
    only = accumulated = None
    if baseline_days is not None:
        only = np.flatnonzero(in_days(present, wanted_days))
        # The sums over days also need the baselines of the days they look back over.
        earliest = present[only].min() - accumulation.HORIZON_DAYS if len(only) else 0
        accumulated = np.flatnonzero(present >= earliest)
    terms = None
    if carry:  # the accumulation's terms: the state's, and those kept for it
        stored = (
            None
            if moved
            else _stored_terms(
                judged, parts, (present, only, accumulated), first_day, accounts, has_caseload_data
            )
        )
        terms = _Terms(accumulated, stored, int(present[-1]) - accumulation.HORIZON_DAYS)
    if terms is not None and terms.stored is not None:  # own statistics of the scored days only
        accumulated = only
    org_group = pd.factorize(organization)[0].astype(np.int64)  # -1: no structure
    cells = w_acc * len(present) + w_col  # each window's cell of the (account x day) matrices
    for name in BASELINE_CONSTANTS:
        constants[name] = columns[name]
    # One volume per thread: the time is in numpy's sorts, which release the GIL. The
    # accumulations, whose (account x day) temporaries are the largest, take turns.
    one_at_a_time = threading.Lock()
    with ThreadPoolExecutor(max_workers=min(len(BASELINED_VOLUMES), _cores()) or 1) as pool:
        done = [
            pool.submit(
                _volume_baselines,
                columns,
                volume,
                volumes[volume],
                (w_acc, w_col, cells),
                present,
                (peer_group, org_group),
                accumulated if volume in accumulation.CUSUM_VOLUMES else only,
                only,
                one_at_a_time,
                out,
                terms if volume in accumulation.CUSUM_VOLUMES else None,
            )
            # The volumes that also accumulate take longest: first.
            for volume in sorted(
                BASELINED_VOLUMES, key=lambda v: v not in accumulation.CUSUM_VOLUMES
            )
        ]
        for column, name in NOVELTY:
            if name not in BASELINED_VOLUMES:
                counts, novel[column] = _some_novelty(
                    parts,
                    (column, name),
                    accounts,
                    window_keys,
                    (first_day, n_days),
                    has_history,
                    order,
                    release,
                )
                sums[name] = columns.keep(name, counts)  # every window's: peer shares read them
                del counts
        for name, feature in PEER_NOVELTY.items():
            columns.put(feature, _peer_share(sums[name] >= 1, w_acc, w_day, peer_group, able))
        for column, name in RARE_NOVELTY:
            found = novel.get(column)
            if found is None or found.pairs is None:
                columns[name][:] = 0.0
                continue
            counts, novel[f"{column}~rare"] = _rare(found, n_win, peer_group, able, n_days)
            columns.put(name, counts)
        for found in novel.values():
            found.pairs = None  # only rarity reads every first use
        for future in done:
            future.result()
    del done, volumes, history_days, has_history, window_keys, cells
    found = None if terms is None else _judged(terms, accounts, first_day, has_caseload_data)
    del terms
    # The held windows' instants: the last the table reads of the partitions' windows.
    instants = {
        name: _ordered(parts, name, order, np.int64)
        if out is None
        else _stacked_column(parts, name, order[out], np.int64)
        for name in INSTANTS
    }
    if release:  # the partitions' windows, and what the baselines freed, gone before the table
        for part in parts:
            part.windows = part.windows.iloc[:0].copy(deep=True)
        _give_back()
    carried = {}
    for name in CARRIED if carry else ():  # every window's, in the stacked windows' order
        carried[name] = np.empty(n_win)
        carried[name][order] = sums[name]

    if found_rare is not None:
        rare, rare_events, totals = found_rare.result()
        beside.shutdown()
        columns["rare_hour_events"][:] = rare_events
    if out is not None:  # features are derived for the windows held only
        sums, constants = (
            {n: columns[n] if n in columns.rows else v[out] for n, v in d.items()}
            for d in (sums, constants)
        )
        novel = {key: _held(found, out, n_win) for key, found in novel.items()}
    for name, values in derive(sums, constants, columns.rows).items():
        if name in columns.rows:
            columns.put(name, values)  # nothing to do: every feature was made in its column
    del sums, constants
    w_acc, w_col, w_day, order = w_acc[held], w_col[held], w_day[held], order[held]
    table = _frame(
        {
            "account_id": _text_per_window(np.asarray(accounts.astype(str)), w_acc),
            "account_type": _text_per_window(account_type, w_acc),
            "organization_id": _text_per_window(organization, w_acc),
            "day": np.array(pd.to_datetime((present + first_day) * DAY_NS).date)[w_col],
            **{name: _utc(instants.pop(name)) for name in INSTANTS},
        },
        columns,
        # Accounts numbered among those the table holds (FeatureTable.rows_of).
        {"_peer_group": peer_group[w_acc], "_account": _dense(w_acc), "_day": w_day},
    )
    return FeatureTable(
        table,
        timezone,
        notices,
        has_caseload_data,
        rare,
        novel,
        first_day=first_day,
        caseloads=caseloads,
        internal=Internal(INTERNAL_COLUMNS, columns.internal),
        accounts=n_acc,
        carried=carried,
        judged=found,
        hours=None if totals is None else Hours(n_days - 1 + first_day, accounts, totals),
    )


def _moved_attributes(
    rows: tuple[np.ndarray, ...],
    w_day: np.ndarray,
    first_of_account: np.ndarray,
    baseline_days: set[int] | None,
    first_day: int,
    prior: history.Prior | None,
) -> bool:
    """Whether an account's type or structure, missing on the stored days, comes from a
    scored day's window (its peer groups on the stored days then change with it: the
    stored accumulation terms cannot stand). ``rows``: the table row each came from."""
    if baseline_days is None or not len(w_day):
        return False
    since = min(baseline_days, default=first_day) - first_day
    stored = w_day[np.minimum(first_of_account, len(w_day) - 1)] < since
    for name, row in zip(history.ATTRIBUTES, rows, strict=True):
        moved = stored & (w_day[row] >= since)
        if prior is not None:  # a value of pruned days stands before every kept one
            first, any_value = prior.attributes[name]
            moved &= ~(prior.present & (pd.notna(first) | pd.notna(any_value)))
        if moved.any():
            return True
    return False


def _stored_hours(
    hours: Hours | None,
    parts: Sequence[Aggregates],
    baseline_days: set[int] | None,
    first_day: int,
    accounts: pd.Index,
) -> tuple[np.ndarray, int] | None:
    """The state's summed hours aligned on ``accounts``, with the day index they end before;
    None unless the table holds scored days only (``baseline_days``), the first part is
    the state's history and every other part's days (the scored ones) are on or after
    that day (a re-delivered earlier day changes what came before later days)."""
    if hours is None or baseline_days is None or len(parts) < 2:
        return None
    if any(int(p.windows["day"].min()) < hours.before for p in parts[1:] if len(p.windows)):
        return None
    if min(baseline_days, default=hours.before) < hours.before:
        return None
    totals = np.zeros((len(accounts), 24), dtype=np.int64)
    row = lookup(hours.accounts, pa.array(accounts.astype(str), pa.string()))
    known = row >= 0
    totals[row[known]] = hours.counts[known]
    if not known.all():  # an account the stored windows do not hold: not the state's hours
        return None
    return totals, hours.before - first_day


def _stored_terms(
    judged: Judged | None,
    parts: Sequence[Aggregates],
    columns: tuple[np.ndarray, np.ndarray | None, np.ndarray | None],
    first_day: int,
    accounts: pd.Index,
    has_caseload_data: bool,
) -> dict[str, list[np.ndarray]] | None:
    """Per accumulated volume, the state's (centre, scale, shift) as (accounts x the
    ``accumulated`` columns) arrays, the scored ones left to fill; None when they cannot
    stand: a table of scored days whose parts all come after the stored ones (the first
    part, a state's history: a re-delivered earlier day changes later days' terms), the
    same caseload knowledge, and every stored day looked back over covered."""
    present, only, accumulated = columns
    if judged is None or only is None or judged.caseloads != has_caseload_data:
        return None
    if len(parts) < 2 or not len(parts[0].windows):
        return None
    last = int(parts[0].windows["day"].max())
    if min(int(p.windows["day"].min()) for p in parts[1:]) <= last:
        return None
    back = np.setdiff1d(accumulated, only)
    if not np.isin(present[back] + first_day, judged.days).all():
        return None
    frame = judged.frame
    day = frame["day"].to_numpy().astype(np.int64) - first_day
    column = np.minimum(np.searchsorted(present, day), len(present) - 1)  # of ``present``
    wanted = (present[column] == day) & np.isin(column, back)
    column = _compact_columns(accumulated, len(present))[column]  # of ``accumulated``
    account = lookup(frame["account_id"], pa.array(accounts.astype(str), pa.string()))
    rows = np.flatnonzero(wanted & (account >= 0))
    cells = account[rows] * len(accumulated) + column[rows]
    stored = {}
    for volume in accumulation.CUSUM_VOLUMES:
        arrays = []
        for stat, empty in (("centre", np.nan), ("scale", np.nan), ("shift", 0.0)):
            values = np.full((len(accounts), len(accumulated)), empty)
            values.reshape(-1)[cells] = frame[f"{stat}_{volume}"].to_numpy()[rows]
            arrays.append(values)
        stored[volume] = arrays
    return stored


def _judged(
    terms: _Terms, accounts: pd.Index, first_day: int, has_caseload_data: bool
) -> Judged | None:
    """The accumulation's terms kept for the state (:class:`Judged`): a row per account active
    on a day with a reference or a shift that day.

    The sums read a day's terms only where the account was active (an inactive day adds
    nothing, and a reference kept while a sum is under way is that of the active day the
    excess began), so the other cells are left out, and the rows do not depend on which
    run worked them out.
    """
    if not terms.found or terms.days is None:
        return None
    found = [terms.found.pop(volume) for volume in accumulation.CUSUM_VOLUMES]
    informative = np.zeros(found[0][0].shape, dtype=bool)
    for centre, scale, shift, active in found:
        informative |= active & (~np.isnan(centre) | ~np.isnan(scale) | (shift != 0))
    column, account = np.nonzero(informative.T)  # day by day
    frame = {
        "account_id": pc.take(pa.array(accounts.astype(str), pa.string()), pa.array(account)),
        "day": pa.array((terms.days[column] + first_day).astype(np.int32)),
    }
    for volume, arrays in zip(accumulation.CUSUM_VOLUMES, found, strict=True):
        for stat, values in zip(("centre", "scale", "shift"), arrays[:3], strict=True):
            frame[f"{stat}_{volume}"] = pa.array(values[account, column])
    return Judged(terms.days + first_day, pa.table(frame), has_caseload_data)


def _day_columns(w_day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the days that hold windows, ascending; each window's column among them): what
    np.unique(w_day, return_inverse=True) gives, by counting (days are small numbers)."""
    if not len(w_day):
        return w_day, w_day
    low = int(w_day.min())  # a day before a state's first day is negative
    held = np.bincount(w_day - low) > 0
    column = np.cumsum(held) - 1
    return np.flatnonzero(held) + low, column[w_day - low]


def _no_internal(n_rows: int) -> Internal:
    return Internal(list(INTERNAL_COLUMNS), np.full((len(INTERNAL_COLUMNS), n_rows), np.nan))


def _dense(codes: np.ndarray) -> np.ndarray:
    """Ascending codes renumbered 0, 1, 2... in order (the same when already so)."""
    if not len(codes):
        return codes
    return np.cumsum(np.r_[0, codes[1:] != codes[:-1]]).astype(codes.dtype)


def _held(found: Novel, out: np.ndarray, n_win: int) -> Novel:
    """``found`` with windows numbered as rows of a table holding the windows ``out``."""
    row = np.full(n_win, -1, dtype=np.int64)
    row[out] = np.arange(len(out))
    at = row[found.window]
    kept = at >= 0
    return Novel(at[kept], pc.filter(found.values, pa.array(kept)))


def _utc(nanoseconds: np.ndarray) -> pd.DatetimeIndex:
    """Instants (int64 ns since the epoch) as UTC times, without a per-value parse."""
    return pd.DatetimeIndex(nanoseconds.view("datetime64[ns]")).tz_localize("UTC")


# pandas' own type for text columns: Arrow-backed ``str`` from pandas 3, object before.
_TEXT = pd.Series(["text"]).dtype


def _text_per_window(per_account: np.ndarray, w_acc: np.ndarray) -> Any:
    """A text key column of the table from one value per account (missing: None or NaN).

    Gathered in Arrow when pandas keeps text in Arrow: a gather of millions of Python
    string references, which pandas then copies into Arrow, took 0.65 s and 110 MB
    more per column at 2.7M windows (the 100M run's peak was there)."""
    if not (isinstance(_TEXT, pd.StringDtype) and _TEXT.storage == "pyarrow"):
        return per_account[w_acc]
    values = pa.array(per_account, type=pa.string(), from_pandas=True)
    return pd.array(values.take(pa.array(w_acc)), dtype=_TEXT)


def _frame(
    keys: dict[str, Any], columns: _Columns, integers: dict[str, np.ndarray]
) -> pd.DataFrame:
    """The table: window keys, the float block (not copied), then integer columns."""
    table = pd.DataFrame(columns.block.T, columns=columns.names, copy=False)
    for position, (name, values) in enumerate(keys.items()):
        table.insert(position, name, values)
    for name, values in integers.items():
        table[name] = values
    return table


def _eligible_day(
    w_day: np.ndarray,
    w_acc: np.ndarray,
    has_history: np.ndarray,
    n_acc: int,
    prior: history.Prior | None,
) -> np.ndarray:
    """Per account: the first day on which a value can be new to it (NOVELTY_MIN_HISTORY
    earlier active days), a huge number when it never has that much history.

    An account that had that much history on days pruned from a state was
    eligible before every stored day.
    """
    eligible = np.full(n_acc, np.iinfo(np.int64).max // 4, dtype=np.int64)
    rows = np.flatnonzero(has_history)[::-1]
    eligible[w_acc[rows]] = w_day[rows]  # written last = the account's earliest such window
    if prior is not None:
        eligible[prior.days >= NOVELTY_MIN_HISTORY] = np.iinfo(np.int64).min // 4
    return eligible


def _able(peer_group: np.ndarray, eligible: np.ndarray, n_days: int) -> np.ndarray:
    """(groups * days): accounts of each type able to see novelty on each day."""
    groups = int(peer_group.max()) + 1 if len(peer_group) else 1
    able = np.zeros(groups * n_days)
    for group in range(groups):  # a handful of account types
        days = np.sort(eligible[peer_group == group])
        able[group * n_days : (group + 1) * n_days] = np.searchsorted(
            days, np.arange(n_days), side="right"
        )
    return able


def _peer_share(
    new: np.ndarray, w_acc: np.ndarray, w_day: np.ndarray, peer_group: np.ndarray, able: np.ndarray
) -> np.ndarray:
    """Per window: the share of the account type's accounts that can see novelty that day
    and saw some (a new address or client) that day or the NOVELTY_SPREAD_DAYS - 1
    days before, inactive ones counted; 0 under MIN_NOVELTY_PEERS.

    The denominator is fixed for the day and the numerator only grows during it,
    so the whole day's share is never below what was known at any instant of it.
    """
    n_days = int(w_day.max()) + 1 if len(w_day) else 1
    groups = int(peer_group.max()) + 1 if len(peer_group) else 1
    cell = peer_group[w_acc] * n_days + w_day
    daily = np.bincount(cell[new], minlength=groups * n_days).reshape(groups, n_days)
    total = np.cumsum(daily, axis=1)
    earlier = np.zeros_like(total)
    earlier[:, NOVELTY_SPREAD_DAYS:] = total[:, :-NOVELTY_SPREAD_DAYS]
    seen = (total - earlier).reshape(-1).astype(np.float64)  # an account may count twice: capped
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(able >= MIN_NOVELTY_PEERS, np.minimum(seen / able, 1.0), 0.0)
    return share[cell]


def _calendar(
    day: np.ndarray, arrived: np.ndarray, first_row: np.ndarray, dropped: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Days off (:mod:`detector.features.calendar`): this one, those the account worked
    before (windows are ordered by account then day; ``dropped``: those worked on days
    pruned from a state), those it could have worked."""
    off = calendar.off_days(day)
    worked = np.cumsum(off) - off  # off days worked in all earlier rows
    worked = worked - (worked[first_row] if len(first_row) else 0)  # ... of the same account
    if dropped is not None:
        worked = worked + dropped
    origin = int(min(day.min(), arrived.min())) if len(day) else 0
    could = calendar.off_days_before(day, origin) - calendar.off_days_before(arrived, origin)
    return {
        "off_day": off.astype(np.float64),
        "own_off_days_worked": worked.astype(np.float64),
        "off_days_since_first_seen": could.astype(np.float64),
    }


def _empty_table(timezone: str, notices: list[str], has_caseload_data: bool) -> FeatureTable:
    columns = {name: pd.Series(dtype=np.float64) for name in FEATURES}
    table = pd.DataFrame(
        {
            "account_id": pd.Series(dtype=object),
            "account_type": pd.Series(dtype=object),
            "organization_id": pd.Series(dtype=object),
            "day": pd.Series(dtype=object),
            "window_start": pd.Series(dtype="datetime64[ns, UTC]"),
            "window_end": pd.Series(dtype="datetime64[ns, UTC]"),
            **columns,
            "_peer_group": pd.Series(dtype=np.int64),
            "_account": pd.Series(dtype=np.int64),
            "_day": pd.Series(dtype=np.int64),
        }
    )
    return FeatureTable(table, timezone, notices, has_caseload_data)


def build_feature_table(
    log: EventLog, caseloads: pd.DataFrame | None = None, timezone: str = DEFAULT_TIMEZONE
) -> FeatureTable:
    """The feature table of a validated log in memory (one row per account and local day).

    The same partitioned path as a Parquet log: the events are cut into whole
    local days and each partition goes through the kernel.
    """
    from detector.engine.local import build_features  # the engine imports this module
    from detector.engine.sources import FrameSource

    return build_features(FrameSource(log, timezone), caseloads, timezone, workers=1)


def _gather(row: np.ndarray, matrix: np.ndarray, cells: np.ndarray, known: np.ndarray) -> None:
    """``row`` = each window's cell of ``matrix``, NaN where not ``known``."""
    np.take(matrix.reshape(-1), cells, out=row)
    row[~known] = np.nan


def _volume_baselines(
    columns: _Columns,
    volume: str,
    values: np.ndarray,
    windows: tuple[np.ndarray, np.ndarray, np.ndarray],
    days: np.ndarray,
    groups: tuple[np.ndarray, np.ndarray],
    columns_computed: np.ndarray | None,
    scored: np.ndarray | None,
    lock: threading.Lock,
    out: np.ndarray | None = None,
    terms: _Terms | None = None,
) -> None:
    """One volume's baselines and, for the volumes that accumulate, the CUSUM's terms
    (one task of the pool). ``columns_computed``: the day columns whose own baselines are
    computed (None: all); ``scored``: those whose peer baselines and sums are; ``out``: the
    windows the table holds (None: every window), which lie in the ``scored`` columns;
    ``terms``: the accumulation's stored terms, and where its new ones are kept."""
    w_acc, w_col, _ = windows
    peer_group, org_group = groups
    cusum = volume in accumulation.CUSUM_VOLUMES
    n_acc = len(peer_group)  # every account, by code
    computed = np.arange(len(days)) if columns_computed is None else columns_computed
    own = _add_baselines(
        columns, volume, values, windows, days, n_acc, peer_group, (computed, scored), cusum, out
    )
    if own is not None:
        with lock:
            _add_accumulation(
                columns,
                volume,
                values,
                (w_acc, w_col, days),
                (own, computed),
                (peer_group, org_group),
                scored,
                out,
                terms,
            )


def _compact_columns(targets: np.ndarray, n_columns: int) -> np.ndarray:
    """Per day column: its position among ``targets`` (ascending), -1 when not one."""
    position = np.full(n_columns, -1, dtype=np.int64)
    position[targets] = np.arange(len(targets))
    return position


def _add_baselines(
    columns: _Columns,
    volume: str,
    values: np.ndarray,
    windows: tuple[np.ndarray, np.ndarray, np.ndarray],
    days: np.ndarray,
    n_acc: int,
    peer_group: np.ndarray,
    only: tuple[np.ndarray, np.ndarray | None],
    keep: bool = False,
    out: np.ndarray | None = None,
) -> dict[str, np.ndarray] | None:
    """Own and peer statistics of one volume, from earlier days only, written into
    their columns; the own statistics returned when ``keep`` (for the accumulation).

    ``windows``: each window's account, column of ``days`` (the days since the first
    that hold events) and cell of the (account x day) matrix; ``only``: the columns
    whose own statistics are computed (the results' columns, in that order) and those
    whose peer statistics are (None: all); ``out``: the windows whose columns are
    written (None: all), which lie in both.
    """
    w_acc, w_col, cells = windows
    targets, peer_only = only
    # float32: exact for counts below 16 million, and sorts twice as fast as float64.
    matrix = np.full((n_acc, max(len(days), 1)), np.nan, dtype=np.float32)
    matrix.reshape(-1)[cells] = values
    share = FEATURES[volume].unit == "share"
    if out is not None:
        w_acc, w_col, cells = w_acc[out], w_col[out], cells[out]
    everything = len(targets) == len(days)
    own = (
        baselines.own_stats(matrix, days)
        if everything
        else baselines.own_stats_at(matrix, targets, days)
    )
    own_cells = (
        cells if everything else w_acc * len(targets) + _compact_columns(targets, len(days))[w_col]
    )
    enough = np.take(own["count"].reshape(-1), own_cells) >= baselines.MIN_OWN_WINDOWS
    _gather(columns[baseline_name(OWN_MEDIAN, volume)], own["median"], own_cells, enough)
    _gather(columns[baseline_name(OWN_MAX, volume)], own["max"], own_cells, enough)
    # Scales cell by cell, then gathered: the same numbers as window by window.
    scale = baselines.robust_scale(own["median"], own["q25"], own["q75"], share)
    _gather(columns[baseline_name(OWN_SCALE, volume)], scale, own_cells, enough)
    del scale
    if not keep:
        own = None

    peers = baselines.peer_stats(matrix, peer_group, days, peer_only)
    del matrix
    group_cells = peer_group[w_acc] * peers["count"].shape[1] + w_col
    enough = np.take(peers["count"].reshape(-1), group_cells) >= baselines.MIN_PEER_WINDOWS
    _gather(columns[baseline_name(PEER_MEDIAN, volume)], peers["median"], group_cells, enough)
    _gather(columns[baseline_name(PEER_P95, volume)], peers["p95"], group_cells, enough)
    scale = baselines.robust_scale(peers["median"], peers["q25"], peers["q75"], share)
    _gather(columns[baseline_name(PEER_SCALE, volume)], scale, group_cells, enough)
    return own


@dataclass
class _Terms:
    """The accumulation's terms (reference, same-day shift) across its volumes: those a state
    carries, and those worked out now that the state keeps for the next night."""

    columns: np.ndarray  # the day columns the sums look back over, ascending
    stored: dict[str, list[np.ndarray]] | None  # per volume: centre, scale, shift of ``columns``
    since: int  # the first day (index) whose terms are kept
    days: np.ndarray | None = None  # the day indices kept
    found: dict[str, list[np.ndarray]] = field(default_factory=dict)  # per volume, those days'


def _judge(
    matrix: np.ndarray, own: dict[str, np.ndarray], groups: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, scale, same-day shift) of each (account, day column) of ``matrix`` (volumes,
    NaN where inactive) from the own statistics of those columns."""
    peer_group, org_group = groups
    enough = own["count"] >= baselines.MIN_OWN_WINDOWS
    own_scale = np.where(
        enough, baselines.robust_scale(own["median"], own["q25"], own["q75"]), np.nan
    )
    # Every judged account on every day, an inactive day being a day of zero volume.
    with np.errstate(divide="ignore", invalid="ignore"):
        z_all = (np.where(np.isnan(matrix), 0.0, matrix) - own["median"]) / own_scale
    shift = np.fmax(
        accumulation.same_day_shift(z_all, org_group),
        accumulation.same_day_shift(z_all, peer_group),
    )
    del z_all
    centre, scale = accumulation.reference(
        own["median"], accumulation.own_scale(own["median"], own_scale, own["count"])
    )
    return centre, scale, shift


def _add_accumulation(
    columns: _Columns,
    volume: str,
    values: np.ndarray,
    windows: tuple[np.ndarray, np.ndarray, np.ndarray],
    own: tuple[dict[str, np.ndarray], np.ndarray],
    groups: tuple[np.ndarray, np.ndarray],
    only: np.ndarray | None,
    out: np.ndarray | None = None,
    terms: _Terms | None = None,
) -> None:
    """The CUSUM's sum before each window and the window's same-day shift
    (:mod:`detector.features.accumulation`), from the (account x day) baselines.

    ``own``: the own statistics of the day columns given beside them (every day the
    sums of the ``only`` columns look back over: a run with a state scores a day or two
    of many stored ones; or, when ``terms`` holds the stored days' terms, the scored days
    alone); everything here is worked out on those columns alone. ``terms``: the state's
    terms of the other days, and where the terms worked out now are kept.
    """
    w_acc, w_col, days = windows
    own, targets = own
    carried = terms is not None and terms.stored is not None
    looked = terms.columns if carried else targets
    n_acc, n_cols = own["median"].shape[0], len(looked)
    compact = _compact_columns(looked, len(days))
    col = compact[w_col]
    cells = w_acc * n_cols + col
    matrix = np.full((n_acc, n_cols), np.nan)
    inside = col >= 0
    matrix.reshape(-1)[cells[inside]] = values[inside]
    computed = compact[targets]
    found = _judge(matrix if not carried else matrix[:, computed], own, groups)
    if carried:  # the stored days' terms, and the scored days' worked out now
        centre, scale, shift = terms.stored.pop(volume)
        for whole, now in zip((centre, scale, shift), found, strict=True):
            whole[:, computed] = now
    else:
        centre, scale, shift = found
    if terms is not None:  # kept for the state: the days the next night may look back over
        kept = days[targets] >= terms.since
        terms.days = days[targets][kept]
        active = ~np.isnan(matrix[:, computed[kept]])
        terms.found[volume] = [*(a[:, kept] for a in found), active]
    del found
    chosen = np.arange(n_cols) if only is None else compact[only]
    before, kept_centre, kept_scale = accumulation.sums_before(
        matrix, centre, scale, shift, days[looked], chosen
    )
    # The day's own reference, unless an excess under way keeps the one from before it.
    day_centre, day_scale = accumulation.frozen(
        before, centre[:, chosen], scale[:, chosen], (kept_centre, kept_scale)
    )
    if out is not None:  # the windows whose columns are written (in the `only` columns)
        cells = cells[out]
    everywhere = np.ones(len(cells), dtype=bool)
    for name, result in (
        ("_cusum_prev", before),
        ("_cusum_centre", day_centre),
        ("_cusum_scale", day_scale),
    ):
        full = np.full((n_acc, n_cols), np.nan)
        full[:, chosen] = result
        _gather(columns[f"{name}_{volume}"], full, cells, everywhere)
    _gather(columns[f"_shift_{volume}"], shift, cells, everywhere)
