"""The quiet attack classes of issue 9: each scenario's facts in the generated log and truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from detector.cli import main
from synthetic_logs.errors import GeneratorError, ScenarioError
from synthetic_logs.generate import generate_dataset
from synthetic_logs.scenario import list_builtin_scenarios, load_scenario, parse_scenario
from synthetic_logs.timegrid import french_holidays

QUIET = {
    "insider_misuse",
    "session_replay",
    "search_enumeration",
    "offday_takeover",
    "quiet_account_creation",
}
START = "2024-04-29"  # four weeks holding May 1, 8, 9 (Ascension) and 20 (Whit Monday)


@pytest.fixture(scope="module")
def quiet(tmp_path_factory):
    out = tmp_path_factory.mktemp("quiet") / "logs.parquet"
    generate_dataset(
        out, ["quiet"], accounts=400, days=28, seed=4, start=pd.Timestamp(START).date()
    )
    log = pd.read_parquet(out)
    truth = pd.read_parquet(out.with_name("logs.truth.parquet"))
    log = log.merge(truth, on="event_id", how="left")
    log["local"] = log["timestamp"].dt.tz_convert("Europe/Paris")
    log["date"] = log["local"].dt.date
    attacks = {a["scenario"]: a for a in json.loads(out.with_name("logs.attacks.json").read_text())}
    return log, attacks


def _parts(log: pd.DataFrame, attack: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The attack's events, and the benign events of the attack's accounts."""
    mine = log["account_id"].isin(attack["accounts"])
    return log[log["scenario"] == attack["scenario"]], log[mine & log["scenario"].isna()]


def test_quiet_family_is_listed_and_not_in_the_default_set():
    assert {s.name for s in list_builtin_scenarios("quiet")} == QUIET
    assert all(s.family == "documented" for s in list_builtin_scenarios("documented"))
    for name in QUIET:
        scenario = load_scenario(name)
        assert scenario.source_dict["facts"] and scenario.stealth is not None


def test_every_quiet_scenario_is_in_the_truth(quiet):
    log, attacks = quiet
    assert set(attacks) == QUIET
    assert set(log["scenario"].dropna()) == QUIET


def test_insider_reads_a_few_dozen_outside_its_structure_from_its_own_desk(quiet):
    log, attacks = quiet
    attack, benign = _parts(log, attacks["insider_misuse"])
    assert len(attacks["insider_misuse"]["accounts"]) == 1  # the account holder itself
    assert set(attack["src_ip"]) <= set(benign["src_ip"])
    assert set(attack["user_agent"]) <= set(benign["user_agent"])
    assert set(attack["date"]) <= set(benign["date"])  # only on days it works anyway
    assert (
        attack["local"].dt.hour.between(7, 19).all() and (attack["local"].dt.day_of_week < 5).all()
    )
    reads = attack[attack["action"] == "view_record"]
    assert (reads["record_org_id"] != reads["organization_id"]).all()
    per_day = reads.groupby("date").size()
    assert per_day.size >= 8 and per_day.between(10, 60).all()  # May's holidays are off


def test_session_replay_has_no_login_and_the_victims_browser(quiet):
    log, attacks = quiet
    attack, benign = _parts(log, attacks["session_replay"])
    assert not (attack["action"] == "login").any() and not (attack["action"] == "logout").any()
    # The stolen session's browser is the victim's own of that day.
    same_day = attack.merge(benign[["date", "user_agent"]].drop_duplicates(), on="date")
    assert set(same_day["user_agent_x"]) <= set(benign["user_agent"])
    assert (
        same_day.groupby("event_id").apply(lambda g: (g.user_agent_x == g.user_agent_y).any())
    ).all()
    assert not set(attack["src_ip"]) & set(benign["src_ip"])  # a residential proxy
    hours = benign.groupby("date")["local"].agg(["min", "max"])
    first, last = hours["min"].dt.hour.min(), hours["max"].dt.hour.max()
    assert attack["local"].dt.hour.between(first, last).all()
    assert (attack["local"].dt.day_of_week < 5).all()
    usual = benign.groupby("date").size().median()
    daily = attack[attack["action"] == "view_record"].groupby("date").size()
    assert daily.size >= 7 and daily.median() >= 2.5 * usual


