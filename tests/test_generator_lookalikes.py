"""Organisation-wide benign look-alikes (issue 9): each one's facts in a benign log, the
switches that choose them, and the calendar (public holidays, daylight-saving switches)."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from detector.cli import main
from synthetic_logs.errors import GeneratorError
from synthetic_logs.generate import generate_dataset
from synthetic_logs.lookalikes import DEFAULT_ORGWIDE, lookalike_kinds
from synthetic_logs.orgwide import NEW_BROWSER, ORGWIDE, VPN_ADDRESSES

START = dt.date(2024, 3, 11)  # four weeks holding the spring switch, Easter Monday, a month end


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    out = tmp_path_factory.mktemp("orgwide") / "logs.parquet"
    generate_dataset(out, [], accounts=300, days=28, seed=6, start=START, lookalikes="extended")
    log = pd.read_parquet(out)
    log["local"] = log["timestamp"].dt.tz_convert("Europe/Paris")
    log["date"] = log["local"].dt.date
    items = json.loads(out.with_name("logs.lookalikes.json").read_text())
    by_kind: dict[str, list[dict]] = {}
    for item in items:
        by_kind.setdefault(item["kind"], []).append(item)
    caseloads = pd.read_parquet(out.with_name("logs.caseloads.parquet"))
    return log, by_kind, caseloads


def _first_day(item: dict) -> dt.date:
    return pd.Timestamp(item["start"]).tz_convert("Europe/Paris").date()


def test_every_kind_is_listed_with_its_fields(extended):
    _, by_kind, _ = extended
    assert set(ORGWIDE) <= set(by_kind)
    for kind in ORGWIDE:
        for item in by_kind[kind]:
            assert set(item) == {"kind", "accounts", "start", "end", "switchable"}
            assert item["switchable"] is True and item["accounts"]
            assert pd.Timestamp(item["start"]) <= pd.Timestamp(item["end"])
    assert all(item["switchable"] is False for item in by_kind["service_batch"])


def test_browser_rollout_reaches_most_staff_in_one_day(extended):
    log, by_kind, _ = extended
    (item,) = by_kind["browser_rollout"]
    day = _first_day(item)
    staff = log[log["account_type"] != "service"]
    assert not (staff.loc[staff["date"] < day, "user_agent"] == NEW_BROWSER).any()
    after = staff[staff["date"] >= day]
    share = after.groupby("account_id")["user_agent"].agg(lambda u: (u == NEW_BROWSER).all())
    assert share.mean() >= 0.75
    assert set(share[share].index) <= set(item["accounts"])


def test_vpn_migration_moves_every_home_worker_to_a_few_shared_addresses(extended):
    log, by_kind, _ = extended
    (item,) = by_kind["vpn_migration"]
    day = _first_day(item)
    movers = log[log["account_id"].isin(item["accounts"])]
    before = set(movers.loc[movers["date"] < day, "src_ip"])
    after = movers[movers["date"] >= day]
    new = set(after["src_ip"]) - before
    assert 1 <= len(new) <= VPN_ADDRESSES
    assert (
        after.loc[after["src_ip"].isin(new), "account_id"].nunique() >= len(item["accounts"]) // 2
    )
    assert len(item["accounts"]) >= 30  # every home worker, not a handful


def test_outage_morning_then_backlog_afternoon(extended):
    log, by_kind, _ = extended
    (item,) = by_kind["outage_backlog"]
    day = _first_day(item)
    staff = log[(log["account_type"] != "service") & (log["date"] == day)]
    assert len(staff) and (staff["local"].dt.hour >= 11).all()
    per_account = log[log["account_type"] != "service"].groupby(["account_id", "date"]).size()
    that_day = per_account.xs(day, level="date")
    assert that_day.median() >= per_account.median()  # the backlog is done that afternoon


def test_agency_campaign_triples_reading_inside_caseloads(extended):
    log, by_kind, caseloads = extended
    (item,) = by_kind["agency_campaign"]
    start, end = (pd.Timestamp(item[k]) for k in ("start", "end"))
    reads = log[log["account_id"].isin(item["accounts"]) & (log["action"] == "view_record")]
    pairs = pd.MultiIndex.from_frame(caseloads[["account_id", "record_id"]])
    inside = pd.MultiIndex.from_frame(reads[["account_id", "record_id"]]).isin(pairs)
    during = reads["timestamp"].between(start, end).to_numpy()
    daily_in = reads[inside].groupby(["account_id", "date"]).size()
    campaign_days = set(reads.loc[during, "date"])
    in_campaign = daily_in[daily_in.index.get_level_values("date").isin(campaign_days)]
    other = daily_in[~daily_in.index.get_level_values("date").isin(campaign_days)]
    assert in_campaign.median() >= 2.3 * other.median()
    daily_out = reads[~inside].groupby("date").size()
    assert daily_out[list(campaign_days)].median() <= 2 * daily_out.median()  # not outside


def test_reorganisation_hands_a_closing_agencys_caseloads_over(extended):
    log, by_kind, caseloads = extended
    (item,) = by_kind["reorganisation"]
    start = pd.Timestamp(item["start"])
    orgs = log.drop_duplicates("account_id").set_index("account_id")["organization_id"]
    members = pd.Series(item["accounts"]).map(orgs)
    takers = [a for a, o in zip(item["accounts"], members, strict=True) if o == members.iloc[0]]
    leavers = [a for a in item["accounts"] if a not in takers]
    assert takers and leavers and members.nunique() == 2
    assert not (log.loc[log["account_id"].isin(leavers), "timestamp"] >= start).any()
    theirs = set(caseloads.loc[caseloads["account_id"].isin(leavers), "record_id"])
    taken = set(caseloads.loc[caseloads["account_id"].isin(takers), "record_id"])
    assert theirs <= taken
    read_after = log[log["account_id"].isin(takers) & (log["timestamp"] >= start)]
    assert read_after["record_id"].isin(theirs).sum() >= len(theirs) // 5


def test_auditor_reads_across_structures_every_working_day(extended):
    log, by_kind, _ = extended
    (item,) = by_kind["auditor"]
    reads = log[(log["account_id"] == item["accounts"][0]) & (log["action"] == "view_record")]
    working = {
        d for d in set(log["date"]) if d.weekday() < 5 and d != dt.date(2024, 4, 1)
    }  # Easter Monday is off
    assert working <= set(reads["date"])
    assert reads.groupby("date")["record_org_id"].nunique().median() >= 10


def test_batch_changes_hour_reruns_and_doubles_at_month_end(extended):
    log, by_kind, _ = extended
    (item,) = by_kind["batch_changes"]
    mine = log[log["account_id"] == item["accounts"][0]].copy()
    # A night's batch starts after midnight: the night is the local date of its events.
    logins = mine[mine["action"] == "login"]
    per_night = logins.groupby("date")
    assert per_night.size().max() == 2  # one night it ran twice
    first = per_night["local"].min()
    hour = first.dt.hour + first.dt.minute / 60
    assert hour.max() - hour.min() >= 1.8  # the schedule moved
    exports = mine[mine["action"] == "export"].groupby("date").size()
    once = exports[per_night.size() == 1]
    month_end = dt.date(2024, 4, 1)  # the night of 31 March
    assert exports[month_end] >= 2 * once.drop(month_end, errors="ignore").median()
    assert (
        set(item["accounts"]) & set(sum((i["accounts"] for i in by_kind["service_batch"]), []))
        == set()
    )


def test_application_renamed_for_one_account_type(extended):
    log, by_kind, _ = extended
    (item,) = by_kind["app_rename"]
    day = _first_day(item)
    renamed = log[log["application"] == "kairos2"]
    assert set(renamed["account_type"]) == {"training_org"}
    assert (renamed["date"] >= day).all()
    trainers = log[(log["account_type"] == "training_org") & (log["date"] >= day)]
    assert not (trainers["application"] == "kairos").any()


def test_dst_switch_listed_and_public_holiday_off(extended):
    log, by_kind, _ = extended
    (item,) = by_kind["dst_switch"]
    assert _first_day(item) == dt.date(2024, 3, 31)
    staff = log[log["account_type"] != "service"].groupby("date")["account_id"].nunique()
    assert staff[dt.date(2024, 4, 1)] < 0.1 * staff[dt.date(2024, 4, 2)]  # Easter Monday


def test_both_dst_switches_when_the_span_holds_them(tmp_path):
    out = tmp_path / "year.parquet"
    generate_dataset(
        out, [], accounts=50, days=220, start=dt.date(2024, 3, 25), lookalikes=["dst_switch"]
    )
    items = json.loads(out.with_name("year.lookalikes.json").read_text())
    switches = [i for i in items if i["kind"] == "dst_switch"]
    assert [_first_day(i) for i in switches] == [dt.date(2024, 3, 31), dt.date(2024, 10, 27)]
    assert {i["kind"] for i in items if i["switchable"]} == {"dst_switch"}


def test_lookalike_sets_and_their_errors(tmp_path):
    assert lookalike_kinds("basic") == ()
    assert lookalike_kinds("extended") == tuple(ORGWIDE)
    assert set(DEFAULT_ORGWIDE) == {"agency_campaign", "reorganisation", "auditor", "dst_switch"}
    with pytest.raises(GeneratorError, match="unknown look-alike kind 'meteor'"):
        lookalike_kinds(["meteor"])
    result = CliRunner().invoke(
        main, ["generate", "--out", str(tmp_path / "l.parquet"), "--lookalikes", "all"]
    )
    assert (
        result.exit_code == 2
        and "'all' is not one of 'basic', 'default', 'extended'" in result.output
    )


def test_basic_switches_the_organisation_wide_ones_off(tmp_path):
    out = tmp_path / "b.parquet"
    result = CliRunner().invoke(
        main, ["generate", "--out", str(out), "--accounts", "80", "--days", "14", "--lookalikes", "basic", "--no-attacks"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    items = json.loads(out.with_name("b.lookalikes.json").read_text())
    assert not any(i["switchable"] for i in items)


def test_switching_one_kind_leaves_the_others_alone(tmp_path):
    """Each kind draws from its own generator: the campaign agency does not move with the
    outage switched on or off."""
    picked = []
    for kinds in (["agency_campaign"], ["outage_backlog", "agency_campaign"]):
        out = tmp_path / f"{len(kinds)}.parquet"
        generate_dataset(out, [], accounts=150, days=21, seed=2, lookalikes=kinds)
        items = json.loads(out.with_name(out.stem + ".lookalikes.json").read_text())
        picked.append([i for i in items if i["kind"] == "agency_campaign"][0]["accounts"])
    assert picked[0] == picked[1]


def test_extended_is_deterministic(tmp_path):
    for name in ("a", "b"):
        generate_dataset(
            tmp_path / name / "l.parquet", [], accounts=80, days=14, seed=5, lookalikes="extended"
        )
    for suffix in ("parquet", "lookalikes.json", "caseloads.parquet"):
        first, second = ((tmp_path / n / f"l.{suffix}").read_bytes() for n in ("a", "b"))
        assert first == second, suffix
