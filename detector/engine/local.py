"""The local engine: the kernel mapped over partitions by a pool of processes.

Each worker reads its partition itself (the parent sends only the partition's
description) and sends back the kernel's small aggregates, so the parent
never holds events; at most ``workers`` partitions are in memory at once.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pandas as pd

from detector.engine.sources import Partition
from detector.features.kernel import Aggregates, out_of_caseload_mode, partition_aggregates
from detector.features.table import FeatureTable, assemble
from detector.schema import rejects_notice

Progress = Callable[[str], None]
_WORKER: dict[str, Any] = {}  # what every task of a worker process shares (set once)


def default_workers() -> int:
    """One worker per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_partition(
    source: Any, partition: Partition, caseloads: pd.DataFrame | None, timezone: str, out_mode: str | None
) -> tuple[Aggregates, pd.DataFrame, list[str]]:
    """Read one partition and run the kernel on it: (aggregates, rejects, notices).

    The one function every engine runs (local processes or a Dask cluster).
    """
    log = source.read(partition)
    aggregates = partition_aggregates(log.events, timezone, caseloads, out_mode)
    return aggregates, log.rejects, [n for n in log.notices if "rows rejected" not in n]


def _init_worker(source: Any, caseloads: pd.DataFrame | None, timezone: str, out_mode: str | None):
    _WORKER.update(source=source, caseloads=caseloads, timezone=timezone, out_mode=out_mode)


def _task(partition: Partition):
    w = _WORKER
    return run_partition(w["source"], partition, w["caseloads"], w["timezone"], w["out_mode"])


def _warm_up() -> None:
    """Import scikit-learn (about a second) in a thread while the partitions are processed."""
    threading.Thread(
        target=importlib.import_module, args=("sklearn.ensemble",), daemon=True
    ).start()


def _map_local(source, partitions, caseloads, timezone, out_mode, workers) -> Iterator:
    if workers <= 1 or len(partitions) <= 1:
        _warm_up()
        for partition in partitions:
            yield run_partition(source, partition, caseloads, timezone, out_mode)
        return
    # fork where there is one: no re-import of the caller's __main__ (a notebook, a script
    # without a main guard); the warm-up thread starts only once the workers exist.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(partitions)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(source, caseloads, timezone, out_mode),
    ) as pool:
        results = pool.map(_task, partitions)
        _warm_up()
        yield from results


def merge_notices(notices: list[str]) -> list[str]:
    """One line per kind of notice, counts summed over partitions ("1,234 events with ...")."""
    merged: dict[str, int] = {}
    texts: dict[str, str] = {}
    for notice in notices:
        match = re.match(r"^([\d,]+) (.*)$", notice)
        if not match:
            merged.setdefault(notice, -1)
            continue
        key = re.sub(r" \(e\.g\. .*\)$", "", match.group(2))
        merged[key] = merged.get(key, 0) + int(match.group(1).replace(",", ""))
        texts.setdefault(key, match.group(2))
    return [key if count < 0 else f"{count:,} {texts[key]}" for key, count in merged.items()]


def build_features(
    source: Any,
    caseloads: pd.DataFrame | None,
    timezone: str,
    workers: int | None = None,
    progress: Progress | None = None,
    mapper: Callable[..., Iterator] | None = None,
) -> FeatureTable:
    """The feature table of a partitioned log: the kernel on every partition, then assembly.

    ``mapper`` runs the kernel over the partitions (default: the local process pool).
    """
    say = progress or (lambda message: None)
    workers = default_workers() if workers is None else workers
    out_mode, notices = out_of_caseload_mode(source.columns, caseloads, source.has_record_orgs())
    partitions = source.partitions()
    mapper = mapper or _map_local
    parts, rejects, started = [], [source.rejects()], time.perf_counter()
    total = sum(p.rows for p in partitions) or 1
    done_rows = 0
    for partition, (aggregates, partition_rejects, partition_notices) in zip(
        partitions, mapper(source, partitions, caseloads, timezone, out_mode, workers), strict=True
    ):
        parts.append(aggregates)
        rejects.append(partition_rejects)
        notices += partition_notices
        done_rows += partition.rows
        elapsed = time.perf_counter() - started
        left = elapsed / done_rows * (total - done_rows)
        say(
            f"partition {partition.index + 1}/{len(partitions)} ({partition.label()}, "
            f"{aggregates.events:,} events): about {left:.0f} s left"
        )
    first = rejects[0]
    notices = merge_notices(list(first.notices) + notices)
    all_rejects = pd.concat([r.rejects if hasattr(r, "rejects") else r for r in rejects], ignore_index=True)
    if len(all_rejects):
        all_rejects = all_rejects.sort_values("row", kind="stable").reset_index(drop=True)
        notices = [n for n in notices if "rows rejected" not in n]
        notices.insert(0, rejects_notice(all_rejects))
    table = assemble(parts, caseloads, timezone, notices, has_caseload_data=out_mode is not None)
    table.source = source
    table.out_mode = out_mode
    table.rejects = all_rejects
    table.n_events = sum(p.events for p in parts)
    return table
