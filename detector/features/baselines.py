"""Own-history and peer baselines, from earlier windows only.

A baseline for day *d* looks at the ``HISTORY_DAYS`` calendar days before *d*
(never *d* itself): the account's own active days for *own* statistics, the
active days of every account of the same type for *peer* statistics.
Volumes are laid out as a dense (account x day) matrix with NaN for days
without activity; quantiles come from sorting fixed-width slices, which is
vectorised and bounded in memory by working in chunks.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

HISTORY_DAYS = 28
MIN_OWN_WINDOWS = 3  # fewer earlier active days than this: no own baseline
MIN_PEER_WINDOWS = 20  # fewer peer account-days than this: no peer baseline
_CHUNK_CELLS = 4_000_000  # values sorted at once: bounds memory to ~32 MB per chunk


def sorted_quantiles(values: np.ndarray, qs: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles along the last axis, ignoring NaN (linear interpolation, as numpy).

    Returns (quantiles with shape ``values.shape[:-1] + (len(qs),)``, count of
    non-NaN values). Rows without values give NaN.
    """
    ordered = np.sort(np.where(np.isnan(values), np.inf, values), axis=-1)
    count = np.isfinite(ordered).sum(axis=-1)
    out = np.full(values.shape[:-1] + (len(qs),), np.nan)
    last = np.maximum(count - 1, 0)
    for i, q in enumerate(qs):
        position = q * last
        low = np.floor(position).astype(np.int64)
        high = np.ceil(position).astype(np.int64)
        low_value = np.take_along_axis(ordered, low[..., None], axis=-1)[..., 0]
        high_value = np.take_along_axis(ordered, high[..., None], axis=-1)[..., 0]
        with np.errstate(invalid="ignore"):
            value = low_value + (high_value - low_value) * (position - low)
        out[..., i] = np.where(count > 0, value, np.nan)
    return out, count


def _history_view(matrix: np.ndarray) -> np.ndarray:
    """(rows, days, HISTORY_DAYS) view: for each day, the HISTORY_DAYS days before it."""
    padding = np.full((matrix.shape[0], HISTORY_DAYS), np.nan, dtype=matrix.dtype)
    padded = np.concatenate([padding, matrix], axis=1)
    return sliding_window_view(padded, HISTORY_DAYS, axis=1)[:, : matrix.shape[1], :]


def _within_history(days: np.ndarray | None) -> np.ndarray | None:
    """(days, HISTORY_DAYS) mask of the history view's cells that are truly earlier
    calendar days within HISTORY_DAYS, when the matrix's columns are only the days
    that hold events (``days``, ascending); None when no day is missing.

    The HISTORY_DAYS columns before a day hold every active day of the
    HISTORY_DAYS calendar days before it, and after a gap also older ones: those
    are masked out.
    """
    if days is None or len(days) == 0 or days[-1] - days[0] == len(days) - 1:
        return None
    padded = np.concatenate([np.full(HISTORY_DAYS, np.iinfo(np.int64).min // 2), days])
    earlier = sliding_window_view(padded, HISTORY_DAYS)[: len(days)]
    return earlier >= (days - HISTORY_DAYS)[:, None]


def own_stats(
    matrix: np.ndarray, days: np.ndarray | None = None, only: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per (account, day): median, q25, q75, max and count of the account's earlier days.

    ``matrix`` is (accounts x days) with NaN for inactive days; its columns are
    consecutive days, or the calendar days ``days`` (ascending, with gaps).
    With ``only`` (column indices), only those columns are computed (the others
    stay NaN, count 0).
    """
    within = _within_history(days)
    n_rows, n_days = matrix.shape
    only = np.arange(n_days) if only is None else np.asarray(only, dtype=np.int64)
    stats = {k: np.full((n_rows, n_days), np.nan) for k in ("median", "q25", "q75", "max")}
    stats["count"] = np.zeros((n_rows, n_days), dtype=np.int64)
    rows_per_chunk = max(1, _CHUNK_CELLS // max(1, len(only) * HISTORY_DAYS))
    for start in range(0, n_rows, rows_per_chunk):
        rows = slice(start, start + rows_per_chunk)
        history = _history_view(matrix[rows])[:, only, :]
        if within is not None:
            history = np.where(within[only], history, np.nan)
        quantiles, count = sorted_quantiles(history, (0.25, 0.5, 0.75, 1.0))
        for i, key in enumerate(("q25", "median", "q75", "max")):
            stats[key][rows, only] = quantiles[..., i]
        stats["count"][rows, only] = count
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
    within = _within_history(days)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    n_days = matrix.shape[1]
    only = np.arange(n_days) if only is None else np.asarray(only, dtype=np.int64)
    stats = {k: np.full((n_groups, n_days), np.nan) for k in ("median", "q25", "q75", "p95")}
    stats["count"] = np.zeros((n_groups, n_days), dtype=np.int64)
    for group in range(n_groups):  # a handful of account types
        members = matrix[groups == group]
        if members.size == 0:
            continue
        history = _history_view(members)  # (members, days, HISTORY_DAYS), a view
        days_per_chunk = max(1, _CHUNK_CELLS // max(1, members.shape[0] * HISTORY_DAYS))
        for start in range(0, len(only), days_per_chunk):
            chosen = only[start : start + days_per_chunk]
            cells = history[:, chosen, :]
            if within is not None:
                cells = np.where(within[chosen], cells, np.nan)
            # (days, members * HISTORY_DAYS): every earlier peer account-day of each day.
            pooled = cells.transpose(1, 0, 2).reshape(-1, members.shape[0] * HISTORY_DAYS)
            quantiles, count = sorted_quantiles(pooled, (0.25, 0.5, 0.75, 0.95))
            for i, key in enumerate(("q25", "median", "q75", "p95")):
                stats[key][group, chosen] = quantiles[:, i]
            stats["count"][group, chosen] = count
    return stats


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
