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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from detector.features import accumulation, baselines, calendar, history
from detector.features.catalogue import BASELINED_VOLUMES, FEATURES
from detector.features.derive import BASELINE_CONSTANTS, SUMS, WINDOW_CONSTANTS, derive
from detector.features.kernel import (
    DAY_NS,
    NOVELTY,
    Aggregates,
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
PEER_NOVELTY = {"new_addresses": "peer_new_addresses_share", "new_clients": "peer_new_clients_share"}
_DENSE_WINDOW_KEYS = 50_000_000  # accounts x days up to which windows are found by a gather
KEYS = ["account_id", "account_type", "organization_id", "day", "window_start", "window_end"]


@dataclass
class Novel:
    """Values of one column first used by an account in a window (history permitting)."""

    window: np.ndarray  # row of the feature table
    values: pa.Array  # the value (string), one per row of ``window``
    pairs: Any = None  # (account, value code, first day, judged) of every first use


@dataclass
class FeatureTable:
    """The feature table and what the replay behind ``detected_at`` needs from other days."""

    table: pd.DataFrame  # window keys, catalogue features, internal `_` columns
    timezone: str
    notices: list[str] = field(default_factory=list)
    has_caseload_data: bool = True
    rare_hours: np.ndarray = field(default_factory=lambda: np.zeros((0, 24), bool))
    novel: dict[str, Novel] = field(default_factory=dict)
    first_day: int = 0  # local day number of day index 0
    source: Any = None  # where the replay re-reads windows' events (detector.engine.sources)
    caseloads: pd.DataFrame | None = None  # the broadcast table the kernel used
    out_mode: str | None = "caseloads"  # how out-of-caseload reads were known
    rejects: pd.DataFrame = field(default_factory=pd.DataFrame)  # rows set aside, with reasons
    n_events: int = 0  # events the table was built from
    links: pd.DataFrame = field(default_factory=pd.DataFrame)  # creator, target, timestamp

    @property
    def features(self) -> pd.DataFrame:
        """Only the window keys and the catalogue's features (what users look at)."""
        return self.table[KEYS + list(FEATURES)]

    def rows_of(self, accounts: np.ndarray, days: np.ndarray) -> np.ndarray:
        """Rows of the given (account_id, local day number) windows (-1 when absent)."""
        account = lookup(accounts, self.table["account_id"].to_numpy()[self._account_starts()])
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


def _first_per_key(keys: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys and each one's smallest day.

    Partitions come in time order, so days usually never decrease: then the
    first occurrence of a key (one hashing pass) is its first day.
    """
    if len(day) > 1 and not (day[1:] >= day[:-1]).all():
        order = np.argsort(day, kind="stable")
        keys, day = keys[order], day[order]
    first = ~pd.Series(keys).duplicated(keep="first").to_numpy()
    return keys[first], day[first]


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
    hours: np.ndarray, first_of_account: np.ndarray, dropped: np.ndarray | None = None
) -> np.ndarray:
    """(windows x 24): local hours which, with their two neighbours, hold < 1 % of the
    account's earlier events (working half an hour late is not rare; 3 a.m. is).

    ``dropped``: (windows x 24) the account's hours of days pruned from a state.
    """
    before = np.cumsum(hours, axis=0, dtype=np.int64) - hours  # all earlier windows
    before = before - before[first_of_account]  # the same account's only
    if dropped is not None:
        before = before + dropped
    around = before + np.roll(before, 1, axis=1) + np.roll(before, -1, axis=1)
    history_events = before.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = around / history_events[:, None]
    return (history_events >= RARE_HOUR_MIN_HISTORY)[:, None] & (share < RARE_HOUR_SHARE)


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
    value, dictionary = _codes([t["value"] for t in tables])
    n_values = len(dictionary)
    day = np.concatenate([t["day"].to_numpy() for t in tables]).astype(np.int64) - first_day
    keys, first = _first_per_key(account * n_values + value, day)
    wanted = keys // n_values * n_days + first
    window = _rows_of_keys(window_keys, wanted)
    # A pair first seen on a day pruned from a state has no window of its own: not new.
    new = has_history[window] & (window_keys[window] == wanted)
    counts = np.bincount(window[new], minlength=n_win).astype(np.float64)
    values = pc.take(dictionary, pa.array(keys[new] % n_values))
    novel = Novel(window[new], values)
    # For rarity among peers; an account with no stored window (all its days pruned)
    # has no known peer group, and is left out.
    known = keys >= 0
    novel.pairs = (keys[known] // n_values, keys[known] % n_values, first[known], new[known])
    return counts, novel


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
    group_value = peer_group[account] * n_values + value
    users = _users_by_then(group_value, first, n_days)
    threshold = np.maximum(COMMON_MIN, COMMON_SHARE * able[peer_group[account] * n_days + first])
    rare = (users < threshold)[new]
    counts = np.bincount(novel.window[rare], minlength=n_win).astype(np.float64)
    return counts, Novel(novel.window[rare], pc.filter(novel.values, pa.array(rare)))


def _users_by_then(group_value: np.ndarray, first: np.ndarray, n_days: int) -> np.ndarray:
    """Per (account, value) pair: how many pairs of the same (peer group, value) were
    first seen on its first day or before, itself included.

    One sort, then run boundaries: binary searches of ten million random keys
    cost seconds (cache misses), a sort a fraction of that.
    """
    key = group_value * (n_days + 1) + first
    order = np.argsort(key)  # the order among equal keys does not matter
    ordered = key[order]
    position = np.arange(len(key))
    same_as_next = np.append(ordered[1:] == ordered[:-1], False)
    # Exclusive end of each run of equal keys, read back from the run's last element.
    end = np.where(same_as_next, len(key), position + 1)
    end = np.minimum.accumulate(end[::-1])[::-1]
    group = ordered // (n_days + 1)
    new_group = np.append(True, group[1:] != group[:-1])
    start = np.maximum.accumulate(np.where(new_group, position, 0))
    users = np.empty(len(key), dtype=np.int64)
    users[order] = end - start
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
    windows: pd.DataFrame, name: str, first_of_account: np.ndarray
) -> np.ndarray:
    """Each account's type or structure: its first event's, else its first non-missing one."""
    first = windows[f"_{name}_first"].to_numpy(dtype=object)
    any_value = windows[f"_{name}_any"].to_numpy(dtype=object)
    value = first[first_of_account].copy()
    missing = np.flatnonzero(pd.isna(value))
    if len(missing):  # rare: look further, for those accounts only
        account = windows["_account"].to_numpy()
        present = np.flatnonzero(pd.notna(any_value))
        later = present[np.isin(account[present], missing)]
        found = pd.Series(later).groupby(account[later]).first()
        value[found.index.to_numpy()] = any_value[found.to_numpy()]
    return value


def assemble(
    parts: Sequence[Aggregates],
    caseloads: pd.DataFrame | None,
    timezone: str,
    notices: list[str] | None = None,
    has_caseload_data: bool = True,
    first_day: int | None = None,
    baseline_days: set[int] | None = None,
    summary: pd.DataFrame | None = None,
) -> FeatureTable:
    """The feature table of a log from its partitions' aggregates.

    With ``baseline_days`` (local day numbers), baselines are computed for
    those days only (the days a run with saved state scores); the other
    windows keep NaN baselines. ``summary``: what a pruned state keeps of its
    dropped days (:mod:`detector.features.history`), read wherever the whole
    past of an account counts.
    """
    parts = [p for p in parts if len(p.windows)]
    notices = list(notices or [])
    if not parts:
        return _empty_table(timezone, notices, has_caseload_data)
    windows = pd.concat([p.windows for p in parts], ignore_index=True)
    hours = np.concatenate([p.hours for p in parts])
    account_codes, accounts = pd.factorize(windows["account_id"], sort=True)
    order = np.lexsort((windows["day"].to_numpy(), account_codes))
    windows = windows.iloc[order].reset_index(drop=True)
    hours = hours[order]
    w_acc = account_codes[order].astype(np.int64)
    windows["_account"] = w_acc
    first_day = int(windows["day"].min()) if first_day is None else first_day
    w_day = windows["day"].to_numpy().astype(np.int64) - first_day
    windows["_day"] = w_day
    n_win, n_acc, n_days = len(windows), len(accounts), int(w_day.max()) + 1
    window_keys = w_acc * n_days + w_day

    first_of_account = np.full(n_acc, n_win, dtype=np.int64)
    first_of_account[w_acc[::-1]] = np.arange(n_win)[::-1]
    history_days = np.arange(n_win) - first_of_account[w_acc]
    prior = None if summary is None else history.align(summary, accounts, first_day)
    if prior is not None:
        history_days = history_days + prior.days[w_acc]

    sums = {name: windows[name].to_numpy(dtype=np.float64) for name in windows if name in SUMS}
    sums["peak_hourly_records"] = windows["peak_hourly_records"].to_numpy(dtype=np.float64)
    rare = _rare_hours(
        hours, first_of_account[w_acc], None if prior is None else prior.hours[w_acc]
    )
    sums["rare_hour_events"] = (hours * rare).sum(axis=1).astype(np.float64)
    novel = {}
    for column, name in NOVELTY:
        sums[name], novel[column] = _novelty(
            parts,
            column,
            accounts,
            window_keys,
            first_day,
            n_days,
            history_days >= NOVELTY_MIN_HISTORY,
        )
    if not has_caseload_data:
        sums["out_of_caseload_reads"] = np.full(n_win, np.nan)

    created = np.full(n_acc, np.iinfo(np.int64).max)
    made = pa.concat_tables([p.created for p in parts], promote_options="permissive")
    made_acc = lookup(made["account_id"], pa.array(accounts.astype(str), pa.string()))
    made_day = made["day"].to_numpy().astype(np.int64) - first_day
    np.minimum.at(created, made_acc[made_acc >= 0], made_day[made_acc >= 0])
    first_seen = np.minimum(w_day[np.minimum(first_of_account, n_win - 1)], created)
    if prior is not None:
        first_seen = np.minimum(first_seen, prior.first_day)
    caseload_size = np.zeros(n_acc)
    if caseloads is not None:
        owned = lookup(caseloads["account_id"], accounts)
        caseload_size = np.bincount(owned[owned >= 0], minlength=n_acc).astype(np.float64)
    constants: dict[str, np.ndarray] = {
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
    account_type = _account_attribute(windows, "type", first_of_account)
    organization = _account_attribute(windows, "org", first_of_account)
    if prior is not None:
        account_type = history.attribute(prior, "type", account_type)
        organization = history.attribute(prior, "org", organization)
    peer_group = pd.factorize(account_type)[0].astype(np.int64) + 1  # 0 = unknown type
    eligible = _eligible_day(
        w_day, w_acc, history_days >= NOVELTY_MIN_HISTORY, n_acc, prior
    )
    able = _able(peer_group, eligible, n_days)
    for name, feature in PEER_NOVELTY.items():
        constants[feature] = _peer_share(sums[name] >= 1, w_acc, w_day, peer_group, able)
    for column, name in RARE_NOVELTY:
        found = novel.get(column)
        if found is None or found.pairs is None:
            sums[name] = np.zeros(n_win)
            continue
        sums[name], novel[f"{column}~rare"] = _rare(found, n_win, peer_group, able, n_days)
    volumes = derive(sums, {**constants, **_nan_baselines(n_win)})
    # Baseline matrices have a column per day that holds events, not per calendar day:
    # a log with a far-off stray day must not span decades of empty columns.
    present, w_col = np.unique(w_day, return_inverse=True)
    only = accumulated = None
    if baseline_days is not None:
        wanted = np.array(sorted(baseline_days), dtype=np.int64) - first_day
        only = np.flatnonzero(np.isin(present, wanted))
        # The sums over days also need the baselines of the days they look back over.
        earliest = present[only].min() - accumulation.HORIZON_DAYS if len(only) else 0
        accumulated = np.flatnonzero(present >= earliest)
    org_group = pd.factorize(organization)[0].astype(np.int64)  # -1: no structure
    # One volume per thread: the time is in numpy's sorts, which release the GIL.
    with ThreadPoolExecutor(max_workers=min(len(BASELINED_VOLUMES), _cores()) or 1) as pool:
        done = {
            volume: pool.submit(
                _add_baselines,
                constants,
                volume,
                volumes[volume],
                w_acc,
                w_col,
                present,
                n_acc,
                peer_group,
                accumulated if volume in accumulation.CUSUM_VOLUMES else only,
            )
            for volume in BASELINED_VOLUMES
        }
        own = {volume: future.result() for volume, future in done.items()}
    for volume in accumulation.CUSUM_VOLUMES:
        _add_accumulation(
            constants,
            volume,
            volumes[volume],
            (w_acc, w_col, present),
            own[volume],
            (peer_group, org_group),
            only,
        )

    features = derive(sums, constants)
    table = pd.DataFrame(
        {
            "account_id": windows["account_id"].astype(str).to_numpy(),
            "account_type": account_type[w_acc],
            "organization_id": organization[w_acc],
            "day": pd.to_datetime((w_day + first_day) * DAY_NS).date,
            "window_start": pd.to_datetime(windows["window_start"].to_numpy(), utc=True),
            "window_end": pd.to_datetime(windows["window_end"].to_numpy(), utc=True),
            **{name: features[name] for name in FEATURES},
            **{name: constants[name] for name in WINDOW_CONSTANTS if name.startswith("_")},
            "_peer_group": peer_group[w_acc],
            "_account": w_acc,
            "_day": w_day,
        }
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
    )


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
            **{n: pd.Series(dtype=np.float64) for n in WINDOW_CONSTANTS if n.startswith("_")},
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


def _nan_baselines(n_win: int) -> dict[str, np.ndarray]:
    return {name: np.full(n_win, np.nan) for name in BASELINE_CONSTANTS}


def _add_baselines(
    constants: dict[str, np.ndarray],
    volume: str,
    values: np.ndarray,
    w_acc: np.ndarray,
    w_col: np.ndarray,
    days: np.ndarray,
    n_acc: int,
    peer_group: np.ndarray,
    only: np.ndarray | None = None,
) -> None:
    """Own and peer statistics of one volume, from earlier days only.

    ``w_col`` indexes ``days``, the days (since the first) that hold events;
    with ``only``, just those columns are computed.
    """
    w_day = w_col
    # float32: exact for counts below 16 million, and sorts twice as fast as float64.
    matrix = np.full((n_acc, max(len(days), 1)), np.nan, dtype=np.float32)
    matrix[w_acc, w_day] = values
    own = baselines.own_stats(matrix, days, only)
    enough = own["count"][w_acc, w_day] >= baselines.MIN_OWN_WINDOWS
    median = own["median"][w_acc, w_day]
    constants[baseline_name(OWN_MEDIAN, volume)] = np.where(enough, median, np.nan)
    constants[baseline_name(OWN_MAX, volume)] = np.where(enough, own["max"][w_acc, w_day], np.nan)
    share = FEATURES[volume].unit == "share"
    scale = baselines.robust_scale(
        median, own["q25"][w_acc, w_day], own["q75"][w_acc, w_day], share
    )
    constants[baseline_name(OWN_SCALE, volume)] = np.where(enough, scale, np.nan)

    peers = baselines.peer_stats(matrix, peer_group, days, only)
    group = peer_group[w_acc]
    enough = peers["count"][group, w_day] >= baselines.MIN_PEER_WINDOWS
    median = peers["median"][group, w_day]
    constants[baseline_name(PEER_MEDIAN, volume)] = np.where(enough, median, np.nan)
    constants[baseline_name(PEER_P95, volume)] = np.where(enough, peers["p95"][group, w_day], np.nan)
    scale = baselines.robust_scale(
        median, peers["q25"][group, w_day], peers["q75"][group, w_day], share
    )
    constants[baseline_name(PEER_SCALE, volume)] = np.where(enough, scale, np.nan)
    return own


def _add_accumulation(
    constants: dict[str, np.ndarray],
    volume: str,
    values: np.ndarray,
    windows: tuple[np.ndarray, np.ndarray, np.ndarray],
    own: dict[str, np.ndarray],
    groups: tuple[np.ndarray, np.ndarray],
    only: np.ndarray | None,
) -> None:
    """The CUSUM's sum before each window and the window's same-day shift
    (:mod:`detector.features.accumulation`), from the (account x day) baselines."""
    w_acc, w_col, days = windows
    peer_group, org_group = groups
    n_acc, n_cols = own["median"].shape
    matrix = np.full((n_acc, n_cols), np.nan)
    matrix[w_acc, w_col] = values
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
    centre, scale = accumulation.reference(
        own["median"], accumulation.own_scale(own["median"], own_scale, own["count"])
    )
    columns = np.arange(n_cols) if only is None else only
    before, kept_centre, kept_scale = accumulation.sums_before(
        matrix, centre, scale, shift, days, columns
    )
    # The day's own reference, unless an excess under way keeps the one from before it.
    day_centre, day_scale = accumulation.frozen(
        before, centre[:, columns], scale[:, columns], (kept_centre, kept_scale)
    )
    for name, result in (
        ("_cusum_prev", before),
        ("_cusum_centre", day_centre),
        ("_cusum_scale", day_scale),
    ):
        full = np.full((n_acc, n_cols), np.nan)
        full[:, columns] = result
        constants[f"{name}_{volume}"] = full[w_acc, w_col]
    constants[f"_shift_{volume}"] = shift[w_acc, w_col]
