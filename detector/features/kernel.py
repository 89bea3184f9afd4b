"""The kernel: one partition of events -> per-(account, local day) aggregates.

This is the only code that touches events in bulk. A partition holds whole
local days (04:00 to 04:00) of validated events (an :class:`~detector.schema.EventLog`'s
frame, in time order); the kernel gives

- per window (account x local day): the :data:`~detector.features.derive.SUMS`
  that need nothing but the window's own events, the hourly peak, the 24-hour
  event histogram (rare hours are decided later, against earlier days), the
  window's first and last instants and the account's type and structure;
- compact first-seen pairs: per account, each address, client and
  application with the first day it was used in the partition, and the
  accounts created by ``create_account`` with the day.

What needs other days (novelty, rare hours, history, baselines) is decided by
:mod:`detector.features.table` on the small account-day table. The same
per-event counts (:func:`event_counts`) serve the replay behind
``detected_at``, so a sum and its replay cannot disagree.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from detector.features.derive import SUMS
from detector.incidents import creation_pairs
from detector.schema import ACTIONS

HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
DAY_STARTS_AT_HOUR = 4  # a window's day starts at 04:00 local, the quietest hour
NIGHT_HOURS = (22, 6)  # [22:00, 06:00) local
OFFICE_HOURS = (7, 20)  # [07:00, 20:00) local, Monday to Friday
_DENSE_KEY_LIMIT = 20_000_000  # beyond, hashing the keys is cheaper than a scatter array
_BUCKET_BITS = 21  # at most 2M buckets of read keys (16 MB of counts: glibc keeps it in its heap)
_A = {name: code for code, name in enumerate(ACTIONS)}
# Columns whose first use by an account is tracked, and the SUMS they feed.
NOVELTY = (
    ("src_ip", "new_addresses"),
    ("user_agent", "new_clients"),
    ("application", "new_applications"),
    ("record_org_id", "new_structures"),  # the account's working set, without a caseload table
)
# Sums decided across days (from first-seen pairs and hour histograms), not by the kernel.
CROSS_DAY_SUMS = tuple(name for _, name in NOVELTY) + (
    "rare_hour_events",
    "new_rare_addresses",  # new values few peers had used (detector.features.table)
    "new_rare_clients",
)
KERNEL_SUMS = tuple(name for name in SUMS if name not in CROSS_DAY_SUMS)
# How out-of-caseload reads are known: the caseload table, a structure mismatch, or not at all.
OUT_MODES = ("caseloads", "structure", None)


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


def local_days(timestamp_ns: np.ndarray, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """(local day number since 1970, local hour since 1970) of UTC instants.

    Windows run from 04:00 to 04:00 local, so that a night (22:00-03:00) stays whole.
    """
    # Local hours since 1970 fit in 32 bits: one 64-bit division, then cheap arithmetic.
    local_hours = (local_wall_ns(timestamp_ns, timezone) // HOUR_NS).astype(np.int32)
    day = ((local_hours - DAY_STARTS_AT_HOUR) // 24).astype(np.int64)
    return day, local_hours


def in_days(day: np.ndarray, days) -> np.ndarray:
    """Whether each of ``day`` is one of ``days`` (a gather: local days span little)."""
    day = np.asarray(day, dtype=np.int64)
    days = np.asarray(days, dtype=np.int64)
    if not len(days) or not len(day):
        return np.zeros(len(day), dtype=bool)
    low = min(int(day.min()), int(days.min()))
    table = np.zeros(max(int(day.max()), int(days.max())) - low + 1, dtype=bool)
    table[days - low] = True
    return table[day - low]


def codes(frame: pd.DataFrame, column: str) -> np.ndarray | None:
    """A categorical column's integer codes (-1 = missing), None when absent or all missing."""
    if column not in frame:
        return None
    series = frame[column]
    if not isinstance(series.dtype, pd.CategoricalDtype) and series.isna().all():
        return None
    values = series.cat.codes.to_numpy()  # all missing: every code -1 (no second pass for isna)
    return values.astype(np.int64) if (values >= 0).any() else None


def first_event_of_each(keys: np.ndarray, n_keys: int) -> np.ndarray:
    """Index of the first event of each key 0..n_keys-1 (len(keys) when it has none)."""
    dtype = np.int32 if len(keys) < np.iinfo(np.int32).max else np.int64  # half the memory
    first = np.full(n_keys, len(keys), dtype=dtype)
    first[keys[::-1]] = np.arange(len(keys) - 1, -1, -1, dtype=dtype)  # written last = earliest
    return first


