"""Group alerts into incidents, and write and read the incidents table (contract section 4b).

Two alerts belong to the same incident when

- they are on the same account and follow one another: no working day
  (Monday to Friday) without an alert on that account lies between their local
  days (``MAX_QUIET_WORKING_DAYS``), so Friday and the next Monday chain; or
- one attack created and used an account: an account created or granted
  (``create_account`` / ``grant_access`` naming it in ``target_account_id``) by
  another account *during one of that account's alerted windows*, and alerted
  at or after that instant, joins its creator's incident.

An incident's id is a hash of its first alert's account and window start: a
rerun on the same log gives the same ids.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from detector.errors import InputError
from detector.vocabulary import ACCOUNT_ADMIN_ACTIONS, SEVERITIES

MAX_QUIET_WORKING_DAYS = 0
LINKING_ACTIONS = ACCOUNT_ADMIN_ACTIONS  # an account that creates or empowers another links them
INCIDENT_COLUMNS = [
    "incident_id",
    "first_detected",
    "last_detected",
    "first_activity",
    "last_activity",
    "accounts",
    "alerts",
    "alert_ids",
    "severity",
    "score",
    "rules",
    "records_exposed",
]


def empty_incidents() -> pd.DataFrame:
    """An incidents table with no rows and the right columns."""
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in INCIDENT_COLUMNS})
    for column in ("first_detected", "last_detected", "first_activity", "last_activity"):
        frame[column] = pd.Series(dtype="datetime64[ns, UTC]")
    frame["alerts"] = pd.Series(dtype=np.int64)
    frame["score"] = pd.Series(dtype=np.float64)
    frame["records_exposed"] = pd.Series(dtype=np.float64)
    return frame


def creation_pairs(events: pd.DataFrame) -> pd.DataFrame:
    """``creator``, ``target``, ``timestamp`` of each create_account / grant_access naming an account.

    Works on a normalised event frame (:mod:`detector.schema`); vectorised.
    """
    if "target_account_id" not in events or not len(events):
        return pd.DataFrame({"creator": [], "target": [], "timestamp": []})
    # Decide per category and select the few rows first: converting every event's
    # action or time-zone-aware timestamp to Python objects cost seconds per partition.
    action = events["action"]
    if isinstance(action.dtype, pd.CategoricalDtype):
        linking = np.isin(action.cat.categories.astype(str), LINKING_ACTIONS)
        codes = action.cat.codes.to_numpy()
        is_linking = np.where(codes >= 0, linking[np.maximum(codes, 0)], False)
    else:
        is_linking = action.isin(LINKING_ACTIONS).to_numpy()
    rows = np.flatnonzero(is_linking & events["target_account_id"].notna().to_numpy())
    picked = events.iloc[rows]
    return pd.DataFrame(
        {
            "creator": picked["account_id"].astype(str).to_numpy(),
            "target": picked["target_account_id"].astype(str).to_numpy(),
            "timestamp": picked["timestamp"].to_numpy(),
        }
    )


def _incident_id(account: str, window_start: pd.Timestamp) -> str:
    key = f"{account}|{pd.Timestamp(window_start).isoformat()}"
    return "INC-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def group_incidents(
    alerts: pd.DataFrame,
    features: pd.DataFrame,
    creations: pd.DataFrame,
    earlier: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(alerts with ``incident_id``, the incidents table).

    ``features`` is the feature table (``account_id``, ``window_start``, ``day``,
    ``records_touched``): it gives each alert's local day and what its window
    exposed. ``creations`` is :func:`creation_pairs` of the log. ``earlier``
    (``account_id``, ``window_start``, ``window_end``, ``detected_at``, ``day``)
    are alerts of earlier runs (a ``--state`` directory keeps them): they link
    this run's alerts as they would in one run over the whole log, and an
    incident they belong to keeps its id, but the table counts this run's alerts.
    """
    alerts = alerts.copy()
    if not len(alerts):
        alerts["incident_id"] = pd.Series(dtype=object)
        return alerts, empty_incidents()
    # Only the alerted accounts' windows are joined: the table holds every account-day.
    alerted = features["account_id"].isin(alerts["account_id"].unique()).to_numpy()
    keys = features.loc[alerted, ["account_id", "window_start", "day", "records_touched"]]
    joined = alerts[["account_id", "window_start"]].merge(
        keys, on=["account_id", "window_start"], how="left", validate="one_to_one"
    )
    n = len(alerts)
    nodes = pd.concat(
        [
            alerts[["account_id", "window_start", "window_end", "detected_at"]].assign(
                day=joined["day"].to_numpy()
            ),
            earlier[["account_id", "window_start", "window_end", "detected_at", "day"]]
            if earlier is not None and len(earlier)
            else None,
        ],
        ignore_index=True,
    )
    day = pd.to_datetime(nodes["day"]).to_numpy().astype("datetime64[D]")
    n_nodes = len(nodes)
    rows, cols = [], []

    # Same account, following one another.
    account_of = nodes["account_id"].to_numpy().astype(str)
    order = np.lexsort((day, account_of))
    same = account_of[order][1:] == account_of[order][:-1]
    quiet = np.busday_count(day[order][:-1] + np.timedelta64(1, "D"), day[order][1:])
    chained = same & (quiet <= MAX_QUIET_WORKING_DAYS)
    rows += list(order[:-1][chained])
    cols += list(order[1:][chained])

    # Accounts created or granted during a creator's alerted window, alerted afterwards.
    if len(creations):
        start = nodes["window_start"].to_numpy()
        end = nodes["window_end"].to_numpy()
        made = creations.merge(
            pd.DataFrame({"creator": account_of, "creator_alert": np.arange(n_nodes)}),
            on="creator",
        )
        when = made["timestamp"].to_numpy()
        slot = made["creator_alert"].to_numpy()
        made = made[(when >= start[slot]) & (when <= end[slot])].merge(
            pd.DataFrame({"target": account_of, "target_alert": np.arange(n_nodes)}), on="target"
        )
        target = made["target_alert"].to_numpy()
        after = nodes["detected_at"].to_numpy()[target] >= made["timestamp"].to_numpy()
        rows += list(made["creator_alert"].to_numpy()[after])
        cols += list(target[after])

    # Imported here: scipy's sparse graphs take 0.2 s to import, and a run without
    # alerts (or a command that only reads incidents) never needs them.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_nodes, n_nodes))
    _, label = connected_components(graph, directed=False)

    frame = alerts.assign(
        group=label[:n],
        touched=joined["records_touched"].fillna(0).to_numpy(),
        rank=alerts["severity"].map(SEVERITIES.index),
    )
    # The id comes from the group's first alert, an earlier run's included.
    first = nodes.assign(group=label).sort_values(["window_start", "account_id"])
    first = first.groupby("group").head(1)
    ids = dict(
        zip(
            first["group"],
            map(_incident_id, first["account_id"], first["window_start"]),
            strict=True,
        )
    )
    alerts["incident_id"] = frame["group"].map(ids).to_numpy()

    grouped = frame.groupby("group", sort=True)
    incidents = pd.DataFrame(
        {
            "incident_id": [ids[g] for g in grouped.groups],
            "first_detected": grouped["detected_at"].min().to_numpy(),
            "last_detected": grouped["detected_at"].max().to_numpy(),
            "first_activity": grouped["window_start"].min().to_numpy(),
            "last_activity": grouped["window_end"].max().to_numpy(),
            "accounts": [sorted(set(v)) for v in grouped["account_id"].agg(list)],
            "alerts": grouped.size().to_numpy(),
            "alert_ids": [sorted(v) for v in grouped["alert_id"].agg(list)],
            "severity": [SEVERITIES[r] for r in grouped["rank"].max()],
            "score": grouped["score"].max().to_numpy(),
            "rules": [sorted({r for rs in v for r in rs}) for v in grouped["rules"].agg(list)],
            "records_exposed": grouped["touched"].sum().to_numpy(),
        }
    )
    for column in ("first_detected", "last_detected", "first_activity", "last_activity"):
        incidents[column] = pd.to_datetime(incidents[column], utc=True)
    rank = incidents["severity"].map(SEVERITIES.index)
    incidents = incidents.assign(rank=rank).sort_values(
        ["rank", "score", "first_detected", "incident_id"],
        ascending=[False, False, True, True],
        kind="stable",
    )
    return alerts, incidents.reset_index(drop=True)[INCIDENT_COLUMNS]


