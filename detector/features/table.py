"""Build the feature table: one row per (account, local day) window.

Steps, all vectorised over events:

1. per-event counts (is it a login? the first read of this record today? an
   address this account never used before? ...), kept in :class:`EventCounts`;
2. window sums with ``np.bincount``;
3. window constants (history, age, caseload) and own/peer baselines from
   earlier days (:mod:`detector.features.baselines`);
4. :func:`detector.features.derive.derive` turns sums and constants into the
   catalogue's features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from detector.features import baselines
from detector.features.catalogue import BASELINED_VOLUMES, FEATURES
from detector.features.derive import BASELINE_CONSTANTS, SUMS, WINDOW_CONSTANTS, derive
from detector.schema import ACTIONS, EventLog

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
DAY_STARTS_AT_HOUR = 4  # a window's day starts at 04:00 local, the quietest hour
NIGHT_HOURS = (22, 6)  # [22:00, 06:00) local
OFFICE_HOURS = (7, 20)  # [07:00, 20:00) local, Monday to Friday
RARE_HOUR_SHARE = 0.01
RARE_HOUR_MIN_HISTORY = 50  # earlier events needed before an hour can be called rare
NOVELTY_MIN_HISTORY = 5  # earlier active days needed before a value can be called new
_DENSE_WINDOW_LIMIT = 50_000_000
_DENSE_KEY_LIMIT = 20_000_000  # beyond, hashing the keys is cheaper than a scatter array
_A = {name: code for code, name in enumerate(ACTIONS)}


@dataclass
class EventCounts:
    """Per-event arrays the window sums are made of, kept for prefix evaluation."""

    timestamp: np.ndarray  # int64 ns UTC, ascending
    window: np.ndarray  # window row of each event
    hour: np.ndarray  # local hour 0-23
    counts: dict[str, np.ndarray]  # name in SUMS -> per-event count (bool or float)
    touched: np.ndarray  # per-event contribution to records_touched (peak_hourly_records)


@dataclass
class FeatureTable:
    """The feature table and what it was built from."""

    table: pd.DataFrame  # window keys, catalogue features, internal `_` columns
    events: EventCounts
    timezone: str
    notices: list[str] = field(default_factory=list)
    has_caseload_data: bool = True

    @property
    def features(self) -> pd.DataFrame:
        """Only the window keys and the catalogue's features (what users look at)."""
        keys = [
            "account_id",
            "account_type",
            "organization_id",
            "day",
            "window_start",
            "window_end",
        ]
        return self.table[keys + list(FEATURES)]


