"""The local engine: the kernel mapped over partitions by a pool of processes.

Each worker reads its partition itself (the parent sends only the partition's
description) and sends back the kernel's small aggregates, so the parent
never holds events; at most ``workers`` partitions are in memory at once.
"""

from __future__ import annotations

import importlib
import mmap
import multiprocessing
import os
import pickle
import re
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from detector.engine.sources import Partition, malloc_policy, normalise_rows, release_memory
from detector.errors import DetectorError
from detector.features.kernel import (
    Aggregates,
    Caseloads,
    caseload_index,
    local_days,
    out_of_caseload_mode,
    partition_aggregates,
)
from detector.features.table import FeatureTable, assemble
from detector.incidents import creation_pairs
from detector.schema import REPAIRED_TEXT, EventLog, rejects_notice, repaired_notice

Progress = Callable[[str], None]
_WORKER: dict[str, Any] = {}  # what every task of a worker process shares (set once)


def default_workers() -> int:
    """One worker per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class KeepDay:
    """Ask the kernel for one local day's validated events, for the state to keep: each
    partition holding that day writes its events of it (Arrow IPC) in ``folder``, which
    the parent reads instead of reading and validating the day again (a local folder:
    the local engine's workers only)."""

    day: int
    folder: str

    def file(self, partition: Partition) -> str:
        return os.path.join(self.folder, f"kept-{self.day}-{partition.index:06d}.arrow")

    def files(self, partitions: list[Partition]) -> list[str]:
        """The files of the partitions holding the day, in partition order."""
        return [self.file(p) for p in partitions if p.first_day <= self.day < p.end_day]

    def write(self, events: pd.DataFrame, partition: Partition, timezone: str) -> None:
        if not partition.first_day <= self.day < partition.end_day:
            return
        if partition.end_day - partition.first_day > 1:  # other days too: the day's rows only
            stamps = pd.DatetimeIndex(events["timestamp"]).asi8
            events = events.iloc[np.flatnonzero(local_days(stamps, timezone)[0] == self.day)]
        table = pa.Table.from_pandas(events, preserve_index=False)
        with pa.OSFile(self.file(partition), "wb") as sink:
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)


def last_day_handover(partitions: list[Partition]) -> tuple[KeepDay, Any] | None:
    """A :class:`KeepDay` for the last planned day, and the temporary folder of its files
    (in memory where there is room: removed by its ``cleanup``); None without partitions."""
    if not partitions:
        return None
    folder = _handover_folder()
    return KeepDay(max(p.end_day for p in partitions) - 1, folder.name), folder


def run_partition(
    source: Any,
    partition: Partition,
    caseloads: Caseloads | None,
    timezone: str,
    out_mode: str | None,
    dedupe: bool = False,
    keep: KeepDay | None = None,
    complete: Any = None,
) -> tuple[Aggregates, pd.DataFrame, list[str]]:
    """Read one partition and run the kernel on it: (aggregates, rejects, notices).

    The one function every engine runs (local processes or a Dask cluster).
    """
    log = source.read(partition)
    return _kernel(log, partition, caseloads, timezone, out_mode, dedupe, keep, complete)


def run_events(
    table: pa.Table, rows: np.ndarray, name: str, partition: Partition, *options: Any
) -> tuple[Aggregates, pd.DataFrame, list[str]]:
    """:func:`run_partition` on a partition's raw events already read (the local stream)."""
    return _kernel(normalise_rows(table, rows, name), partition, *options)


