"""Tables of alerts and of the alerted accounts' events, for the HTML report and the notebooks."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from detector.alerts import URGENCY as SEVERITY_RANK
from detector.alerts import as_list, normalise_alerts
from detector.errors import InputError
from detector.schema import read_events
from detector.timeutil import to_utc, utc_timestamp
from detector.vocabulary import SINGLE_RECORD_ACTIONS


def load_account_events(log: str | Path, accounts: Collection[str]) -> pd.DataFrame:
    """The log's events of `accounts` only, as `detector.schema.read_events` gives them."""
    log = Path(log)
    if not log.exists():
        raise InputError(f"log not found: {log}")
    return read_events(log, accounts=sorted(set(accounts)))


def log_accounts(log: str | Path) -> pa.ChunkedArray:
    """The log's account_id column alone (a file or a directory of Parquet files)."""
    try:
        return pq.read_table(log, columns=["account_id"]).column("account_id")
    except (pa.ArrowInvalid, OSError, KeyError) as error:
        raise InputError(f"{log}: cannot read its account_id column ({error})") from None


def evidence_table(alert: pd.Series | dict) -> pd.DataFrame:
    """An alert's `evidence` as a table: feature, doc, value, own_median, peer_p95.

    Empty (with those columns) when the alert carries no evidence.
    """
    columns = ["feature", "doc", "value", "own_median", "peer_p95"]
    raw = alert.get("evidence", "[]")
    if isinstance(raw, str):
        try:
            items = json.loads(raw) if raw.strip() else []
        except json.JSONDecodeError as error:
            raise InputError(f"alert {alert.get('alert_id', '?')}: evidence is not JSON") from error
    else:
        items = as_list(raw)
    table = pd.DataFrame([item for item in items if isinstance(item, dict)])
    return table.reindex(columns=columns)


def usage_table(
    events: pd.DataFrame,
    account_id: str,
    column: str,
    window_start=None,
    window_end=None,
) -> pd.DataFrame:
    """Values of `column` (e.g. `src_ip`, `user_agent`) an account used, with history.

    One row per value: `events` in the window (all events when no window),
    `events_before` the window, `first_seen`, `last_seen` (UTC) and `new`:
    True when the value was never used before the window. Values not used in
    the window are left out; most used first.
    """
    columns = [column, "events", "events_before", "first_seen", "last_seen", "new"]
    if column not in events:
        return pd.DataFrame(columns=columns)
    mine = events[(events["account_id"] == account_id) & events[column].notna()]
    stamps = to_utc(mine["timestamp"])
    start = utc_timestamp(window_start) if window_start is not None else stamps.min()
    end = utc_timestamp(window_end) if window_end is not None else stamps.max()
    if pd.isna(start) or pd.isna(end):
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame({"timestamp": stamps})
    frame["in_window"] = (stamps >= start) & (stamps <= end)
    frame["before"] = stamps < start
    # Group on the column as stored (often categorical): casting 100k values to
    # str first costs more than the grouping.
    table = frame.groupby(mine[column].rename(column), observed=True).agg(
        events=("in_window", "sum"),
        events_before=("before", "sum"),
        first_seen=("timestamp", "min"),
        last_seen=("timestamp", "max"),
    )
    table = table[table["events"] > 0].reset_index()
    table[column] = table[column].astype(str)
    table["new"] = table["events_before"] == 0
    return table.sort_values(["events", column], ascending=[False, True]).reset_index(drop=True)[
        columns
    ]


def explanations(alerts: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """Why each alert fired, one row per alert and evidence feature, most urgent first.

    Columns: `alert_id`, `account_id`, `severity`, `rules`, `reason`, then the
    evidence columns (`feature`, `value`, `own_median`, `peer_p95`); an alert
    without evidence keeps one row with those empty. `limit` keeps the first
    alerts only.
    """
    alerts = normalise_alerts(alerts).head(limit)
    keys = ["alert_id", "account_id", "severity", "rules", "reason"]
    columns = [*keys, "feature", "value", "own_median", "peer_p95"]
    tables = []
    for _, alert in alerts.iterrows():  # an alert list has tens of rows, not millions
        evidence = evidence_table(alert).drop(columns="doc")
        if evidence.empty:
            evidence = evidence.reindex([0])
        tables.append(evidence.assign(**{key: [alert[key]] * len(evidence) for key in keys}))
    if not tables:
        return pd.DataFrame(columns=columns)
    return pd.concat(tables, ignore_index=True)[columns]


def account_summary(alerts: pd.DataFrame) -> pd.DataFrame:
    """One row per alerted account: type, alerts, highest severity, first and last detection.

    Most urgent account first (highest severity, then earliest detection).
    """
    alerts = normalise_alerts(alerts)
    rank = alerts["severity"].map(SEVERITY_RANK).fillna(len(SEVERITY_RANK))
    table = (
        alerts.assign(rank=rank)
        .groupby("account_id", sort=False)
        .agg(
            account_type=("account_type", "first"),
            alerts=("alert_id", "size"),
            rank=("rank", "min"),
            first_detected=("detected_at", "min"),
            last_detected=("detected_at", "max"),
        )
        .reset_index()
        .sort_values(["rank", "first_detected"])
    )
    by_rank = {rank: name for name, rank in SEVERITY_RANK.items()}
    table.insert(3, "top_severity", table.pop("rank").map(by_rank).fillna("unknown"))
    return table.reset_index(drop=True)


CASELOAD_ACTIONS = SINGLE_RECORD_ACTIONS


def caseload_reads(
    events: pd.DataFrame, account_id: str, caseloads: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One account's single-record accesses, each marked in or out of its caseload.

    Record accesses are `view_record`, `update_record` and single-record
    `export` (a `record_id` is named). `in_caseload` follows the contract
    (section 2): the (account, record) pair is in `caseloads`; without that
    table, the record's `record_org_id` equals the account's
    `organization_id`; without either it is missing (NA).
    """
    mine = events[
        (events["account_id"] == account_id)
        & events["action"].astype(str).isin(CASELOAD_ACTIONS)
        & events["record_id"].notna()
    ]
    keep = [
        c
        for c in ("timestamp", "action", "record_id", "record_org_id", "organization_id")
        if c in mine
    ]
    table = mine[keep].copy()
    table["record_id"] = table["record_id"].astype(str)
    if caseloads is not None:
        assigned = caseloads.loc[caseloads["account_id"].astype(str) == account_id, "record_id"]
        table["in_caseload"] = table["record_id"].isin(assigned.astype(str))
    elif "record_org_id" in table and "organization_id" in table:
        table["in_caseload"] = table["record_org_id"].astype(str) == table[
            "organization_id"
        ].astype(str)
    else:
        table["in_caseload"] = pd.NA
    return table.reset_index(drop=True)
