"""`detector generate` and `detector scenarios` end to end through CliRunner."""

from __future__ import annotations

import json

import pandas as pd
from click.testing import CliRunner

from detector.cli import main
from synthetic_logs.timegrid import PARIS


def test_generate_small_population_end_to_end(tmp_path):
    out = tmp_path / "data" / "logs.parquet"
    result = CliRunner().invoke(
        main, ["generate", "--out", str(out), "--accounts", "200", "--days", "14", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    log = pd.read_parquet(out)
    truth = pd.read_parquet(out.with_name("logs.truth.parquet"))
    lines = result.output.splitlines()
    assert lines[0] == f"events: {len(log):,}"
    assert f"attacks: 4 ({len(truth):,} malicious events)" in lines
    assert lines[-1] == "files: " + ", ".join(
        str(out.with_name(f"logs.{s}"))
        for s in (
            "parquet",
            "truth.parquet",
            "attacks.json",
            "caseloads.parquet",
            "lookalikes.json",
        )
    )
    first = log["timestamp"].min().tz_convert(PARIS)
    assert first.date().isoformat() == "2024-01-08"  # the default start, a Monday


def test_generate_one_scenario_from_a_start_date(tmp_path):
    out = tmp_path / "logs.parquet"
    args = [
        "generate",
        "--out",
        str(out),
        "--accounts",
        "100",
        "--days",
        "10",
        "--start",
        "2024-10-21",
        "--scenario",
        "kairos_infostealer",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    attacks = json.loads(out.with_name("logs.attacks.json").read_text())
    assert [a["scenario"] for a in attacks] == ["kairos_infostealer"]
    assert attacks[0]["start"].startswith("2024-10-30")  # day 20 clipped to the last day of 10


def test_generate_without_attacks(tmp_path):
    out = tmp_path / "logs.parquet"
    for flag in (["--no-attacks"], ["--scenario", "none"]):
        result = CliRunner().invoke(
            main, ["generate", "--out", str(out), "--accounts", "60", "--days", "2", *flag]
        )
        assert result.exit_code == 0, result.output
        assert "attacks: 0 (0 malicious events)" in result.output


def test_generate_rejects_bad_options(tmp_path):
    result = CliRunner().invoke(main, ["generate", "--out", str(tmp_path / "logs.csv")])
    assert result.exit_code == 1
    assert (
        result.output.splitlines()[-1]
        == f"Error: --out must end in .parquet, got {tmp_path / 'logs.csv'}"
    )
    result = CliRunner().invoke(
        main, ["generate", "--out", str(tmp_path / "l.parquet"), "--accounts", "10"]
    )
    assert result.output.splitlines()[-1] == "Error: --accounts must be at least 50, got 10"


def test_scenarios_lists_the_builtins_one_line_each():
    result = CliRunner().invoke(main, ["scenarios"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        "cap_emploi", "imilo_night_bi", "insider_misuse", "kairos_infostealer", "offday_takeover",
        "ouiform_account_creation", "quiet_account_creation", "search_enumeration", "session_replay",
    ]  # fmt: skip
    assert lines[0].split("\t")[1] == "2024-02-06/2024-03-05"


def test_progress_is_reported_up_to_done(tmp_path):
    from synthetic_logs.generate import generate_dataset

    seen: list[tuple[str, float]] = []
    generate_dataset(
        tmp_path / "logs.parquet",
        [],
        accounts=60,
        days=3,
        progress=lambda s, f: seen.append((s, f)),
    )
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and seen[-1] == ("done", 1.0)


def test_generate_options_read_their_defaults_from_the_library():
    import inspect

    from detector.cli.generate import generate
    from synthetic_logs import settings
    from synthetic_logs.generate import generate_dataset
    from synthetic_logs.lookalikes import LOOKALIKE_SETS

    library = inspect.signature(generate_dataset).parameters
    options = {option.name: option for option in generate.params}
    for name in ("seed", "accounts", "days", "lookalikes"):
        assert options[name].default == library[name].default, name
    assert library["seed"].default == settings.DEFAULT_SEED
    assert tuple(options["lookalikes"].type.choices) == tuple(LOOKALIKE_SETS)
    assert tuple(options["partition_by"].type.choices) == settings.PARTITIONS
    assert str(settings.DEFAULT_START) in options["start"].help