def incidents_path(alerts_path: str | Path) -> Path:
    """Where the incidents of an alerts (or findings) file go: ``<stem>.incidents.parquet``
    beside it (``alerts.parquet`` -> ``alerts.incidents.parquet``; see ``outputs.side_file``)."""
    from detector.outputs import side_file

    return side_file(alerts_path, "incidents")


def write_incidents(incidents: pd.DataFrame, path: str | Path) -> Path:
    """Write the incidents table (Parquet)."""
    from detector.outputs import atomic_path

    with atomic_path(path) as temporary:
        incidents.to_parquet(temporary, index=False)
    return Path(path)


def read_incidents(path: str | Path) -> pd.DataFrame:
    """Read an incidents table written by :func:`write_incidents`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such incidents file: {path}")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not an incidents table ({error})") from None
    missing = [c for c in INCIDENT_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: not an incidents table (missing {', '.join(missing)})")
    for column in ("accounts", "alert_ids", "rules"):
        frame[column] = frame[column].map(list)
    return frame


def describe(incidents: pd.DataFrame) -> str:
    """One line per incident, for the terminal."""
    return "\n".join(
        f"{row.incident_id}  {row.severity:<6}  {row.alerts} alerts  {', '.join(row.accounts)}"
        f"  rules: {json.dumps(list(row.rules))}"
        for row in incidents.itertuples()
    )