def test_search_enumeration_never_opens_a_record(quiet):
    log, attacks = quiet
    attack, _ = _parts(log, attacks["search_enumeration"])
    assert set(attack["action"]) == {"login", "logout", "search"}
    searches = attack[attack["action"] == "search"]
    assert searches.groupby("date").size().min() >= 200
    assert 20 <= searches["records_returned"].median() <= 40


def test_offday_takeover_reads_in_bulk_on_a_day_the_account_never_works(quiet):
    log, attacks = quiet
    attack, benign = _parts(log, attacks["offday_takeover"])
    (day,) = set(attack["date"])
    assert day.weekday() == 5 or day in french_holidays(day.year)
    off = {d for d in log["date"].unique() if d.weekday() >= 5 or d in french_holidays(d.year)}
    assert not set(benign["date"]) & off
    assert (attack["action"] == "view_record").sum() >= 100


def test_quiet_account_creation_from_the_managers_desk_then_reads_under_the_floors(quiet):
    log, attacks = quiet
    manager, *created = attacks["quiet_account_creation"]["accounts"]
    attack = log[log["scenario"] == "quiet_account_creation"]
    by_manager = attack[attack["account_id"] == manager]
    benign = log[(log["account_id"] == manager) & log["scenario"].isna()]
    assert set(by_manager["action"]) == {"create_account", "grant_access"}  # no login: hijacked
    assert set(by_manager["src_ip"]) <= set(benign["src_ip"])  # the manager's own machine
    assert set(by_manager["user_agent"]) <= set(benign["user_agent"])
    hours = benign["local"].dt.hour
    assert by_manager["local"].dt.hour.between(hours.min(), hours.max()).all()  # its hours
    assert set(by_manager["target_account_id"]) == set(created)
    reads = attack[attack["account_id"].isin(created) & (attack["action"] == "view_record")]
    daily = reads.groupby(["account_id", "date"]).size()
    span = pd.date_range(reads["date"].min(), reads["date"].max()).date
    working = {d for d in span if d.weekday() < 5 and d not in french_holidays(d.year)}
    for account in created:  # every working day
        assert set(daily[account].index) == working, account
    assert len(working) >= 5
    assert daily.max() < 50 and daily.min() >= 30  # just under the 50-record floor
    assert reads["local"].dt.hour.between(9, 16).all()


def test_offday_without_a_day_off_in_the_log(tmp_path):
    """A one-week log from a Monday has a Saturday; asking for a holiday there fails."""
    scenario = load_scenario("offday_takeover")
    data = {
        "name": "x",
        "summary": "x",
        "source": {"article": "", "dates": "x", "facts": "x"},
        "parameters": {"victim_type": "advisor", "start_day": 1},
        "steps": [{"primitive": "take_over"}, {"primitive": "off_day", "kind": "holiday"},
                  {"primitive": "bulk_read", "scope": "job_seekers", "per_day": 100}],
    }  # fmt: skip
    holiday_only = parse_scenario(data)
    with pytest.raises(GeneratorError) as raised:
        generate_dataset(tmp_path / "l.parquet", [holiday_only], accounts=60, days=5)
    assert str(raised.value) == (
        "scenario x: no French public holiday in the log's 5 days from 2024-01-08; "
        "choose another --start or more --days"
    )
    summary = generate_dataset(tmp_path / "s.parquet", [scenario], accounts=60, days=7)
    assert summary.malicious_events > 0  # `any` falls back to the Saturday


def test_bulk_read_needs_a_volume():
    data = {
        "name": "x",
        "summary": "x",
        "source": {"article": "", "dates": "x", "facts": "x"},
        "parameters": {"victim_type": "advisor"},
        "steps": [{"primitive": "bulk_read", "scope": "job_seekers"}],
    }
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(data, "f.toml")
    assert str(raised.value) == (
        "f.toml: steps[0]: bulk_read needs population_share, per_day or daily_multiple"
    )