def _kernel(
    log: EventLog,
    partition: Partition,
    caseloads: Caseloads | None,
    timezone: str,
    out_mode: str | None,
    dedupe: bool = False,
    keep: KeepDay | tuple[KeepDay, ...] | None = None,
    complete: Any = None,
) -> tuple[Aggregates, pd.DataFrame, list[str]]:
    """The kernel on a validated partition.

    A partition holds whole days (all accounts, or a slice of them), so an
    event re-delivered within the log (same account, same day) lands in the
    same partition as its first copy: ``dedupe`` drops it here. ``keep``: the
    events of that day are written for the state, as counted (once each).
    ``complete``: the state's kept day (:class:`detector.engine.state.KeptDay`);
    the partition holding that day alone completes it (``Aggregates.completed``).
    """
    events = log.events
    notices = [n for n in log.notices if "rows rejected" not in n]
    if dedupe and "event_id" in events and len(events) and not _ascending(events["event_id"]):
        repeated = events["event_id"].duplicated(keep="first").to_numpy()
        if repeated.any():
            events = events.loc[~repeated].reset_index(drop=True)
            notices.append(f"{int(repeated.sum()):,} events repeating an event_id counted once")
    aggregates = partition_aggregates(events, timezone, caseloads, out_mode)
    completed = None
    if complete is not None and complete.holds(partition):
        completed = complete.complete(events, timezone, caseloads, out_mode)
        aggregates.completed = completed
    for day in (keep,) if isinstance(keep, KeepDay) else keep or ():
        if completed is None or day.day != completed.day:  # (a completed day: not needed)
            day.write(events, partition, timezone)
    return aggregates, log.rejects, notices


def _ascending(ids: pd.Series) -> bool:
    """Integer ids strictly ascending (row numbers, most logs): none repeats, nothing to hash."""
    if not pd.api.types.is_integer_dtype(ids.dtype) or ids.hasnans:
        return False
    numbers = ids.to_numpy(np.int64)
    return bool((numbers[1:] > numbers[:-1]).all())


def _init_worker(source: Any, options: tuple) -> None:
    _WORKER.update(source=source, options=options)
    reuse_freed_memory()


def reuse_freed_memory() -> None:
    """Keep freed heap for the next partition instead of giving it back to the system.

    The kernel's per-event arrays (megabytes each) are otherwise mapped afresh
    and returned by glibc every time: faulting their pages in again was most
    of the workers' system time. A worker's heap stays at its peak, reached
    anyway on every partition, until the pool ends with the last partition.
    """
    malloc_policy(32 << 20, trim_threshold=1 << 30)  # 32 MB: glibc's largest (64-bit)


def _task(partition: Partition):
    return run_partition(_WORKER["source"], partition, *_WORKER["options"])


def _stream_task(path: str, name: str, partition: Partition) -> str:
    result = run_events(*_take_over(path), name, partition, *_WORKER["options"])
    return _send_back(result, path + ".out")


_ROW = "_row"  # the events' input row positions, handed over as one more column


_SHARED_MEMORY = "/dev/shm"
_SHARED_MEMORY_NEEDED = 1 << 30  # a container's /dev/shm may hold 64 MB: less than a few partitions


def _handover_folder() -> tempfile.TemporaryDirectory:
    """Where partitions are handed to workers: memory (/dev/shm) where there is room enough,
    else the temporary directory (its pages stay in the page cache while they live)."""
    folder = None
    try:
        free = os.statvfs(_SHARED_MEMORY)
        if free.f_bavail * free.f_frsize >= _SHARED_MEMORY_NEEDED and os.access(
            _SHARED_MEMORY, os.W_OK
        ):
            folder = _SHARED_MEMORY
    except (OSError, AttributeError):  # none, or no statvfs (Windows)
        pass
    return tempfile.TemporaryDirectory(
        prefix=f"logsentinel-parts-{os.getpid()}-", dir=folder, ignore_cleanup_errors=True
    )


def _hand_over(folder: str, number: int, table: pa.Table, rows: np.ndarray) -> str:
    """A partition's events written as Arrow IPC to a file a worker maps (:func:`_take_over`).

    Through the pool's pipe the events were pickled, copied through the kernel
    twice and unpickled; a file in memory is written once and mapped without a
    copy. Streamed partitions are slices of row groups: the IPC stream writes
    only the slices' rows (pickling a slice would send its whole row group).
    """
    path = os.path.join(folder, f"part-{number:06d}.arrows")
    table = table.append_column(_ROW, pa.array(rows, pa.int64()))
    try:
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    except OSError as error:
        raise DetectorError(
            f"cannot hand a partition to the workers through {folder} ({error});"
            " free some space there or use --workers 1"
        ) from None
    return path


