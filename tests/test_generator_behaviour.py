"""Normal life looks like work: caseload-centred reads, office hours in local time across the
daylight-saving switches, heterogeneous habits, and benign look-alikes that behave as described."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from synthetic_logs.generate import generate_dataset
from synthetic_logs.orgwide import NEW_BROWSER
from synthetic_logs.timegrid import PARIS, build_grid, to_utc_us


def _load(out):
    log = pd.read_parquet(out)
    log["local"] = log["timestamp"].dt.tz_convert("Europe/Paris")
    return log


@pytest.fixture(scope="module")
def benign(tmp_path_factory):
    out = tmp_path_factory.mktemp("benign") / "logs.parquet"
    generate_dataset(out, scenarios=[], accounts=400, days=21, seed=9)
    caseloads = pd.read_parquet(out.with_name("logs.caseloads.parquet"))
    lookalikes = json.loads(out.with_name("logs.lookalikes.json").read_text())
    return _load(out), caseloads, lookalikes


def test_benign_only_log_has_no_truth(tmp_path):
    out = tmp_path / "logs.parquet"
    summary = generate_dataset(out, scenarios=[], accounts=60, days=3)
    assert summary.attacks == 0 and summary.malicious_events == 0
    assert len(pd.read_parquet(out.with_name("logs.truth.parquet"))) == 0
    assert json.loads(out.with_name("logs.attacks.json").read_text()) == []


def test_reads_mostly_inside_the_caseload_with_a_varying_share_outside(benign):
    log, caseloads, _ = benign
    reads = log[
        log["action"].isin(["view_record", "update_record"])
        & log["account_type"].isin(["advisor", "youth_advisor", "partner_advisor"])
    ]
    pairs = pd.MultiIndex.from_frame(caseloads[["account_id", "record_id"]])
    inside = pd.Series(
        pd.MultiIndex.from_frame(reads[["account_id", "record_id"]]).isin(pairs), index=reads.index
    )
    assert 0.72 <= inside.mean() <= 0.90
    per_account = inside.groupby(reads["account_id"]).mean()
    assert per_account.std() > 0.05  # the share outside is a habit of each account


def test_people_work_office_hours_on_weekdays(benign):
    log, _, _ = benign
    people = log[log["account_type"] != "service"]
    weekend = people["local"].dt.day_of_week >= 5
    assert 0 < weekend.mean() < 0.01  # a rare weekend morning, never a habit
    assert people["local"].dt.hour.between(8, 17).mean() > 0.95
    # The lunch dip: 12:00-13:00 is quieter than 10:00-11:00.
    hours = people["local"].dt.hour.value_counts()
    assert hours[12] < 0.6 * hours[10]


def test_habits_are_heterogeneous(benign):
    log, _, _ = benign
    staff = log[log["account_type"] == "advisor"]
    per_day = (
        staff.groupby([staff["account_id"], staff["local"].dt.date]).size().groupby(level=0).mean()
    )
    assert per_day.quantile(0.9) > 2 * per_day.quantile(0.1)
    first = (
        staff[staff["action"] == "login"]
        .groupby([staff["account_id"], staff["local"].dt.date])["local"]
        .min()
    )
    first_hour = (first.dt.hour + first.dt.minute / 60).groupby(level=0).mean()
    assert first_hour.std() > 0.25
    addresses = staff.groupby("account_id")["src_ip"].nunique()
    assert addresses.min() >= 1 and addresses.max() >= 2 and (addresses == 1).any()


def test_logins_searches_and_weekly_exports(benign):
    log, caseloads, _ = benign
    logins = log[log["action"] == "login"]
    failed = (logins["outcome"] == "failure").sum() / (logins["outcome"] == "success").sum()
    assert 0.01 < failed < 0.1
    method = logins.groupby("account_type")["auth_method"].agg(lambda s: set(s))
    assert method["advisor"] == {"mfa"}
    assert method["partner_advisor"] == {"password"} and method["training_org"] == {"password"}
    assert method["service"] == {"api_key"}
    searches = log[log["action"] == "search"]["records_returned"]
    assert searches.notna().all() and searches.nunique() > 20 and (searches == 0).any()
    exports = log[
        (log["action"] == "export") & log["record_id"].isna() & (log["account_type"] == "advisor")
    ]
    size = caseloads.groupby("account_id").size()
    ratio = exports["records_returned"] / exports["account_id"].map(size)
    assert ratio.between(0.5, 1.01).mean() > 0.9  # a weekly export holds about the caseload
    per_week = exports.groupby("account_id").size() / 3
    assert per_week.median() == pytest.approx(1, abs=0.35)
    assert {"bi", "dossier"} <= set(exports["application"])


def test_lookalikes_are_recorded_and_behave(benign):
    log, caseloads, lookalikes = benign
    by_kind = {}
    for item in lookalikes:
        by_kind.setdefault(item["kind"], []).append(item)
    assert set(by_kind) == {
        "service_batch",
        "handover",
        "onboarding",
        "late_work",
        "remote_work",
        "agency_campaign",
        "reorganisation",
        "auditor",
    }  # the default set: the other organisation-wide kinds are opt-in; no DST switch here

    batches = log[log["account_type"] == "service"]
    hours = batches["local"].dt.hour
    assert (hours < 6).all() and batches["src_ip"].groupby(
        batches["account_id"]
    ).nunique().max() == 1
    assert batches.loc[batches["action"] == "export", "records_returned"].min() > 100

    for item in by_kind["onboarding"]:
        manager, *recruits = item["accounts"]
        creates = log[(log["account_id"] == manager) & (log["action"] == "create_account")]
        assert set(recruits) <= set(creates["target_account_id"])
        assert creates["local"].dt.hour.between(8, 17).all()
        theirs = log[log["account_id"].isin(recruits)]
        assert (theirs["timestamp"] > creates["timestamp"].max()).all()

    for item in by_kind["handover"]:
        taker, leaver = item["accounts"]
        inherited = set(caseloads.loc[caseloads["account_id"] == leaver, "record_id"])
        assert inherited <= set(caseloads.loc[caseloads["account_id"] == taker, "record_id"])
        window = log[
            (log["account_id"] == taker)
            & log["timestamp"].between(pd.Timestamp(item["start"]), pd.Timestamp(item["end"]))
        ]
        assert window["record_id"].isin(inherited).sum() >= len(inherited) // 2
        assert (
            log.loc[log["account_id"] == leaver, "timestamp"] < pd.Timestamp(item["start"])
        ).all()

    for item in by_kind["late_work"]:
        (account,) = item["accounts"]
        late = log[
            (log["account_id"] == account)
            & log["timestamp"].between(pd.Timestamp(item["start"]), pd.Timestamp(item["end"]))
        ]
        assert len(late) and late["local"].dt.hour.max() >= 19

    for item in by_kind["remote_work"]:
        (account,) = item["accounts"]
        mine = log[log["account_id"] == account]
        during = mine["timestamp"].between(pd.Timestamp(item["start"]), pd.Timestamp(item["end"]))
        new = set(mine.loc[during, "src_ip"]) - set(mine.loc[~during, "src_ip"])
        assert len(new) == 1
        # The usual client (the browser rollout's new version counts as usual once installed).
        usual = set(mine.loc[~during, "user_agent"]) | {NEW_BROWSER}
        assert set(mine.loc[during, "user_agent"]) <= usual


@pytest.mark.parametrize(
    "start", [dt.date(2024, 3, 25), dt.date(2024, 10, 21)], ids=["spring", "autumn"]
)
def test_office_hours_stay_local_across_the_switch(tmp_path, start):
    out = tmp_path / "logs.parquet"
    generate_dataset(out, scenarios=[], accounts=150, days=14, start=start, seed=1)
    log = _load(out)
    people = log[log["account_type"] != "service"]
    week = people["local"].dt.date < start + dt.timedelta(days=7)
    local_hour = people["local"].dt.hour + people["local"].dt.minute / 60
    utc_hour = people["timestamp"].dt.hour + people["timestamp"].dt.minute / 60
    # Same local day shape on both sides of the switch; in UTC it moves by an hour.
    assert abs(local_hour[week].mean() - local_hour[~week].mean()) < 0.15
    assert abs(abs(utc_hour[week].mean() - utc_hour[~week].mean()) - 1.0) < 0.15
    assert people["local"].dt.hour.between(7, 18).mean() > 0.98
    # No event at a local time that does not exist (02:00-03:00 on the spring-forward day).
    switch = pd.Timestamp("2024-03-31").date()
    assert not ((log["local"].dt.date == switch) & (log["local"].dt.hour == 2)).any()
    assert (
        len(log[log["local"].dt.date == start + dt.timedelta(days=6)]) > 0
    )  # batches ran that night


def test_local_to_utc_conversion_across_both_switches():
    grid = build_grid(dt.date(2024, 3, 30), 214)  # through 2024-10-27
    for date in (
        dt.date(2024, 3, 30),
        dt.date(2024, 3, 31),
        dt.date(2024, 4, 1),
        dt.date(2024, 10, 27),
    ):
        day = (date - grid.start).days
        for hour, minute in ((0, 30), (1, 59), (3, 0), (4, 15), (9, 30), (23, 45)):
            expected = dt.datetime.combine(date, dt.time(hour, minute), PARIS).timestamp()
            got = to_utc_us(grid, np.array([day]), np.array([hour * 3600 + minute * 60]))[0] / 1e6
            assert got == expected, (date, hour, minute)
    spring = (dt.date(2024, 3, 31) - grid.start).days
    gap = to_utc_us(grid, np.array([spring]), np.array([2.5 * 3600]))[0] / 1e6
    local = dt.datetime.fromtimestamp(gap, PARIS)
    assert (local.hour, local.minute) == (3, 30)  # 02:30 does not exist: it is 03:30
    autumn = (dt.date(2024, 10, 27) - grid.start).days
    twice = to_utc_us(grid, np.array([autumn]), np.array([2.5 * 3600]))[0] / 1e6
    assert dt.datetime.fromtimestamp(twice, dt.UTC).hour == 0  # first 02:30, still summer time
