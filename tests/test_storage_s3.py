"""Logs on S3 (``s3://``): the same alerts as the same log on disk.

A real S3 endpoint speaking the real protocol over HTTP: moto's server,
started in this process on a free port. pyarrow's own S3 file system reads it
(no fsspec), pointed at it the way a user points it at MinIO or another
S3-compatible store: ``AWS_ENDPOINT_URL`` and the usual credential variables.
Worker processes inherit them and open the URL themselves.
"""

from __future__ import annotations

import uuid

import pandas as pd
import pyarrow.parquet as pq
import pytest
from cli_runs import score_alerts
from click.testing import CliRunner

from detector.cli import main
from detector.engine import storage

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")


@pytest.fixture(scope="module")
def endpoint():
    """A running S3 endpoint: its URL."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(endpoint, monkeypatch):
    """A fresh bucket on the endpoint, the environment pointing at it: its name."""
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    name = f"logs-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    storage._RESOLVED.clear()  # file systems are cached per location; this one is new
    yield name
    storage._RESOLVED.clear()


def _upload(bucket: str, key: str, data: bytes) -> None:
    import os

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    client.put_object(Bucket=bucket, Key=key, Body=data)


def test_a_log_on_s3_gives_the_alerts_of_the_log_on_disk(small_log, on_disk, bucket, tmp_path):
    _upload(bucket, "may/logs.parquet", small_log.read_bytes())
    caseloads = small_log.with_name("logs.caseloads.parquet")
    _upload(bucket, "may/logs.caseloads.parquet", caseloads.read_bytes())
    # Two worker processes: each opens the URL itself, with the inherited environment.
    alerts = score_alerts(
        f"s3://{bucket}/may/logs.parquet", tmp_path / "a.parquet", "--workers", "2"
    )
    pd.testing.assert_frame_equal(alerts, on_disk)


def test_a_dataset_directory_on_s3(small_log, on_disk, bucket, tmp_path):
    table = pq.read_table(small_log)
    size = -(-table.num_rows // 3)
    for i in range(3):
        pq.write_table(table.slice(i * size, size), tmp_path / f"part-{i}.parquet")
        _upload(bucket, f"days/part-{i}.parquet", (tmp_path / f"part-{i}.parquet").read_bytes())
    caseloads = small_log.with_name("logs.caseloads.parquet")
    _upload(bucket, "caseloads.parquet", caseloads.read_bytes())
    alerts = score_alerts(
        f"s3://{bucket}/days",
        tmp_path / "a.parquet",
        "--caseloads",
        f"s3://{bucket}/caseloads.parquet",
        "--workers",
        "1",
    )
    pd.testing.assert_frame_equal(alerts, on_disk)


def test_a_missing_key_on_s3_is_one_error_line(bucket, tmp_path):
    result = CliRunner().invoke(
        main, ["score", f"s3://{bucket}/nothing.parquet", "--out", str(tmp_path / "a.parquet")]
    )
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1] == (
        f"Error: no such file or directory: s3://{bucket}/nothing.parquet"
    )
