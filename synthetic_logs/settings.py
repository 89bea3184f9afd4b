"""The generator's defaults and choices, declared once.

`generate_dataset` and the `detector generate` options both read them. Only the
standard library is imported here, so the CLI shows its defaults without loading numpy.
"""

from __future__ import annotations

import datetime as dt

DEFAULT_SEED = 7
DEFAULT_ACCOUNTS = 2000
MIN_ACCOUNTS = 50  # fewer leaves some account types without peers
DEFAULT_DAYS = 28
DEFAULT_START = dt.date(2024, 1, 8)  # a Monday
#: How a log is written: one file, or one file per local day (a dataset directory).
PARTITIONS: tuple[str, ...] = ("none", "day")
#: Named sets of organisation-wide look-alikes (their kinds: `lookalikes.LOOKALIKE_SETS`).
LOOKALIKE_SET_NAMES: tuple[str, ...] = ("basic", "default", "extended")
DEFAULT_LOOKALIKES = "default"
