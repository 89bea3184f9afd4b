"""The one definition of every feature computed from per-window sums.

The feature table (whole windows) and the prefix evaluation behind
``detected_at`` (a window cut at each of its events) both call :func:`derive`
on sums of the same per-event counts, so a feature cannot mean two things.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from detector.features import accumulation
from detector.features.catalogue import BASELINED_VOLUMES
from detector.vocabulary import (
    BASELINE_STATS,
    OWN_MEDIAN,
    OWN_SCALE,
    PEER_MEDIAN,
    PEER_SCALE,
    Z_OWN,
    Z_PEER,
    baseline_name,
)

# Per-event counts summed over a window (or a window's prefix).
SUMS: tuple[str, ...] = (
    "events",
    "logins",
    "failed_logins",
    "password_logins",
    "mfa_logins",
    "records_read",
    "searches",
    "exports",
    "records_returned",
    "records_exported",
    "night_records_touched",
    "out_of_caseload_reads",
    "night_events",
    "off_hours_events",
    "rare_hour_events",
    "new_addresses",
    "new_clients",
    "new_applications",
    "new_structures",
    "new_rare_addresses",
    "new_rare_clients",
    "accounts_created",
    "access_grants",
)
# Taken as is from the window (same value for every prefix of it): the window's
# own facts, then the baselines from earlier days.
PLAIN_CONSTANTS: tuple[str, ...] = (
    "caseload_size",
    "history_days",
    "log_days",
    "account_age_days",
    "created_in_log",
    "off_day",
    "own_off_days_worked",
    "off_days_since_first_seen",
    "peer_new_addresses_share",
    "peer_new_clients_share",
)
BASELINE_CONSTANTS: tuple[str, ...] = tuple(
    baseline_name(stat, volume)
    for volume in BASELINED_VOLUMES
    for stat in (*BASELINE_STATS, OWN_SCALE, PEER_SCALE)
) + tuple(
    f"{stat}_{volume}"
    for volume in accumulation.CUSUM_VOLUMES
    # The sum over earlier days, the reference the day is judged against, the same-day shift.
    for stat in ("_cusum_prev", "_cusum_centre", "_cusum_scale", "_shift")
)
WINDOW_CONSTANTS: tuple[str, ...] = PLAIN_CONSTANTS + BASELINE_CONSTANTS


def derive(
    sums: Mapping[str, np.ndarray],
    constants: Mapping[str, np.ndarray],
    out: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Catalogue features from window (or prefix) sums and the window's constants.

    ``out``: arrays to write computed features into as they are made (the feature
    table's columns), so that a table of millions of windows is not held twice.
    """
    features = window_features(sums, constants, out)
    for volume in BASELINED_VOLUMES:
        value = features[volume]
        for stat in BASELINE_STATS:
            name = baseline_name(stat, volume)
            features[name] = np.asarray(constants[name], dtype=np.float64)
        for centre, spread, z_stat in (
            (OWN_MEDIAN, OWN_SCALE, Z_OWN),
            (PEER_MEDIAN, PEER_SCALE, Z_PEER),
        ):
            scale = np.asarray(constants[baseline_name(spread, volume)], dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = (value - features[baseline_name(centre, volume)]) / scale
            # No baseline: the account is neither above nor below it (0), unless
            # the volume itself is unknown (no caseload data), which stays NaN.
            name = baseline_name(z_stat, volume)
            features[name] = _kept(out, name, np.where(np.isnan(scale), value * 0, z))
            del z
    for volume in accumulation.CUSUM_VOLUMES:
        name = f"cusum_{volume}"
        features[name] = _kept(out, name, _cusum(features, constants, volume))
    return features


def _kept(out: Mapping[str, np.ndarray] | None, name: str, values: np.ndarray) -> np.ndarray:
    """``values``, or the array of ``out`` they were copied into."""
    if out is None or name not in out:
        return values
    out[name][:] = values
    return out[name]


def _cusum(
    features: Mapping[str, np.ndarray], constants: Mapping[str, np.ndarray], volume: str
) -> np.ndarray:
    """The accumulated excess after this window (or prefix): the earlier days' sum plus today's."""
    value = features[volume]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (value - np.asarray(constants[f"_cusum_centre_{volume}"], dtype=np.float64)) / (
            np.asarray(constants[f"_cusum_scale_{volume}"], dtype=np.float64)
        )
    term = accumulation.daily_term(z, np.asarray(constants[f"_shift_{volume}"], dtype=np.float64))
    previous = np.asarray(constants[f"_cusum_prev_{volume}"], dtype=np.float64)
    # Unknown volume (no caseload data) or no earlier sum (a day not scored): unknown.
    return np.where(np.isnan(value), np.nan, accumulation.step(previous, term))


def window_features(
    sums: Mapping[str, np.ndarray],
    constants: Mapping[str, np.ndarray],
    out: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """The features that need no baseline (the volumes baselines are taken of):
    sums, shares, ratios and the window's plain constants (``out`` as in :func:`derive`)."""
    features: dict[str, np.ndarray] = {}
    for name in SUMS:
        if name not in ("night_events", "off_hours_events"):
            features[name] = np.asarray(sums[name], dtype=np.float64)
    features["peak_hourly_records"] = np.asarray(sums["peak_hourly_records"], dtype=np.float64)
    events = features["events"]
    read = features["records_read"]
    features["records_touched"] = _kept(out, "records_touched", read + features["records_returned"])
    with np.errstate(divide="ignore", invalid="ignore"):
        features["out_of_caseload_share"] = _kept(
            out,
            "out_of_caseload_share",
            np.where(
                read > 0,
                features["out_of_caseload_reads"] / read,
                features["out_of_caseload_reads"] * 0,
            ),
        )
        features["night_share"] = _kept(
            out, "night_share", np.where(events > 0, sums["night_events"] / events, 0.0)
        )
        features["off_hours_share"] = _kept(
            out, "off_hours_share", np.where(events > 0, sums["off_hours_events"] / events, 0.0)
        )
        caseload = np.asarray(constants["caseload_size"], dtype=np.float64)
        features["caseload_ratio"] = _kept(
            out, "caseload_ratio", np.where(caseload > 0, read / caseload, read)
        )
    for name in PLAIN_CONSTANTS:
        features[name] = np.asarray(constants[name], dtype=np.float64)
    return features