def first_occurrence(keys: np.ndarray, n_keys: int | None = None) -> np.ndarray:
    """True at the first (earliest) occurrence of each key.

    With a small key space (``n_keys`` known, a few times the keys at most) a
    scatter does it; otherwise hashing: a scatter array many times larger than
    the keys (10M slots for a partition's 667k account x structure pairs) costs
    more in fresh pages than the hash.
    """
    if n_keys is not None and n_keys <= min(_DENSE_KEY_LIMIT, 8 * len(keys)):
        return first_event_of_each(keys, n_keys)[keys] == np.arange(len(keys))
    if len(keys) < 1 << 12:
        return ~pd.Series(keys).duplicated(keep="first").to_numpy()
    # Keys scattered into buckets (a few per key): an event whose bucket's first event has
    # its key is decided by that event. The others (keys sharing a bucket with an earlier
    # key: every event of such a key) are hashed, as all were (4x slower).
    bits = min(max(int(len(keys)).bit_length() + 2, 8), _BUCKET_BITS)
    mixed = np.asarray(keys).astype(np.uint64) * _HASH_MULTIPLIERS[0]
    bucket = (mixed >> np.uint64(64 - bits)).astype(np.intp)
    leader = first_event_of_each(bucket, 1 << bits)[bucket]
    first = leader == np.arange(len(keys), dtype=leader.dtype)
    others = np.flatnonzero(keys[leader] != keys)
    first[others] = ~pd.Series(keys[others]).duplicated(keep="first").to_numpy()
    return first


def _first_pairs(window: np.ndarray, record: np.ndarray, n_records: int) -> np.ndarray:
    """True at the first occurrence of each (window, record) pair.

    Most records are read once in a partition: those are first reads without
    hashing; only the pairs of records read more than once are hashed.
    """
    first = np.bincount(record, minlength=n_records)[record] == 1
    again = np.flatnonzero(~first)
    first[again] = first_occurrence(window[again] * max(n_records, 1) + record[again])
    return first


def _is_one_of(frame: pd.DataFrame, column: str, values: tuple[str, ...]) -> np.ndarray:
    """Per event: is the column's value (trimmed, any case) one of ``values``?

    Decided once per category, then gathered: no string is compared per event.
    """
    if column not in frame:
        return np.zeros(len(frame), dtype=bool)
    categories = frame[column].cat.categories
    matches = np.array([str(c).strip().lower() in values for c in categories] + [False])
    return matches[frame[column].cat.codes.to_numpy()]  # code -1 (missing) -> False


def _arrow_strings(values) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        return values
    if isinstance(values, pd.Series | pd.Index) and isinstance(
        values.array, pd.arrays.ArrowStringArray
    ):  # already Arrow strings: no Python string is made (missing values stay missing)
        return pc.cast(pa.array(values.array), pa.string())
    return pa.array(pd.Index(values).astype(str), type=pa.string())