def _take_over(path: str) -> tuple[pa.Table, np.ndarray]:
    """The events :func:`_hand_over` wrote, memory-mapped (no copy); the file is removed.

    The mapping outlives the file's name: the pages are freed once the
    partition's arrays are.
    """
    table = pa.ipc.open_stream(pa.memory_map(path)).read_all()
    _remove(path)
    rows = table[_ROW].to_numpy()
    return table.drop_columns([_ROW]), rows


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:  # a system that cannot remove a mapped file: the folder goes at the end
        pass


def _send_back(result: Any, path: str) -> str:
    """A task's result written to a file beside its events, for :func:`_receive`.

    Pickled with its arrays out of band, each at an aligned offset, so that the
    parent maps them instead of copying megabytes through the pool's pipe.
    """
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(result, protocol=5, buffer_callback=buffers.append)
    spans, offset = [], 0
    with open(path, "wb") as sink:
        for buffer in buffers:
            raw = buffer.raw()
            offset += sink.write(bytes(-offset % 64))
            spans.append((offset, raw.nbytes))
            offset += sink.write(raw)
        index = pickle.dumps((payload, spans), protocol=5)
        sink.write(index)
        sink.write(struct.pack("<QQ", offset, len(index)))
    return path


def _receive(path: str) -> Any:
    """What :func:`_send_back` wrote, its arrays mapped from the file (which is removed).

    A private mapping: the arrays are writable (copied on write), and their
    pages are freed with the last of them.
    """
    with open(path, "rb") as source:
        mapped = mmap.mmap(source.fileno(), 0, access=mmap.ACCESS_COPY)
    _remove(path)
    view = memoryview(mapped)
    at, size = struct.unpack_from("<QQ", mapped, len(mapped) - 16)
    payload, spans = pickle.loads(view[at : at + size])
    return pickle.loads(payload, buffers=[view[a : a + n] for a, n in spans])


_WARM_UP = {"module": "sklearn.ensemble"}  # set by run_kernel for the run at hand


def import_model_stage() -> None:
    """Import the model stage's library (about a second) in a thread while the partitions
    are processed."""
    if _WARM_UP["module"]:
        threading.Thread(
            target=importlib.import_module, args=(_WARM_UP["module"],), daemon=True
        ).start()


_BACKGROUND: list[threading.Thread] = []  # work a run left running (a Dask cluster closing)


def in_background(work: Callable[[], None]) -> None:
    """Run ``work`` in a thread that the run does not wait for (the interpreter does, at
    exit). A process pool forks only once such threads are done (:func:`_pool`)."""
    thread = threading.Thread(target=work, name="logsentinel-background")
    thread.start()
    _BACKGROUND.append(thread)


def _background_done() -> None:
    """Wait for the work left running by earlier runs: a fork beside a running thread may
    copy a lock that thread holds, and the child would wait on it forever."""
    while _BACKGROUND:
        _BACKGROUND.pop().join()


def _pool(workers: int, source: Any, options: tuple) -> ProcessPoolExecutor:
    # fork where there is one: no re-import of the caller's __main__ (a notebook, a script
    # without a main guard); the warm-up thread starts only once the workers exist.
    _background_done()
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(source, options),
    )


