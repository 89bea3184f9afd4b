"""Time and peak memory of `detector score` when a log holds a few far-off timestamps (issue 10, item 4).

A generated 14-day log is scored as is, then with two events added at far-off
instants: 1970 and 2100, 1678 and 2262 (the edges of what pandas holds in
nanoseconds), and 2500 (beyond them). Before the fix, the first two cost a
dense accounts x calendar-days table (issue 10 measured 30 s / 790 MB and
157 s / 2.4 GB against 3.8 s / 325 MB) and the last one a traceback; now
far-off events go to the rejects file and the cost follows the days that hold
events.

    python benchmarks/bench_far_timestamps.py                 # 2,000 accounts x 14 days, in .cache/
    python benchmarks/bench_far_timestamps.py --accounts 500

The detector is run as `python -P -c "from detector.cli import main; main()"`
(``-P``: not from the current directory), so ``PYTHONPATH=<an older checkout>``
measures that older code with the same script.
Each figure comes from a fresh subprocess: peak memory is that process's own.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Runs a command (argv[2:]) as its only child, stopping it after argv[1] seconds; prints its
# wall time, peak RSS (MB) and exit code ("timeout" when stopped), then its output.
MEASURE = """
import resource, subprocess, sys, time
t = time.perf_counter()
try:
    done = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=float(sys.argv[1]))
    code, output = done.returncode, done.stdout + done.stderr
except subprocess.TimeoutExpired:
    code, output = "timeout", "stopped at the time limit"
elapsed = time.perf_counter() - t
print(elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, code)
print(output)
"""
DETECTOR = [sys.executable, "-P", "-c", "from detector.cli import main; main()"]
VARIANTS = {
    "as generated": [],
    "+ 1970 and 2100": ["1970-01-01T12:00:00Z", "2100-01-01T12:00:00Z"],
    "+ 1678 and 2262": ["1678-01-01T12:00:00Z", "2262-01-01T12:00:00Z"],
    "+ 2500": ["2500-01-01T12:00:00Z"],
}


def _with_far_events(table: pa.Table, instants: list[str]) -> pa.Table:
    """The log plus one copy of its first event at each instant (new event ids)."""
    if not instants:
        return table
    table = table.set_column(
        table.schema.get_field_index("timestamp"),
        "timestamp",
        table.column("timestamp").cast(pa.timestamp("us", tz="UTC")),
    )
    first = table.slice(0, 1)
    top = pc.max(table.column("event_id")).as_py()
    extra = []
    for i, instant in enumerate(instants, start=1):
        row = first.set_column(
            first.schema.get_field_index("timestamp"),
            "timestamp",
            pa.array([instant], pa.string()).cast(pa.timestamp("us", tz="UTC")),
        )
        row = row.set_column(
            row.schema.get_field_index("event_id"), "event_id", pa.array([top + i], pa.int64())
        )
        extra.append(row)
    return pa.concat_tables([table, *extra]).combine_chunks()


def _outcome(output: list[str]) -> str:
    """What the run said: its alert count and rejected rows, or its last line."""
    output = [line for line in output if line.strip()]
    alerts = [line.split(" (")[0] for line in output if " alerts (" in line]
    rejected = [
        line.split(": ")[1].split(" written")[0] for line in output if "rejected rows" in line
    ]
    if not alerts:
        return output[-1][:80] if output else ""
    return ", ".join(alerts + rejected)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--dir", type=Path, default=Path(".cache/bench-far"))
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds before a run is stopped"
    )
    args = parser.parse_args()

    base = args.dir / f"logs-{args.accounts}x{args.days}.parquet"
    if not base.exists():
        print(f"generating {args.accounts:,} accounts x {args.days} days ...", flush=True)
        base.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                *DETECTOR,
                "generate",
                "--out",
                str(base),
                "--accounts",
                str(args.accounts),
                "--days",
                str(args.days),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            sys.exit(done.stderr)
    table = pq.read_table(base)
    caseloads = base.with_name(base.name.replace(".parquet", ".caseloads.parquet"))

    print(f"log: {base} ({table.num_rows:,} events)")
    print(f"{'variant':<18} {'seconds':>8} {'peak MB':>8}  exit  outcome")
    for i, (name, instants) in enumerate(VARIANTS.items()):
        log = args.dir / f"variant{i}.parquet"
        pq.write_table(_with_far_events(table, instants), log)
        shutil.copyfile(caseloads, log.with_name(f"variant{i}.caseloads.parquet"))
        out = args.dir / f"variant{i}.alerts.parquet"
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                MEASURE,
                str(args.timeout),
                *DETECTOR,
                "score",
                str(log),
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            sys.exit(
                f"measuring failed after {time.perf_counter() - started:.0f} s:\n{done.stderr}"
            )
        figures, *output = done.stdout.splitlines()
        seconds, peak, code = figures.split()
        print(
            f"{name:<18} {float(seconds):>8.1f} {float(peak):>8,.0f}  {code:>4}  {_outcome(output)}"
        )


if __name__ == "__main__":
    main()
