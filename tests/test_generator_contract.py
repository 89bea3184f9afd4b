"""The generated files follow docs/contract.md, and the same seed gives the same data."""

from __future__ import annotations

import ipaddress
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthetic_logs.generate import generate_dataset

LOG_COLUMNS = {
    "timestamp", "event_id", "account_id", "action", "record_id", "organization_id", "account_type",
    "application", "src_ip", "user_agent", "auth_method", "outcome", "records_returned",
    "target_account_id", "record_org_id",
}  # fmt: skip
ACTIONS = {
    "login",
    "logout",
    "view_record",
    "search",
    "export",
    "update_record",
    "create_account",
    "grant_access",
}
ACCOUNT_TYPES = {
    "advisor",
    "partner_advisor",
    "training_org",
    "youth_advisor",
    "account_manager",
    "service",
}


BASIC_LOOKALIKES = {"service_batch", "handover", "onboarding", "late_work", "remote_work"}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "logs.parquet"
    summary = generate_dataset(out, accounts=300, days=21, seed=3)
    return out, summary


def test_log_schema_and_order(small):
    out, summary = small
    schema = pq.read_schema(out)
    assert set(schema.names) == LOG_COLUMNS
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("event_id").type == pa.int64()
    assert schema.field("records_returned").type == pa.int64()
    for name in LOG_COLUMNS - {"timestamp", "event_id", "records_returned"}:
        assert schema.field(name).type == pa.string(), name
    log = pd.read_parquet(out)
    assert len(log) == summary.events
    assert (log["event_id"].to_numpy() == np.arange(len(log))).all()
    assert log["timestamp"].is_monotonic_increasing
    assert set(log["action"]) <= ACTIONS
    assert set(log["account_type"]) <= ACCOUNT_TYPES
    assert set(log["outcome"]) == {"success", "failure"}
    record_actions = log["action"].isin(["view_record", "update_record"])
    assert log.loc[record_actions, "record_id"].notna().all()
    assert log.loc[log["action"].isin(["login", "logout", "search"]), "record_id"].isna().all()
    assert log.loc[log["action"] == "search", "records_returned"].notna().all()
    assert log.loc[log["record_id"].notna(), "record_org_id"].notna().all()
    assert log.loc[log["action"] == "create_account", "target_account_id"].notna().all()
    addresses = [ipaddress.ip_address(a) for a in log["src_ip"].unique()]
    assert {a.version for a in addresses} == {4, 6}  # home lines are often IPv6 in France
    logins = log["action"] == "login"
    assert log.loc[logins, "auth_method"].notna().all()
    assert log.loc[~logins, "auth_method"].isna().all()


def test_truth_attacks_caseloads_lookalikes(small):
    out, summary = small
    log = pd.read_parquet(out, columns=["event_id", "account_id", "timestamp"])
    truth = pd.read_parquet(out.with_name("logs.truth.parquet"))
    assert list(truth.columns) == ["event_id", "attack_id", "scenario"]
    assert truth["event_id"].is_unique and truth["event_id"].isin(log["event_id"]).all()
    assert len(truth) == summary.malicious_events > 0
    attacks = json.loads(out.with_name("logs.attacks.json").read_text())
    assert {a["scenario"] for a in attacks} == {
        "cap_emploi", "kairos_infostealer", "ouiform_account_creation", "imilo_night_bi",
    }  # fmt: skip
    assert set(truth["attack_id"]) == {a["attack_id"] for a in attacks}
    for attack in attacks:
        assert set(attack) == {"attack_id", "scenario", "accounts", "start", "end"}
        mine = log[
            log["event_id"].isin(truth.loc[truth["attack_id"] == attack["attack_id"], "event_id"])
        ]
        assert set(mine["account_id"]) <= set(attack["accounts"])
        assert mine["timestamp"].min() == pd.Timestamp(attack["start"])
        assert mine["timestamp"].max() == pd.Timestamp(attack["end"])
    caseloads = pd.read_parquet(out.with_name("logs.caseloads.parquet"))
    assert list(caseloads.columns) == ["account_id", "record_id"]
    assert not caseloads.duplicated().any()
    lookalikes = json.loads(out.with_name("logs.lookalikes.json").read_text())
    kinds = {item["kind"] for item in lookalikes}
    assert kinds == {
        "service_batch", "handover", "onboarding", "late_work", "remote_work",
        "agency_campaign", "reorganisation", "auditor",
    }  # fmt: skip
    attackers = {a for attack in attacks for a in attack["accounts"]}
    for item in lookalikes:
        assert set(item) == {"kind", "accounts", "start", "end", "switchable"}
        assert item["switchable"] == (item["kind"] not in BASIC_LOOKALIKES)
        assert pd.Timestamp(item["start"]) <= pd.Timestamp(item["end"])
        assert not set(item["accounts"]) & attackers or item["kind"] == "service_batch"


def test_same_seed_same_files_other_seed_other_data(tmp_path):
    paths = [tmp_path / name / "logs.parquet" for name in ("a", "b", "c")]
    for path, seed in zip(paths, (11, 11, 12), strict=True):
        generate_dataset(path, accounts=120, days=10, seed=seed)
    for suffix in (
        "parquet",
        "truth.parquet",
        "caseloads.parquet",
        "attacks.json",
        "lookalikes.json",
    ):
        first, second = (p.with_name(f"logs.{suffix}").read_bytes() for p in paths[:2])
        assert first == second, suffix
    assert not pd.read_parquet(paths[0]).equals(pd.read_parquet(paths[2]))
