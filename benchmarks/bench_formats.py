"""Speed and memory of staging an ECS NDJSON log as contract Parquet (docs/formats.md).

    python benchmarks/bench_formats.py                      # 2,000 accounts x 28 days, in .cache/
    python benchmarks/bench_formats.py --accounts 5000 --days 30

Writes the generated log as ECS NDJSON.gz (flat dotted keys, as an Elasticsearch
export can give them), then stages it with the shipped ECS mapping in a fresh
subprocess and prints its wall time, events per second and peak memory, beside
the size of the input. Staging reads 32 MB of text at a time: its peak should
not grow with the log.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

STAGE = """
import sys, time
from detector.formats.mapping import load_mapping
from detector.formats.staging import stage
t = time.perf_counter()
result = stage(sys.argv[1], sys.argv[2], "ndjson", load_mapping("ecs"))
elapsed = time.perf_counter() - t
print(elapsed, result.staged)
"""

# A small parent that runs STAGE as its only child and adds that child's peak RSS (MB):
# Linux keeps a process's peak across exec, so a child forked from this script's big
# process would report the parent's peak, not its own.
MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
if done.returncode: sys.exit(done.stderr)
print(done.stdout.strip(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""

ECS_ACTION = {  # contract action -> an audit trail's spelling (the shipped mapping knows them)
    "login": "logged-in",
    "logout": "logged-out",
    "view_record": "record-view",
    "search": "query",
    "export": "download",
    "update_record": "modify",
    "create_account": "added-user-account",
    "grant_access": "role-granted",
}


def write_ecs(log: Path, out: Path) -> int:
    """The contract log as ECS NDJSON.gz with flat dotted keys; returns the event count."""
    import pandas as pd

    frame = pd.read_parquet(log)
    ecs = pd.DataFrame(
        {
            "@timestamp": frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "event.id": frame["event_id"].astype(str),
            "event.action": frame["action"].map(ECS_ACTION),
            "event.outcome": frame["outcome"],
            "user.name": frame["account_id"],
            "labels.account_type": frame["account_type"],
            "organization.id": frame["organization_id"],
            "service.name": frame["application"],
            "source.ip": frame["src_ip"],
            "user_agent.original": frame["user_agent"],
            "labels.auth_method": frame["auth_method"],
            "labels.records_returned": frame["records_returned"],
            "user.target.name": frame["target_account_id"],
            "labels.record_id": frame["record_id"],
            "labels.record_org_id": frame["record_org_id"],
        }
    )
    ecs.to_json(out, orient="records", lines=True, compression="gzip")
    return len(ecs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--days", type=int, default=28)
    args = parser.parse_args()
    cache = Path(".cache") / f"bench_formats_{args.accounts}x{args.days}"
    cache.mkdir(parents=True, exist_ok=True)
    log, ecs = cache / "logs.parquet", cache / "logs.ecs.ndjson.gz"
    if not log.exists():
        from synthetic_logs.generate import generate_dataset

        generate_dataset(log, seed=7, accounts=args.accounts, days=args.days)
    if not ecs.exists():
        write_ecs(log, ecs)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            MEASURE,
            sys.executable,
            "-c",
            STAGE,
            str(ecs),
            str(cache / "staged"),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        sys.exit(done.stderr)
    elapsed, staged, peak = done.stdout.split()
    events = int(staged)
    print(f"input: {ecs} ({ecs.stat().st_size / 2**20:.0f} MB gzip), {events:,} events")
    print(
        f"staging: {float(elapsed):.1f} s ({events / float(elapsed):,.0f} events/s), "
        f"peak RSS {float(peak):.0f} MB"
    )


if __name__ == "__main__":
    main()
