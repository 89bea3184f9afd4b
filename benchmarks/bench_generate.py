"""Speed and peak memory of `detector generate --accounts 10000 --days 30`.

Runs the real command in a child process (so its peak resident memory can be read with
getrusage(RUSAGE_CHILDREN)) and prints events per second of wall time and peak memory.

    .venv/bin/python benchmarks/bench_generate.py [--accounts 10000] [--days 30]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq


def measure(accounts: int = 10_000, days: int = 30, seed: int = 7) -> dict[str, float]:
    """Run the generator once; give events, seconds, events/s, peak RSS (MB) and CPU seconds."""
    detector = Path(sys.executable).with_name("detector")
    workdir = Path(tempfile.mkdtemp(prefix="bench_generate_"))
    out = workdir / "logs.parquet"
    command = [
        str(detector),
        "generate",
        "--out",
        str(out),
        "--accounts",
        str(accounts),
        "--days",
        str(days),
        "--seed",
        str(seed),
    ]
    try:
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        events = pq.ParquetFile(out).metadata.num_rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "events": events,
        "seconds": seconds,
        "events_per_second": events / seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # ru_maxrss is in KiB on Linux
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    result = measure(args.accounts, args.days)
    print(f"detector generate --accounts {args.accounts} --days {args.days}")
    print(f"events: {result['events']:,}")
    print(
        f"wall time: {result['seconds']:.2f} s (CPU {result['cpu_seconds']:.2f} s on {os.cpu_count()} cores)"
    )
    print(f"events/s: {result['events_per_second']:,.0f}")
    print(f"peak memory: {result['peak_rss_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
