"""Speed and memory of `detector score` against pyarrow reading the same file.

Targets (issue 3): on a 10M-event log (10,000 accounts x 30 days), scoring in at
most 8x the time pyarrow takes to read the file, with peak memory <= 6 GB.

    python benchmarks/bench_score.py                # generates the log once, in .cache/
    python benchmarks/bench_score.py --log my.parquet

Each figure comes from a fresh subprocess; peak memory is the process tree's
(the command and its worker processes, proportional set sizes summed).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from bench_engine import measure  # the process-tree measure (this script's directory)

READ = """
import sys, time, pyarrow.parquet as pq
t = time.perf_counter(); table = pq.read_table(sys.argv[1]); print(time.perf_counter() - t, table.num_rows)
"""


def _run(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr}")
    return elapsed, done.stdout


def _measure(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak MB of the process tree) of one command."""
    seconds, peak, _ = measure(command)
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--log", type=Path, help="log to score (default: generate 10,000 accounts x 30 days)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="pyarrow reads to time (the best counts)"
    )
    args = parser.parse_args()
    detector = str(Path(sys.executable).with_name("detector"))

    log = args.log
    if log is None:
        log = Path(".cache/bench-speed/logs.parquet")
        if not log.exists():
            print("generating 10,000 accounts x 30 days ...", flush=True)
            _run([detector, "generate", "--out", str(log), "--accounts", "10000", "--days", "30"])

    reads = [
        float(_run([sys.executable, "-c", READ, str(log)])[1].split()[0])
        for _ in range(args.repeat)
    ]
    rows = int(_run([sys.executable, "-c", READ, str(log)])[1].split()[1])
    read_time = min(reads)

    out = log.with_name("bench.alerts.parquet")
    score_time, peak = _measure([detector, "score", str(log), "--out", str(out)])

    print(f"events:               {rows:,}")
    print(f"pyarrow read_table:   {read_time:.2f} s (best of {args.repeat})")
    print(f"detector score:       {score_time:.2f} s  ({rows / score_time:,.0f} events/s)")
    print(f"ratio score / read:   {score_time / read_time:.1f}x  (target <= 8x)")
    print(f"peak memory of score: {peak:,.0f} MB  (process tree; target <= 6,144 MB)")


if __name__ == "__main__":
    main()
