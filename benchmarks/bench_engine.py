"""Speed and memory of the partitioned engine on the 10M-event shape log (issue 8).

Prints, each measured in this run:

- a warm pyarrow read of the log (best of ``--repeat``);
- the whole `detector score` (features, rules, model, replay, alerts), its
  ratio to the read, its CPU time (user + system of the process tree: on a
  shared machine it varies less than the wall time) and the peak memory of the
  process tree (the command and its worker processes, proportional set sizes
  summed, sampled every 0.1 s);
- with ``--state-day``: a state built from the log's first 28 local days, then
  one new day (the 29th) scored against it, end to end.

Targets: whole score <= 5x the read (3x stretch) and peak <= 2 GB; one new
day against a 28-day state <= 5 s.

    python benchmarks/bench_engine.py                       # makes the shape log once, in .cache/
    python benchmarks/bench_engine.py --log big.parquet --workers 2 --state-day
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

READ = """
import sys, time, pyarrow.parquet as pq
t = time.perf_counter(); table = pq.read_table(sys.argv[1]); print(time.perf_counter() - t, table.num_rows)
"""
# A dataset directory may not fit in memory as one table (100M events of text columns
# take over 24 GB): it is read batch by batch, each batch dropped once read.
READ_STREAMED = """
import sys, time, pyarrow.dataset as ds
t = time.perf_counter(); rows = sum(b.num_rows for b in ds.dataset(sys.argv[1]).to_batches())
print(time.perf_counter() - t, rows)
"""
# The shared shape script lives beside the repository (../shared/perf).
SHAPE = Path(__file__).resolve().parents[2] / "shared" / "perf" / "mk_perf_log.py"


def _pss(pid: int) -> int:
    """Proportional set size (bytes): shared pages split among the processes sharing them.

    Forked workers share the parent's pages; summing their RSS would count those twice.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree_rss(pid: int) -> int:
    """Memory (bytes, PSS) of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += _pss(current)
        stack.extend(children.get(current, []))
    return total


def measure(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak MB of the process tree, stderr) of one command."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_rss(process.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    elapsed = time.perf_counter() - started
    sampler.join()
    if process.returncode:
        sys.exit(f"failed: {' '.join(command)}\n{stderr}")
    return elapsed, peak[0] / 2**20, stderr


def cpu_of(command: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak MB, CPU seconds of the process tree: user + system) of one command.

    On a shared machine the CPU time says more than the wall time about a change.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds, peak, _ = measure(command)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, peak, cpu


def read_time(log: Path, repeat: int) -> tuple[float, int]:
    """(best warm pyarrow read in seconds, rows): the whole table, or batch by batch for a
    dataset directory."""
    runs = []
    for _ in range(repeat + 1):  # the first run warms the page cache
        script = READ_STREAMED if log.is_dir() else READ
        done = subprocess.run(
            [sys.executable, "-c", script, str(log)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"the pyarrow read of {log} failed ({done.returncode}): {done.stderr}")
        seconds, rows = done.stdout.split()
        runs.append((float(seconds), int(rows)))
    return min(r[0] for r in runs[1:]), runs[0][1]


def _split_days(log: Path, out: Path) -> tuple[Path, Path]:
    """The log's first 28 local days and its 29th, as two files (two directories for a dataset)."""
    if log.is_dir():
        return _split_dataset(log, out)
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from detector.features.kernel import local_days
    from detector.vocabulary import DEFAULT_TIMEZONE

    table = pq.read_table(log)
    stamps = pd.DatetimeIndex(table["timestamp"].to_pandas()).as_unit("ns").asi8
    day = local_days(stamps, DEFAULT_TIMEZONE)[0]
    first = int(day.min())
    history, today = out / "history.parquet", out / "day29.parquet"
    pq.write_table(table.filter(day < first + 28), history, row_group_size=1_000_000)
    pq.write_table(table.filter(np.asarray(day == first + 28)), today)
    return history, today


