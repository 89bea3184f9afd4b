"""Benchmark metrics: how well alerts catch the attacks of a ground truth, and at what cost.

Pure functions over in-memory tables (no I/O), so a notebook can call them on any
alerts table and truth. Every metric is defined in ``docs/metrics.md``; the names
here are the names there.

Inputs, all in the shapes of the data contract:

- ``alerts``: the alerts table (``account_id``, ``detected_at``, ``severity``,
  ``rules``; more columns are ignored).
- ``attacks``: the list of attack objects of ``NAME.attacks.json``.
- ``truth``: ``NAME.truth.parquet`` (``event_id``, ``attack_id``).
- ``events``: the log (``event_id``, ``timestamp``, ``account_id``, ``action``,
  ``record_id``, ``records_returned``).
- ``lookalikes``: the list of benign look-alike instances of ``NAME.lookalikes.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from detector.errors import InputError
from detector.timeutil import to_utc
from detector.vocabulary import (
    BULK_ACTIONS,
    DEFAULT_TIMEZONE,
    SEVERITIES,
    SINGLE_RECORD_ACTIONS,
    Severity,
)

#: An alert still counts as catching an attack up to this long after the attack's end.
DETECTION_GRACE = pd.Timedelta(days=1)

#: Name used in rule breakdowns for an alert raised by the model alone.
MODEL_ONLY = "(model)"


# --------------------------------------------------------------------------- inputs


def attacks_table(attacks: Sequence[Mapping] | pd.DataFrame) -> pd.DataFrame:
    """The attacks of ``attacks.json`` as a frame: attack_id, scenario, accounts, start, end (UTC)."""
    frame = pd.DataFrame(list(attacks) if not isinstance(attacks, pd.DataFrame) else attacks)
    missing = {"attack_id", "scenario", "accounts", "start", "end"} - set(frame.columns)
    if missing and len(frame):
        raise InputError(f"attacks lack {', '.join(sorted(missing))}")
    if not len(frame):
        return pd.DataFrame(
            {
                "attack_id": pd.Series(dtype=str),
                "scenario": pd.Series(dtype=str),
                "accounts": pd.Series(dtype=object),
                "start": pd.Series(dtype="datetime64[ns, UTC]"),
                "end": pd.Series(dtype="datetime64[ns, UTC]"),
            }
        )
    frame = frame[["attack_id", "scenario", "accounts", "start", "end"]].copy()
    frame["attack_id"] = frame["attack_id"].astype(str)
    frame["accounts"] = frame["accounts"].map(lambda accounts: [str(a) for a in accounts])
    frame["start"] = to_utc(frame["start"])
    frame["end"] = to_utc(frame["end"])
    return frame.reset_index(drop=True)


def attack_accounts(attacks: Sequence[Mapping] | pd.DataFrame) -> pd.DataFrame:
    """One row per (attack, account): attack_id, scenario, account_id, start, end."""
    table = attacks_table(attacks)
    long = table.explode("accounts").rename(columns={"accounts": "account_id"})
    return long.dropna(subset=["account_id"]).reset_index(drop=True)


def _alerts(alerts: pd.DataFrame) -> pd.DataFrame:
    """The alert columns the metrics use, with UTC ``detected_at`` and a severity rank."""
    missing = {"account_id", "detected_at", "severity"} - set(alerts.columns)
    if missing:
        raise InputError(f"alerts lack {', '.join(sorted(missing))}")
    out = pd.DataFrame(
        {
            "account_id": alerts["account_id"].astype(str).to_numpy(),
            "detected_at": to_utc(alerts["detected_at"]).to_numpy(),
            "severity": alerts["severity"].astype(str).to_numpy(),
            "rules": (
                alerts["rules"].to_numpy()
                if "rules" in alerts.columns
                else np.empty(len(alerts), dtype=object)
            ),
            "rule_times": (
                alerts["rule_times"].to_numpy()
                if "rule_times" in alerts.columns
                else np.empty(len(alerts), dtype=object)
            ),
        }
    )
    out["detected_at"] = to_utc(out["detected_at"])
    out["severity_rank"] = out["severity"].map({s: i for i, s in enumerate(SEVERITIES)})
    return out


def _empty(values: object) -> bool:
    return values is None or (isinstance(values, float) and np.isnan(values)) or len(values) == 0


def first_rule(rules: object, rule_times: object = None, detected_at: object = None) -> str:
    """What raised an alert first: its first rule, or ``(model)``.

    Rules are ordered by the instant their condition first held (``rule_times``).
    When the alert was raised before its first rule held (``detected_at`` earlier
    than ``rule_times[0]``), or has no rules, the model raised it.
    """
    if _empty(rules):
        return MODEL_ONLY
    if not _empty(rule_times) and detected_at is not None and not pd.isna(detected_at):
        if pd.Timestamp(rule_times[0]) > pd.Timestamp(detected_at):
            return MODEL_ONLY
    return str(rules[0])


# --------------------------------------------------------------------------- attacks


def detections(
    alerts: pd.DataFrame, attacks: Sequence[Mapping] | pd.DataFrame, grace=DETECTION_GRACE
) -> pd.DataFrame:
    """The first detecting alert of each attack.

    An alert detects an attack when it is about one of the attack's accounts and its
    ``detected_at`` lies in [start, end + grace]. One row per attack: attack_id,
    scenario, start, end, detected (0/1), detected_at (NaT when missed),
    time_to_detect_h (NaN when missed), first_account, first_rule, first_severity.
    """
    table = attacks_table(attacks)
    pairs = attack_accounts(table).merge(_alerts(alerts), on="account_id", how="inner")
    in_window = (pairs["detected_at"] >= pairs["start"]) & (
        pairs["detected_at"] <= pairs["end"] + grace
    )
    # Ties at the same instant: the most severe alert counts as the one that fired first.
    hits = pairs[in_window].sort_values(
        ["attack_id", "detected_at", "severity_rank"], ascending=[True, True, False]
    )
    first = hits.drop_duplicates("attack_id", keep="first").set_index("attack_id")

    out = table.drop(columns="accounts").set_index("attack_id")
    out["detected"] = out.index.isin(first.index).astype(int)
    out["detected_at"] = first["detected_at"].reindex(out.index)
    out["time_to_detect_h"] = (out["detected_at"] - out["start"]) / pd.Timedelta(hours=1)
    out["first_account"] = first["account_id"].reindex(out.index)
    # A loop over attacks (one first alert each), not over events.
    out["first_rule"] = pd.Series(
        [
            first_rule(*row)
            for row in first[["rules", "rule_times", "detected_at"]].itertuples(index=False)
        ],
        index=first.index,
        dtype=object,
    ).reindex(out.index)
    out.loc[out["detected"] == 0, "first_rule"] = None
    out["first_severity"] = first["severity"].reindex(out.index)
    return out.reset_index()


def record_exposure(events: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """The malicious events with the records each newly exposes, in time order per attack.

    An event's ``new_records`` is 1 for the first access by the attack to a record named
    by ``record_id`` (view_record, update_record, single-record export), the
    ``records_returned`` of a search or bulk export (export without ``record_id``),
    and 0 otherwise. ``cum_records`` is the running total within the attack.
    Columns: attack_id, timestamp, new_records, cum_records.
    """
    missing = {"timestamp", "action"} - set(events.columns)
    if missing:
        raise InputError(f"log lacks {', '.join(sorted(missing))}")
    if "event_id" not in truth.columns or "attack_id" not in truth.columns:
        raise InputError("truth lacks event_id or attack_id")
    log = events.copy()
    if "event_id" not in log.columns:
        # Contract: without an event_id column, an event's id is its 0-based row position.
        log["event_id"] = np.arange(len(log), dtype=np.int64)
    left, right = _same_id_type(log["event_id"], truth["event_id"])
    log["event_id"] = left
    truth = truth.assign(event_id=right)[["event_id", "attack_id"]]
    bad = log.merge(truth, on="event_id", how="inner")
    bad["attack_id"] = bad["attack_id"].astype(str)
    bad["timestamp"] = to_utc(bad["timestamp"])
    bad = bad.sort_values(["attack_id", "timestamp"], kind="stable").reset_index(drop=True)

    record_id = bad["record_id"] if "record_id" in bad.columns else pd.Series(None, index=bad.index)
    returned = (
        pd.to_numeric(bad["records_returned"], errors="coerce").fillna(0)
        if "records_returned" in bad.columns
        else pd.Series(0.0, index=bad.index)
    )
    action = bad["action"].astype(str)
    single = action.isin(SINGLE_RECORD_ACTIONS) & record_id.notna()
    bulk = action.isin(BULK_ACTIONS) & record_id.isna()
    keyed = pd.DataFrame({"attack_id": bad["attack_id"], "record_id": record_id})[single]
    first_time = pd.Series(False, index=bad.index)
    first_time[keyed.index] = ~keyed.duplicated().to_numpy()
    new = np.where(first_time, 1.0, 0.0) + np.where(bulk, returned.to_numpy(dtype=float), 0.0)
    out = pd.DataFrame({"attack_id": bad["attack_id"], "timestamp": bad["timestamp"]})
    out["new_records"] = new
    out["cum_records"] = out.groupby("attack_id")["new_records"].cumsum()
    return out


def _same_id_type(left: pd.Series, right: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Event ids of log and truth in one type: integers when both are, else strings."""
    if pd.api.types.is_integer_dtype(left) and pd.api.types.is_integer_dtype(right):
        return left.astype(np.int64), right.astype(np.int64)
    return left.astype(str), right.astype(str)


