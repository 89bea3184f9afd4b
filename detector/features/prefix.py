"""Features of windows cut at each of their events: what was knowable at that instant.

``detected_at`` is the first event at which an alert's condition held. To find
it, the selected windows are replayed: each event gets the features its window
had *up to and including* that event (cumulative sums, running hourly peak),
with the window's baselines, which come from earlier days anyway. Only the
windows that raised an alert are replayed, so this stays cheap.
"""

from __future__ import annotations

import numpy as np

from detector.features.derive import SUMS, WINDOW_CONSTANTS, derive
from detector.features.table import FeatureTable


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


def prefix_features(feature_table: FeatureTable, windows: np.ndarray) -> dict[str, np.ndarray]:
    """Columns with one value per event of the given window rows: the features known then.

    Keys: ``window`` (row of the feature table), ``timestamp`` (ns UTC, int64),
    and the catalogue's features. Rows are ordered by window, then time. A dict
    of arrays, not a DataFrame: an alerted bulk theft can hold millions of
    events, and building a frame of them would cost more than the replay.
    """
    events = feature_table.events
    selected = np.zeros(len(feature_table.table), dtype=bool)
    selected[np.asarray(windows, dtype=np.int64)] = True
    rows = np.flatnonzero(selected[events.window])
    rows = rows[np.argsort(events.window[rows], kind="stable")]  # by window, then time
    window = events.window[rows]
    starts = (
        np.flatnonzero(np.r_[True, window[1:] != window[:-1]]) if len(rows) else np.array([], int)
    )
    group = (
        np.cumsum(np.r_[True, window[1:] != window[:-1]]) - 1 if len(rows) else np.array([], int)
    )

    sums = {
        name: _group_cumsum(events.counts[name][rows].astype(np.float64), starts, group)
        for name in SUMS
    }
    hour = events.hour[rows]
    hour_change = (
        np.r_[True, (window[1:] != window[:-1]) | (hour[1:] != hour[:-1])]
        if len(rows)
        else np.array([], bool)
    )
    hour_starts = np.flatnonzero(hour_change)
    hour_group = np.cumsum(hour_change) - 1
    in_hour = _group_cumsum(events.touched[rows].astype(np.float64), hour_starts, hour_group)
    sums["peak_hourly_records"] = _group_running_max(in_hour, group)

    table = feature_table.table
    constants = {name: table[name].to_numpy()[window] for name in WINDOW_CONSTANTS}
    return {"window": window, "timestamp": events.timestamp[rows], **derive(sums, constants)}
