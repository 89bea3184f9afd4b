"""Own-history and peer baselines, from earlier windows only.

A baseline for day *d* looks at the ``HISTORY_DAYS`` calendar days before *d*
(never *d* itself): the account's own active days for *own* statistics, the
active days of every account of the same type for *peer* statistics.
Volumes are laid out as a dense (account x day) matrix with NaN for days
without activity. The days within ``HISTORY_DAYS`` before a day are always a
contiguous run of the matrix's columns (its columns are ascending days), so:

- own statistics sort each account's 28 earlier cells (short rows sort fast;
  row chunks bound memory);
- peer statistics sort a peer group's cells once, with their columns, and
  read each day's order statistics from a running count of the cells whose
  column lies in that day's run (no per-day sort of the pooled cells).

Quantiles are numpy's linear interpolation, computed the same way in both.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

HISTORY_DAYS = 28
MIN_OWN_WINDOWS = 3  # fewer earlier active days than this: no own baseline
MIN_PEER_WINDOWS = 20  # fewer peer account-days than this: no peer baseline
# Peer statistics of fewer days than 1/_SELECT_BELOW of the columns select each day's
# order statistics from its run's cells instead of sorting all cells once.
_SELECT_BELOW = 4
_CHUNK_CELLS = 4_000_000  # cells sorted at once: bounds memory to ~16 MB (float32) per chunk
OWN_QUANTILES = (("q25", 0.25), ("median", 0.5), ("q75", 0.75), ("max", 1.0))
PEER_QUANTILES = (("q25", 0.25), ("median", 0.5), ("q75", 0.75), ("p95", 0.95))


def positions(count: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where quantile ``q`` of sets of ``count`` sorted values lies: the ranks of its
    lower and upper neighbours and the fraction between them (numpy's linear rule)."""
    largest = int(count.max()) if count.size else 0
    # Few distinct counts (own histories hold at most HISTORY_DAYS days): the
    # positions are worked out once per count and looked up, the same numbers.
    by_count = count.size > 4 * (largest + 1)
    counts = np.arange(largest + 1) if by_count else count
    position = q * np.maximum(counts - 1, 0)
    low = np.floor(position).astype(np.int64)
    high = np.ceil(position).astype(np.int64)
    fraction = position - low
    if by_count:
        return low[count], high[count], fraction[count]
    return low, high, fraction