def lookup(values, index) -> np.ndarray:
    """Position of each value in ``index`` (-1 when absent), hashed by Arrow.

    Arrow hashes millions of record ids without making Python strings of them;
    Arrow arrays (dictionary-encoded or not) are taken as they are.
    """
    found = pc.index_in(_arrow_strings(values), value_set=_arrow_strings(index))
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _one_chunk(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


ACCOUNT_BUCKETS = 256  # accounts hashed into this many buckets; a slice of a day is a range of them


def account_buckets(values) -> np.ndarray:
    """Each value's account bucket (0..ACCOUNT_BUCKETS-1; a missing value: bucket 0).

    A stable hash of the account id's text (the same in every process and on
    every machine), computed once per distinct value: Arrow dictionaries and
    pandas categoricals hash their dictionary only.
    """
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        of_value = _bucket_of(values.cat.categories)
        return np.r_[of_value, 0][values.cat.codes.to_numpy()]  # code -1 -> the last slot
    column = _arrow_strings(values)
    if isinstance(column, pa.ChunkedArray):  # row groups read apart: one dictionary each
        chunks = [account_buckets(chunk) for chunk in column.chunks]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    of_value = np.r_[_bucket_of(column.dictionary), 0]
    return of_value[pc.fill_null(column.indices, -1).to_numpy(zero_copy_only=False)]


def _bucket_of(distinct: pa.Array | pd.Index) -> np.ndarray:
    """The bucket of each distinct account id (hashed as text: Arrow or pandas, the same)."""
    if isinstance(distinct, pa.Array | pa.ChunkedArray):
        text = np.asarray(distinct.to_numpy(zero_copy_only=False), dtype=object)
    else:
        text = np.asarray(pd.Index(distinct).astype(str), dtype=object)
    hashed = pd.util.hash_array(text, categorize=False)
    return (hashed % np.uint64(ACCOUNT_BUCKETS)).astype(np.int64)


@dataclass(frozen=True)
class CaseloadIndex:
    """The caseload table prepared once per run for membership tests.

    Its (account, record) pairs grouped by account, the accounts ordered by
    bucket (a slice of a day, a range of buckets, holds one contiguous block),
    and within an account by a 64-bit hash of the record id: each pair has an
    integer key, ascending, which a partition's reads are searched for (a
    sorted search of integers, where hashing the pairs' record ids among the
    partition's took most of the kernel's time). Equal keys are checked on the
    record ids themselves, so a hash collision costs a comparison, never a
    wrong answer. Built in the parent before the worker processes fork, so they
    share it; a state keeps it for the next run given the same caseload file.
    """

    records: pa.Array  # each pair's record id, pairs grouped by account
    account: np.ndarray  # each pair's account (position in accounts)
    accounts: pa.Array  # distinct account ids
    rank: np.ndarray  # per account: its place in pair order (by bucket)
    account_start: np.ndarray  # first pair of each account, by rank (len(accounts) + 1 offsets)
    keys: np.ndarray  # each pair's pair_key (its account's rank, its record's hash): ascending

    def key_of(self, ranks: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        """The keys of (account rank, record hash) pairs: the rank in the high bits, then
        as many of the hash's bits as fit (equal keys: the same account, maybe the record)."""
        return _pair_keys(len(self.accounts), ranks, hashes)

    def __len__(self) -> int:  # the pairs, as the rows of the caseload table
        return len(self.records)


# What the kernel and assembly take as the caseload table: the table as read, or its index
# (a run with --state given the caseload file whose index the state keeps: the file is not read).
Caseloads = pd.DataFrame | CaseloadIndex


_CASELOAD_INDEXES: dict[int, tuple[weakref.ref, CaseloadIndex]] = {}


def caseload_index(caseloads: Caseloads) -> CaseloadIndex:
    """The :class:`CaseloadIndex` of a caseload table, built on first use and kept with it
    (an index is its own)."""
    if isinstance(caseloads, CaseloadIndex):
        return caseloads
    kept = _built_index(caseloads)
    if kept is not None:
        return kept
    account = pc.dictionary_encode(_one_chunk(_arrow_strings(caseloads["account_id"])))
    acc = account.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    records = _one_chunk(_arrow_strings(caseloads["record_id"]))
    known = None  # every pair (the table as read: missing values dropped)
    if account.null_count or records.null_count:
        known = np.flatnonzero((acc >= 0) & pc.is_valid(records).to_numpy(zero_copy_only=False))
        acc = acc[known]
    n_acc = len(account.dictionary)
    by_bucket = np.lexsort((np.arange(n_acc), _bucket_of(account.dictionary)))
    rank = np.empty(n_acc, dtype=np.int32)
    rank[by_bucket] = np.arange(n_acc, dtype=np.int32)
    ranked = rank[acc]
    account_start = np.r_[0, np.cumsum(np.bincount(ranked, minlength=n_acc))]
    if known is not None:
        records = records.take(pa.array(known))
    keys = _pair_keys(n_acc, ranked, text_hashes(records))
    order = np.argsort(keys)  # by account rank, then record hash
    index = CaseloadIndex(
        records.take(pa.array(order)),
        acc[order],
        account.dictionary,
        rank,
        account_start,
        keys[order],
    )
    _CASELOAD_INDEXES.clear()  # one caseload table per run: keep only the latest
    _CASELOAD_INDEXES[id(caseloads)] = (weakref.ref(caseloads), index)
    return index


_HASH_MULTIPLIERS = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9))
_HASH_CHUNK = 1 << 16