def exposure_before_detection(exposure: pd.DataFrame, found: pd.DataFrame) -> pd.DataFrame:
    """Records exposed up to (and including) each attack's first detection.

    ``exposure`` comes from :func:`record_exposure`, ``found`` from :func:`detections`.
    Adds records_total, records_exposed and exposed_before_detection (a share; 1 when
    the attack was missed; 0 when it was detected and touched no record) to ``found``.
    """
    out = found.copy()
    totals = exposure.groupby("attack_id")["new_records"].sum()
    out["records_total"] = out["attack_id"].map(totals).fillna(0.0)
    # The running total at the last malicious event at or before the detection instant.
    stamped = out[["attack_id", "detected_at"]].dropna().sort_values("detected_at")
    upto = pd.merge_asof(
        stamped,
        exposure.sort_values("timestamp")[["attack_id", "timestamp", "cum_records"]],
        left_on="detected_at",
        right_on="timestamp",
        by="attack_id",
        direction="backward",
        allow_exact_matches=True,
    ).set_index("attack_id")["cum_records"]
    exposed = np.where(
        out["detected"].to_numpy() == 0,
        out["records_total"].to_numpy(dtype=float),
        out["attack_id"].map(upto).fillna(0.0).to_numpy(dtype=float),
    )
    out["records_exposed"] = exposed
    total = out["records_total"].to_numpy(dtype=float)
    share = np.divide(exposed, total, out=np.zeros(len(out)), where=total > 0)
    out["exposed_before_detection"] = np.where(out["detected"] == 0, 1.0, share)
    return out


