"""`detector bench` end to end on a small generated population, and its error lines."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from detector.bench import MAIN_COLUMNS
from detector.cli import main

SMALL = ["--accounts", "300", "--days", "14", "--seeds", "1", "--scenario", "kairos_infostealer"]


@pytest.fixture(scope="module")
def small_bench(tmp_path_factory):
    """One small bench run (naive and default, rules mode) and a rerun on its cache."""
    folder = tmp_path_factory.mktemp("bench")
    args = [
        "bench",
        *SMALL,
        "--rules",
        "naive",
        "--rules",
        "default",
        "--mode",
        "rules",
        "--cache-dir",
        str(folder / "cache"),
        "--out",
        str(folder / "bench.csv"),
        "--plot",
        str(folder / "bench.png"),
    ]
    # Pin the generator's fingerprint: colleagues editing the generator between the two
    # runs must not turn the rerun into a regeneration.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("detector.cli.bench.generator_fingerprint", lambda: "pinned")
        first = CliRunner().invoke(main, args)
        again = CliRunner().invoke(main, args)
    return folder, first, again


def test_end_to_end_rows_and_files(small_bench):
    folder, first, _ = small_bench
    assert first.exit_code == 0, first.output
    rows = pd.read_csv(folder / "bench.csv")
    assert list(rows.columns[: len(MAIN_COLUMNS)]) == list(MAIN_COLUMNS)
    assert sorted(zip(rows["ruleset"], rows["mode"], rows["scenario"], strict=True)) == [
        ("default", "rules", "kairos_infostealer"),
        ("naive", "rules", "kairos_infostealer"),
    ]
    assert rows["exposed_before_detection"].between(0, 1).all()
    assert (rows["benign_account_days"] > 1000).all()  # 300 accounts over 14 days
    assert (folder / "bench.rules.csv").exists()
    assert (folder / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert "== naive / rules" in first.stdout and "First rule to fire" in first.stdout
    assert "generating into" in first.stderr


def test_quality_floor_default_catches_the_infostealer_fast(small_bench):
    """Floor on seeded data: the default rule set catches the Kairos replay within 2 hours."""
    folder, _, _ = small_bench
    default = pd.read_csv(folder / "bench.csv").set_index("ruleset").loc["default"]
    assert default["detected"] == 1
    assert default["time_to_detect_h"] <= 2.0
    assert default["exposed_before_detection"] <= 0.25
    assert default["lookalike_accounts_alerted_high"] == 0


def test_rerun_uses_the_cache(small_bench):
    folder, first, again = small_bench
    assert again.exit_code == 0, again.output
    assert "cached data set" in again.stderr and "generating" not in again.stderr
    assert "== naive / rules" in again.stdout


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--scenario", "nope"],
            "Error: nope: unknown scenario (built-ins: cap_emploi, imilo_night_bi, "
            "insider_misuse, kairos_infostealer, offday_takeover, ouiform_account_creation, "
            "quiet_account_creation, search_enumeration, session_replay)",
        ),
        (
            ["--rules", "nope"],
            "Error: nope: no rule set named 'nope'; built-in: default, naive, strict",
        ),
        (["--sweep-values", "1,2"], "Error: --sweep-values needs --sweep KNOB"),
        (
            ["--sweep", "per_day", "--sweep-values", "10,2.5"],
            "Error: stealth knob per_day takes whole numbers, got 2.5",
        ),
        (
            ["--sweep", "searches_per_day", "--sweep-values", "0"],
            "Error: stealth knob searches_per_day takes numbers above 0, got 0",
        ),
        (
            ["--sweep", "daily_multiple", "--sweep-values", "2,lots"],
            "Error: Invalid value for --sweep-values: daily_multiple takes numbers",
        ),
        (
            ["--lookalikes", "all"],
            "Error: Invalid value for '--lookalikes': 'all' is not one of 'basic', 'default', "
            "'extended'.",
        ),
        (
            ["--sweep", "office_hours_only", "--sweep-values", "1,x"],
            "Error: Invalid value for --sweep-values: office_hours_only takes true or false",
        ),
    ],
)
def test_bad_options_give_one_error_line(args, line, tmp_path):
    result = CliRunner().invoke(main, ["bench", "--cache-dir", str(tmp_path), *args])
    assert result.exit_code in (1, 2)
    assert result.output.strip().splitlines()[-1] == line
    assert not list(tmp_path.iterdir())  # nothing generated


def test_sweep_end_to_end(tmp_path):
    """A knob reaches the generator: each value is its own data set, rows carry the value."""
    result = CliRunner().invoke(
        main,
        [
            "bench",
            *SMALL,
            "--rules",
            "naive",
            "--mode",
            "rules",
            "--sweep",
            "office_hours_only",
            "--sweep-values",
            "false,true",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "sweep.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "sweep.csv")
    assert rows["knob"].tolist() == ["office_hours_only"] * 2
    assert rows["knob_value"].tolist() == [False, True]
    assert rows["dataset"].nunique() == 2
    assert "Detected seeds by office_hours_only" in result.stdout


def test_quiet_scenarios_sweep_and_extended_lookalikes(tmp_path):
    """`--scenario quiet` runs the five quiet classes; a per_day sweep reaches the two that
    read so many records a day, the others run as written and the summary says so; the
    look-alike table names the extended organisation-wide changes."""
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "--accounts", "300", "--days", "21", "--seeds", "1",
            "--scenario", "quiet",
            "--rules", "default",
            "--mode", "rules",
            "--sweep", "per_day",
            "--sweep-values", "10,60",
            "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "quiet.csv"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "quiet.csv")
    assert sorted(set(rows["scenario"])) == [
        "insider_misuse",
        "offday_takeover",
        "quiet_account_creation",
        "search_enumeration",
        "session_replay",
    ]
    assert len(rows) == 5 * 2 and sorted(set(rows["knob_value"])) == [10, 60]
    took = rows.groupby("scenario")["knob_applied"].max()
    assert took[took == 1].index.tolist() == ["insider_misuse", "quiet_account_creation"]
    assert rows["exposed_before_detection"].between(0, 1).all()
    note = result.stdout.split("NOTE: per_day is not a knob of ")[1]
    lacking, rest = note.split(": ", 1)
    assert rest.startswith("they ran as written at every value")
    assert sorted(lacking.split(", ")) == [
        "offday_takeover",
        "search_enumeration",
        "session_replay",
    ]
    looks = result.stdout.split("Look-alikes: accounts alerted during them")[1]
    for kind in ("browser_rollout", "vpn_migration", "outage_backlog", "app_rename", "auditor"):
        assert kind in looks