def _split_dataset(log: Path, out: Path) -> tuple[Path, Path]:
    """A dataset partitioned by day (``detector generate --out DIR/``): its first 28 day
    directories and its 29th, linked into two directories, with the caseloads beside each.

    The whole dataset may not fit in memory, so it is split by directory, not read.
    """
    days = sorted(entry for entry in log.iterdir() if entry.is_dir())
    if len(days) < 29:
        raise SystemExit(f"--state-day needs 29 day directories in {log}; it has {len(days)}")
    caseloads = log.with_name(log.name + ".caseloads.parquet")
    split = []
    for name, chosen in (("history", days[:28]), ("day29", days[28:29])):
        folder = out / name
        subprocess.run(["rm", "-rf", str(folder)], check=True)
        folder.mkdir()
        for day in chosen:
            (folder / day.name).symlink_to(day.resolve())
        beside = out / f"{name}.caseloads.parquet"
        beside.unlink(missing_ok=True)
        if caseloads.exists():
            beside.symlink_to(caseloads.resolve())
        split.append(folder)
    return split[0], split[1]


def score_whole_log(detector: str, log: Path, repeat: int, workers: list[str]) -> None:
    """Time the read and the whole score of ``log``; print both and the issue's targets.

    The targets are the 10M shape log's (<= 5x, 2 GB) up to 50M events, and the
    100M generated log's (<= 6x, 4 GB) beyond.
    """
    read, rows = read_time(log, repeat)
    out = log.with_name(log.stem + ".bench-alerts.parquet")
    seconds, peak, cpu = cpu_of([detector, "score", str(log), "--out", str(out), *workers])
    print(f"events:                 {rows:,}")
    print(f"pyarrow read_table:     {read:.2f} s (best of {repeat}, warm)")
    print(
        f"detector score:         {seconds:.2f} s ({rows / seconds:,.0f} events/s), CPU {cpu:.1f} s"
    )
    big = rows > 50_000_000
    ratio_target, memory_target = ("<= 6x", "4,096") if big else ("<= 5x, stretch 3x", "2,048")
    print(f"ratio score / read:     {seconds / read:.1f}x  (target {ratio_target})")
    print(f"peak memory (tree PSS): {peak:,.0f} MB  (target <= {memory_target} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--log", type=Path, help="log to score (default: the 10M shape log)")
    parser.add_argument("--repeat", type=int, default=3, help="pyarrow reads timed (best counts)")
    parser.add_argument("--workers", type=int, help="--workers for detector score")
    parser.add_argument("--state-day", action="store_true", help="also time one day on a state")
    parser.add_argument(
        "--only-state-day", action="store_true", help="time one day on a state, not the whole log"
    )
    args = parser.parse_args()
    detector = str(Path(sys.executable).with_name("detector"))
    log = args.log
    if log is None:
        log = Path(".cache/bench-engine/shape10m.parquet")
        if not log.exists():
            log.parent.mkdir(parents=True, exist_ok=True)
            print("making the 10M-event shape log ...", flush=True)
            subprocess.run([sys.executable, str(SHAPE), "10000000", str(log)], check=True)
    workers = ["--workers", str(args.workers)] if args.workers else []

    if not args.only_state_day:
        score_whole_log(detector, log, args.repeat, workers)
    if args.state_day or args.only_state_day:
        work = log.parent / f"{log.stem}.state-day"
        work.mkdir(exist_ok=True)
        history, today = _split_days(log, work)
        state = work / "state"
        subprocess.run(["rm", "-rf", str(state)], check=True)
        build, build_peak, build_cpu = cpu_of(
            [
                detector,
                "score",
                str(history),
                "--state",
                str(state),
                "--out",
                str(work / "history.alerts.parquet"),
                *workers,
            ]
        )
        day, day_peak, day_cpu = cpu_of(
            [
                detector,
                "score",
                str(today),
                "--state",
                str(state),
                "--out",
                str(work / "day29.alerts.parquet"),
                *workers,
            ]
        )
        print(
            f"28-day state built:     {build:.2f} s, CPU {build_cpu:.1f} s, peak {build_peak:,.0f} MB"
        )
        print(
            f"one new day on state:   {day:.2f} s, CPU {day_cpu:.1f} s, peak {day_peak:,.0f} MB"
            "  (target <= 5 s)"
        )
    print(f"(load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
