"""A log written as a dataset directory (one Parquet file per local day) holds the same data as
the single file, the detector reads it with its side files, and every write is atomic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from detector.cli import main
from synthetic_logs import generate as generate_module
from synthetic_logs.errors import GeneratorError
from synthetic_logs.generate import generate_dataset, is_dataset_target, sidecar

SIDES = ("truth.parquet", "attacks.json", "caseloads.parquet", "lookalikes.json")


def _read_dataset(root: Path) -> pd.DataFrame:
    """The dataset as the detector reads it (no partition column), files in path order."""
    return ds.dataset(root, format="parquet").to_table().to_pandas()


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same seed written once as a file and once as a dataset directory."""
    root = tmp_path_factory.mktemp("both")
    one = root / "one.parquet"
    many = root / "many"
    generate_dataset(one, seed=11, accounts=150, days=12)
    summary = generate_dataset(many, seed=11, accounts=150, days=12, partition_by="day")
    return one, many, summary


def test_same_seed_same_data_as_file_or_dataset(both):
    one, many, summary = both
    single, split = pd.read_parquet(one), _read_dataset(many)
    assert len(split) == summary.events
    pd.testing.assert_frame_equal(single, split)
    for suffix in SIDES:
        assert sidecar(one, suffix).read_bytes() == sidecar(many, suffix).read_bytes(), suffix


def test_one_file_per_local_day_with_unique_ids(both):
    _, many, summary = both
    files = sorted(many.glob("day=*/part-0.parquet"))
    assert [f.parent.name for f in files][:2] == ["day=2024-01-08", "day=2024-01-09"]
    assert len(files) >= summary.days
    ids = []
    for path in files:
        part = pd.read_parquet(path)
        local = part["timestamp"].dt.tz_convert("Europe/Paris").dt.date.astype(str)
        assert set(local) <= {path.parent.name.removeprefix("day=")}, path
        ids.append(part["event_id"].to_numpy())
    ids = np.concatenate(ids)
    assert (ids == np.arange(len(ids))).all()  # unique across days, continuing from day to day


def test_side_files_beside_the_directory_where_the_detector_looks(both):
    from detector.schema import default_caseloads_path, sibling

    _, many, _ = both
    assert default_caseloads_path(many) == sidecar(many, "caseloads.parquet")
    assert default_caseloads_path(f"{many}/") == sidecar(many, "caseloads.parquet")
    for suffix in SIDES:
        assert sibling(many, "." + suffix).is_file()


def test_detector_scores_the_directory(both, tmp_path):
    _, many, _ = both
    alerts = tmp_path / "alerts.parquet"
    result = CliRunner().invoke(
        main, ["score", f"{many}/", "--out", str(alerts), "--mode", "rules"]
    )
    assert result.exit_code == 0, result.output
    attacks = json.loads(sidecar(many, "attacks.json").read_text())
    alerted = set(pd.read_parquet(alerts)["account_id"])
    assert alerted & {a for attack in attacks for a in attack["accounts"]}


def test_cli_writes_a_dataset_for_a_trailing_slash(tmp_path):
    out = tmp_path / "big"
    result = CliRunner().invoke(
        main, ["generate", "--out", f"{out}/", "--accounts", "60", "--days", "3", "--no-attacks"]
    )
    assert result.exit_code == 0, result.output
    assert out.is_dir() and len(list(out.glob("day=*/part-0.parquet"))) == 3
    assert result.output.splitlines()[-1] == "files: " + ", ".join(
        [str(out), *(str(sidecar(out, s)) for s in SIDES)]
    )
    # Again into the now existing directory: replaced, not appended to.
    before = _read_dataset(out)
    result = CliRunner().invoke(
        main, ["generate", "--out", str(out), "--accounts", "60", "--days", "3", "--no-attacks"]
    )
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(before, _read_dataset(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["big", *(sidecar(out, s).name for s in SIDES)]
    )  # no temporary left beside it


def test_partition_flag_choices():
    assert is_dataset_target("x/logs.parquet") is False
    assert is_dataset_target("x/logs/") is True
    assert is_dataset_target("x/logs.parquet", "day") is True
    assert is_dataset_target("x/logs.parquet", "none") is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "{tmp}/d/", "--partition-by", "none"], "--partition-by none needs a .parquet file, got the directory {tmp}/d/"),
        (["--out", "{tmp}/file.parquet", "--partition-by", "day"], "--out {tmp}/file.parquet is a file, not a dataset directory"),
        (["--out", "{tmp}/home", "--partition-by", "day"], "--out {tmp}/home holds other files than day partitions (notes.txt); choose a new or empty directory"),
    ],
    ids=["none-with-directory", "day-onto-a-file", "directory-with-other-files"],
)  # fmt: skip
def test_bad_dataset_targets(tmp_path, args, message):
    (tmp_path / "file.parquet").write_bytes(b"not parquet")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("keep me")
    args = [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(main, ["generate", *args, "--accounts", "60", "--days", "2"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "Error: " + message.format(tmp=tmp_path)
    assert (tmp_path / "home" / "notes.txt").read_text() == "keep me"


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("dataset", [False, True], ids=["file", "dataset"])
def test_interrupted_run_leaves_no_partial_log(tmp_path, monkeypatch, dataset):
    """A failure after some days were written leaves neither a log nor a temporary behind."""
    original = generate_module.normal_day_slices

    def failing(rng, pop, grid, plan, picker, day):
        if day == 3:
            raise _Interrupted
        return original(rng, pop, grid, plan, picker, day)

    monkeypatch.setattr(generate_module, "normal_day_slices", failing)
    out = tmp_path / ("logs" if dataset else "logs.parquet")
    with pytest.raises(_Interrupted):
        generate_dataset(out, [], accounts=60, days=6, partition_by="day" if dataset else None)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_rerun_keeps_the_previous_dataset(tmp_path, monkeypatch):
    out = tmp_path / "logs"
    generate_dataset(out, [], accounts=60, days=4, partition_by="day")
    before = _read_dataset(out)
    monkeypatch.setattr(
        generate_module, "normal_day_slices", lambda *a: (_ for _ in ()).throw(_Interrupted())
    )
    with pytest.raises(_Interrupted):
        generate_dataset(out, [], seed=99, accounts=60, days=4, partition_by="day")
    pd.testing.assert_frame_equal(before, _read_dataset(out))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_side_file_write_is_atomic(tmp_path, monkeypatch):
    """A side file whose writing fails leaves the previous one intact and no temporary."""
    target = tmp_path / "x.truth.parquet"
    pq.write_table(pa.table({"a": [1]}), target)

    def half_then_fail(path: Path) -> None:
        path.write_bytes(b"PAR1 half")
        raise GeneratorError("disk full")

    with pytest.raises(GeneratorError):
        generate_module._atomic_write(target, half_then_fail)
    assert pd.read_parquet(target)["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["x.truth.parquet"]