def attack_outcomes(
    alerts: pd.DataFrame,
    attacks: Sequence[Mapping] | pd.DataFrame,
    truth: pd.DataFrame,
    events: pd.DataFrame,
    grace=DETECTION_GRACE,
) -> pd.DataFrame:
    """Per attack: detection, time to detect and exposure (see :func:`detections`)."""
    return exposure_before_detection(
        record_exposure(events, truth), detections(alerts, attacks, grace)
    )


# --------------------------------------------------------------------------- benign side


def account_days(events: pd.DataFrame, timezone: str = DEFAULT_TIMEZONE) -> pd.DataFrame:
    """Distinct (account_id, day) pairs with at least one event; days are local calendar days.

    ``day`` is the local calendar day as ``datetime64[D]``.
    """
    wall = to_utc(events["timestamp"]).dt.tz_convert(timezone).dt.tz_localize(None)
    days = pd.DataFrame(
        {
            "account_id": events["account_id"].astype(str).to_numpy(),
            "day": wall.to_numpy().astype("datetime64[D]"),
        }
    )
    return days.drop_duplicates().reset_index(drop=True)


def _local_days(stamps: pd.Series, timezone: str) -> np.ndarray:
    return stamps.dt.tz_convert(timezone).dt.tz_localize(None).to_numpy().astype("datetime64[D]")


