"""The bench's orchestration on a fake generator and a fake detector (fast, no pipeline)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from detector import bench, plots
from detector.errors import DetectorError, InputError
from detector.vocabulary import DEFAULT_TIMEZONE

START = pd.Timestamp("2024-03-04 09:00", tz="UTC")


def fake_generate(calls: list):
    """A generator writing a tiny contract data set: attack s1 on x1, s2 on x2, benign b1, b2.

    The stealth knob ``rate_multiple`` (or ``per_day``) sets how many records x1 reads
    (its log changes); s2 lacks ``per_day``, as ``NAME.knobs.json`` says.
    """

    def generate(out: Path, spec: bench.DatasetSpec) -> None:
        calls.append(spec)
        knobs = dict(spec.knobs)
        reads = int(knobs.get("rate_multiple", knobs.get("per_day", 4)))
        rows = [
            (START + pd.Timedelta(hours=i), "x1", "view_record", f"r{i}", None)
            for i in range(reads)
        ]
        rows += [
            (START, "x2", "search", None, 40),
            (START + pd.Timedelta(hours=1), "x2", "export", None, 60),
            (START, "b1", "view_record", "r1", None),
            (START + pd.Timedelta(days=1), "b1", "view_record", "r2", None),
            (START, "b2", "login", None, None),
        ]
        log = pd.DataFrame(
            rows, columns=["timestamp", "account_id", "action", "record_id", "records_returned"]
        )
        log["records_returned"] = log["records_returned"].astype("Int64")
        log["event_id"] = [f"e{i}" for i in range(len(log))]
        log.to_parquet(out)
        bad = log[log["account_id"].isin(["x1", "x2"])]
        pd.DataFrame(
            {
                "event_id": bad["event_id"],
                "attack_id": bad["account_id"].map({"x1": "A1", "x2": "A2"}),
            }
        ).assign(scenario="s").to_parquet(bench.sibling(out, ".truth.parquet"))
        attacks = [
            {
                "attack_id": f"A{i}",
                "scenario": f"s{i}",
                "accounts": [f"x{i}"],
                "start": START.isoformat(),
                "end": (START + pd.Timedelta(hours=reads)).isoformat(),
            }
            for i in (1, 2)
            if f"s{i}" in spec.scenarios
        ]
        bench.sibling(out, ".attacks.json").write_text(json.dumps(attacks))
        lookalikes = [
            {
                "kind": "late_work",
                "accounts": ["b1"],
                "start": START.isoformat(),
                "end": START.isoformat(),
            }
        ]
        if spec.lookalikes == "extended":
            lookalikes.append(
                {"kind": "vpn_migration", "accounts": ["b1", "b2"], "start": START.isoformat(),
                 "end": (START + pd.Timedelta(days=1)).isoformat()}
            )  # fmt: skip
        bench.sibling(out, ".lookalikes.json").write_text(json.dumps(lookalikes))
        took = {"s1": sorted(knobs), "s2": sorted(set(knobs) - {"per_day"})}
        bench.sibling(out, ".knobs.json").write_text(json.dumps(took))

    return generate


def fake_engine(detects: list) -> bench.Engine:
    """Rule set ``quick`` alerts x1 at its second read; ``noisy`` also b1 twice at once; the model nothing."""

    def prepare(log, caseloads=None, timezone=DEFAULT_TIMEZONE):
        return SimpleNamespace(events=pd.read_parquet(log))

    def detect(prepared, rules=None, mode="both"):
        detects.append((getattr(rules, "name", None), mode))
        rows = []
        if mode != "model":
            rows.append(("x1", START + pd.Timedelta(hours=1), "medium", ["volume", "night"]))
            if rules.name == "noisy":
                rows += [("b1", START, "high", ["night"]), ("b1", START, "low", ["night"])]
        alerts = pd.DataFrame(rows, columns=["account_id", "detected_at", "severity", "rules"])
        alerts["detected_at"] = pd.to_datetime(alerts["detected_at"], utc=True)
        return alerts

    return bench.Engine(prepare=prepare, detect=detect, read_events=pd.read_parquet)


RULESETS = [SimpleNamespace(name="quick", rules=[]), SimpleNamespace(name="noisy", rules=[])]


@pytest.fixture
def run(tmp_path):
    calls, detects = [], []

    def _run(**options):
        settings = dict(
            rulesets=RULESETS,
            scenarios=("s1", "s2"),
            seeds=[1, 2],
            modes=("rules", "model"),
            cache_dir=tmp_path / "cache",
            engine=fake_engine(detects),
        )
        settings.update(options)
        return bench.run_bench(fake_generate(calls), **settings)

    _run.calls, _run.detects = calls, detects
    return _run


def test_one_row_per_ruleset_mode_scenario_seed(run):
    rows = run().rows
    assert list(rows.columns[: len(bench.MAIN_COLUMNS)]) == list(bench.MAIN_COLUMNS)
    # quick/rules, noisy/rules and the model once: 3 runs x 2 scenarios x 2 seeds
    assert len(rows) == 12
    assert set(rows["ruleset"]) == {"quick", "noisy", bench.NO_RULESET}
    quick = rows[(rows["ruleset"] == "quick") & (rows["scenario"] == "s1")].iloc[0]
    assert quick["detected"] == 1
    assert quick["time_to_detect_h"] == 1.0
    assert quick["exposed_before_detection"] == pytest.approx(2 / 4)  # r0, r1 of 4 reads
    assert quick["first_rule"] == "volume"
    missed = rows[(rows["ruleset"] == "quick") & (rows["scenario"] == "s2")].iloc[0]
    assert (missed["detected"], missed["exposed_before_detection"]) == (0, 1.0)


def test_benign_side_and_lookalikes(run):
    rows = run().rows.set_index(["ruleset", "scenario", "seed"])
    noisy = rows.loc[("noisy", "s1", 1)]
    assert noisy["benign_accounts_alerted"] == 1
    # two alerts on b1 over 3 benign account-days (b1: 2 days, b2: 1 day)
    assert noisy["fp_per_1000_account_days"] == pytest.approx(2000 / 3)
    assert noisy["precision"] == pytest.approx(1 / 2)
    assert noisy["lookalike_accounts_alerted_high"] == 1
    assert rows.loc[("quick", "s1", 1), "lookalike_accounts_alerted_high"] == 0


def test_each_dataset_is_generated_and_prepared_once_then_cached(run):
    run()
    assert [spec.seed for spec in run.calls] == [1, 2]
    # per data set: 2 rule sets in rules mode + the model once
    assert run.detects[:3] == [("quick", "rules"), ("noisy", "rules"), (None, "model")]
    again = run()
    assert len(run.calls) == 2  # the cache answered
    assert len(again.rows) == 12
    run(seeds=[1], accounts=50)
    assert len(run.calls) == 3  # other settings, other data set


def test_interrupted_generation_is_not_taken_for_a_cached_one(tmp_path):
    def broken(out, spec):
        out.write_bytes(b"half")
        raise KeyboardInterrupt

    spec = bench.DatasetSpec(seed=1, scenarios=("s1",))
    with pytest.raises(KeyboardInterrupt):
        bench.cached_dataset(spec, broken, tmp_path)
    calls = []
    log = bench.cached_dataset(spec, fake_generate(calls), tmp_path)
    assert len(calls) == 1 and log.parent.name == spec.key()


def test_sweep_rows_carry_the_knob_and_exposure_follows_it(run):
    result = run(knob="rate_multiple", knob_values=[2, 8], seeds=[1], modes=("rules",))
    rows = result.rows
    assert set(rows["knob"]) == {"rate_multiple"} and set(rows["knob_value"]) == {2, 8}
    assert len(rows) == 2 * 2 * 2  # values x rule sets x scenarios
    s1 = rows[(rows["ruleset"] == "quick") & (rows["scenario"] == "s1")].set_index("knob_value")
    assert s1.loc[2, "exposed_before_detection"] == pytest.approx(2 / 2)
    assert s1.loc[8, "exposed_before_detection"] == pytest.approx(2 / 8)
    assert "Detected seeds by rate_multiple" in bench.format_summary(result)


def test_summary_csv_and_plot(run, tmp_path):
    result = run()
    text = bench.format_summary(result)
    assert "== quick / rules" in text and "== (none) / model" in text
    assert "volume (2)" in text  # first rule on s1 in both seeds
    assert (
        "noisy / rules: 2 look-alike account(s) alerted at high severity (2 of 2 data sets)" in text
    )
    paths = bench.write_csv(result, tmp_path / "out" / "bench.csv")
    assert [p.name for p in paths] == ["bench.csv", "bench.rules.csv", "bench.lookalikes.csv"]
    looks = pd.read_csv(paths[2])
    noisy = looks[looks["ruleset"] == "noisy"]
    assert sorted(zip(noisy["kind"], noisy["seed"], noisy["max_severity"], strict=True)) == [
        ("late_work", 1, "high"), ("late_work", 2, "high"),
        ("vpn_migration", 1, "high"), ("vpn_migration", 2, "high"),
    ]  # fmt: skip
    back = pd.read_csv(paths[0])
    assert len(back) == 12 and list(back.columns[:4]) == ["ruleset", "mode", "scenario", "seed"]
    rules = pd.read_csv(paths[1])
    noisy_night = rules[(rules["ruleset"] == "noisy") & (rules["rule"] == "night")]
    assert noisy_night["false_alerts"].tolist() == [2, 2]
    png = plots.save_figure(plots.bench_figure(result.rows), tmp_path / "bench.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_sweep_plot(run, tmp_path):
    result = run(knob="office_hours_only", seeds=[1], modes=("rules",))
    figure = plots.bench_figure(result.rows, result.knob)
    assert figure.axes[0].get_xlabel() == "office_hours_only"  # the sweep's curves
    assert plots.save_figure(figure, tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_no_rows_no_figure():
    with pytest.raises(DetectorError, match="nothing to plot"):
        plots.bench_figure(pd.DataFrame())


def test_summary_table_medians_skip_missed_seeds():
    rows = pd.DataFrame(
        {
            "ruleset": "r",
            "mode": "rules",
            "scenario": "s",
            "seed": [1, 2, 3],
            "detected": [1, 0, 1],
            "time_to_detect_h": [2.0, float("nan"), 6.0],
            "exposed_before_detection": [0.1, 1.0, 0.3],
            "benign_accounts_alerted": [1, 2, 3],
            "fp_per_1000_account_days": [1.0, 2.0, 3.0],
            "precision": [0.5, 0.5, 0.5],
            "recall": [1.0, 0.0, 1.0],
            "alerts_total": [3, 4, 5],
        }
    )
    row = bench.summary_table(rows).iloc[0]
    assert (row["detected"], row["ttd_h"], row["exposed"]) == (2, 4.0, 0.3)


def test_bad_inputs(run, tmp_path):
    with pytest.raises(DetectorError, match="unknown mode 'fast'"):
        run(modes=("fast",))
    with pytest.raises(DetectorError, match="unknown stealth knob 'speed'"):
        run(knob="speed")
    assert run.calls == []  # nothing generated for a bad request
    with pytest.raises(InputError, match="no ground truth beside the log"):
        bench.read_ground_truth(tmp_path / "logs.parquet")


def test_plots_import_no_bench_and_notebooks_no_cli():
    """The data flows one way: plots draw rows, notebooks use the library, not the CLI."""
    import subprocess
    import sys

    code = "import sys, detector.plots; print('detector.bench' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    for notebook in (Path(__file__).parents[1] / "notebooks").glob("*.ipynb"):
        assert "detector.cli" not in notebook.read_text(encoding="utf-8"), notebook.name


def test_sweep_over_a_knob_some_scenarios_lack(run):
    """per_day reaches s1 only: s2 runs as written, its rows say so and the summary names it."""
    result = run(
        knob="per_day", knob_values=[2, 8], seeds=[1], rulesets=RULESETS[:1], modes=("rules",)
    )
    assert len(result.rows) == 4
    rows = result.rows.set_index(["scenario", "knob_value"])
    assert rows["knob_applied"].to_dict() == {
        ("s1", 2): 1,
        ("s1", 8): 1,
        ("s2", 2): 0,
        ("s2", 8): 0,
    }
    assert rows.loc[("s1", 8), "exposed_before_detection"] == pytest.approx(2 / 8)
    text = bench.format_summary(result)
    assert (
        "NOTE: per_day is not a knob of s2: they ran as written at every value "
        "(rows with knob_applied = 0, left out of the sweep table)" in text
    )
    sweep_table = text.split("Detected seeds by per_day")[1].split("First rule")[0]
    assert " s1 " in sweep_table and " s2 " not in sweep_table
    figure = plots.bench_figure(result.rows, result.knob)
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels == ["s1"]


def test_a_knob_every_scenario_takes_leaves_no_note(run):
    result = run(knob="rate_multiple", knob_values=[2], seeds=[1])
    assert result.rows["knob_applied"].eq(1).all()
    assert "is not a knob of" not in bench.format_summary(result)


@pytest.mark.parametrize(
    ("knob", "values", "message"),
    [
        ("speed", None, "unknown stealth knob 'speed'; choose among rate_multiple, "),
        ("per_day", [2.5], "stealth knob per_day takes whole numbers, got 2.5"),
        ("per_day", [0], "stealth knob per_day takes numbers above 0, got 0"),
        ("daily_multiple", [-1.0], "stealth knob daily_multiple takes numbers above 0, got -1.0"),
        ("daily_multiple", ["x"], "stealth knob daily_multiple takes numbers above 0, got 'x'"),
        ("office_hours_only", [1], "stealth knob office_hours_only takes true or false, got 1"),
    ],
)
def test_bad_knob_values_fail_before_generation(run, knob, values, message):
    with pytest.raises(DetectorError) as error:
        run(knob=knob, knob_values=values)
    assert str(error.value).startswith(message)
    assert run.calls == []


def test_knob_settings_type_the_values():
    assert bench.knob_settings("per_day", [10.0, 20]) == [10, 20]
    assert all(isinstance(v, int) for v in bench.knob_settings("per_day", [10.0]))
    assert bench.knob_settings("daily_multiple", [2]) == [2.0]
    assert bench.knob_settings("searches_per_day") == list(bench.SWEEP_KNOBS["searches_per_day"])


def test_lookalike_set_is_in_the_cache_key_and_the_table(run):
    extended = run(seeds=[1])
    assert [spec.lookalikes for spec in run.calls] == [bench.DEFAULT_LOOKALIKES] == ["extended"]
    table = bench.lookalike_table(extended.lookalikes).set_index(["ruleset", "mode", "kind"])
    assert table.loc[("noisy", "rules", "late_work")].to_dict() == {
        "instances": 1, "accounts": 1, "alerted": 1, "alerted_high": 1, "max_severity": "high",
    }  # fmt: skip
    assert table.loc[("quick", "rules", "vpn_migration"), "alerted"] == 0
    assert pd.isna(table.loc[("quick", "rules", "vpn_migration"), "max_severity"])
    text = bench.format_summary(extended)
    grid = text.split("Look-alikes: accounts alerted during them")[1].splitlines()[1:4]
    assert grid[0].split() == ["kind", "instances", "accounts", "quick", "/", "rules"] + [
        "noisy", "/", "rules", "(none)", "/", "model",
    ]  # fmt: skip
    assert grid[1].split() == ["late_work", "1", "1", "0/0", "1/1", "high", "0/0"]
    assert grid[2].split() == ["vpn_migration", "1", "2", "0/0", "1/1", "high", "0/0"]
    plain = run(seeds=[1], lookalikes="default")
    assert len(run.calls) == 2  # another look-alike set, another data set
    assert "vpn_migration" not in set(plain.lookalikes["kind"])


def test_scenario_lists_match_the_scenarios_folder():
    """bench names the built-ins without importing the generator: the lists must follow it."""
    from synthetic_logs.scenario import list_builtin_scenarios

    assert set(bench.DOCUMENTED) == {s.name for s in list_builtin_scenarios("documented")}
    assert set(bench.QUIET) == {s.name for s in list_builtin_scenarios("quiet")}
    assert bench.SCENARIOS == bench.DOCUMENTED + bench.QUIET
    assert bench.DatasetSpec(seed=1).scenarios == bench.SCENARIOS


def test_every_sweep_knob_reaches_some_scenario_and_step_knobs_only_theirs():
    from synthetic_logs.bench_data import apply_knobs, scenario_names
    from synthetic_logs.scenario import load_scenario

    names = scenario_names(["all"])
    assert tuple(sorted(names)) == tuple(sorted(bench.SCENARIOS))
    took = {}
    for name in names:
        for knob, values in bench.SWEEP_KNOBS.items():
            _, applied = apply_knobs(load_scenario(name), {knob: values[-1]})
            if knob in applied:
                took.setdefault(knob, set()).add(name)
    assert set(took) == set(bench.SWEEP_KNOBS)
    assert took["per_day"] == {"insider_misuse", "quiet_account_creation"}
    assert took["daily_multiple"] == {"session_replay"}
    assert took["searches_per_day"] == {"search_enumeration"}
    assert took["records_per_search"] == {"search_enumeration", "kairos_infostealer"}
    assert took["duration_days"] == set(bench.SCENARIOS)
    insider, _ = apply_knobs(load_scenario("insider_misuse"), {"per_day": 12})
    assert [s.get("per_day") for s in insider.steps if s.primitive == "bulk_read"] == [12]
    cap, applied = apply_knobs(load_scenario("cap_emploi"), {"per_day": 12})
    assert cap == load_scenario("cap_emploi") and applied == []
