"""Speed and memory of `detector score` against pyarrow reading the same file.

Targets (issue 3): on a 10M-event log (10,000 accounts x 30 days), scoring in at
most 8x the time pyarrow takes to read the file, with peak memory <= 6 GB.

    python benchmarks/bench_score.py                # generates the log once, in .cache/
    python benchmarks/bench_score.py --log my.parquet

Each figure comes from a fresh subprocess, so peak memory is that process's own.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

READ = """
import sys, time, pyarrow.parquet as pq
t = time.perf_counter(); table = pq.read_table(sys.argv[1]); print(time.perf_counter() - t, table.num_rows)
"""


# Runs a command as its only child and prints that child's wall time and peak RSS (MB).
MEASURE = """
import resource, subprocess, sys, time
t = time.perf_counter(); done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
elapsed = time.perf_counter() - t
if done.returncode: sys.exit(done.stderr)
print(elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""


def _run(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr}")
    return elapsed, done.stdout


def _measure(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one command, in a process of its own."""
    _, output = _run([sys.executable, "-c", MEASURE, *command])
    elapsed, peak = output.split()
    return float(elapsed), float(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, help="log to score (default: generate 10,000 accounts x 30 days)")
    parser.add_argument("--repeat", type=int, default=3, help="pyarrow reads to time (the best counts)")
    args = parser.parse_args()
    detector = str(Path(sys.executable).with_name("detector"))

    log = args.log
    if log is None:
        log = Path(".cache/bench-speed/logs.parquet")
        if not log.exists():
            print("generating 10,000 accounts x 30 days ...", flush=True)
            _run([detector, "generate", "--out", str(log), "--accounts", "10000", "--days", "30"])

    reads = [float(_run([sys.executable, "-c", READ, str(log)])[1].split()[0]) for _ in range(args.repeat)]
    rows = int(_run([sys.executable, "-c", READ, str(log)])[1].split()[1])
    read_time = min(reads)

    out = log.with_name("bench.alerts.parquet")
    score_time, peak = _measure([detector, "score", str(log), "--out", str(out)])

    print(f"events:               {rows:,}")
    print(f"pyarrow read_table:   {read_time:.2f} s (best of {args.repeat})")
    print(f"detector score:       {score_time:.2f} s  ({rows / score_time:,.0f} events/s)")
    print(f"ratio score / read:   {score_time / read_time:.1f}x  (target <= 8x)")
    print(f"peak memory of score: {peak:,.0f} MB  (target <= 6,144 MB)")


if __name__ == "__main__":
    main()
