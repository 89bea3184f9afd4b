"""The feature catalogue: every feature's one name and one line of documentation.

Rules may only name features listed here; the feature table has exactly these
columns (plus the window keys). A window is one account's activity over one
local day counted from 04:00 to 04:00 (a night stays whole); *own* baselines
come from that account's earlier windows, *peer* baselines from earlier windows
of accounts of the same type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from detector.errors import DetectorError
from detector.vocabulary import (
    OWN_MAX,
    OWN_MEDIAN,
    PEER_MEDIAN,
    PEER_P95,
    Z_OWN,
    Z_PEER,
    baseline_name,
)


@dataclass(frozen=True)
class Feature:
    name: str
    doc: str
    unit: str  # count, share, days, flag, ratio, z


# Features that get own/peer baselines (median, max, 95th percentile, robust z).
BASELINED_VOLUMES: tuple[str, ...] = (
    "events",
    "records_touched",
    "records_read",
    "records_returned",
    "out_of_caseload_reads",
    "out_of_caseload_share",
    "night_records_touched",
    "new_structures",
)

_ACTIVITY = [
    Feature("events", "events in the window", "count"),
    Feature("logins", "successful logins", "count"),
    Feature("failed_logins", "failed logins", "count"),
    Feature("password_logins", "successful logins by password alone", "count"),
    Feature("mfa_logins", "successful logins by MFA or SSO", "count"),
    Feature(
        "records_read",
        "distinct person records accessed one by one (view, update, single export)",
        "count",
    ),
    Feature("searches", "search requests", "count"),
    Feature("exports", "export requests", "count"),
    Feature("records_returned", "person records held in search and export answers", "count"),
    Feature("records_exported", "person records held in export answers", "count"),
    Feature("records_touched", "records_read + records_returned: what the window exposed", "count"),
    Feature("peak_hourly_records", "most records touched within one clock hour", "count"),
    Feature(
        "out_of_caseload_reads", "distinct records read outside the account's caseload", "count"
    ),
    Feature(
        "out_of_caseload_share",
        "out_of_caseload_reads / records_read (0 when nothing read)",
        "share",
    ),
    Feature("caseload_size", "records in the account's caseload (0 when it has none)", "count"),
    Feature(
        "caseload_ratio", "records_read / caseload_size (records_read when no caseload)", "ratio"
    ),
    Feature("night_share", "share of events between 22:00 and 06:00 local time", "share"),
    Feature("night_records_touched", "records touched between 22:00 and 06:00 local time", "count"),
    Feature(
        "off_hours_share", "share of events outside 07:00-20:00 local time or on a weekend", "share"
    ),
    Feature(
        "rare_hour_events",
        "events at a local hour which, with its two neighbours, holds < 1 % of the account's earlier events (0 before 50 earlier events)",
        "count",
    ),
    Feature(
        "new_addresses",
        "distinct source addresses never used by the account in earlier windows (0 before 5 days of history)",
        "count",
    ),
    Feature(
        "new_clients",
        "distinct user agents never used by the account in earlier windows (0 before 5 days of history)",
        "count",
    ),
    Feature(
        "new_applications",
        "distinct applications never used by the account in earlier windows (0 before 5 days of history)",
        "count",
    ),
    Feature(
        "new_rare_addresses",
        "new_addresses that fewer than 5 % (or 3) of the account type's accounts had used by that day",
        "count",
    ),
    Feature(
        "new_rare_clients",
        "new_clients that fewer than 5 % (or 3) of the account type's accounts had used by that day: a browser rolled out to most accounts is nobody's new device",
        "count",
    ),
    Feature(
        "new_structures",
        "distinct structures (record_org_id) of records the account never accessed in earlier windows (0 before 5 days of history)",
        "count",
    ),
    Feature("accounts_created", "create_account events by the account", "count"),
    Feature("access_grants", "grant_access events by the account", "count"),
    Feature("history_days", "earlier windows with activity for this account", "days"),
    Feature(
        "log_days",
        "days between the log's first day and this window: how much history anyone can have",
        "days",
    ),
    Feature(
        "account_age_days",
        "days from the account's first appearance (or creation in the log) to the window start",
        "days",
    ),
    Feature(
        "created_in_log", "1 when a create_account event in the log created this account", "flag"
    ),
    Feature(
        "peer_new_addresses_share",
        "share of the account type's accounts (with 5 days of history, active or not) that used a new address that day or the 2 days before (0 under 20 such accounts)",
        "share",
    ),
    Feature(
        "peer_new_clients_share",
        "share of the account type's accounts (with 5 days of history, active or not) that used a new client that day or the 2 days before (0 under 20 such accounts)",
        "share",
    ),
    Feature("off_day", "1 on a Saturday, a Sunday or a French public holiday", "flag"),
    Feature(
        "own_off_days_worked",
        "earlier windows of the account on a Saturday, Sunday or holiday",
        "days",
    ),
    Feature(
        "off_days_since_first_seen",
        "Saturdays, Sundays and holidays from the account's first appearance to this window: chances it had to work on one",
        "days",
    ),
]


def _baseline_features(volume: str) -> list[Feature]:
    # A median, maximum or percentile of a volume is in the volume's own unit.
    unit = next(f.unit for f in _ACTIVITY if f.name == volume)
    return [
        Feature(
            baseline_name(OWN_MEDIAN, volume),
            f"median {volume} over the account's earlier active windows",
            unit,
        ),
        Feature(
            baseline_name(OWN_MAX, volume),
            f"largest {volume} in the account's earlier windows",
            unit,
        ),
        Feature(
            baseline_name(PEER_MEDIAN, volume),
            f"median {volume} over peers' earlier active windows",
            unit,
        ),
        Feature(
            baseline_name(PEER_P95, volume),
            f"95th percentile of {volume} over peers' earlier active windows",
            unit,
        ),
        Feature(
            baseline_name(Z_OWN, volume),
            f"robust z of {volume} against the account's history (0 without history)",
            "z",
        ),
        Feature(
            baseline_name(Z_PEER, volume),
            f"robust z of {volume} against peers' earlier windows",
            "z",
        ),
    ]


# Accumulated over days (detector.features.accumulation), for these volumes.
_ACCUMULATED = [
    Feature(
        f"cusum_{volume}",
        f"daily excess of {volume} over the account's own baseline (robust z, less the same-day"
        " shift of its structure and peers), summed over days: one-sided CUSUM, one day adds"
        " at most 3.5",
        "z",
    )
    for volume in ("records_touched", "out_of_caseload_reads")
]

FEATURES: dict[str, Feature] = {
    f.name: f
    for f in _ACTIVITY
    + [b for v in BASELINED_VOLUMES for b in _baseline_features(v)]
    + _ACCUMULATED
}


def describe(words: Sequence[str] = ()) -> list[str]:
    """Lines ``name  unit  doc`` for the features whose name holds any of ``words``
    (every feature without words), in catalogue order: what ``detector rules features``
    prints for a rule writer. ``DetectorError`` when no name holds any word."""
    chosen = [f for f in FEATURES.values() if not words or any(w in f.name for w in words)]
    if not chosen:
        raise DetectorError(f"no feature name contains {' or '.join(map(repr, words))}")
    width = max(len(f.name) for f in chosen)
    return [f"{f.name:<{width}}  {f.unit:<5}  {f.doc}" for f in chosen]
