"""Speed and peak memory of `detector generate --accounts 10000 --days 30`.

Runs the real command in a child process (so its peak resident memory can be read with
getrusage(RUSAGE_CHILDREN)) and prints events per second of wall time and peak memory.
`--dataset` writes a directory with one Parquet file per local day (issue 8's national month:
`--accounts 90000 --days 30 --dataset`).

    .venv/bin/python benchmarks/bench_generate.py [--accounts 10000] [--days 30] [--dataset]
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

import pyarrow.dataset as ds


def measure(
    accounts: int = 10_000, days: int = 30, seed: int = 7, dataset: bool = False
) -> dict[str, float]:
    """Run the generator once; give events, seconds, events/s, peak RSS (MB) and CPU seconds."""
    detector = Path(sys.executable).with_name("detector")
    workdir = Path(tempfile.mkdtemp(prefix="bench_generate_"))
    out = workdir / ("logs" if dataset else "logs.parquet")
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
        *(["--partition-by", "day"] if dataset else []),
    ]
    try:
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        events = ds.dataset(out, format="parquet").count_rows()
        size = sum(p.stat().st_size for p in workdir.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "events": events,
        "seconds": seconds,
        "events_per_second": events / seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # ru_maxrss is in KiB on Linux
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "disk_mb": size / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--dataset", action="store_true", help="one file per local day")
    args = parser.parse_args()
    result = measure(args.accounts, args.days, dataset=args.dataset)
    flag = " --partition-by day" if args.dataset else ""
    print(f"detector generate --accounts {args.accounts} --days {args.days}{flag}")
    print(f"events: {result['events']:,}")
    print(
        f"wall time: {result['seconds']:.2f} s (CPU {result['cpu_seconds']:.2f} s on {os.cpu_count()} cores)"
    )
    print(f"events/s: {result['events_per_second']:,.0f}")
    print(f"peak memory: {result['peak_rss_mb']:,.0f} MB")
    print(f"on disk (log and side files): {result['disk_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