def interpolate(
    low_value: np.ndarray, high_value: np.ndarray, fraction: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """The quantile from its neighbours (:func:`positions`); NaN where ``count`` is 0.

    The arithmetic is numpy's: the difference in the values' own dtype, the
    fraction in float64.
    """
    with np.errstate(invalid="ignore"):
        value = low_value + (high_value - low_value) * fraction
    value[count == 0] = np.nan
    return value


def interpolated(
    pick: Callable[[np.ndarray], np.ndarray], count: np.ndarray, q: float
) -> np.ndarray:
    """Quantile ``q`` of sets of ``count`` values (linear interpolation, as numpy's);
    NaN where ``count`` is 0. ``pick(k)`` gives each set's ``k``-th smallest value
    (``k`` an array shaped like ``count``, below ``count`` where ``count`` > 0)."""
    low, high, fraction = positions(count, q)
    return interpolate(pick(low), pick(high), fraction, count)


def _ranked(ordered: np.ndarray, where: np.ndarray, ranks: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per day (row of ``ranks``): the value of rank ``k``, found among the day's wanted
    ``ranks`` and their positions ``where`` in ``ordered``."""
    return ordered[where[np.arange(len(k)), np.argmax(ranks == k[:, None], axis=1)]]


def window_starts(n_columns: int, days: np.ndarray | None = None) -> np.ndarray:
    """Per column: the first column within HISTORY_DAYS calendar days before it.

    Columns are consecutive days, or the ascending calendar days ``days``.
    """
    if days is None:
        return np.maximum(np.arange(n_columns, dtype=np.int64) - HISTORY_DAYS, 0)
    days = np.asarray(days, dtype=np.int64)
    return np.searchsorted(days, days - HISTORY_DAYS, side="left").astype(np.int64)


def _history_view(matrix: np.ndarray) -> np.ndarray:
    """(rows, days, HISTORY_DAYS) view: for each day, the HISTORY_DAYS days before it."""
    padding = np.full((matrix.shape[0], HISTORY_DAYS), np.nan, dtype=matrix.dtype)
    padded = np.concatenate([padding, matrix], axis=1)
    return sliding_window_view(padded, HISTORY_DAYS, axis=1)[:, : matrix.shape[1], :]


def _columns(only: np.ndarray | None, n_columns: int) -> np.ndarray | slice:
    """``only`` as an index of columns (a slice when it is all of them: no fancy copy)."""
    if only is None:
        return slice(None)
    return np.asarray(only, dtype=np.int64)


def own_stats(
    matrix: np.ndarray, days: np.ndarray | None = None, only: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per (account, day): median, q25, q75, max and count of the account's earlier days.

    ``matrix`` is (accounts x days) with NaN for inactive days; its columns are
    consecutive days, or the calendar days ``days`` (ascending, with gaps).
    With ``only`` (column indices), only those columns are computed (the others
    stay NaN, count 0).
    """
    n_rows, n_days = matrix.shape
    targets = np.arange(n_days) if only is None else np.asarray(only, dtype=np.int64)
    some = own_stats_at(matrix, targets, days)
    if only is None:
        return some
    stats = {key: np.full((n_rows, n_days), np.nan) for key, _ in OWN_QUANTILES}
    stats["count"] = np.zeros((n_rows, n_days), dtype=np.int64)
    for key, values in some.items():
        stats[key][:, targets] = values
    return stats


def own_stats_at(
    matrix: np.ndarray, targets: np.ndarray, days: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """:func:`own_stats` of the columns ``targets`` only, as (accounts x len(targets)) arrays
    (a run with saved state scores a day or two of many stored ones: nothing is made for
    the others)."""
    n_rows, n_days = matrix.shape
    targets = np.asarray(targets, dtype=np.int64)
    everything = len(targets) == n_days and (targets == np.arange(n_days)).all()
    chosen = slice(None) if everything else targets
    starts = window_starts(n_days, days)[targets]
    # Cells of the history view before a day's run are older than HISTORY_DAYS (gaps).
    outside = np.arange(HISTORY_DAYS) < (starts - targets + HISTORY_DAYS)[:, None]
    outside = outside if outside.any() else None
    active = np.zeros((n_rows, n_days + 1), dtype=np.int32)
    np.cumsum(~np.isnan(matrix), axis=1, out=active[:, 1:])
    stats = {key: np.empty((n_rows, len(targets))) for key, _ in OWN_QUANTILES}
    stats["count"] = (active[:, targets] - active[:, starts]).astype(np.int64)
    del active
    rows_per_chunk = max(1, _CHUNK_CELLS // max(1, len(targets) * HISTORY_DAYS))
    for first in range(0, n_rows, rows_per_chunk):
        rows = slice(first, first + rows_per_chunk)
        history = _history_view(matrix[rows])[:, chosen, :]
        if not history.flags.owndata:  # a view of the padded copy: sort a copy of it
            history = history.copy()
        if outside is not None:
            history[:, outside] = np.nan
        history.sort(axis=-1)  # NaN last: a cell's count smallest values are its history
        cells = history.reshape(-1, HISTORY_DAYS)
        count = stats["count"][rows].reshape(-1)
        wanted = [positions(count, q) for _, q in OWN_QUANTILES]
        # Every quantile's neighbours in one gather: they lie in the same cache lines.
        ranks = np.stack([k for low, high, _ in wanted for k in (low, high)], axis=1)
        picked = np.take_along_axis(cells, ranks, axis=1)
        del ranks
        for i, ((key, _), (_, _, fraction)) in enumerate(zip(OWN_QUANTILES, wanted, strict=True)):
            value = interpolate(picked[:, 2 * i], picked[:, 2 * i + 1], fraction, count)
            stats[key][rows] = value.reshape(history.shape[:2])
    return stats


def peer_stats(
    matrix: np.ndarray,
    groups: np.ndarray,
    days: np.ndarray | None = None,
    only: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per (group, day): median, q25, q75, p95 and count of the group's earlier account-days.

    ``groups`` gives each matrix row's peer group as an integer 0..G-1; the
    result arrays are (G x days). ``days`` and ``only`` as in :func:`own_stats`.
    """
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    n_days = matrix.shape[1]
    targets = np.arange(n_days)[_columns(only, n_days)]
    starts = window_starts(n_days, days)[targets]
    stats = {key: np.full((n_groups, n_days), np.nan) for key, _ in PEER_QUANTILES}
    stats["count"] = np.zeros((n_groups, n_days), dtype=np.int64)
    if len(targets) * _SELECT_BELOW < n_days:  # a day or two of many: select, not sort
        _peer_stats_selected(stats, matrix, groups, targets, starts)
        return stats
    label_type = np.int16 if n_days < np.iinfo(np.int16).max else np.int32
    for group in range(n_groups):  # a handful of account types
        # Column-major: the group's cells day by day, then sorted once with their day.
        cells = matrix[groups == group].T.reshape(-1)
        column = np.repeat(np.arange(n_days, dtype=label_type), len(cells) // max(n_days, 1))
        present = ~np.isnan(cells)
        cells, column = cells[present], column[present]
        if len(cells) == 0:
            continue
        ordered, column = _sorted_with(cells, column, n_days)
        del cells, present
        # Per day, the ranks the quantiles read (lower and upper neighbours) and where
        # they lie in `ordered`: a running count of the cells of the day's run.
        quantiles = np.array([q for _, q in PEER_QUANTILES])
        ranks = np.zeros((len(targets), 2 * len(quantiles)), dtype=np.int64)
        where = np.zeros_like(ranks)
        count = np.zeros(len(targets), dtype=np.int64)
        for i, (target, start) in enumerate(zip(targets, starts, strict=True)):
            inside = column < target
            if start > 0:
                inside &= column >= start
            running = np.cumsum(inside, dtype=np.int64)
            count[i] = running[-1]
            position = quantiles * max(count[i] - 1, 0)
            ranks[i] = np.concatenate([np.floor(position), np.ceil(position)])
            where[i] = np.searchsorted(running, ranks[i] + 1)
        where = np.minimum(where, len(ordered) - 1)  # days without cells: masked by count
        pick = partial(_ranked, ordered, where, ranks)
        for key, q in PEER_QUANTILES:
            stats[key][group, targets] = interpolated(pick, count, q)
        stats["count"][group, targets] = count
    return stats


def _sorted_with(
    cells: np.ndarray, column: np.ndarray, n_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """``cells`` ascending, with each one's ``column``. Whole non-negative counts (most
    volumes) are packed with their column into one integer and sorted (no argsort and
    gathers); the order among equal values, which the quantiles do not read, may differ."""
    bits = max(int(n_days - 1).bit_length(), 1)
    top = float(cells.max()) if len(cells) else 0.0
    if len(cells) and cells.min() >= 0 and top < 2.0 ** min(24, 62 - bits):
        whole = cells.astype(np.int64)
        if np.array_equal(whole, cells):
            whole <<= bits
            whole |= column
            whole.sort()
            column = (whole & ((1 << bits) - 1)).astype(column.dtype)
            whole >>= bits
            return whole.astype(cells.dtype), column
    order = np.argsort(cells)
    return cells[order], column[order]


def _peer_stats_selected(
    stats: dict[str, np.ndarray],
    matrix: np.ndarray,
    groups: np.ndarray,
    targets: np.ndarray,
    starts: np.ndarray,
) -> None:
    """:func:`peer_stats` of a few days, written into ``stats``: per day and group, the
    cells of the day's run only, and their order statistics found by a selection
    (np.partition) instead of a sort of every cell. The same values are picked."""
    # Rows ordered by group once (stable: each group's rows keep their order), rather
    # than a mask over every row per group: thousands of structures made that quadratic.
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(stats["count"].shape[0] + 1))
    for group in range(stats["count"].shape[0]):
        member = order[bounds[group] : bounds[group + 1]]
        if not len(member):
            continue
        for target, start in zip(targets, starts, strict=True):
            cells = matrix[member, start:target].reshape(-1)
            cells = cells[~np.isnan(cells)]
            count = np.array([len(cells)], dtype=np.int64)
            stats["count"][group, target] = count[0]
            if not len(cells):
                continue
            wanted = [positions(count, q) for _, q in PEER_QUANTILES]
            ranks = np.unique(np.concatenate([np.r_[low, high] for low, high, _ in wanted]))
            ranked = order_statistics(cells, ranks)
            for (key, _), (low, high, fraction) in zip(PEER_QUANTILES, wanted, strict=True):
                at = np.searchsorted(ranks, np.r_[low, high])
                value = interpolate(ranked[at[:1]], ranked[at[1:]], fraction, count)
                stats[key][group, target] = value[0]


_COUNTED_BELOW = 1 << 22  # largest value (and 4x the cells) up to which values are counted


def order_statistics(cells: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The values of ``cells`` (no NaN) at the sorted positions ``ranks``, in their dtype.

    Counts (small non-negative whole numbers, most volumes) are tallied: the value at
    rank r is the first whose running tally exceeds r, the value a sort would put
    there, found in one pass instead of a selection per rank. Other values (shares,
    large numbers) are selected (np.partition, which reorders ``cells``).
    """
    if len(cells) > 1024:
        top = float(cells.max())
        if cells.min() >= 0 and top < min(_COUNTED_BELOW, 4 * len(cells)):
            whole = cells.astype(np.int64)
            if np.array_equal(whole, cells):
                tally = np.cumsum(np.bincount(whole))
                return np.searchsorted(tally, ranks, side="right").astype(cells.dtype)
    cells.partition(ranks)  # each rank's value in its sorted place
    return cells[ranks]


SHARE_NOISE = 0.05  # a share moving by 5 points is within ordinary day-to-day noise


def robust_scale(
    median: np.ndarray, q25: np.ndarray, q75: np.ndarray, share: bool = False
) -> np.ndarray:
    """Spread for a robust z: the IQR's normal-equivalent, never below ordinary noise.

    Counts fluctuate at least like a Poisson variable (sd = sqrt(mean)), shares
    by a few points; the floor keeps a very regular account from turning a
    small wobble into a huge z.
    """
    iqr_sd = (q75 - q25) / 1.349
    noise = np.full_like(median, SHARE_NOISE) if share else np.sqrt(np.maximum(median, 1.0))
    return np.fmax(iqr_sd, noise)
