"""Peer statistics of one selected day, as a nightly run computes them.

A synthetic matrix (accounts x days of counts, 30% missing) goes through
``baselines.peer_stats`` with only the last day selected, once per volume.
Prints the CPU time for a few and for many peer groups.

    python benchmarks/bench_peer_stats.py --rows 90000 --days 29 --groups 10 2000
"""

import argparse
import time

import numpy as np

from detector.features import baselines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=90_000)
    parser.add_argument("--days", type=int, default=29)
    parser.add_argument("--volumes", type=int, default=8)
    parser.add_argument("--groups", type=int, nargs="+", default=[10, 2000])
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    matrix = rng.poisson(20, (args.rows, args.days)).astype(float)
    matrix[rng.random(matrix.shape) < 0.3] = np.nan
    last = np.array([args.days - 1])
    for n_groups in args.groups:
        groups = rng.integers(0, n_groups, args.rows)
        start = time.process_time()
        for _ in range(args.volumes):
            baselines.peer_stats(matrix, groups, None, last)
        spent = time.process_time() - start
        print(f"{n_groups:>6} groups, {args.volumes} volumes: {spent:.2f} s CPU")


if __name__ == "__main__":
    main()
