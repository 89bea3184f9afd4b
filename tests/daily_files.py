"""Cut a generated log into one Parquet file per day, as a nightly export would deliver it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from detector.features.kernel import DAY_NS, local_days, local_wall_ns

TZ = "Europe/Paris"


def cut_into_days(log: Path, folder: str, at_midnight: bool = False) -> list[Path]:
    """One file per day under ``log``'s folder / ``folder``, in time order.

    Days are the detector's local days (04:00 to 04:00), or calendar days cut at
    local midnight with ``at_midnight`` (each file then continues the day before).
    """
    table = pq.read_table(log)
    stamps = pd.DatetimeIndex(table["timestamp"].to_pandas()).as_unit("ns").asi8
    day = local_wall_ns(stamps, TZ) // DAY_NS if at_midnight else local_days(stamps, TZ)[0]
    files = []
    for value in np.unique(day):
        path = log.parent / folder / f"{value}.parquet"
        path.parent.mkdir(exist_ok=True)
        pq.write_table(table.filter(day == value), path)
        files.append(path)
    return files


def morning_and_evening(files: list[Path], folder: Path) -> tuple[Path, Path]:
    """The first day cut in two at its middle event: ``folder``/morning.parquet, then
    ``folder``/evening.parquet (the rest of that day with the next day's file), as two
    nights would deliver a day whose export was cut early."""
    first = pq.read_table(files[0]).sort_by("timestamp")
    half = first.num_rows // 2
    pq.write_table(first.slice(0, half), folder / "morning.parquet")
    rest = pa.concat_tables([first.slice(half), pq.read_table(files[1]).select(first.schema.names)])
    pq.write_table(rest, folder / "evening.parquet")
    return folder / "morning.parquet", folder / "evening.parquet"


def nights_with_caseloads(log: Path, files: list[Path], folder: Path) -> tuple[Path, Path]:
    """(caseload file, state): the log's caseloads copied to ``folder`` (a file of their
    own, as a nightly job is given), and the day ``files`` scored one by one into
    ``folder``/state with them (rules only)."""
    from detector.pipeline import score_log
    from detector.schema import sibling

    caseloads, state = folder / "caseloads.parquet", folder / "state"
    shutil.copy(sibling(log, ".caseloads.parquet"), caseloads)
    for path in files:
        score_log(path, caseloads=caseloads, mode="rules", state=state)
    return caseloads, state
