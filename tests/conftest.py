"""Shared fixtures: small generated data sets, made once per test session (per worker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runs import score_alerts

from synthetic_logs.generate import generate_dataset


@pytest.fixture(scope="session")
def small_log(tmp_path_factory) -> Path:
    """A small log with all four attacks: 300 accounts over three weeks."""
    out = tmp_path_factory.mktemp("small") / "logs.parquet"
    generate_dataset(out, seed=5, accounts=300, days=21)
    return out


@pytest.fixture(scope="session")
def on_disk(small_log, tmp_path_factory):
    """The small log's alerts read from its local path (caseloads found beside it): what a
    log read from anywhere else must give."""
    out = tmp_path_factory.mktemp("disk") / "alerts.parquet"
    alerts = score_alerts(str(small_log), out, "--workers", "1")
    assert len(alerts) > 0
    return alerts


@pytest.fixture(scope="session")
def fortnight_log(tmp_path_factory) -> Path:
    """60 accounts over two weeks: the log the state tests score whole and night by night."""
    out = tmp_path_factory.mktemp("fortnight") / "logs.parquet"
    generate_dataset(out, seed=11, accounts=60, days=14)
    return out