def alert_counts(
    alerts: pd.DataFrame,
    attacks: Sequence[Mapping] | pd.DataFrame,
    events: pd.DataFrame | None,
    timezone: str = DEFAULT_TIMEZONE,
    active_days: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Data-set-wide counts: false alerts and account-level precision.

    ``active_days``: :func:`account_days` of the log, when already computed (then
    ``events`` is not read). Returns alerts_total, accounts_alerted, attack_accounts, attack_accounts_alerted,
    benign_alerts, benign_accounts_alerted, benign_alert_days, benign_account_days,
    fp_per_1000_account_days, precision (NaN when nothing was alerted) and recall.
    """
    table = _alerts(alerts)
    bad_accounts = set(attack_accounts(attacks)["account_id"])
    is_bad = table["account_id"].isin(bad_accounts)
    alerted = set(table["account_id"])
    benign = table[~is_bad]
    benign_alert_days = benign.assign(day=_local_days(benign["detected_at"], timezone))[
        ["account_id", "day"]
    ].drop_duplicates()

    days = account_days(events, timezone) if active_days is None else active_days
    benign_days = int((~days["account_id"].isin(bad_accounts)).sum())
    true_positives = len(alerted & bad_accounts)
    return {
        "alerts_total": int(len(table)),
        "accounts_alerted": len(alerted),
        "attack_accounts": len(bad_accounts),
        "attack_accounts_alerted": true_positives,
        "benign_alerts": int(len(benign)),
        "benign_accounts_alerted": int(benign["account_id"].nunique()),
        "benign_alert_days": int(len(benign_alert_days)),
        "benign_account_days": benign_days,
        "fp_per_1000_account_days": 1000.0 * len(benign) / benign_days if benign_days else np.nan,
        "precision": true_positives / len(alerted) if alerted else np.nan,
        "recall": true_positives / len(bad_accounts) if bad_accounts else np.nan,
    }


def scenario_recall(alerts: pd.DataFrame, attacks: Sequence[Mapping] | pd.DataFrame) -> pd.Series:
    """Per scenario: share of its attack accounts with at least one alert (any time)."""
    pairs = attack_accounts(attacks)[["scenario", "account_id"]].drop_duplicates()
    pairs["alerted"] = pairs["account_id"].isin(set(_alerts(alerts)["account_id"]))
    return pairs.groupby("scenario")["alerted"].mean().rename("recall")


def _lookalike_pairs(
    alerts: pd.DataFrame, lookalikes: Sequence[Mapping], grace
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The instances (with an ``instance`` number) and their (instance, alert) pairs in span."""
    frame = pd.DataFrame(list(lookalikes))
    frame["instance"] = np.arange(len(frame))
    frame["start"] = to_utc(frame["start"])
    frame["end"] = to_utc(frame["end"])
    frame["n_accounts"] = frame["accounts"].map(len)
    long = frame.explode("accounts").rename(columns={"accounts": "account_id"})
    long["account_id"] = long["account_id"].astype(str)
    pairs = long.merge(_alerts(alerts), on="account_id", how="inner")
    in_span = (pairs["detected_at"] >= pairs["start"]) & (
        pairs["detected_at"] <= pairs["end"] + grace
    )
    return frame, pairs[in_span]


def lookalike_summary(
    alerts: pd.DataFrame, lookalikes: Sequence[Mapping] | None, grace=DETECTION_GRACE
) -> dict[str, int]:
    """Distinct look-alike accounts, those alerted during one of their instances, and at high.

    Keys: lookalike_accounts, lookalike_accounts_alerted, lookalike_accounts_alerted_high.
    """
    if not lookalikes:
        return dict.fromkeys(
            ("lookalike_accounts", "lookalike_accounts_alerted", "lookalike_accounts_alerted_high"),
            0,
        )
    frame, pairs = _lookalike_pairs(alerts, lookalikes, grace)
    high = pairs["severity_rank"] == Severity.HIGH.rank
    return {
        "lookalike_accounts": len({str(a) for accounts in frame["accounts"] for a in accounts}),
        "lookalike_accounts_alerted": int(pairs["account_id"].nunique()),
        "lookalike_accounts_alerted_high": int(pairs.loc[high, "account_id"].nunique()),
    }


def lookalike_outcomes(
    alerts: pd.DataFrame, lookalikes: Sequence[Mapping] | None, grace=DETECTION_GRACE
) -> pd.DataFrame:
    """Per look-alike instance: how many of its accounts were alerted during it, and how high.

    An alert counts when it is about one of the instance's accounts with ``detected_at``
    in [start, end + grace]. Columns: kind, start, end, accounts, accounts_alerted,
    accounts_alerted_high, alerts, max_severity (None when not alerted).
    """
    columns = [
        "kind",
        "start",
        "end",
        "accounts",
        "accounts_alerted",
        "accounts_alerted_high",
        "alerts",
        "max_severity",
    ]
    if not lookalikes:
        return pd.DataFrame(columns=columns)
    frame, pairs = _lookalike_pairs(alerts, lookalikes, grace)
    high = Severity.HIGH.rank
    grouped = pairs.groupby("instance")
    out = frame[["instance", "kind", "start", "end", "n_accounts"]].set_index("instance")
    out = out.rename(columns={"n_accounts": "accounts"})
    out["accounts_alerted"] = grouped["account_id"].nunique().reindex(out.index).fillna(0)
    out["accounts_alerted_high"] = (
        pairs[pairs["severity_rank"] == high]
        .groupby("instance")["account_id"]
        .nunique()
        .reindex(out.index)
        .fillna(0)
    )
    out["alerts"] = grouped.size().reindex(out.index).fillna(0)
    top = grouped["severity_rank"].max().reindex(out.index)
    out["max_severity"] = pd.Series(
        [None if pd.isna(r) else SEVERITIES[int(r)] for r in top], index=out.index, dtype=object
    )
    for column in ("accounts_alerted", "accounts_alerted_high", "alerts"):
        out[column] = out[column].astype(int)
    return out.reset_index(drop=True)[columns]


def rule_alert_counts(
    alerts: pd.DataFrame, attacks: Sequence[Mapping] | pd.DataFrame
) -> pd.DataFrame:
    """Per rule: alerts it took part in on benign accounts (false) and on attack accounts.

    An alert counts for every rule in its ``rules``; model-only alerts count under
    ``(model)``. Columns: rule, false_alerts, attack_account_alerts.
    """
    table = _alerts(alerts)
    table["rule"] = table["rules"].map(lambda rules: [MODEL_ONLY] if _empty(rules) else list(rules))
    table["benign"] = ~table["account_id"].isin(set(attack_accounts(attacks)["account_id"]))
    long = table.explode("rule")
    if not len(long):
        return pd.DataFrame(columns=["rule", "false_alerts", "attack_account_alerts"])
    counts = long.groupby("rule").agg(
        false_alerts=("benign", "sum"),
        attack_account_alerts=("benign", lambda b: int((~b).sum())),
    )
    counts["false_alerts"] = counts["false_alerts"].astype(int)
    return counts.reset_index().sort_values(["false_alerts", "rule"], ascending=[False, True])


# --------------------------------------------------------------------------- per scenario


def scenario_metrics(
    alerts: pd.DataFrame,
    attacks: Sequence[Mapping] | pd.DataFrame,
    truth: pd.DataFrame,
    events: pd.DataFrame,
    timezone: str = DEFAULT_TIMEZONE,
    grace=DETECTION_GRACE,
    exposure: pd.DataFrame | None = None,
    active_days: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per scenario of the data set: the benchmark's columns.

    ``exposure`` (:func:`record_exposure`) and ``active_days`` (:func:`account_days`)
    depend on the log only: pass them to score many alert tables of one log cheaply.

    A scenario with several attack instances is detected when all of them are;
    its time to detect is the slowest instance's; its exposure pools the records
    of all its instances. Benign-side columns are data-set-wide, the same on
    every row. Columns: scenario, attacks, attacks_detected, detected,
    time_to_detect_h, exposed_before_detection, records_total, records_exposed,
    first_rule, recall, and the keys of :func:`alert_counts` (whose recall is
    renamed recall_all).
    """
    if exposure is None:
        exposure = record_exposure(events, truth)
    outcomes = exposure_before_detection(exposure, detections(alerts, attacks, grace))
    grouped = outcomes.groupby("scenario", sort=True)
    rows = grouped.agg(
        attacks=("attack_id", "size"),
        attacks_detected=("detected", "sum"),
        time_to_detect_h=("time_to_detect_h", "max"),
        records_total=("records_total", "sum"),
        records_exposed=("records_exposed", "sum"),
    )
    rows["detected"] = (rows["attacks_detected"] == rows["attacks"]).astype(int)
    rows.loc[rows["detected"] == 0, "time_to_detect_h"] = np.nan
    total = rows["records_total"].to_numpy(dtype=float)
    share = np.divide(
        rows["records_exposed"].to_numpy(dtype=float),
        total,
        out=np.zeros(len(rows)),
        where=total > 0,
    )
    rows["exposed_before_detection"] = np.where(rows["detected"] == 0, 1.0, share)
    # First rule of the earliest-detected instance of the scenario.
    earliest = outcomes.dropna(subset=["detected_at"]).sort_values("detected_at")
    rows["first_rule"] = earliest.drop_duplicates("scenario").set_index("scenario")["first_rule"]
    rows["recall"] = scenario_recall(alerts, attacks)
    counts = alert_counts(alerts, attacks, events, timezone, active_days)
    counts["recall_all"] = counts.pop("recall")
    for key, value in counts.items():
        rows[key] = value
    order = [
        "attacks",
        "attacks_detected",
        "detected",
        "time_to_detect_h",
        "exposed_before_detection",
        "records_total",
        "records_exposed",
        "first_rule",
        "recall",
        *counts,
    ]
    return rows[order].reset_index()


# --------------------------------------------------------------------------- bench summaries


def summary_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Medians over seeds per (ruleset, mode, scenario[, knob_value])."""
    keys = ["ruleset", "mode", "scenario"] + (["knob_value"] if "knob_value" in rows else [])
    grouped = rows.groupby(keys, sort=False, dropna=False)
    out = grouped.agg(
        seeds=("seed", "nunique"),
        detected=("detected", "sum"),
        ttd_h=("time_to_detect_h", "median"),  # NaN (missed) seeds are skipped
        exposed=("exposed_before_detection", "median"),
        benign_alerted=("benign_accounts_alerted", "median"),
        fp_per_1000=("fp_per_1000_account_days", "median"),
        precision=("precision", "median"),
        recall=("recall", "median"),
        alerts=("alerts_total", "median"),
    )
    return out.reset_index()