def text_hashes(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each string (missing: of the empty string), computed by numpy from
    the Arrow buffers, 8 bytes at a time: no Python string is made. The same in every
    process and on every machine (a state keeps the caseload index's keys)."""
    values = _one_chunk(values)
    if pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type):
        width = np.int64
    else:
        values, width = pc.cast(values, pa.string()), np.int32
    n = len(values)
    hashed = np.empty(n, dtype=np.uint64)
    if not n:
        return hashed
    if values.null_count:  # hashed as they span, then as the empty string (no copy of the text)
        missing = ~pc.is_valid(values).to_numpy(zero_copy_only=False)
        hashed = _text_hashes(values, width, hashed)
        hashed[missing] = _text_hashes(pa.array([""], values.type), width, np.empty(1, np.uint64))
        return hashed
    return _text_hashes(values, width, hashed)


def _text_hashes(values: pa.Array, width: type, hashed: np.ndarray) -> np.ndarray:
    """:func:`text_hashes` of a string array's spans (``width``: its offsets' type) into ``hashed``."""
    n = len(values)
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=width)[values.offset : values.offset + n + 1]
    end = int(offsets[-1])
    data = np.frombuffer(data_buffer, dtype=np.uint8)[:end] if data_buffer is not None else []
    padded = np.zeros(end + 8, dtype=np.uint8)  # the last string's last word reads 8 bytes
    padded[:end] = data
    # Every byte position read as the 8 bytes from there (unaligned, little-endian).
    words = np.ndarray((end + 1,), dtype="<u8", buffer=padded, strides=(1,))
    for first in range(0, n, _HASH_CHUNK):  # a chunk at a time: its temporaries stay in cache
        start = offsets[first : first + _HASH_CHUNK + 1].astype(np.int64)
        length = np.diff(start)
        start = start[:-1]
        h = length.astype(np.uint64) * _HASH_MULTIPLIERS[1]
        for word in range(-(-int(length.max()) // 8)):
            # The strings that reach this word (all of them, usually): a string's hash
            # depends on its own bytes only, whatever else is hashed with it.
            live = slice(None) if length.min() > 8 * word else np.flatnonzero(length > 8 * word)
            value = words[start[live] + 8 * word]
            left = length[live] - 8 * word
            short = np.flatnonzero(left < 8)  # the bytes beyond them are not theirs
            value[short] &= (np.uint64(1) << (left[short].astype(np.uint64) * np.uint64(8))) - 1
            mixed = h[live] ^ value
            mixed *= _HASH_MULTIPLIERS[0]
            mixed ^= mixed >> np.uint64(29)
            h[live] = mixed
        h ^= h >> np.uint64(32)
        h *= _HASH_MULTIPLIERS[1]
        h ^= h >> np.uint64(29)
        hashed[first : first + len(h)] = h
    return hashed


def _pair_keys(n_accounts: int, ranks: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """:meth:`CaseloadIndex.key_of` of an index of ``n_accounts`` accounts (one definition
    of a pair's key, also used while the index is built)."""
    bits = max(int(n_accounts).bit_length(), 1)
    return (ranks.astype(np.uint64) << np.uint64(64 - bits)) | (hashes >> np.uint64(bits))


def _pairs_of(index: CaseloadIndex, ranks: np.ndarray) -> np.ndarray | tuple[int, int]:
    """The pairs of the accounts of the given ranks: a span ``(first, end)`` when they
    fill most of one (a slice's accounts), else their positions."""
    first, end = index.account_start[ranks], index.account_start[ranks + 1]
    size = int((end - first).sum())
    if size >= (int(end.max()) - int(first.min())) // 2:
        return int(first.min()), int(end.max())
    lengths = end - first
    offsets = np.repeat(first - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return offsets + np.arange(size)


def caseload_sizes(caseloads: Caseloads, accounts: pd.Index) -> np.ndarray:
    """Pairs of each of ``accounts`` in the caseload table (0 for an account without any).

    Read from the index (stored, or built for the table by the kernel) when it holds every
    row: hashing millions of account ids again costs a second on a national table.
    """
    index = caseloads if isinstance(caseloads, CaseloadIndex) else _built_index(caseloads)
    if index is not None and (index is caseloads or int(index.account_start[-1]) == len(caseloads)):
        found = lookup(accounts, index.accounts)
        pairs = np.diff(index.account_start)[index.rank[np.maximum(found, 0)]]
        return np.where(found >= 0, pairs, 0).astype(np.float64)
    owned = lookup(caseloads["account_id"], accounts)  # rows without a record count too
    return np.bincount(owned[owned >= 0], minlength=len(accounts)).astype(np.float64)


def _built_index(caseloads: pd.DataFrame) -> CaseloadIndex | None:
    """The index already built for this table (None: none; it is not built here)."""
    kept = _CASELOAD_INDEXES.get(id(caseloads))
    return kept[1] if kept is not None and kept[0]() is caseloads else None


def caseloads_of(caseloads: Caseloads, accounts: pa.Array) -> pd.DataFrame | None:
    """The caseload rows of some accounts, as a table (None: none of them has a caseload)."""
    if isinstance(caseloads, CaseloadIndex):
        found = lookup(accounts, caseloads.accounts)
        if not (found >= 0).any():
            return None
        pairs = _pairs_of(caseloads, np.sort(caseloads.rank[found[found >= 0]]))
        if isinstance(pairs, tuple):
            pairs = np.arange(*pairs)
        table = pa.table(
            {
                "account_id": caseloads.accounts.take(pa.array(caseloads.account[pairs])),
                "record_id": caseloads.records.take(pa.array(pairs)),
            }
        )
        return table.to_pandas().astype({"account_id": "string", "record_id": "string"})
    kept = lookup(caseloads["account_id"], accounts) >= 0
    if not kept.any():
        return None
    return caseloads.iloc[np.flatnonzero(kept)].reset_index(drop=True)


def forget_caseload_index() -> None:
    """Drop the kept :class:`CaseloadIndex` (the next membership test builds one again)."""
    _CASELOAD_INDEXES.clear()


def _caseload_membership(
    acc: np.ndarray, rec: np.ndarray, accounts: pd.Index, records: pd.Index, caseloads: Caseloads
) -> np.ndarray:
    """In the account's caseload, per event (``acc``, ``rec``: codes among ``accounts``, ``records``)."""
    names = arrow_categories(records)
    rec = np.asarray(rec, dtype=np.int64)
    hashes = text_hashes(names)[np.maximum(rec, 0)] if len(names) else np.zeros(len(rec), np.uint64)
    known = np.where(rec >= 0, acc, -1)
    return _membership(known, hashes, lambda at: names.take(pa.array(rec[at])), accounts, caseloads)


def _membership(
    acc: np.ndarray,
    hashes: np.ndarray,
    record_ids: Callable[[np.ndarray], pa.Array],
    accounts: pd.Index,
    caseloads: Caseloads,
) -> np.ndarray:
    """In the account's caseload, per read: ``acc`` its account's code among ``accounts``
    (-1: none), ``hashes`` the :func:`text_hashes` of its record id, ``record_ids(at)`` the
    record ids of the reads at positions ``at``.

    Each (account, record) read is searched among the index's sorted pair keys;
    a pair with the same key holds the same account, and is a match when its
    record id is the read's (checked on the ids: a hash collision moves the
    search on to the next pair of that key).
    """
    index = caseload_index(caseloads)
    inside = np.zeros(len(acc), dtype=bool)
    asked = np.flatnonzero(acc >= 0)
    if not len(asked) or not len(index.records):
        return inside
    used = np.flatnonzero(np.bincount(acc[asked], minlength=len(accounts)))
    in_index = lookup(accounts[used], index.accounts)
    rank = np.full(len(accounts), -1, dtype=np.int64)
    rank[used] = np.where(in_index >= 0, index.rank[np.maximum(in_index, 0)], -1)
    ranks = rank[acc[asked]]
    asked, ranks = asked[ranks >= 0], ranks[ranks >= 0]
    if not len(asked):
        return inside
    wanted = index.key_of(ranks, hashes[asked])
    order = np.argsort(wanted)  # searched in key order: each search starts where the last ended
    wanted, asked = wanted[order], asked[order]
    # Only the pairs of these accounts' ranks (a slice's: a block) are searched.
    low, high = index.account_start[ranks.min()], index.account_start[ranks.max() + 1]
    at = low + np.searchsorted(index.keys[low:high], wanted)
    todo = np.arange(len(asked))
    while len(todo):  # pairs of the same key, one after the other (collisions: rarely twice)
        place = at[todo]
        same = place < len(index.keys)
        same[same] = index.keys[place[same]] == wanted[todo[same]]
        todo, place = todo[same], place[same]
        if not len(todo):
            break
        equal = pc.equal(index.records.take(pa.array(place)), record_ids(asked[todo])).to_numpy(
            zero_copy_only=False
        )
        inside[asked[todo[equal]]] = True
        todo = todo[~equal]
        at[todo] += 1
    return inside


def _out_of_scope_by_structure(frame: pd.DataFrame) -> np.ndarray:
    """Per event: the record belongs to another structure than the account's.

    Compared as codes: the record's structure is looked up among the account
    structures' categories once per category, not once per event.
    """
    if "organization_id" not in frame or "record_org_id" not in frame:
        return np.zeros(len(frame), dtype=bool)
    org = frame["organization_id"].cat.codes.to_numpy().astype(np.int64)
    record_org = frame["record_org_id"].cat.codes.to_numpy()
    as_org = lookup(frame["record_org_id"].cat.categories, frame["organization_id"].cat.categories)
    # A structure no account has (-1) differs from every account's; n means "not a structure".
    as_org = np.where(as_org >= 0, as_org, len(frame["organization_id"].cat.categories))
    mapped = np.where(record_org >= 0, as_org[np.maximum(record_org, 0)] if len(as_org) else 0, -1)
    return (org >= 0) & (record_org >= 0) & (org != mapped)


def out_of_caseload_mode(
    columns: set[str], caseloads: Caseloads | None, has_record_orgs: bool
) -> tuple[str | None, list[str]]:
    """How out-of-caseload reads are known for a log, and the notices saying so.

    Decided once per log (not per partition), from its columns: the caseload
    table, else a structure mismatch, else absent.
    """
    notices = []
    if "record_id" not in columns:
        notices.append("no record_id column: record reads cannot be counted")
    if caseloads is not None:
        return "caseloads", notices
    if "organization_id" in columns and "record_org_id" in columns and has_record_orgs:
        notices.append(
            "no caseload table: reads outside the caseload approximated by structure mismatch"
        )
        notices.append(
            "no caseload table: each account's working set derived from its own history"
            " (new_structures: structures of records it never read before)"
        )
        return "structure", notices
    notices.append(
        "no caseload table and no organization_id/record_org_id: out-of-caseload features are absent"
    )
    return None, notices


@dataclass
class EventCounts:
    """Per-event arrays the window sums are made of, kept for prefix evaluation.

    ``window`` numbers the partition's windows (account x day, ordered by
    account code then day); ``window_account`` and ``window_day`` say which.
    Novelty and rare-hour counts are zero until :mod:`detector.features.table`
    fills them in from other days (the replay does).
    """

    timestamp: np.ndarray  # int64 ns UTC, ascending
    window: np.ndarray  # window of each event
    hour: np.ndarray  # local hour 0-23
    counts: dict[str, np.ndarray]  # name in SUMS -> per-event count (bool or float)
    touched: np.ndarray  # per-event contribution to records_touched (peak_hourly_records)
    account: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # account code
    day: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # local day number
    window_account: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    window_day: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def _windows(acc: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(window of each event, account of each window, day of each window), by account then day."""
    if len(acc) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    first_day = int(day.min())
    n_days = int(day.max()) - first_day + 1
    dense = acc * n_days + (day - first_day)
    n_keys = (int(acc.max()) + 1) * n_days
    if n_keys <= _DENSE_KEY_LIMIT:
        active = np.flatnonzero(np.bincount(dense, minlength=n_keys))
        where = np.full(n_keys, -1, dtype=np.int64)
        where[active] = np.arange(len(active))
        window = where[dense]
    else:
        active, window = np.unique(dense, return_inverse=True)
    return window, active // n_days, active % n_days + first_day


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


def _first_text_pairs(
    window: np.ndarray, hashes: np.ndarray, ids: pa.Array, rows: np.ndarray
) -> np.ndarray:
    """True at the first occurrence of each (window, record id) pair, the reads being
    ``ids`` at ``rows`` (in time order), ``hashes`` their :func:`text_hashes`.

    A pair whose (window, hash) key occurs once is the only read of its record in its
    window (the same pair always gives the same key): most reads, decided without
    encoding millions of ids. The reads of a key seen more than once are decided on
    the ids themselves, so a hash collision never changes a count.
    """
    key = hashes ^ (window.astype(np.uint64) * _HASH_MULTIPLIERS[0])
    first = np.ones(len(key), dtype=bool)
    if len(key) < 2:
        return first
    # Keys alone in their bucket (of a few times as many as keys) occur once: only the
    # others are sorted to find the keys seen twice (a sort of every key cost more).
    bits = min(max(int(len(key)).bit_length() + 2, 8), _BUCKET_BITS)
    bucket = (key >> np.uint64(64 - bits)).astype(np.intp)
    crowded = np.flatnonzero((np.bincount(bucket, minlength=1 << bits) > 1)[bucket])
    ordered = np.sort(key[crowded])
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if not len(repeated):
        return first
    found = repeated[np.minimum(np.searchsorted(repeated, key[crowded]), len(repeated) - 1)]
    again = crowded[found == key[crowded]]
    encoded = pc.dictionary_encode(ids.take(pa.array(rows[again])))
    record = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    first[again] = _first_pairs(window[again], record, len(encoded.dictionary))
    return first


def _record_reads(
    frame: pd.DataFrame,
    action: np.ndarray,
    acc: np.ndarray,
    window: np.ndarray,
    caseloads: Caseloads | None,
    out_mode: str | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(first read of each record in its window, out-of-caseload among those; NaN when unknown).

    Record ids come as a categorical (a log in memory) or as Arrow text (a log read
    from Parquet: millions of distinct ids, which encoding took most of the
    partition's reading time); text ids are compared by their 64-bit hashes, and
    on the ids themselves wherever two hashes are equal.
    """
    n = len(frame)
    reading = np.zeros(len(ACTIONS), dtype=bool)
    reading[[_A["view_record"], _A["update_record"], _A["export"]]] = True
    is_read = reading[action]
    first_read = np.zeros(n, dtype=bool)
    column = frame["record_id"] if "record_id" in frame else None
    if column is None or isinstance(column.dtype, pd.CategoricalDtype):
        rec = codes(frame, "record_id")
        records = column.cat.categories if rec is not None else pd.Index([])
        if rec is None:
            rec = np.full(n, -1, dtype=np.int64)
        idx = np.flatnonzero(is_read & (rec >= 0))
        first_read[idx] = _first_pairs(window[idx], rec[idx], len(records))
        names = arrow_categories(records)
        of_name = text_hashes(names) if out_mode == "caseloads" and len(names) else None

        def hashes(at: np.ndarray) -> np.ndarray:
            return of_name[rec[at]]

        def record_ids(at: np.ndarray) -> pa.Array:
            return names.take(pa.array(rec[at]))
    else:
        text = column.array
        ids = _one_chunk(
            pa.array(text)
            if isinstance(text, pd.arrays.ArrowStringArray)
            else _arrow_strings(column)
        )
        idx = np.flatnonzero(is_read & pc.is_valid(ids).to_numpy(zero_copy_only=False))
        hashed = text_hashes(ids)
        first_read[idx] = _first_text_pairs(window[idx], hashed[idx], ids, idx)

        def hashes(at: np.ndarray) -> np.ndarray:
            return hashed[at]

        def record_ids(at: np.ndarray) -> pa.Array:
            return ids.take(pa.array(at))

    if out_mode == "caseloads" and caseloads is not None:
        reads = np.flatnonzero(first_read)  # only first reads are counted: look only them up
        inside = _membership(
            acc[reads],
            hashes(reads),
            lambda at: record_ids(reads[at]),
            frame["account_id"].cat.categories,
            caseloads,
        )
        out_read = np.zeros(n, dtype=bool)
        out_read[reads] = ~inside
        return first_read, out_read
    if out_mode == "structure":
        return first_read, first_read & _out_of_scope_by_structure(frame)
    return first_read, np.full(n, np.nan)


def event_counts(
    frame: pd.DataFrame,
    timezone: str,
    caseloads: Caseloads | None = None,
    out_mode: str | None = "caseloads",
) -> EventCounts:
    """Per-event counts of validated events (whole windows, time order), all vectorised."""
    timestamp = pd.DatetimeIndex(frame["timestamp"]).asi8
    day, local_hours = local_days(timestamp, timezone)
    hour = local_hours % 24
    weekday = (local_hours // 24 + 3) % 7  # of the calendar day; 1970-01-01 was a Thursday
    acc = frame["account_id"].cat.codes.to_numpy().astype(np.int64)
    window, w_acc, w_day = _windows(acc, day)

    action = frame["action"].cat.codes.to_numpy()
    counts = _activity_counts(frame, action)
    first_read, out_read = _record_reads(frame, action, acc, window, caseloads, out_mode)
    counts["records_read"] = first_read
    counts["out_of_caseload_reads"] = out_read
    counts["night_events"] = (hour >= NIGHT_HOURS[0]) | (hour < NIGHT_HOURS[1])
    touched = first_read + counts["records_returned"]  # per event, what records_touched counts
    counts["night_records_touched"] = np.where(counts["night_events"], touched, 0.0)
    counts["off_hours_events"] = (
        (hour < OFFICE_HOURS[0]) | (hour >= OFFICE_HOURS[1]) | (weekday >= 5)
    )
    for name in CROSS_DAY_SUMS:
        counts[name] = np.zeros(len(frame), dtype=bool)
    return EventCounts(timestamp, window, hour, counts, touched, acc, day, w_acc, w_day)


def first_uses(frame: pd.DataFrame, events: EventCounts, column: str) -> np.ndarray:
    """Per event: the first use of its value of ``column`` by the account in its window."""
    value = codes(frame, column)
    if value is None:
        return np.zeros(len(frame), dtype=bool)
    n_values = len(frame[column].cat.categories) + 1
    key = events.window * n_values
    key += value + 1
    n_windows = len(events.window_account)
    return first_occurrence(key, n_windows * n_values) & (value >= 0)


@dataclass
class Aggregates:
    """What the kernel gives for one partition: small tables, no events."""

    windows: pd.DataFrame  # one row per window: keys, KERNEL_SUMS, peak, hours, first/last instants
    hours: np.ndarray  # (windows x 24) events per local hour
    # column -> (account_id, value, day): first use in the partition (strings or dictionaries)
    first_seen: dict[str, pa.Table]
    created: pa.Table  # (account_id, day): accounts created by create_account
    events: int = 0
    links: pd.DataFrame = field(default_factory=pd.DataFrame)  # creator, target, timestamp
    # The state's kept day completed with this partition's events, when it asked for that
    # (a Continuation of detector.engine.state; taken off by run_kernel).
    completed: Any = None


def arrow_categories(categories: pd.Index) -> pa.Array:
    """A categorical's categories as an Arrow string array.

    Arrow-backed string categories (what reading gives) are taken as they are:
    no Python string is made of them, which cost seconds per partition.
    """
    if isinstance(categories.array, pd.arrays.ArrowStringArray):
        return _arrow_strings(categories)
    return pa.array(np.asarray(categories).astype(str), type=pa.string())


def _strings(categories: pd.Index, index: np.ndarray) -> pa.Array:
    """``categories[index]`` (index -1 = missing) as an Arrow string array, built by Arrow."""
    indices = pa.array(index, mask=index < 0, type=pa.int64())
    return pc.take(arrow_categories(categories), indices)


def _dictionary(categories: pd.Index, index: np.ndarray) -> pa.DictionaryArray:
    """``categories[index]`` as an Arrow dictionary array: codes, and the categories once.

    First-seen pairs run to millions per partition: as codes they are cheap to
    build, to send to the parent and to match there (no string hashed per row).
    The dictionary keeps the categories used only: a slice of a day would
    otherwise send the whole day's accounts and values again with each slice.
    """
    present = np.bincount(index, minlength=len(categories)) > 0
    used = np.flatnonzero(present)
    codes = (np.cumsum(present, dtype=np.int32) - 1)[index]
    return pa.DictionaryArray.from_arrays(
        pa.array(codes, type=pa.int32()), arrow_categories(categories).take(pa.array(used))
    )


def plain_first_seen(table: pa.Table) -> pa.Table:
    """First-seen pairs with plain string columns (as stored), whatever the kernel gave."""
    for i, column in enumerate(table.schema):
        if pa.types.is_dictionary(column.type):
            table = table.set_column(i, column.name, pc.cast(table[column.name], pa.string()))
    return table


def _attribute(frame: pd.DataFrame, column: str, first: np.ndarray, window: np.ndarray):
    """(the window's first event's value, the window's first non-missing value) as strings."""
    n_win = len(first)
    value = codes(frame, column)
    if value is None:
        missing = pa.nulls(n_win, type=pa.string())
        return missing, missing
    categories = frame[column].cat.categories
    of_first = value[np.minimum(first, len(value) - 1)] if n_win else value[:0]
    present = np.flatnonzero(value >= 0)
    first_present = first_event_of_each(window[present], n_win)
    found = first_present < len(present)
    any_value = np.full(n_win, -1, dtype=np.int64)
    any_value[found] = value[present[first_present[found]]]
    return _strings(categories, of_first), _strings(categories, any_value)


def partition_aggregates(
    frame: pd.DataFrame,
    timezone: str,
    caseloads: Caseloads | None = None,
    out_mode: str | None = "caseloads",
) -> Aggregates:
    """The kernel: one partition of validated events (whole local days) -> aggregates."""
    events = event_counts(frame, timezone, caseloads, out_mode)
    window, n_win = events.window, len(events.window_account)
    sums = {
        name: np.bincount(window, weights=events.counts[name], minlength=n_win)
        if events.counts[name].dtype != bool
        else np.bincount(window[events.counts[name]], minlength=n_win).astype(np.float64)
        for name in KERNEL_SUMS
    }
    window_hour = window * 24 + events.hour
    per_hour_touched = np.bincount(window_hour, weights=events.touched, minlength=n_win * 24)
    sums["peak_hourly_records"] = per_hour_touched.reshape(n_win, 24).max(axis=1, initial=0.0)
    hours = np.bincount(window_hour, minlength=n_win * 24).reshape(n_win, 24).astype(np.int32)

    timestamp = events.timestamp
    window_start = np.empty(n_win, dtype=np.int64)
    window_end = np.empty(n_win, dtype=np.int64)
    window_end[window] = timestamp  # last write wins: the latest event
    window_start[window[::-1]] = timestamp[::-1]
    first = first_event_of_each(window, n_win)
    accounts = frame["account_id"].cat.categories
    columns = {
        "account_id": _strings(accounts, events.window_account).to_pandas(),
        "day": events.window_day,
        "window_start": window_start,
        "window_end": window_end,
    }
    for column, name in (("account_type", "type"), ("organization_id", "org")):
        of_first, any_value = _attribute(frame, column, first, window)
        columns[f"_{name}_first"] = of_first.to_pandas()
        columns[f"_{name}_any"] = any_value.to_pandas()
    table = pd.DataFrame(columns | sums)  # built at once: a column inserted at a time costs more

    first_seen = {}
    for column, _ in NOVELTY:
        value = codes(frame, column)
        if value is None:
            continue
        n_values = len(frame[column].cat.categories) + 1
        key = events.account * n_values + value + 1
        # Events are in time order: an account's first event with a value is on its first day.
        rows = np.flatnonzero(first_occurrence(key, (len(accounts) + 1) * n_values) & (value >= 0))
        first_seen[column] = pa.table(
            {
                "account_id": _dictionary(accounts, events.account[rows]),
                "value": _dictionary(frame[column].cat.categories, value[rows]),
                "day": pa.array(events.day[rows], type=pa.int32()),
            }
        )
    links = creation_pairs(frame)  # a few rows: who created or granted which account
    return Aggregates(table, hours, first_seen, _created(frame, events), len(frame), links)


def _created(frame: pd.DataFrame, events: EventCounts) -> pa.Table:
    """(account_id, day) of every account a create_account event created."""
    target = codes(frame, "target_account_id")
    if target is None:
        rows = np.zeros(0, dtype=np.int64)
        target = np.zeros(0, dtype=np.int64)
        categories = pd.Index([], dtype=object)
    else:
        rows = np.flatnonzero(events.counts["accounts_created"] & (target >= 0))
        categories = frame["target_account_id"].cat.categories
    return pa.table(
        {
            "account_id": _strings(categories, target[rows]),
            "day": pa.array(events.day[rows], type=pa.int32()),
        }
    )
