"""Logs named by URL (detector.engine.storage): the same alerts as the same log on disk.

Real formats and real file systems: fsspec's in-process ``memory://`` file
system, and ``file://`` URLs read by local worker processes and by the workers
of a Dask ``LocalCluster`` (which open the URL themselves).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from cli_runs import score_alerts
from click.testing import CliRunner

from detector.cli import main
from detector.engine import storage

fsspec = pytest.importorskip("fsspec")


def _error(*arguments: str) -> str:
    """The last line of a command that must fail with exit status 1."""
    result = CliRunner().invoke(main, list(arguments))
    assert result.exit_code == 1, result.output
    return result.output.splitlines()[-1]


def _split(log: Path, folder: Path, parts: int = 3) -> None:
    """The log as a dataset directory of ``parts`` files, in row order (same event ids)."""
    table = pq.read_table(log)
    folder.mkdir()
    size = -(-table.num_rows // parts)
    for i in range(parts):
        pq.write_table(table.slice(i * size, size), folder / f"part-{i}.parquet")


@pytest.fixture
def memory():
    """A fresh folder of fsspec's in-process memory file system: (fs, its URL)."""
    fs = fsspec.filesystem("memory")
    folder = f"/t{uuid.uuid4().hex}"
    fs.mkdir(folder)
    yield fs, f"memory://{folder}"
    fs.rm(folder, recursive=True)


def test_a_log_in_memory_gives_the_alerts_of_the_log_on_disk(small_log, on_disk, memory, tmp_path):
    fs, root = memory
    fs.pipe(f"{root}/logs.parquet", small_log.read_bytes())
    fs.pipe(
        f"{root}/logs.caseloads.parquet", small_log.with_name("logs.caseloads.parquet").read_bytes()
    )
    # The caseload table is found beside the URL, as beside a path.
    alerts = score_alerts(f"{root}/logs.parquet", tmp_path / "alerts.parquet", "--workers", "1")
    pd.testing.assert_frame_equal(alerts, on_disk)


def test_a_dataset_directory_in_memory_and_caseloads_by_url(small_log, on_disk, memory, tmp_path):
    fs, root = memory
    _split(small_log, tmp_path / "dataset")
    for file in sorted((tmp_path / "dataset").iterdir()):
        fs.pipe(f"{root}/dataset/{file.name}", file.read_bytes())
    fs.pipe(f"{root}/dataset/_SUCCESS", b"")  # skipped, as pyarrow skips it on disk
    fs.pipe(
        f"{root}/side/caseloads.parquet", small_log.with_name("logs.caseloads.parquet").read_bytes()
    )
    alerts = score_alerts(
        f"{root}/dataset/",
        tmp_path / "alerts.parquet",
        "--caseloads",
        f"{root}/side/caseloads.parquet",
        "--workers",
        "1",
    )
    pd.testing.assert_frame_equal(alerts, on_disk)


def test_a_file_url_through_two_local_workers(small_log, on_disk, tmp_path):
    alerts = score_alerts(
        small_log.resolve().as_uri(), tmp_path / "alerts.parquet", "--workers", "2"
    )
    pd.testing.assert_frame_equal(alerts, on_disk)


def test_a_file_url_on_a_two_worker_dask_cluster(small_log, on_disk, tmp_path):
    """The workers of a LocalCluster open each file of the dataset by its URL themselves."""
    pytest.importorskip("distributed")
    _split(small_log, tmp_path / "dataset")
    caseloads = small_log.with_name("logs.caseloads.parquet").resolve().as_uri()
    alerts = score_alerts(
        (tmp_path / "dataset").resolve().as_uri() + "/",
        tmp_path / "alerts.parquet",
        "--caseloads",
        caseloads,
        "--engine",
        "dask",
        "--workers",
        "2",
    )
    pd.testing.assert_frame_equal(alerts, on_disk)


# --- Errors: one line each, exit status 1 ----------------------------------------------------


def test_cli_unknown_protocol(tmp_path):
    out = str(tmp_path / "a.parquet")
    assert _error("score", "nosuchfs://bucket/logs.parquet", "--out", out) == (
        "Error: nosuchfs://bucket/logs.parquet: unknown protocol 'nosuchfs'"
        " (neither pyarrow nor fsspec reads it)"
    )


def test_cli_missing_file_by_url(memory, tmp_path):
    _, root = memory
    out = str(tmp_path / "a.parquet")
    assert _error("score", f"{root}/logs.parquet", "--out", out) == (
        f"Error: no such file or directory: {root}/logs.parquet"
    )
    missing = (tmp_path / "nothing.parquet").as_uri()
    assert _error("score", missing, "--out", out) == f"Error: no such file or directory: {missing}"


def test_cli_missing_caseloads_by_url(small_log, memory, tmp_path):
    _, root = memory
    out = str(tmp_path / "a.parquet")
    assert _error("score", str(small_log), "--caseloads", f"{root}/c.parquet", "--out", out) == (
        f"Error: no such file or directory: {root}/c.parquet"
    )


