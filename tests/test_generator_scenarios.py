"""Scenario files load, bad ones fail with every problem named by file, line and key, and each
attack's ground truth matches its documented facts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from detector.cli import main
from synthetic_logs.errors import ScenarioError
from synthetic_logs.generate import generate_dataset
from synthetic_logs.scenario import (
    PRIMITIVES,
    builtin_dir,
    list_builtin_scenarios,
    load_scenario,
    with_overrides,
)
from synthetic_logs.timegrid import PARIS

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"
BAD = Path(__file__).parent / "fixtures" / "scenarios_bad"
BUILTINS = {"cap_emploi", "kairos_infostealer", "ouiform_account_creation", "imilo_night_bi"}
QUIET = {
    "insider_misuse",
    "session_replay",
    "search_enumeration",
    "offday_takeover",
    "quiet_account_creation",
}


@pytest.mark.parametrize("path", sorted(builtin_dir().glob("*.toml")), ids=lambda p: p.stem)
def test_every_builtin_scenario_loads_and_records_its_source(path):
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    source = scenario.source_dict
    assert source["dates"] and source["facts"]
    if SEEDS.is_dir() and scenario.family == "documented":  # articles live beside the project
        for article in source["article"].split(","):
            assert (SEEDS / article.strip()).is_file(), article
    assert {step.primitive for step in scenario.steps} <= set(PRIMITIVES)


def test_every_declared_primitive_has_one_function_and_no_more():
    """PRIMITIVES (what a scenario file may name) and the registered functions agree."""
    import inspect

    from synthetic_logs.attacks import PRIMITIVE_FUNCTIONS

    assert set(PRIMITIVE_FUNCTIONS) == set(PRIMITIVES)
    for name, function in PRIMITIVE_FUNCTIONS.items():
        assert function.__name__ == name
        # Every primitive is called the same way by run_attack.
        assert list(inspect.signature(function).parameters) == ["rng", "run", "step", "pop", "grid"]


def test_a_function_not_declared_is_refused():
    from synthetic_logs.attacks import primitive
    from synthetic_logs.errors import GeneratorError

    def teleport(rng, run, step, pop, grid):
        pass

    with pytest.raises(GeneratorError, match="'teleport' is not declared in PRIMITIVES"):
        primitive(teleport)


def test_builtins_listed_and_loaded_by_name():
    assert {s.name for s in list_builtin_scenarios()} == BUILTINS | QUIET
    assert {s.name for s in list_builtin_scenarios("documented")} == BUILTINS
    assert load_scenario("kairos_infostealer").parameters.victim_type == "training_org"


BAD_CASES = {
    "unknown_key": "11: parameters.colour: unknown key",
    "wrong_type": "11: parameters.victims: expected int, got str",
    "unknown_primitive": "16: steps[1].primitive: unknown primitive 'teleport' (one of: take_over, "
    "replay_credentials, create_accounts, replay_session, act_as_self, night_window, off_day, "
    "bulk_read, search_and_read, search_only, bulk_export)",
    "missing_required_key": "9: parameters.victim_type: missing required key",
    "unknown_value": "14: steps[0].scope: unknown value 'everyone' (one of: job_seekers, "
    "young_people, all, other_structures)",
    "toml_syntax_error": "10: invalid TOML: Expected '=' after a key in a key/value pair "
    "(column 13)",
}


def test_every_bad_fixture_has_a_case():
    assert {p.stem for p in BAD.glob("*.toml")} == set(BAD_CASES)


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_scenario_file_fails_with_one_line(name, tmp_path):
    path = BAD / f"{name}.toml"
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert str(raised.value) == f"{path}:{BAD_CASES[name]}"
    result = CliRunner().invoke(
        main, ["generate", "--out", str(tmp_path / "l.parquet"), "--scenario", str(path)]
    )
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: {path}:{BAD_CASES[name]}"
    assert "Traceback" not in result.output


def test_unknown_scenario_name(tmp_path):
    result = CliRunner().invoke(
        main, ["generate", "--out", str(tmp_path / "l.parquet"), "--scenario", "no_such"]
    )
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "Error: no_such: unknown scenario (built-ins: cap_emploi, imilo_night_bi, "
        "insider_misuse, kairos_infostealer, offday_takeover, ouiform_account_creation, "
        "quiet_account_creation, search_enumeration, session_replay)"
    )


def test_with_overrides_replaces_knobs_and_rejects_unknown_ones():
    base = load_scenario("cap_emploi")
    quiet = with_overrides(base, rate_multiple=2, office_hours_only=True, victims=1)
    assert quiet.stealth.rate_multiple == 2.0 and quiet.stealth.office_hours_only
    assert quiet.parameters.victims == 1 and base.parameters.victims == 3
    with pytest.raises(ScenarioError, match="volume: unknown knob"):
        with_overrides(base, volume=3)
    with pytest.raises(ScenarioError, match="stealth.office_hours_only: expected bool, got int"):
        with_overrides(base, office_hours_only=1)
    with pytest.raises(ScenarioError, match="parameters.hours: hours must be between 0 and 24"):
        with_overrides(base, hours=[22, 30])
    with pytest.raises(ScenarioError, match="parameters.victims: must be at least 1"):
        with_overrides(base, victims=0)
    assert with_overrides(quiet, rate_multiple=None).stealth.rate_multiple is None


# --- facts, on one generated data set -------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("facts") / "logs.parquet"
    generate_dataset(out, accounts=400, days=28, seed=5)
    log = pd.read_parquet(out)
    truth = pd.read_parquet(out.with_name("logs.truth.parquet"))
    log = log.merge(truth, on="event_id", how="left")
    attacks = {a["scenario"]: a for a in json.loads(out.with_name("logs.attacks.json").read_text())}
    caseloads = pd.read_parquet(out.with_name("logs.caseloads.parquet"))
    log["local"] = log["timestamp"].dt.tz_convert(PARIS)
    return log, attacks, caseloads


def _inside(frame: pd.DataFrame, caseloads: pd.DataFrame) -> pd.Series:
    pairs = pd.MultiIndex.from_frame(caseloads[["account_id", "record_id"]])
    return pd.Series(
        pd.MultiIndex.from_frame(frame[["account_id", "record_id"]]).isin(pairs), index=frame.index
    )


def _new_to_account(log: pd.DataFrame, attack: pd.DataFrame, column: str) -> bool:
    benign = log[log["scenario"].isna() & log["account_id"].isin(attack["account_id"])]
    return not set(attack[column]) & set(benign[column])


def test_attacks_start_after_the_warm_up(data):
    log, attacks, _ = data
    first_day = log["local"].min().normalize()
    for attack in attacks.values():
        start = pd.Timestamp(attack["start"]).tz_convert(PARIS)
        assert (start - first_day).days >= 7, attack["scenario"]


def test_cap_emploi_partner_accounts_read_outside_their_caseloads(data):
    log, attacks, caseloads = data
    attack = log[log["scenario"] == "cap_emploi"]
    assert set(attack["account_type"]) == {"partner_advisor"}
    assert attack["account_id"].nunique() == 3
    reads = attack[attack["action"] == "view_record"]
    assert (~_inside(reads, caseloads)).mean() > 0.9
    logins = attack[attack["action"] == "login"]
    assert set(logins["auth_method"]) == {"password"}
    assert _new_to_account(log, attack, "src_ip")
    # Far above the victims' own usual volume, for weeks.
    daily = reads.groupby([reads["account_id"], reads["local"].dt.date]).size()
    benign = log[log["scenario"].isna() & log["account_id"].isin(attack["account_id"])]
    usual = benign.groupby([benign["account_id"], benign["local"].dt.date]).size().median()
    assert daily.median() > 20 * usual
    assert reads["local"].dt.date.nunique() >= 10


def test_kairos_training_org_from_new_address_and_client_in_a_burst(data):
    log, attacks, _ = data
    attack = log[log["scenario"] == "kairos_infostealer"]
    assert set(attack["account_type"]) == {"training_org"} and attack["account_id"].nunique() == 1
    assert _new_to_account(log, attack, "src_ip") and _new_to_account(log, attack, "user_agent")
    assert (attack["action"] == "search").sum() > 10
    assert attack["timestamp"].max() - attack["timestamp"].min() < pd.Timedelta(hours=8)
    caseload = log[log["scenario"].isna() & log["account_id"].isin(attack["account_id"])]
    assert attack["record_id"].nunique() > 20 * caseload["record_id"].nunique()


def test_ouiform_manager_creates_the_accounts_before_they_act(data):
    log, attacks, caseloads = data
    attack = log[log["scenario"] == "ouiform_account_creation"]
    creates = attack[attack["action"] == "create_account"]
    assert len(creates) == 2
    manager = creates["account_id"].iloc[0]
    assert set(creates["account_type"]) == {"account_manager"}
    created = set(creates["target_account_id"])
    assert set(attacks["ouiform_account_creation"]["accounts"]) == {manager, *created}
    theirs = log[log["account_id"].isin(created)]
    assert (theirs["timestamp"] > creates["timestamp"].max()).all()
    assert theirs["scenario"].eq("ouiform_account_creation").all()
    assert set(theirs["account_type"]) == {"youth_advisor"}
    assert set(theirs["organization_id"]) == set(creates["organization_id"])
    assert not caseloads["account_id"].isin(created).any()
    reads = theirs[theirs["action"] == "view_record"]
    assert reads["record_id"].str.startswith("YP").all() and len(reads) > 1000


def test_imilo_night_bulk_exports_through_bi(data):
    log, _, _ = data
    attack = log[log["scenario"] == "imilo_night_bi"]
    exports = attack[attack["action"] == "export"]
    assert len(exports) >= 10 and set(exports["application"]) == {"bi"}
    assert set(attack["account_type"]) == {"youth_advisor"}
    hours = attack["local"].dt.hour
    assert ((hours >= 22) | (hours < 6)).all()
    assert exports["records_returned"].min() > 100
    victim = log[log["scenario"].isna() & log["account_id"].isin(attack["account_id"])]
    assert "bi" in set(victim["application"])  # a BI user's account, as Similo's were


def test_attack_volumes_scale_with_the_population(tmp_path):
    reads = []
    for accounts in (200, 400):
        out = tmp_path / str(accounts) / "logs.parquet"
        generate_dataset(out, scenarios=["cap_emploi"], accounts=accounts, days=28, seed=2)
        reads.append(len(pd.read_parquet(out.with_name("logs.truth.parquet"))))
    assert 1.5 < reads[1] / reads[0] < 2.6


# --- stealth knobs ----------------------------------------------------------------------------


def _run(tmp_path, scenario, seed=4):
    out = tmp_path / "logs.parquet"
    generate_dataset(out, scenarios=[scenario], accounts=250, days=21, seed=seed)
    log = pd.read_parquet(out).merge(
        pd.read_parquet(out.with_name("logs.truth.parquet")), on="event_id", how="left"
    )
    log["local"] = log["timestamp"].dt.tz_convert(PARIS)
    return log


def test_stealth_knobs_make_cap_emploi_quiet(tmp_path):
    loud = _run(tmp_path / "loud", load_scenario("cap_emploi"))
    quiet_scenario = with_overrides(
        load_scenario("cap_emploi"),
        rate_multiple=2.0,
        office_hours_only=True,
        reuse_victim_address=True,
        reuse_victim_client=True,
    )
    quiet = _run(tmp_path / "quiet", quiet_scenario)
    attack = quiet[quiet["scenario"].notna()]
    assert 0 < len(attack) < len(loud[loud["scenario"].notna()]) / 10
    benign = quiet[quiet["scenario"].isna() & quiet["account_id"].isin(attack["account_id"])]
    for account, mine in attack.groupby("account_id"):
        own = benign[benign["account_id"] == account]
        assert set(mine["src_ip"]) <= set(own["src_ip"]) and set(mine["user_agent"]) <= set(
            own["user_agent"]
        )
    assert attack["local"].dt.hour.between(9, 16).all()
    assert (attack["local"].dt.day_of_week < 5).all()
    # Daily reads stay near the victim's own usual daily volume.
    reads = attack[attack["action"] == "view_record"]
    daily = reads.groupby([reads["account_id"], reads["local"].dt.date]).size()
    usual = benign.groupby([benign["account_id"], benign["local"].dt.date]).size()
    per_account = usual.groupby(level=0).mean()
    assert (
        daily.groupby(level=0).max() <= 2.0 * per_account[daily.groupby(level=0).max().index] * 1.5
    ).all()


def test_office_hours_only_overrides_the_night_window(tmp_path):
    log = _run(tmp_path, with_overrides(load_scenario("imilo_night_bi"), office_hours_only=True))
    attack = log[log["scenario"].notna()]
    assert len(attack) and attack["local"].dt.hour.between(9, 16).all()


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_rate_cap_makes_every_scenario_quieter(tmp_path, name):
    def records(scenario) -> tuple[int, int]:
        log = _run(tmp_path / str(id(scenario)), scenario, seed=8)
        attack = log[log["scenario"].notna()]
        return len(attack), int(
            attack["records_returned"].fillna(0).sum() + attack["record_id"].notna().sum()
        )

    loud_events, loud_records = records(load_scenario(name))
    quiet_events, quiet_records = records(with_overrides(load_scenario(name), rate_multiple=1.0))
    assert 0 < quiet_records < loud_records / 5
    assert 0 < quiet_events <= loud_events


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_smallest_population_runs_every_scenario(tmp_path, seed):
    summary = generate_dataset(tmp_path / "logs.parquet", accounts=50, days=10, seed=seed)
    assert summary.attacks == 4 and summary.malicious_events > 0
