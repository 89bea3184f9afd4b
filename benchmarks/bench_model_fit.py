"""Fitting the model on a log's feature table, as a whole-log `detector score` does.

Builds the feature table of LOG once (or reads one saved with --save-table), then
fits the IsolationForest with the training rows pruned below the threshold, with
and without the sampled floor and tree order, and prints wall and CPU seconds and
the share of rows left unscored. Both fits must give the same threshold.

    python benchmarks/bench_model_fit.py --log /tmp/perf10m.parquet --save-table /tmp/t10.parquet
    python benchmarks/bench_model_fit.py --table /tmp/t10.parquet --repeat 3
"""

import argparse
import time

import numpy as np
import pandas as pd

import detector.model as model_module
from detector.model import WindowModel


def _table(args: argparse.Namespace) -> pd.DataFrame:
    if args.table:
        return pd.read_parquet(args.table)
    from detector.pipeline import prepare

    table = prepare(args.log, workers=args.workers).features.table
    if args.save_table:
        table.to_parquet(args.save_table)
    return table


def _fit(table: pd.DataFrame, planned: bool) -> tuple[float, float, WindowModel]:
    saved = model_module.PLAN_FROM_ROWS
    model_module.PLAN_FROM_ROWS = saved if planned else len(table) + 1
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        model = WindowModel().fit(table, all_scores=False)
        return time.perf_counter() - wall, time.process_time() - cpu, model
    finally:
        model_module.PLAN_FROM_ROWS = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--log", help="a log to build the feature table of")
    source.add_argument("--table", help="a feature table saved by --save-table")
    parser.add_argument("--save-table", help="write the built table here for later runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    table = _table(args)
    print(f"{len(table):,} windows")
    thresholds = set()
    for _ in range(args.repeat):
        for planned in (False, True):
            wall, cpu, model = _fit(table, planned)
            thresholds.add(model.threshold_)
            unscored = np.isnan(model.training_scores_).mean()
            label = "sampled floor and order" if planned else "min_score floor        "
            print(f"{label}: {wall:6.2f} s wall, {cpu:6.2f} s CPU, {unscored:.2%} rows unscored")
    print("same threshold" if len(thresholds) == 1 else f"THRESHOLDS DIFFER: {sorted(thresholds)}")


if __name__ == "__main__":
    main()
