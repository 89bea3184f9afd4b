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

from detector.features import baselines
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
from detector.vocabulary import DEFAULT_TIMEZONE

RARE_HOUR_SHARE = 0.01
RARE_HOUR_MIN_HISTORY = 50  # earlier events needed before an hour can be called rare
NOVELTY_MIN_HISTORY = 5  # earlier active days needed before a value can be called new
_DENSE_WINDOW_KEYS = 50_000_000  # accounts x days up to which windows are found by a gather
KEYS = ["account_id", "account_type", "organization_id", "day", "window_start", "window_end"]


@dataclass
class Novel:
    """Values of one column first used by an account in a window (history permitting)."""

    window: np.ndarray  # row of the feature table
    values: pa.Array  # the value (string), one per row of ``window``


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
    """Row of each (account, day) key among the ascending ``window_keys`` (all present).

    A gather from a dense key -> row array when the key space is small
    (accounts x days); ten million binary searches cost seconds.
    """
    n_keys = int(window_keys[-1]) + 1 if len(window_keys) else 0
    if n_keys > _DENSE_WINDOW_KEYS:
        return np.searchsorted(window_keys, wanted)
    row = np.zeros(n_keys, dtype=np.int32 if len(window_keys) < 2**31 else np.int64)
    row[window_keys] = np.arange(len(window_keys), dtype=row.dtype)
    return row[wanted].astype(np.int64)


def _rare_hours(hours: np.ndarray, first_of_account: np.ndarray) -> np.ndarray:
    """(windows x 24): local hours which, with their two neighbours, hold < 1 % of the
    account's earlier events (working half an hour late is not rare; 3 a.m. is)."""
    before = np.cumsum(hours, axis=0, dtype=np.int64) - hours  # all earlier windows
    before = before - before[first_of_account]  # the same account's only
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
    window = _rows_of_keys(window_keys, keys // n_values * n_days + first)
    new = has_history[window]
    counts = np.bincount(window[new], minlength=n_win).astype(np.float64)
    values = pc.take(dictionary, pa.array(keys[new] % n_values))
    return counts, Novel(window[new], values)


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
) -> FeatureTable:
    """The feature table of a log from its partitions' aggregates.

    With ``baseline_days`` (local day numbers), baselines are computed for
    those days only (the days a run with saved state scores); the other
    windows keep NaN baselines.
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

    sums = {name: windows[name].to_numpy(dtype=np.float64) for name in windows if name in SUMS}
    sums["peak_hourly_records"] = windows["peak_hourly_records"].to_numpy(dtype=np.float64)
    rare = _rare_hours(hours, first_of_account[w_acc])
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
    }
    account_type = _account_attribute(windows, "type", first_of_account)
    organization = _account_attribute(windows, "org", first_of_account)
    peer_group = pd.factorize(account_type)[0].astype(np.int64) + 1  # 0 = unknown type
    volumes = derive(sums, {**constants, **_nan_baselines(n_win)})
    # Baseline matrices have a column per day that holds events, not per calendar day:
    # a log with a far-off stray day must not span decades of empty columns.
    present, w_col = np.unique(w_day, return_inverse=True)
    only = None
    if baseline_days is not None:
        wanted = np.array(sorted(baseline_days), dtype=np.int64) - first_day
        only = np.flatnonzero(np.isin(present, wanted))
    # One volume per thread: the time is in numpy's sorts, which release the GIL.
    with ThreadPoolExecutor(max_workers=min(len(BASELINED_VOLUMES), _cores()) or 1) as pool:
        done = [
            pool.submit(
                _add_baselines,
                constants,
                volume,
                volumes[volume],
                w_acc,
                w_col,
                present,
                n_acc,
                peer_group,
                only,
            )
            for volume in BASELINED_VOLUMES
        ]
        for future in done:
            future.result()

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
    constants[f"own_median_{volume}"] = np.where(enough, median, np.nan)
    constants[f"own_max_{volume}"] = np.where(enough, own["max"][w_acc, w_day], np.nan)
    share = FEATURES[volume].unit == "share"
    scale = baselines.robust_scale(
        median, own["q25"][w_acc, w_day], own["q75"][w_acc, w_day], share
    )
    constants[f"_own_scale_{volume}"] = np.where(enough, scale, np.nan)

    peers = baselines.peer_stats(matrix, peer_group, days, only)
    group = peer_group[w_acc]
    enough = peers["count"][group, w_day] >= baselines.MIN_PEER_WINDOWS
    median = peers["median"][group, w_day]
    constants[f"peer_median_{volume}"] = np.where(enough, median, np.nan)
    constants[f"peer_p95_{volume}"] = np.where(enough, peers["p95"][group, w_day], np.nan)
    scale = baselines.robust_scale(
        median, peers["q25"][group, w_day], peers["q75"][group, w_day], share
    )
    constants[f"_peer_scale_{volume}"] = np.where(enough, scale, np.nan)