def _map_stream(source, partitions, options, workers) -> Iterator:
    """The parent reads each row group once and hands partitions to the workers in memory.

    Up to ``2 * workers`` partitions are waiting or running, so that a worker
    finishing finds the next one ready (none idles while the parent reads a
    row group); results come back in partition order.
    """
    stream = source.stream()
    if workers <= 1 or len(partitions) <= 1:
        import_model_stage()
        for partition, table, rows in stream:
            yield run_events(table, rows, source.name, partition, *options)
        return
    with (
        _handover_folder() as folder,
        _pool(min(workers, len(partitions)), None, options) as pool,
    ):
        # The workers fork now, before the stream's reading threads start: a fork beside
        # running threads may copy a lock one of them holds (with fork, the first task
        # starts every worker).
        pool.submit(int).result()
        pending: deque = deque()
        for number, (partition, table, rows) in enumerate(stream):
            path = _hand_over(folder, number, table, rows)
            del table, rows  # the parent keeps no events it has handed over
            pending.append(pool.submit(_stream_task, path, source.name, partition))
            while len(running := [f for f in pending if not f.done()]) > 2 * workers:
                wait(running, return_when=FIRST_COMPLETED)
            while pending and pending[0].done():
                yield _receive(pending.popleft().result())
        # Only now: importing holds the interpreter, which the reading above needs.
        import_model_stage()
        while pending:
            yield _receive(pending.popleft().result())


def _map_local(source, partitions, options, workers) -> Iterator:
    if getattr(source, "streaming", False):
        yield from _map_stream(source, partitions, options, workers)
        return
    if workers <= 1 or len(partitions) <= 1:
        import_model_stage()
        for partition in partitions:
            yield run_partition(source, partition, *options)
        return
    with _pool(min(workers, len(partitions)), source, options) as pool:
        results = pool.map(_task, partitions)
        import_model_stage()
        yield from results


def merge_notices(notices: list[str]) -> list[str]:
    """One line per kind of notice, counts summed over partitions ("1,234 events with ...")."""
    merged: dict[str, int] = {}
    texts: dict[str, str] = {}
    repaired: dict[str, int] = {}
    for notice in notices:
        match = re.match(rf"^[\d,]+ {re.escape(REPAIRED_TEXT)} \((.*)\)$", notice)
        if match:  # counted per column: summed per column
            for item in match.group(1).split(", "):
                column, count = item.rsplit(": ", 1)
                repaired[column] = repaired.get(column, 0) + int(count.replace(",", ""))
            merged.setdefault(REPAIRED_TEXT, -2)
            continue
        match = re.match(r"^([\d,]+) (.*)$", notice)
        if not match:
            merged.setdefault(notice, -1)
            continue
        key = re.sub(r" \(e\.g\. .*\)$", "", match.group(2))
        merged[key] = merged.get(key, 0) + int(match.group(1).replace(",", ""))
        texts.setdefault(key, match.group(2))
    return [
        repaired_notice(repaired)
        if count == -2
        else key
        if count < 0
        else f"{count:,} {texts[key]}"
        for key, count in merged.items()
    ]


class TimeLeft:
    """What is left of the partition phase, at the rate seen since the first partition
    came back: the time before it (the pool starting, the first row groups read) would
    inflate an estimate from the start several times (677 s said, about 70 s taken, at
    100M events)."""

    def __init__(self, total_rows: int):
        self.total_rows = total_rows
        self._first: tuple[float, int] | None = None  # (instant, rows done) at the first

    def after(self, done_rows: int) -> str:
        """``: about N s left`` once ``done_rows`` are done ("" while no rate is known)."""
        now = time.perf_counter()
        if self._first is None:
            self._first = (now, done_rows)
            return ""
        seconds, rows = now - self._first[0], done_rows - self._first[1]
        if seconds <= 0 or rows <= 0:
            return ""
        return f": about {seconds / rows * max(self.total_rows - done_rows, 0):.0f} s left"


@dataclass
class KernelRun:
    """The kernel's output for every partition of a log, and what reading it set aside."""

    parts: list[Aggregates]
    rejects: pd.DataFrame
    notices: list[str]
    out_mode: str | None
    continued: Any = None  # the state's kept day, completed by its partition (complete=)

    @property
    def events(self) -> int:
        return sum(p.events for p in self.parts)