def test_cli_runs_the_quiet_family(tmp_path):
    out = tmp_path / "q.parquet"
    result = CliRunner().invoke(
        main, ["generate", "--out", str(out), "--scenario", "quiet", "--accounts", "120",
               "--days", "21", "--start", START],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "attacks: 5 (" in result.output
    attacks = json.loads(out.with_name("q.attacks.json").read_text())
    assert {a["scenario"] for a in attacks} == QUIET


def test_quiet_scenarios_are_deterministic(tmp_path):
    for name in ("a", "b"):
        generate_dataset(tmp_path / name / "l.parquet", ["quiet"], accounts=80, days=14, seed=2)
    for suffix in ("parquet", "truth.parquet", "attacks.json"):
        first, second = ((tmp_path / n / f"l.{suffix}").read_bytes() for n in ("a", "b"))
        assert first == second, suffix


def test_rate_cap_quietens_session_replay(tmp_path):
    from synthetic_logs.scenario import with_overrides

    def reads(scenario) -> int:
        out = tmp_path / str(id(scenario)) / "l.parquet"
        generate_dataset(out, [scenario], accounts=120, days=21, seed=3)
        truth = pd.read_parquet(out.with_name("l.truth.parquet"))
        log = pd.read_parquet(out, columns=["event_id", "action"])
        return int(log[log["event_id"].isin(truth["event_id"])]["action"].eq("view_record").sum())

    loud = reads(load_scenario("session_replay"))
    capped = reads(with_overrides(load_scenario("session_replay"), rate_multiple=1.0))
    assert 0 < capped < loud / 2
    assert np.isfinite(loud)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_smallest_population_runs_all_nine_scenarios_with_every_lookalike(tmp_path, seed):
    summary = generate_dataset(
        tmp_path / "l.parquet", ["all"], accounts=50, days=28, seed=seed, lookalikes="extended"
    )
    assert summary.attacks == 9 and summary.malicious_events > 0


def test_quiet_and_extended_data_follow_the_contract(tmp_path):
    """The new primitives and look-alikes write the same contract as the documented ones."""
    import ipaddress

    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "logs"
    summary = generate_dataset(
        out, ["all"], accounts=150, days=21, seed=8, lookalikes="extended", partition_by="day"
    )
    schema = pq.read_schema(next(out.glob("day=*/part-0.parquet")))
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("event_id").type == schema.field("records_returned").type == pa.int64()
    log = pd.read_parquet(out).drop(columns="day")  # pandas adds the Hive partition column
    assert len(log) == summary.events and log["event_id"].is_unique
    assert log["timestamp"].is_monotonic_increasing
    assert set(log["action"]) <= {
        "login", "logout", "view_record", "search", "export", "update_record",
        "create_account", "grant_access",
    }  # fmt: skip
    assert log.loc[log["action"].isin(["view_record", "update_record"]), "record_id"].notna().all()
    assert log.loc[log["action"] == "search", "records_returned"].notna().all()
    assert log.loc[log["record_id"].notna(), "record_org_id"].notna().all()
    logins = log["action"] == "login"
    assert (
        log.loc[logins, "auth_method"].notna().all()
        and log.loc[~logins, "auth_method"].isna().all()
    )
    for address in log["src_ip"].unique():
        ipaddress.ip_address(address)
    truth = pd.read_parquet(out.with_name("logs.truth.parquet"))
    assert truth["event_id"].is_unique and truth["event_id"].isin(log["event_id"]).all()
    attacks = json.loads(out.with_name("logs.attacks.json").read_text())
    assert len(attacks) == 9
    for attack in attacks:
        assert set(attack) == {"attack_id", "scenario", "accounts", "start", "end"}
        mine = log[
            log["event_id"].isin(truth.loc[truth["attack_id"] == attack["attack_id"], "event_id"])
        ]
        assert set(mine["account_id"]) <= set(attack["accounts"])
        assert mine["timestamp"].min() == pd.Timestamp(attack["start"])
        assert mine["timestamp"].max() == pd.Timestamp(attack["end"])
    attackers = {a for attack in attacks for a in attack["accounts"]}
    for item in json.loads(out.with_name("logs.lookalikes.json").read_text()):
        assert set(item) == {"kind", "accounts", "start", "end", "switchable"}
        assert not set(item["accounts"]) & attackers