def local_wall_ns(timestamp_ns: np.ndarray, timezone: str) -> np.ndarray:
    """Local wall-clock time (as naive ns) of UTC instants.

    Offsets are looked up per quarter hour of the covered span (every zone
    changes offset on a quarter-hour boundary), so ten million events cost a
    gather rather than ten million time-zone conversions.
    """
    if len(timestamp_ns) == 0:
        return timestamp_ns.copy()
    quarter = 15 * 60 * 1_000_000_000
    first, last = timestamp_ns.min() // quarter, timestamp_ns.max() // quarter
    if last - first < max(4 * len(timestamp_ns), 1 << 20):
        grid = np.arange(first, last + 1, dtype=np.int64) * quarter
        position = timestamp_ns // quarter - first
    else:  # a few instants years apart: only the quarters that hold events, not the calendar
        quarters, position = np.unique(timestamp_ns // quarter, return_inverse=True)
        grid = quarters * quarter
    utc = pd.DatetimeIndex(grid.view("datetime64[ns]"), tz="UTC")
    offsets = utc.tz_convert(timezone).tz_localize(None).asi8 - grid
    return timestamp_ns + offsets[position]


def _codes(frame: pd.DataFrame, column: str) -> np.ndarray | None:
    if column not in frame or frame[column].isna().all():
        return None
    return frame[column].cat.codes.to_numpy().astype(np.int64)


def _first_event_of_each(keys: np.ndarray, n_keys: int) -> np.ndarray:
    """Index of the first event of each key 0..n_keys-1 (len(keys) when it has none)."""
    dtype = np.int32 if len(keys) < np.iinfo(np.int32).max else np.int64  # half the memory
    first = np.full(n_keys, len(keys), dtype=dtype)
    first[keys[::-1]] = np.arange(len(keys) - 1, -1, -1, dtype=dtype)  # written last = earliest
    return first


def _attribute_of_accounts(
    acc: np.ndarray, codes: np.ndarray | None, first_event: np.ndarray
) -> np.ndarray:
    """Each account's code (type, structure): its first event's, else its first non-missing one."""
    if codes is None:
        return np.full(len(first_event), -1, dtype=np.int64)
    out = (
        codes[np.minimum(first_event, len(codes) - 1)]
        if len(codes)
        else np.full(len(first_event), -1)
    )
    if (out < 0).any():  # rare: the first event lacks it; look further, for those accounts only
        missing = np.flatnonzero(out < 0)
        rows = np.flatnonzero(np.isin(acc, missing) & (codes >= 0))
        found = _first_event_of_each(acc[rows], len(first_event))
        has = found[missing] < len(rows)
        out[missing[has]] = codes[rows[found[missing[has]]]]
    return out


def _first_occurrence(keys: np.ndarray, n_keys: int | None = None) -> np.ndarray:
    """True at the first (earliest) occurrence of each key.

    With a small key space (``n_keys`` known) a scatter does it; otherwise hashing.
    """
    if n_keys is not None and n_keys <= _DENSE_KEY_LIMIT:
        return _first_event_of_each(keys, n_keys)[keys] == np.arange(len(keys))
    return ~pd.Series(keys).duplicated(keep="first").to_numpy()


def _is_one_of(frame: pd.DataFrame, column: str, values: tuple[str, ...]) -> np.ndarray:
    """Per event: is the column's value (trimmed, any case) one of ``values``?

    Decided once per category, then gathered: no string is compared per event.
    """
    if column not in frame:
        return np.zeros(len(frame), dtype=bool)
    categories = frame[column].cat.categories
    matches = np.array([str(c).strip().lower() in values for c in categories] + [False])
    return matches[frame[column].cat.codes.to_numpy()]  # code -1 (missing) -> False


def _lookup(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each value in ``index`` (-1 when absent), hashed by Arrow.

    Arrow hashes millions of record ids without making Python strings of them.
    """
    found = pc.index_in(
        pa.array(values.astype(str), type=pa.string()),
        value_set=pa.array(index.astype(str), type=pa.string()),
    )
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _caseload_membership(
    acc: np.ndarray, rec: np.ndarray, accounts: pd.Index, records: pd.Index, caseloads: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """(in_caseload per event, caseload size per account).

    Most records are followed by one account: a record -> owner array answers
    those with one gather. Records with several owners (hand-overs) are looked
    up among the sorted (account, record) pairs.
    """
    cl_acc = _lookup(caseloads["account_id"], accounts)
    cl_rec = _lookup(caseloads["record_id"], records)
    size = np.bincount(cl_acc[cl_acc >= 0], minlength=len(accounts))
    known = (cl_acc >= 0) & (cl_rec >= 0)
    n_rec = max(len(records), 1)
    pairs = np.sort(cl_acc[known] * n_rec + cl_rec[known])
    pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]]  # distinct (sorting beats hashing here)
    pair_acc, pair_rec = pairs // n_rec, pairs % n_rec
    owners = np.bincount(pair_rec, minlength=n_rec)
    owner = np.full(n_rec, -1, dtype=np.int64)
    owner[pair_rec] = pair_acc

    inside = np.zeros(len(acc), dtype=bool)
    has_record = rec >= 0
    owner_count = np.where(has_record, owners[np.maximum(rec, 0)], 0)
    single = owner_count == 1
    inside[single] = owner[rec[single]] == acc[single]
    shared = np.flatnonzero(owner_count > 1)
    keys = acc[shared] * n_rec + rec[shared]
    position = np.minimum(np.searchsorted(pairs, keys), max(len(pairs) - 1, 0))
    inside[shared] = pairs[position] == keys
    return inside, size


def _out_of_scope_by_structure(frame: pd.DataFrame) -> np.ndarray:
    """Per event: the record belongs to another structure than the account's."""
    org = frame["organization_id"].astype("string")
    record_org = frame["record_org_id"].astype("string")
    return (org != record_org).fillna(False).to_numpy(dtype=bool)


def _compact_days(day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct days, ascending; each event's index among them), for days >= 0.

    Days are at most a few hundred thousand apart (timestamps are nanoseconds,
    far-off ones rejected by the schema), so a scatter over the span does it.
    """
    if len(day) == 0:
        return np.zeros(1, dtype=np.int64), day.astype(np.int64)
    days = np.flatnonzero(np.bincount(day))
    if len(days) == days[-1] + 1:  # no idle day: the usual case
        return days, day.astype(np.int64)
    index = np.zeros(int(days[-1]) + 1, dtype=np.int64)
    index[days] = np.arange(len(days))
    return days, index[day]


@dataclass
class _Windows:
    """Each event's window (account x local day), and each window's account and day."""

    of_event: np.ndarray  # window row of each event
    account: np.ndarray  # account code of each window
    day: np.ndarray  # index of each window's day among the days that hold events
    first_of_account: np.ndarray  # each account's first window (n windows when it has none)

    @property
    def history_days(self) -> np.ndarray:
        """Earlier active windows of the same account, per window."""
        return np.arange(len(self.account)) - self.first_of_account[self.account]


def _windows(acc: np.ndarray, day_index: np.ndarray, n_acc: int, n_days: int) -> _Windows:
    """Dense (account, day) keys compacted to the active ones, ordered by account then day."""
    dense = acc * n_days
    dense += day_index
    if n_acc * n_days <= _DENSE_WINDOW_LIMIT:
        active = np.flatnonzero(np.bincount(dense, minlength=n_acc * n_days))
        lookup = np.full(n_acc * n_days, -1, dtype=np.int64)
        lookup[active] = np.arange(len(active))
        window = lookup[dense]
    else:
        active, window = np.unique(dense, return_inverse=True)
    account = active // n_days
    first_of_account = np.full(n_acc, len(active), dtype=np.int64)
    first_of_account[account[::-1]] = np.arange(len(active))[::-1]
    return _Windows(window, account, active % n_days, first_of_account)


def _activity_counts(frame: pd.DataFrame, action: np.ndarray) -> dict[str, np.ndarray]:
    """Per-event counts of logins, searches, exports, account administration, answers."""
    n = len(frame)
    failed = _is_one_of(frame, "outcome", ("failure",))
    is_login = action == _A["login"]
    login_ok = is_login & ~failed
    counts: dict[str, np.ndarray] = {"events": np.ones(n, dtype=bool)}
    counts["logins"] = login_ok
    counts["failed_logins"] = is_login & failed
    counts["password_logins"] = login_ok & _is_one_of(frame, "auth_method", ("password",))
    counts["mfa_logins"] = login_ok & _is_one_of(frame, "auth_method", ("mfa", "sso"))
    counts["searches"] = action == _A["search"]
    counts["exports"] = action == _A["export"]
    counts["accounts_created"] = action == _A["create_account"]
    counts["access_grants"] = action == _A["grant_access"]
    returned = frame["records_returned"].to_numpy() if "records_returned" in frame else np.zeros(n)
    counts["records_returned"] = np.where(counts["searches"] | counts["exports"], returned, 0.0)
    counts["records_exported"] = np.where(counts["exports"], returned, 0.0)
    return counts


def _novelty(
    frame: pd.DataFrame, acc: np.ndarray, n_acc: int, has_history: np.ndarray
) -> dict[str, np.ndarray]:
    """Per event: first use by the account of an address, client or application.

    Only counted once the account has a working week of history: before that,
    every second address would look "new".
    """
    flags = {}
    for column, name in (
        ("src_ip", "new_addresses"),
        ("user_agent", "new_clients"),
        ("application", "new_applications"),
    ):
        codes = _codes(frame, column)
        if codes is None:
            flags[name] = np.zeros(len(frame), dtype=bool)
            continue
        n_values = len(frame[column].cat.categories) + 1
        key = acc * n_values
        key += codes + 1  # in place: ten million events, one array fewer
        first_use = _first_occurrence(key, n_acc * n_values) & (codes >= 0)
        flags[name] = first_use & has_history
    return flags


def _rare_hours(windows: _Windows, window_hour: np.ndarray) -> np.ndarray:
    """Per event: a local hour which, with its two neighbours, holds < 1 % of the
    account's earlier events (working half an hour late is not rare; 3 a.m. is)."""
    n_win = len(windows.account)
    per_hour = np.bincount(window_hour, minlength=n_win * 24).reshape(n_win, 24)
    before = np.cumsum(per_hour, axis=0) - per_hour  # all earlier windows, every account
    before = before - before[windows.first_of_account[windows.account]]  # the same account's only
    around = before + np.roll(before, 1, axis=1) + np.roll(before, -1, axis=1)
    history_events = before.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = around / history_events[:, None]
    rare = (history_events >= RARE_HOUR_MIN_HISTORY)[:, None] & (share < RARE_HOUR_SHARE)
    return rare.reshape(-1)[window_hour]


def _record_reads(
    frame: pd.DataFrame,
    action: np.ndarray,
    acc: np.ndarray,
    window: np.ndarray,
    caseloads: pd.DataFrame | None,
    notices: list[str],
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(first read of each record in its window, out-of-caseload among those or None, caseload sizes).

    Out of caseload comes from the caseload table, else a structure mismatch,
    else it is absent (None) and a notice says so.
    """
    n = len(frame)
    accounts = frame["account_id"].cat.categories
    rec = _codes(frame, "record_id")
    records = frame["record_id"].cat.categories if rec is not None else pd.Index([])
    if rec is None:
        rec = np.full(n, -1, dtype=np.int64)
        notices.append(
            f"record_id column is empty (no value in {n:,} events): record reads cannot be counted"
            if "record_id" in frame
            else "no record_id column: record reads cannot be counted"
        )
    reading = np.zeros(len(ACTIONS), dtype=bool)
    reading[[_A["view_record"], _A["update_record"], _A["export"]]] = True
    idx = np.flatnonzero(reading[action] & (rec >= 0))
    first_read = np.zeros(n, dtype=bool)
    first_read[idx] = _first_occurrence(window[idx] * max(len(records), 1) + rec[idx])

    caseload_size = np.zeros(len(accounts), dtype=np.int64)
    if caseloads is not None:
        reads = np.flatnonzero(first_read)  # only first reads are counted: look only them up
        inside, caseload_size = _caseload_membership(
            acc[reads], rec[reads], accounts, records, caseloads
        )
        out_read = np.zeros(n, dtype=bool)
        out_read[reads] = ~inside
    elif (
        "organization_id" in frame
        and "record_org_id" in frame
        and frame["record_org_id"].notna().any()
    ):
        notices.append(
            "no caseload table: reads outside the caseload approximated by structure mismatch"
        )
        out_read = first_read & _out_of_scope_by_structure(frame)
    else:
        notices.append(
            "no caseload table and no organization_id/record_org_id: out-of-caseload features are absent"
        )
        out_read = None
    return first_read, out_read, caseload_size


def _creation_days(
    frame: pd.DataFrame, created_events: np.ndarray, day_index: np.ndarray
) -> np.ndarray:
    """Per account code: the day a create_account event in the log created it (int64 max if none)."""
    accounts = frame["account_id"].cat.categories
    created = np.full(len(accounts), np.iinfo(np.int64).max)
    target = _codes(frame, "target_account_id")
    if target is not None:
        target_acc = _lookup(pd.Series(frame["target_account_id"].cat.categories), accounts)
        creation = np.flatnonzero(created_events & (target >= 0))
        creation_acc = target_acc[target[creation]]
        ok = creation_acc >= 0
        np.minimum.at(created, creation_acc[ok], day_index[creation][ok])
    return created


def build_feature_table(
    log: EventLog, caseloads: pd.DataFrame | None = None, timezone: str = "Europe/Paris"
) -> FeatureTable:
    """The feature table of a validated log (one row per account and local day)."""
    frame = log.events
    notices: list[str] = []
    n = len(frame)
    timestamp = pd.DatetimeIndex(frame["timestamp"]).asi8
    # Local hours since 1970 fit in 32 bits: one 64-bit division, then cheap arithmetic.
    local_hours = (local_wall_ns(timestamp, timezone) // HOUR_NS).astype(np.int32)
    hour = local_hours % 24
    # Windows run from 04:00 to 04:00 local, so that a night (22:00-03:00) stays whole.
    day = ((local_hours - DAY_STARTS_AT_HOUR) // 24).astype(np.int64)
    weekday = (local_hours // 24 + 3) % 7  # of the calendar day; 1970-01-01 was a Thursday

    accounts = frame["account_id"].cat.categories
    acc = frame["account_id"].cat.codes.to_numpy().astype(np.int64)
    n_acc = len(accounts)
    first_day = int(day.min()) if n else 0
    # Days are indexed among those that hold events, so that arrays of accounts x days
    # never span idle calendar stretches (`days` gives each index its day since first_day).
    days, day_index = _compact_days(day - first_day)
    n_days = max(len(days), 1)
    windows = _windows(acc, day_index, n_acc, n_days)
    window, w_acc, w_day = windows.of_event, windows.account, windows.day
    w_days = days[w_day]  # calendar days since the log's first day
    n_win = len(w_acc)
    history_days = windows.history_days

    action = frame["action"].cat.codes.to_numpy()
    counts = _activity_counts(frame, action)
    first_read, out_read, caseload_size = _record_reads(
        frame, action, acc, window, caseloads, notices
    )
    counts["records_read"] = first_read
    counts["out_of_caseload_reads"] = out_read if out_read is not None else np.full(n, np.nan)
    counts["night_events"] = (hour >= NIGHT_HOURS[0]) | (hour < NIGHT_HOURS[1])
    touched = first_read + counts["records_returned"]  # per event, what records_touched counts
    counts["night_records_touched"] = np.where(counts["night_events"], touched, 0.0)
    counts["off_hours_events"] = (
        (hour < OFFICE_HOURS[0]) | (hour >= OFFICE_HOURS[1]) | (weekday >= 5)
    )
    counts |= _novelty(frame, acc, n_acc, history_days[window] >= NOVELTY_MIN_HISTORY)
    window_hour = window * 24 + hour  # one cell per window and local hour
    counts["rare_hour_events"] = _rare_hours(windows, window_hour)

    sums = {
        name: np.bincount(window, weights=counts[name], minlength=n_win)
        if counts[name].dtype != bool
        else np.bincount(window[counts[name]], minlength=n_win).astype(np.float64)
        for name in SUMS
    }
    per_hour_touched = np.bincount(window_hour, weights=touched, minlength=n_win * 24)
    sums["peak_hourly_records"] = per_hour_touched.reshape(n_win, 24).max(axis=1)

    created = _creation_days(frame, counts["accounts_created"], day - first_day)
    # (Accounts listed in the column's dictionary but without events have no window.)
    first_window = np.minimum(windows.first_of_account, max(n_win - 1, 0))
    first_seen = np.minimum(w_days[first_window], created) if n_win else created
    constants: dict[str, np.ndarray] = {
        "caseload_size": caseload_size[w_acc].astype(np.float64),
        "history_days": history_days.astype(np.float64),
        "log_days": w_days.astype(np.float64),
        "account_age_days": (w_days - first_seen[w_acc]).astype(np.float64),
        "created_in_log": (created[w_acc] <= w_days).astype(np.float64),
    }
    first_event = _first_event_of_each(acc, n_acc)
    type_codes = _attribute_of_accounts(acc, _codes(frame, "account_type"), first_event)
    org_codes = _attribute_of_accounts(acc, _codes(frame, "organization_id"), first_event)
    peer_group = type_codes + 1  # 0 = unknown type
    volumes = derive(sums, {**constants, **_nan_baselines(n_win)})
    for volume in BASELINED_VOLUMES:
        _add_baselines(constants, volume, volumes[volume], w_acc, w_day, days, n_acc, peer_group)

    features = derive(sums, constants)
    window_start = np.empty(n_win, dtype=np.int64)
    window_end = np.empty(n_win, dtype=np.int64)
    window_end[window] = timestamp  # last write wins: the latest event
    window_start[window[::-1]] = timestamp[::-1]
    table = pd.DataFrame(
        {
            "account_id": accounts[w_acc].astype(str),
            "account_type": _labels(frame, "account_type", type_codes[w_acc]),
            "organization_id": _labels(frame, "organization_id", org_codes[w_acc]),
            "day": pd.to_datetime((w_days + first_day) * DAY_NS).date,
            "window_start": pd.to_datetime(window_start, utc=True),
            "window_end": pd.to_datetime(window_end, utc=True),
            **{name: features[name] for name in FEATURES},
            **{name: constants[name] for name in WINDOW_CONSTANTS if name.startswith("_")},
            "_peer_group": peer_group[w_acc],
        }
    )
    events = EventCounts(
        timestamp=timestamp, window=window, hour=hour, counts=counts, touched=touched
    )
    return FeatureTable(table, events, timezone, notices, has_caseload_data=out_read is not None)


def _labels(frame: pd.DataFrame, column: str, codes: np.ndarray) -> np.ndarray:
    if column not in frame:
        return np.full(len(codes), None, dtype=object)
    categories = np.array([str(c) for c in frame[column].cat.categories] + [None], dtype=object)
    return categories[codes]  # code -1 -> None


def _nan_baselines(n_win: int) -> dict[str, np.ndarray]:
    return {name: np.full(n_win, np.nan) for name in BASELINE_CONSTANTS}


def _add_baselines(
    constants: dict[str, np.ndarray],
    volume: str,
    values: np.ndarray,
    w_acc: np.ndarray,
    w_day: np.ndarray,
    days: np.ndarray,
    n_acc: int,
    peer_group: np.ndarray,
) -> None:
    """Own and peer statistics of one volume, from earlier days only.

    ``w_day`` indexes ``days``, the calendar days that hold events.
    """
    # float32: exact for counts below 16 million, and sorts twice as fast as float64.
    matrix = np.full((n_acc, max(len(days), 1)), np.nan, dtype=np.float32)
    matrix[w_acc, w_day] = values
    own = baselines.own_stats(matrix, days)
    enough = own["count"][w_acc, w_day] >= baselines.MIN_OWN_WINDOWS
    median = own["median"][w_acc, w_day]
    constants[f"own_median_{volume}"] = np.where(enough, median, np.nan)
    constants[f"own_max_{volume}"] = np.where(enough, own["max"][w_acc, w_day], np.nan)
    share = FEATURES[volume].unit == "share"
    scale = baselines.robust_scale(
        median, own["q25"][w_acc, w_day], own["q75"][w_acc, w_day], share
    )
    constants[f"_own_scale_{volume}"] = np.where(enough, scale, np.nan)

    peers = baselines.peer_stats(matrix, peer_group, days)
    group = peer_group[w_acc]
    enough = peers["count"][group, w_day] >= baselines.MIN_PEER_WINDOWS
    median = peers["median"][group, w_day]
    constants[f"peer_median_{volume}"] = np.where(enough, median, np.nan)
    constants[f"peer_p95_{volume}"] = np.where(enough, peers["p95"][group, w_day], np.nan)
    scale = baselines.robust_scale(
        median, peers["q25"][group, w_day], peers["q75"][group, w_day], share
    )
    constants[f"_peer_scale_{volume}"] = np.where(enough, scale, np.nan)