def run_kernel(
    source: Any,
    caseloads: Caseloads | None,
    timezone: str,
    workers: int | None = None,
    progress: Progress | None = None,
    mapper: Callable[..., Iterator] | None = None,
    dedupe: bool = False,
    warm_up: str | None = "sklearn.ensemble",
    keep: KeepDay | tuple[KeepDay, ...] | None = None,
    complete: Any = None,
) -> KernelRun:
    """The kernel on every partition of a log (``mapper``: the local process pool by default).

    With ``dedupe``, events repeating an ``event_id`` are counted once. ``warm_up``:
    the module the parent imports in a thread meanwhile (None: a run without a model).
    ``keep``: the partitions holding that day (or those days) write its events
    (:class:`KeepDay`). ``complete``: the state's kept day, completed by the partition
    holding that day alone (:attr:`KernelRun.continued`; None when no partition did).
    """
    _WARM_UP["module"] = warm_up
    say = progress or (lambda message: None)
    workers = default_workers() if workers is None else workers
    out_mode, notices = out_of_caseload_mode(
        source.columns, caseloads, source.has_values("record_org_id")
    )
    empty_records = "record_id" in source.columns and not source.has_values("record_id")
    if out_mode == "caseloads":
        caseload_index(caseloads)  # built once here: forked workers inherit it
    partitions = source.partitions()
    mapper = mapper or _map_local
    parts = []
    skipped = source.rejects()
    rejects, notices = [skipped.rejects], list(skipped.notices) + notices
    time_left = TimeLeft(sum(p.rows for p in partitions))
    done_rows = 0
    options = (caseloads, timezone, out_mode, dedupe, keep, complete)
    continued = None
    for partition, (aggregates, partition_rejects, partition_notices) in zip(
        partitions, mapper(source, partitions, options, workers), strict=True
    ):
        if aggregates.completed is not None:
            continued, aggregates.completed = aggregates.completed, None
        parts.append(aggregates)
        rejects.append(partition_rejects)
        notices += partition_notices
        done_rows += partition.rows
        say(
            f"partition {partition.index + 1}/{len(partitions)} ({partition.label()}, "
            f"{aggregates.events:,} events){time_left.after(done_rows)}"
        )
    parent_side = getattr(source, "repaired", None)  # what the parent itself read (stream)
    if parent_side:
        notices.append(repaired_notice(parent_side))
    if empty_records:
        events = sum(p.events for p in parts)
        notices.append(
            f"record_id column is empty (no value in {events:,} events): record reads cannot be counted"
        )
    notices = merge_notices(notices)
    all_rejects = pd.concat([r for r in rejects if len(r)] or [rejects[0]], ignore_index=True)
    notices = [n for n in notices if "rows rejected" not in n]
    if len(all_rejects):
        all_rejects = all_rejects.sort_values("row", kind="stable").reset_index(drop=True)
        notices.insert(0, rejects_notice(all_rejects))
    release_memory()
    return KernelRun(parts, all_rejects, notices, out_mode, continued)


def attach(table: FeatureTable, source: Any, run: KernelRun) -> FeatureTable:
    """What the replay needs to re-read windows, and what the run set aside."""
    table.source = source
    table.out_mode = run.out_mode
    table.rejects = run.rejects
    table.n_events = run.events
    links = [p.links for p in run.parts if len(p.links)]
    table.links = pd.concat(links, ignore_index=True) if links else creation_pairs(pd.DataFrame())
    return table


def build_features(
    source: Any,
    caseloads: Caseloads | None,
    timezone: str,
    workers: int | None = None,
    progress: Progress | None = None,
    mapper: Callable[..., Iterator] | None = None,
) -> FeatureTable:
    """The feature table of a partitioned log: the kernel on every partition, then assembly."""
    run = run_kernel(source, caseloads, timezone, workers, progress, mapper)
    table = assemble(
        run.parts,
        caseloads,
        timezone,
        run.notices,
        has_caseload_data=run.out_mode is not None,
        release=True,  # nothing but the parts' links is read after assembly
    )
    table = attach(table, source, run)
    del run  # the partitions' aggregates: the table holds what is needed from them
    release_memory()
    return table
