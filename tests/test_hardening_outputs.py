"""Outputs: never over an input, checked before any work, written atomically, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from click.testing import CliRunner

from detector.alerts import empty_alerts, write_alerts
from detector.cli import main
from detector.model import MODEL_FEATURES, WindowModel
from detector.outputs import OutputError, atomic_path, check_outputs, write_text

ROOT = os.geteuid() == 0  # chmod does not stop root from writing


def _log(path: Path) -> Path:
    pd.DataFrame(
        {
            "timestamp": ["2024-03-25T08:00:00Z", "2024-03-25T08:05:00Z", "2024-03-25T09:00:00Z"],
            "account_id": ["a1", "a1", "a2"],
            "action": ["login", "view_record", "search"],
            "record_id": [None, "r1", None],
        }
    ).to_parquet(path)
    return path


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def log(tmp_path) -> Path:
    return _log(tmp_path / "in.parquet")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    table = pd.DataFrame({name: rng.gamma(2.0, 3.0, 100) for name in MODEL_FEATURES})
    path = tmp_path_factory.mktemp("model") / "model.skops"
    WindowModel(n_estimators=5).fit(table).save(path)
    return path


# --------------------------------------------------------------------------- atomic writes


def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "alerts.csv"
    target.write_text("previous\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as temporary:
        temporary.write_text("half of the new al")
        raise KeyboardInterrupt
    assert target.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.csv"]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_write_alerts_interrupted_midway_keeps_the_old_alerts(tmp_path, monkeypatch, fmt):
    target = tmp_path / f"alerts.{fmt}"
    target.write_bytes(b"the alerts of yesterday")

    def half_then_fail(self, path, *args, **kwargs):
        Path(path).write_bytes(b"9,360 of 37,284 alerts")
        raise KeyboardInterrupt

    method = {"parquet": "to_parquet", "jsonl": "to_json", "csv": "to_csv"}[fmt]
    monkeypatch.setattr(pd.DataFrame, method, half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        write_alerts(empty_alerts(), target, fmt)
    assert target.read_bytes() == b"the alerts of yesterday"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_completed_write_replaces_the_file_with_the_usual_mode(tmp_path):
    target = tmp_path / "sub" / "report.html"
    write_text(target, "<p>new</p>")
    assert target.read_text() == "<p>new</p>"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


def test_model_save_is_atomic(tmp_path, monkeypatch, model_file):
    target = tmp_path / "model.skops"
    target.write_bytes(b"old model")

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sio, "dump", fail)
    with pytest.raises(KeyboardInterrupt):
        WindowModel.load(model_file).save(target)
    assert target.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.skops"]


# --------------------------------------------------------------------------- outputs over inputs


def test_score_out_over_the_log(log):
    before = log.read_bytes()
    result = _run("score", log, "--out", log)
    assert result.exit_code == 1
    assert result.output == f"Error: refusing to write --out {log}: it is the log {log}\n"
    assert log.read_bytes() == before


def test_score_out_over_the_caseloads_found_beside_the_log(log, tmp_path):
    caseloads = tmp_path / "in.caseloads.parquet"
    pd.DataFrame({"account_id": ["a1"], "record_id": ["r1"]}).to_parquet(caseloads)
    result = _run("score", log, "--out", caseloads)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: refusing to write --out {caseloads}: it is the caseloads file {caseloads}\n"
    )


def test_score_out_over_a_named_caseloads_file(log, tmp_path):
    caseloads = tmp_path / "assigned.parquet"
    pd.DataFrame({"account_id": ["a1"], "record_id": ["r1"]}).to_parquet(caseloads)
    result = _run("score", log, "--caseloads", caseloads, "--out", caseloads)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: refusing to write --out {caseloads}: it is the caseloads file {caseloads}\n"
    )


def test_score_features_out_over_the_log(log):
    result = _run("score", log, "--features-out", log)
    assert result.exit_code == 1
    assert result.output == f"Error: refusing to write --features-out {log}: it is the log {log}\n"


def test_score_rejects_file_over_the_log(tmp_path):
    log = _log(tmp_path / "x.rejects.parquet")
    out = tmp_path / "x.parquet"
    result = _run("score", log, "--out", out)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: refusing to write the rejects file {log}: it is the log {log}\n"
    )


def test_score_out_over_the_rules_file(log, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text("# my rules\n")
    result = _run("score", log, "--rules", rules, "--out", rules)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: refusing to write --out {rules}: it is the rules file {rules}\n"
    )
    assert rules.read_text() == "# my rules\n"


def test_score_out_over_the_model_file(log, tmp_path, model_file):
    model = tmp_path / "model.skops"
    model.write_bytes(model_file.read_bytes())
    result = _run("score", log, "--model", model, "--out", model)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: refusing to write --out {model}: it is the model file {model}\n"
    )


def test_score_out_inside_a_log_directory(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    _log(folder / "part-0.parquet")
    out = folder / "alerts.parquet"
    result = _run("score", folder, "--out", out)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: refusing to write --out {out}: it is inside the log {folder}\n"
    )
    assert not out.exists()


def test_score_out_through_a_symlink_to_the_log(log, tmp_path):
    link = tmp_path / "alerts.parquet"
    link.symlink_to(log)
    result = _run("score", log, "--out", link)
    assert result.exit_code == 1
    assert result.output == f"Error: refusing to write --out {link}: it is the log {log}\n"


def test_score_out_on_a_hard_link_to_the_log(log, tmp_path):
    link = tmp_path / "alerts.parquet"
    os.link(log, link)
    result = _run("score", log, "--out", link)
    assert result.exit_code == 1
    assert result.output == f"Error: refusing to write --out {link}: it is the log {log}\n"


def test_score_out_over_the_pseudonym_key_file(log, tmp_path):
    key = tmp_path / "key"
    key.write_text("a-key-of-sixteen-bytes-or-more")
    result = _run("score", log, "--pseudonymise", "--pseudonym-key-file", key, "--out", key)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: refusing to write --out {key}: it is the pseudonym key file {key}\n"
    )
    assert key.read_text() == "a-key-of-sixteen-bytes-or-more"


def test_score_two_outputs_on_one_file(log, tmp_path):
    out = tmp_path / "alerts.parquet"
    result = _run("score", log, "--out", out, "--features-out", out)
    assert result.exit_code == 1
    assert result.output == f"Error: --features-out {out} is the same file as --out {out}\n"


def test_fit_out_over_the_log(log):
    result = _run("fit", log, "--out", log)
    assert result.exit_code == 1
    assert result.output == f"Error: refusing to write --out {log}: it is the log {log}\n"


def test_fit_out_over_the_caseloads(log, tmp_path):
    caseloads = tmp_path / "c.parquet"
    pd.DataFrame({"account_id": ["a1"], "record_id": ["r1"]}).to_parquet(caseloads)
    result = _run("fit", log, "--caseloads", caseloads, "--out", caseloads)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: refusing to write --out {caseloads}: it is the caseloads file {caseloads}\n"
    )


def test_report_out_over_the_log(log, tmp_path):
    alerts = write_alerts(empty_alerts(), tmp_path / "alerts.parquet")
    result = _run("report", alerts, "--log", log, "--out", log)
    assert result.exit_code == 1
    assert result.output == f"Error: refusing to write --out {log}: it is the log {log}\n"


def test_report_out_over_the_alerts(log, tmp_path):
    alerts = write_alerts(empty_alerts(), tmp_path / "alerts.parquet")
    result = _run("report", alerts, "--log", log, "--out", alerts)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: refusing to write --out {alerts}: it is the alerts file {alerts}\n"
    )


def test_bench_out_over_a_rules_file(tmp_path):
    rules = tmp_path / "mine.toml"
    rules.write_text("# mine\n")
    result = _run("bench", "--rules", "default", "--rules", rules, "--out", rules)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: refusing to write --out {rules}: it is the rules file {rules}\n"
    )
    assert rules.read_text() == "# mine\n"


def test_bench_plot_over_a_scenario_file(tmp_path):
    scenario = tmp_path / "attack.toml"
    scenario.write_text("# attack\n")
    result = _run("bench", "--scenario", scenario, "--plot", scenario)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: refusing to write --plot {scenario}: it is the scenario file {scenario}\n"
    )


def test_check_outputs_accepts_distinct_paths(tmp_path):
    log = _log(tmp_path / "in.parquet")
    check_outputs({"--out": tmp_path / "new" / "alerts.parquet"}, {"the log": log})


# --------------------------------------------------------------------------- unwritable outputs


@pytest.mark.parametrize("command", ["score", "fit", "report", "bench"])
def test_out_that_is_an_existing_directory(log, tmp_path, command):
    folder = tmp_path / "already-here"
    folder.mkdir()
    alerts = write_alerts(empty_alerts(), tmp_path / "alerts.parquet")
    args = {
        "score": ["score", log],
        "fit": ["fit", log],
        "report": ["report", alerts, "--log", log],
        "bench": ["bench"],
    }[command]
    result = _run(*args, "--out", folder)
    assert result.exit_code == 1
    assert result.output == f"Error: cannot write --out {folder}: it is a directory\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_score_out_dev_full(log):
    result = _run("score", log, "--out", "/dev/full")
    assert result.exit_code == 1
    last = result.output.splitlines()[-1]
    assert last.startswith("Error: cannot write /dev/full: ")
    assert "No space left on device" in last
    assert "Traceback" not in result.output


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_report_out_dev_full(log, tmp_path):
    alerts = write_alerts(empty_alerts(), tmp_path / "alerts.parquet")
    result = _run("report", alerts, "--log", log, "--out", "/dev/full")
    assert result.exit_code == 1
    assert result.output == "Error: cannot write /dev/full: No space left on device\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_model_save_to_dev_full(model_file):
    with pytest.raises(OutputError) as caught:
        WindowModel.load(model_file).save("/dev/full")
    assert str(caught.value) == "cannot write /dev/full: No space left on device"


@pytest.mark.skipif(ROOT, reason="root writes into a 0o500 directory anyway")
def test_out_in_a_directory_that_cannot_be_written(log, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        result = _run("score", log, "--out", folder / "alerts.parquet")
    finally:
        folder.chmod(0o700)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: cannot write --out {folder / 'alerts.parquet'}: directory {folder} is not writable\n"
    )


def test_out_below_a_file(log, tmp_path):
    out = log / "alerts.parquet"
    result = _run("score", log, "--out", out)
    assert result.exit_code == 1
    assert result.output == f"Error: cannot write --out {out}: {log} is not a directory\n"


# --------------------------------------------------------------------------- checked before the log is read


def test_a_bad_rules_file_is_reported_before_the_log_is_read(tmp_path):
    log = tmp_path / "log.parquet"
    log.write_bytes(b"not parquet: reading it would be an error of its own")
    rules = tmp_path / "missing.toml"
    result = _run("score", log, "--rules", rules)
    assert result.exit_code == 1
    assert result.output == f"Error: {rules}: file not found\n"  # no progress line: nothing read


def test_a_bad_model_is_reported_before_the_log_is_read(tmp_path):
    log = tmp_path / "log.parquet"
    log.write_bytes(b"not parquet")
    model = tmp_path / "model.skops"
    model.write_bytes(b"not a model")
    result = _run("score", log, "--model", model)
    assert result.exit_code == 1
    assert result.output == f"Error: {model} is not a model saved by `detector fit`\n"


def test_a_forbidden_output_is_reported_before_the_log_is_read(tmp_path):
    log = tmp_path / "log.parquet"
    log.write_bytes(b"not parquet")
    result = _run("score", log, "--out", tmp_path)
    assert result.exit_code == 1
    assert result.output == f"Error: cannot write --out {tmp_path}: it is a directory\n"


def test_score_writes_every_output_with_no_temporary_left(log, tmp_path):
    out = tmp_path / "o" / "alerts.csv"
    features = tmp_path / "o" / "features.parquet"
    result = _run("score", log, "--out", out, "--format", "csv", "--features-out", features)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "alerts.csv",
        "alerts.incidents.parquet",
        "features.parquet",
    ]
