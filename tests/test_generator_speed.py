"""The issue's speed and memory floors (slow: run with -m slow on an otherwise idle machine)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.mark.slow
def test_generate_10000_accounts_30_days_fast_and_within_memory():
    path = Path(__file__).parents[1] / "benchmarks" / "bench_generate.py"
    spec = importlib.util.spec_from_file_location("bench_generate", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure(10_000, 30)
    assert result["events"] > 8_000_000
    assert result["events_per_second"] >= 1_000_000
    assert result["peak_rss_mb"] <= 4096
