"""Speed of `--pseudonymise`'s column function: one HMAC per distinct value, mapped back.

    python benchmarks/bench_privacy.py                  # 5M rows
    python benchmarks/bench_privacy.py --rows 1000000

Prints the seconds per column kind: account ids (categorical, 20,000 distinct),
record ids (text, about a million distinct) as pandas and as Arrow.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from detector.privacy import Pseudonymiser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    rows = parser.parse_args().rows
    rng = np.random.default_rng(0)
    hide = Pseudonymiser(b"a benchmark key, not a secret")
    accounts = pd.Series(np.char.add("u", rng.integers(0, 20_000, rows).astype(str)))
    accounts = accounts.astype("category")
    records = pd.Series(np.char.add("JS", rng.integers(0, 1_000_000, rows).astype(str)))
    cases = [
        ("account_id, categorical", lambda: hide.series(accounts, "acct"), accounts.nunique()),
        ("record_id, pandas text", lambda: hide.series(records, "rec"), records.nunique()),
        (
            "record_id, Arrow",
            lambda: hide.arrow(pa.array(records.to_numpy(dtype=object)), "rec"),
            records.nunique(),
        ),
    ]
    for label, run, distinct in cases:
        began = time.perf_counter()
        run()
        elapsed = time.perf_counter() - began
        print(f"{label}: {rows:,} rows, {distinct:,} distinct: {elapsed:.2f} s")


if __name__ == "__main__":
    main()
