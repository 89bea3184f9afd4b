"""Quality of a rule set on the quiet attacks and the organisation-wide look-alikes (issue 9).

For each seed: one data set of the default population (2,000 accounts, 28 days)
with every scenario (the four documented attacks and the five quiet ones) and
the extended look-alikes, scored with and without its caseload table. Prints,
per seed and scenario, detected / hours to detect / share of records exposed
before detection, and per data set the benign accounts alerted and the
look-alike accounts alerted at high severity (per kind).

    python benchmarks/quiet_quality.py                      # default, seeds 1-3, rules mode
    python benchmarks/quiet_quality.py --ruleset strict --mode both --seeds 1

Data sets are generated once into .cache/quiet/ and reused (delete it when the
generator changes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from detector import bench
from detector.rules import load_ruleset
from synthetic_logs.generate import generate_dataset

CACHE = Path(".cache/quiet")


def dataset(seed: int, accounts: int, days: int) -> Path:
    """The log of one seed (generated on first use), with its side files."""
    folder = CACHE / f"seed{seed}-{accounts}x{days}"
    log = folder / "logs.parquet"
    if not (folder / "done").exists():
        folder.mkdir(parents=True, exist_ok=True)
        generate_dataset(
            log, scenarios=["all"], seed=seed, accounts=accounts, days=days, lookalikes="extended"
        )
        (folder / "done").write_text("")
    return log


def without_caseloads(log: Path) -> Path:
    """The same log and ground truth in a sibling folder without the caseload table."""
    folder = log.parent.with_name(log.parent.name + "-nocaseloads")
    folder.mkdir(exist_ok=True)
    for path in log.parent.iterdir():
        target = folder / path.name
        if "caseloads" not in path.name and path.name != "done" and not target.exists():
            target.symlink_to(path.resolve())
    return folder / log.name


def measure(log: Path, ruleset, mode: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    result = bench.evaluate_dataset(log, [ruleset], modes=(mode,))
    return result.rows, result.lookalikes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ruleset", default="default")
    parser.add_argument("--mode", default="rules")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--no-caseload-run", action="store_true", help="skip the run without")
    args = parser.parse_args()
    ruleset = load_ruleset(args.ruleset)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows, looks = [], []
    for seed in seeds:
        log = dataset(seed, args.accounts, args.days)
        variants = [("caseloads", log)]
        if not args.no_caseload_run:
            variants.append(("none", without_caseloads(log)))
        for label, path in variants:
            r, lk = measure(path, ruleset, args.mode)
            rows.append(r.assign(seed=seed, caseloads=label))
            looks.append(lk.assign(seed=seed, caseloads=label))
    rows = pd.concat(rows, ignore_index=True)
    looks = pd.concat(looks, ignore_index=True)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 500)
    print(f"rule set {args.ruleset}, mode {args.mode}, seeds {args.seeds}\n")
    per = rows[
        [
            "caseloads",
            "seed",
            "scenario",
            "detected",
            "time_to_detect_h",
            "exposed_before_detection",
            "first_rule",
        ]
    ].copy()
    per["exposed_before_detection"] = (100 * per["exposed_before_detection"]).round(2)
    per["time_to_detect_h"] = per["time_to_detect_h"].round(1)
    print(
        per.rename(
            columns={"exposed_before_detection": "exposed_%", "time_to_detect_h": "ttd_h"}
        ).to_string(index=False)
    )
    print()
    benign = rows.groupby(["caseloads", "seed"]).agg(
        benign_alerted=("benign_accounts_alerted", "first"),
        lookalike_high=("lookalike_accounts_alerted_high", "first"),
        lookalike_alerted=("lookalike_accounts_alerted", "first"),
    )
    print(benign.to_string())
    print()
    kinds = looks.groupby(["caseloads", "kind"]).agg(
        instances=("kind", "size"),
        alerted=("accounts_alerted", "sum"),
        high=("accounts_alerted_high", "sum"),
    )
    print(kinds[kinds["alerted"] > 0].to_string())
    print()
    for label, part in rows.groupby("caseloads"):
        exposed = part["exposed_before_detection"]
        print(
            f"{label}: detected {int(part['detected'].sum())}/{len(part)}, "
            f"median exposed {100 * exposed.median():.2f} %, worst {100 * exposed.max():.2f} %, "
            f"benign alerted max {int(part['benign_accounts_alerted'].max())}, "
            f"look-alike high max {int(part['lookalike_accounts_alerted_high'].max())}"
        )


if __name__ == "__main__":
    main()