def test_cli_protocol_whose_library_is_missing(tmp_path):
    import importlib.util

    if importlib.util.find_spec("paramiko") is not None:
        pytest.skip("paramiko is installed: sftp:// would try to connect")
    out = str(tmp_path / "a.parquet")
    assert _error("score", "sftp://host/logs.parquet", "--out", out) == (
        "Error: sftp://host/logs.parquet: the sftp:// file system needs a library that is not"
        ' installed (SFTPFileSystem requires "paramiko" to be installed)'
    )


def test_cli_url_neither_parquet_nor_directory(memory, tmp_path):
    fs, root = memory
    fs.pipe(f"{root}/notes.parquet", b"these are not Parquet bytes")
    fs.pipe(f"{root}/mixed/part-0.parquet", b"nor these")
    fs.mkdir(f"{root}/empty")
    out = str(tmp_path / "a.parquet")
    assert _error("score", f"{root}/notes.parquet", "--out", out).startswith(
        f"Error: {root}/notes.parquet: not a Parquet file or a directory of Parquet files ("
    )
    assert _error("score", f"{root}/mixed", "--out", out).startswith(
        f"Error: {root}/mixed/part-0.parquet: not a Parquet file ("
    )
    assert _error("score", f"{root}/empty", "--out", out) == (
        f"Error: {root}/empty: no Parquet files in this directory"
    )


def test_cli_outputs_and_state_stay_local(small_log, tmp_path):
    log = str(small_log)
    assert _error("score", "memory://x/logs.parquet") == (
        "Error: memory://x/logs.parquet is a URL: give --out (outputs are written to local files)"
    )
    assert _error("score", log, "--out", "s3://bucket/alerts.parquet") == (
        "Error: --out s3://bucket/alerts.parquet: a local path is needed"
        " (outputs are written to local files)"
    )
    assert _error(
        "score", log, "--out", str(tmp_path / "a.parquet"), "--state", "s3://bucket/state"
    ) == (
        "Error: --state s3://bucket/state: a local path is needed (the state is replaced by an"
        " atomic rename, which object stores lack)"
    )


def test_cli_url_log_must_be_contract_parquet(tmp_path):
    assert _error(
        "score", "memory://x/logs.ndjson", "--input-format", "ndjson", "--out", str(tmp_path / "a")
    ) == (
        "Error: memory://x/logs.ndjson: a log named by URL must be contract Parquet;"
        " stage other formats from a local copy"
    )


# --- The module itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("s3://bucket/logs/", True),
        ("memory://x", True),
        ("file:///tmp/x.parquet", True),
        ("logs.parquet", False),
        ("/data/logs/", False),
        ("C:/logs/x.parquet", False),  # a Windows drive, not a scheme
        (Path("s3://b/x"), False),  # a Path is never a URL (and has folded the slashes)
    ],
)
def test_is_url(value, url):
    assert storage.is_url(value) is url


def test_local_path_and_siblings():
    assert storage.local_path("file:///tmp/a%20b/x.parquet") == Path("/tmp/a b/x.parquet")
    assert storage.local_path("logs/x.parquet") == Path("logs/x.parquet")
    assert storage.local_path("s3://bucket/x.parquet") is None
    assert storage.as_location("s3://b/x") == "s3://b/x"
    assert storage.as_location("b/x") == Path("b/x")
    assert storage.name("s3://b/logs/x.parquet") == "x.parquet"
    assert storage.with_name("s3://b/logs/x.parquet", "y.parquet") == "s3://b/logs/y.parquet"
    assert storage.with_name("logs/x.parquet", "y.parquet") == Path("logs/y.parquet")


def test_listing_a_directory_by_url(memory):
    fs, root = memory
    for name in ("b.parquet", "a.parquet", "sub/c.parquet", "_metadata", ".hidden.parquet"):
        fs.pipe(f"{root}/d/{name}", b"x")
    assert storage.kind(f"{root}/d") == "directory"
    assert storage.kind(f"{root}/d/a.parquet") == "file"
    assert storage.kind(f"{root}/nothing") is None
    assert storage.parquet_files(f"{root}/d/") == [
        f"{root}/d/a.parquet",
        f"{root}/d/b.parquet",
        f"{root}/d/sub/c.parquet",
    ]
    assert storage.parquet_files(f"{root}/d/a.parquet") == [f"{root}/d/a.parquet"]


def test_cli_report_reads_a_local_log_only(small_log, tmp_path):
    alerts = str(tmp_path / "alerts.parquet")
    assert _error("report", alerts, "--log", "s3://bucket/logs.parquet") == (
        "Error: --log s3://bucket/logs.parquet: a local path is needed"
        " (the report reads the log from local files; copy it first)"
    )
