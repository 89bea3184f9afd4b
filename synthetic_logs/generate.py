"""Generate a data set: population, normal life, look-alikes, attacks; write the contract files.

For `--out data/x/logs.parquet` it writes `logs.parquet` (the event log),
`logs.truth.parquet`, `logs.attacks.json`, `logs.caseloads.parquet` (contract, section 3)
and `logs.lookalikes.json` (one object per benign look-alike instance).

For a dataset directory (`--out data/x/logs/`, `partition_by="day"`) the log is one Parquet
file per local day, `logs/day=YYYY-MM-DD/part-0.parquet`, and the side files sit beside the
directory with the same names (`data/x/logs.truth.parquet`, ...), which is where
`detector score data/x/logs/` looks for them. Every file is written atomically: into a
temporary name beside the target, then renamed, so an interrupted run leaves no partial
file that parses.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from synthetic_logs.attacks import run_attack
from synthetic_logs.errors import GeneratorError
from synthetic_logs.events import (
    ACCOUNT_TYPES,
    ACTIONS,
    APPLICATIONS,
    AUTH_METHODS,
    OUTCOMES,
    EventBatch,
    concat,
    from_records,
    to_records,
)
from synthetic_logs.lookalikes import lookalike_accounts, lookalike_kinds, plan_lookalikes
from synthetic_logs.normal import RecordPicker, normal_day_slices, plan_days
from synthetic_logs.population import Population, build_population
from synthetic_logs.scenario import GROUPS, Scenario, list_builtin_scenarios, load_scenario
from synthetic_logs.settings import (
    DEFAULT_ACCOUNTS,
    DEFAULT_DAYS,
    DEFAULT_LOOKALIKES,
    DEFAULT_SEED,
    DEFAULT_START,
    MIN_ACCOUNTS,
    PARTITIONS,
)
from synthetic_logs.timegrid import DayGrid, build_grid, to_utc_us

ROW_GROUP = 1_000_000
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class GenerationSummary:
    """What a generation produced."""

    events: int
    accounts: int
    persons: int
    attacks: int
    malicious_events: int
    lookalikes: int
    start: dt.date
    days: int
    files: tuple[Path, ...]

    def lines(self) -> list[str]:
        return [
            f"events: {self.events:,}",
            f"accounts: {self.accounts:,} ({self.persons:,} persons)",
            f"days: {self.days} from {self.start.isoformat()}",
            f"attacks: {self.attacks} ({self.malicious_events:,} malicious events)",
            f"benign look-alikes: {self.lookalikes}",
            "files: " + ", ".join(str(f) for f in self.files),
        ]


def sidecar(out: Path, suffix: str) -> Path:
    """`data/logs.parquet` (or the directory `data/logs/`) + `truth.parquet` -> `data/logs.truth.parquet`.

    The same naming as the detector's `sibling()`: only a `.parquet` ending is dropped.
    """
    name = out.name[: -len(".parquet")] if out.name.endswith(".parquet") else out.name
    return out.with_name(f"{name}.{suffix}")


def is_dataset_target(out: str | Path, partition_by: str | None = None) -> bool:
    """Whether `out` is written as a dataset directory: `partition_by="day"`, or (when
    `partition_by` is None) a path ending in `/` or naming an existing directory."""
    if partition_by is not None and partition_by not in PARTITIONS:
        raise GeneratorError(
            f"--partition-by must be one of {', '.join(PARTITIONS)}, got {partition_by}"
        )
    text = str(out)
    slash = text.endswith(("/", os.sep))
    if partition_by == "none":
        if slash or Path(text).is_dir():
            raise GeneratorError(
                f"--partition-by none needs a .parquet file, got the directory {text}"
            )
        return False
    return partition_by == "day" or slash or Path(text).is_dir()


def generate_dataset(
    out: str | Path,
    scenarios: Sequence[str | Path | Scenario] | None = None,
    seed: int = DEFAULT_SEED,
    accounts: int = DEFAULT_ACCOUNTS,
    days: int = DEFAULT_DAYS,
    start: dt.date | None = None,
    progress: Progress | None = None,
    partition_by: str | None = None,
    lookalikes: str | Sequence[str] = DEFAULT_LOOKALIKES,
) -> GenerationSummary:
    """Generate a log with ground truth into `out` and its side files.

    `out` is a .parquet file, or a dataset directory with one file per local day when
    `partition_by="day"`, or (`partition_by=None`) when it ends in `/` or is an existing
    directory. `scenarios=None` runs the four built-ins, `[]` none (a benign log). Each item
    is a built-in name, a TOML path or a Scenario object, or `documented`, `quiet`, `all` for
    those families of built-ins. `lookalikes` names the organisation-wide look-alikes drawn:
    `default` (those the shipped detector stays quiet on), `extended` (all), `basic` (none),
    or a list of kinds (see `synthetic_logs.orgwide.ORGWIDE`).
    """
    report = progress or (lambda stage, fraction: None)
    if accounts < MIN_ACCOUNTS:
        raise GeneratorError(f"--accounts must be at least {MIN_ACCOUNTS}, got {accounts}")
    if days < 1:
        raise GeneratorError(f"--days must be at least 1, got {days}")
    dataset = is_dataset_target(out, partition_by)
    out = Path(out)
    if dataset:
        _check_replaceable(out)
    elif out.suffix != ".parquet":
        raise GeneratorError(f"--out must end in .parquet, got {out}")
    chosen = _resolve(scenarios)
    orgwide = lookalike_kinds(lookalikes)
    start = start or DEFAULT_START
    rng = np.random.default_rng(seed)

    report("population", 0.0)
    grid = build_grid(start, days)
    pop = build_population(rng, accounts, days)
    plan = plan_days(rng, pop, grid)
    found = plan_lookalikes(rng, pop, grid, plan, orgwide)
    picker = RecordPicker(pop)  # after the look-alikes: hand-overs add caseload rows
    report("attacks", 0.05)
    excluded = lookalike_accounts(found)
    runs = []
    out.parent.mkdir(parents=True, exist_ok=True)
    # Look-alike and attack events wait on disk, by local day, until their day is written.
    with _DaySpill(out.with_name(f".{out.name}.extra-{os.getpid()}"), grid) as spill:
        spill.add(concat(found.batches))
        found.batches.clear()
        for index, scenario in enumerate(chosen):
            run = run_attack(rng, index, scenario, pop, grid, excluded, spill.add, plan)
            excluded.update(run.accounts)
            runs.append(run)
        report("normal life", 0.1)
        with _LogWriter(out, pop, grid if dataset else None) as writer:
            for day, chunk in _time_ordered(rng, pop, grid, plan, picker, spill):
                writer.add(chunk, day)
                report("normal life and writing", 0.1 + 0.85 * min(1.0, (day + 1) / days))
    events, malicious = writer.written, writer.malicious()
    _release_free_memory()
    files = _write_sides(out, spill.spans, pop, runs, found, malicious)
    report("done", 1.0)
    return GenerationSummary(
        events=events,
        accounts=pop.n_accounts,
        persons=pop.n_persons,
        attacks=len(runs),
        malicious_events=sum(len(p) for p in malicious),
        lookalikes=len(found.instances),
        start=start,
        days=days,
        files=files,
    )


def _resolve(scenarios: Sequence[str | Path | Scenario] | None) -> list[Scenario]:
    """Scenario objects; None means the documented built-ins, and the names `documented`,
    `quiet` and `all` stand for those families of built-ins."""
    if scenarios is None:
        return list_builtin_scenarios("documented")
    chosen: list[Scenario] = []
    for item in scenarios:
        if isinstance(item, Scenario):
            chosen.append(item)
        elif isinstance(item, str) and item in GROUPS:
            chosen.extend(list_builtin_scenarios(item))
        else:
            chosen.append(load_scenario(item))
    return chosen


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _iso(us: int) -> str:
    """ISO 8601 UTC of µs since epoch, exact (no float rounding)."""
    return (_EPOCH + dt.timedelta(microseconds=int(us))).isoformat()


def _codes(codes: np.ndarray, dictionary: pa.Array, nullable: bool = False) -> pa.DictionaryArray:
    """Dictionary-encoded string column from integer codes (-1 = null when `nullable`).

    Zero-copy on the strings; readers see a plain string column (see _LogWriter).
    """
    codes = np.asarray(codes, dtype=np.int32)
    indices = pa.array(codes, mask=codes < 0) if nullable else pa.array(codes)
    return pa.DictionaryArray.from_arrays(indices, dictionary)


def _time_ordered(
    rng, pop, grid, plan, picker, spill: _DaySpill
) -> Iterator[tuple[int, EventBatch]]:
    """All events in time order, one local day at a time: each day's normal life merged with
    the extra events (look-alikes, attacks) of the same day. Many cache-sized sorts instead of
    one huge one. A night that runs past the last day gives one more, shorter day."""
    for day in range(len(grid.weekday)):  # the log's days and the spare days after them
        tail = spill.take(day)
        if day >= grid.days and not len(tail):
            continue
        normal = normal_day_slices(rng, pop, grid, plan, picker, day) if day < grid.days else []
        chunk = concat([*normal, tail])
        del normal, tail
        yield day, _reorder(chunk, np.argsort(chunk.ts, kind="stable"))


def _reorder(batch: EventBatch, order: np.ndarray) -> EventBatch:
    """`batch.take(order)` one column at a time, so that only one column is ever doubled."""
    for column in fields(batch):
        setattr(batch, column.name, getattr(batch, column.name)[order])
    return batch


class _DaySpill:
    """Extra events parked on disk by local day (one .npy file per batch and day) until taken.

    Keeps the attacks' and look-alikes' events out of memory, whatever their number, and the
    first and last instant of each attack for attacks.json.
    """

    def __init__(self, directory: Path, grid: DayGrid):
        self.directory = directory
        spare = len(grid.weekday)
        self.midnights = to_utc_us(grid, np.arange(1, spare), np.zeros(spare - 1))
        self.pieces: dict[int, list[Path]] = {}
        self.spans: dict[int, tuple[int, int]] = {}  # attack index -> (first, last) µs

    def __enter__(self) -> _DaySpill:
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        return self

    def __exit__(self, *error) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def add(self, batch: EventBatch) -> None:
        """Park `batch`, split by the local day of each event."""
        if not len(batch):
            return
        for code in np.unique(batch.attack[batch.attack >= 0]).tolist():
            ts = batch.ts[batch.attack == code]
            first, last = self.spans.get(code, (int(ts.min()), int(ts.max())))
            self.spans[code] = (min(first, int(ts.min())), max(last, int(ts.max())))
        day = np.searchsorted(self.midnights, batch.ts, side="right")
        order = np.argsort(day, kind="stable")
        bounds = np.searchsorted(day[order], np.arange(len(self.midnights) + 2))
        for d in np.unique(day).tolist():
            pieces = self.pieces.setdefault(d, [])
            path = self.directory / f"{d}-{len(pieces)}.npy"
            np.save(path, to_records(batch.take(order[bounds[d] : bounds[d + 1]])))
            pieces.append(path)

    def take(self, day: int) -> EventBatch:
        """Every parked event of local day `day` (removed from disk)."""
        paths = self.pieces.pop(day, [])
        batches = [from_records(np.load(path)) for path in paths]
        for path in paths:
            path.unlink()
        return concat(batches)


def _release_free_memory() -> None:
    """Give freed heap pages back to the system (glibc only).

    Each day frees hundreds of MB of arrays in two threads; glibc keeps such memory in its
    arenas, and resident memory would creep up day after day instead of staying flat.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to do
        return None


_LIBC = _load_libc()


def _temporary(target: Path) -> Path:
    """A hidden name beside `target` (dataset readers skip names starting with a dot)."""
    return target.with_name(f".{target.name}.tmp-{os.getpid()}")


def _atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary path)`, then rename it onto `target`; nothing is left on failure."""
    temporary = _temporary(target)
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _check_replaceable(out: Path) -> None:
    """Refuse to replace a file, or a directory holding anything but day partitions."""
    if out.exists() and not out.is_dir():
        raise GeneratorError(f"--out {out} is a file, not a dataset directory")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if not p.name.startswith("day="))
        if foreign:
            raise GeneratorError(
                f"--out {out} holds other files than day partitions ({', '.join(foreign[:3])}); "
                "choose a new or empty directory"
            )


def _day_file(root: Path, grid: DayGrid, day: int) -> Path:
    return root / f"day={grid.date(day).isoformat()}" / "part-0.parquet"


class _LogWriter:
    """Writes time-ordered chunks as row groups of ~ROW_GROUP rows, encoding and writing in a
    background thread (Arrow releases the GIL) while the next chunk is generated.

    With a `grid`, `out` is a dataset directory: each local day goes to its own file, in a
    temporary directory beside `out` renamed into place on success. Otherwise one file,
    written under a temporary name and renamed.
    """

    def __init__(self, out: Path, pop: Population, grid: DayGrid | None = None):
        self.out, self.grid = out, grid
        self.pop = pop
        self.dictionaries = {
            "account_id": pa.array(pop.account_ids, pa.string()),
            "action": pa.array(ACTIONS, pa.string()),
            "organization_id": pa.array(pop.org_ids, pa.string()),
            "account_type": pa.array(ACCOUNT_TYPES, pa.string()),
            "application": pa.array(APPLICATIONS, pa.string()),
            "src_ip": pa.array(pop.addresses.values, pa.string()),
            "user_agent": pa.array(pop.clients.values, pa.string()),
            "auth_method": pa.array(AUTH_METHODS, pa.string()),
            "outcome": pa.array(OUTCOMES, pa.string()),
        }
        dictionary = pa.dictionary(pa.int32(), pa.string())
        self.schema = pa.schema([
            ("timestamp", pa.timestamp("us", tz="UTC")), ("event_id", pa.int64()), ("account_id", dictionary),
            ("action", dictionary), ("record_id", pa.string()), ("organization_id", dictionary),
            ("account_type", dictionary), ("application", dictionary), ("src_ip", dictionary),
            ("user_agent", dictionary), ("auth_method", dictionary), ("outcome", dictionary),
            ("records_returned", pa.int64()), ("target_account_id", dictionary), ("record_org_id", dictionary),
        ])  # fmt: skip
        self.temporary = _temporary(out)
        if grid is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)  # left by a killed run of this pid
            self.temporary.mkdir(parents=True)
        self.writer: pq.ParquetWriter | None = None
        self.day: int | None = None
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: list[EventBatch] = []
        self.future: Future | None = None
        self.written = 0
        self._malicious: list[np.ndarray] = []

    def _open(self, path: Path) -> pq.ParquetWriter:
        # store_schema=False: readers see plain strings, not dictionaries. Statistics and
        # dictionary pages only where they are cheap and useful.
        return pq.ParquetWriter(
            path,
            self.schema,
            store_schema=False,
            write_statistics=["timestamp", "event_id"],
            use_dictionary=[
                n
                for n, t in zip(self.schema.names, self.schema.types, strict=True)
                if pa.types.is_dictionary(t)
            ],
            # Sorted instants and consecutive ids: delta encoding is smaller and faster.
            column_encoding={"timestamp": "DELTA_BINARY_PACKED", "event_id": "DELTA_BINARY_PACKED"},
        )

    def __enter__(self) -> _LogWriter:
        return self

    def __exit__(self, *error) -> None:
        try:
            if self.pending and error[0] is None:
                self._flush()
            if self.future is not None:
                self.future.result()
        finally:
            self.pool.shutdown()
            if self.writer is not None:
                self.writer.close()
        if error[0] is None:
            self._commit()
        elif self.grid is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)
        else:
            self.temporary.unlink(missing_ok=True)

    def _commit(self) -> None:
        """Rename the finished log into place (a previous dataset is moved aside, then removed)."""
        if self.grid is None:
            if self.writer is None:  # no event at all: still a valid, empty log
                self._open(self.temporary).close()
            os.replace(self.temporary, self.out)
            return
        old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
        if self.out.exists():
            os.replace(self.out, old)
        os.replace(self.temporary, self.out)
        shutil.rmtree(old, ignore_errors=True)

    def _switch(self, path: Path) -> None:
        """Close the current file and open the next (in the writing thread, after its rows)."""
        if self.writer is not None:
            self.writer.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = self._open(path)

    def add(self, chunk: EventBatch, day: int) -> None:
        """Append local day `day`'s events (days come in order)."""
        _release_free_memory()
        if self.grid is not None:
            if self.pending:
                self._flush()
            self._submit(self._switch, _day_file(self.temporary, self.grid, day))
        elif self.writer is None:
            self.writer = self._open(self.temporary)
        self.pending.append(chunk)
        if sum(len(p) for p in self.pending) >= ROW_GROUP or self.grid is not None:
            self._flush()

    def _submit(self, function, *args) -> None:
        if self.future is not None:
            self.future.result()  # one job in flight at most: bounded memory, files in order
        self.future = self.pool.submit(function, *args)

    def malicious(self) -> list[np.ndarray]:
        """(event_id, attack code) of every malicious event written, in pieces."""
        return self._malicious

    def _flush(self) -> None:
        chunks, self.pending = self.pending, []
        first_id = self.written
        for chunk in chunks:
            bad = np.flatnonzero(chunk.attack >= 0)
            if len(bad):
                self._malicious.append(np.stack([bad + self.written, chunk.attack[bad]], axis=1))
            self.written += len(chunk)
        self._submit(self._write, chunks, first_id)

    def _write(self, chunks: list[EventBatch], first_id: int) -> None:
        """One row group from consecutive chunks (joined by Arrow without copying)."""
        tables = []
        for chunk in chunks:
            tables.append(self._table(chunk, first_id))
            first_id += len(chunk)
        table = pa.concat_tables(tables)
        # A dataset's file holds one whole day: cut it into row groups of ROW_GROUP rows.
        size = ROW_GROUP if self.grid is not None else max(1, len(table))
        self.writer.write_table(table, row_group_size=size)

    def _table(self, chunk: EventBatch, first_id: int) -> pa.Table:
        pop, d = self.pop, self.dictionaries
        account = chunk.account
        columns = [
            pa.array(chunk.ts, pa.timestamp("us", tz="UTC")),
            pa.array(np.arange(first_id, first_id + len(chunk), dtype=np.int64)),
            _codes(account, d["account_id"]),
            _codes(chunk.action, d["action"]),
            _record_ids(pop, chunk.record),
            _codes(pop.account_org[account], d["organization_id"]),
            _codes(pop.account_type[account], d["account_type"]),
            _codes(chunk.application, d["application"]),
            _codes(chunk.ip, d["src_ip"]),
            _codes(chunk.ua, d["user_agent"]),
            _codes(chunk.auth, d["auth_method"], nullable=True),
            _codes(chunk.outcome, d["outcome"]),
            pa.array(chunk.returned, pa.int64(), mask=chunk.returned < 0),
            _codes(chunk.target, d["account_id"], nullable=True),
            _codes(
                np.where(chunk.record >= 0, pop.person_org[np.maximum(chunk.record, 0)], -1),
                d["organization_id"],
                nullable=True,
            ),
        ]
        return pa.Table.from_arrays(columns, schema=self.schema)


def _write_sides(
    out: Path,
    spans: dict[int, tuple[int, int]],
    pop: Population,
    runs,
    found,
    malicious: list[np.ndarray],
) -> tuple[Path, ...]:
    """Truth, attacks, caseloads and look-alikes beside the log."""
    attack_ids = pa.array([f"{run.scenario.name}-{run.index + 1}" for run in runs], pa.string())
    names = pa.array([run.scenario.name for run in runs], pa.string())
    _atomic_write(
        sidecar(out, "truth.parquet"),
        lambda path: _write_truth(path, malicious, attack_ids, names),
    )

    attacks = []
    for run in runs:
        if run.index not in spans:
            raise GeneratorError(f"scenario {run.scenario.name} produced no event")
        first, last = spans[run.index]
        attacks.append({
            "attack_id": f"{run.scenario.name}-{run.index + 1}",
            "scenario": run.scenario.name,
            "accounts": [pop.account_ids[a] for a in run.accounts],
            "start": _iso(first),
            "end": _iso(last),
        })  # fmt: skip
    _atomic_write(
        sidecar(out, "attacks.json"),
        lambda path: path.write_text(json.dumps(attacks, indent=2) + "\n"),
    )

    _atomic_write(sidecar(out, "caseloads.parquet"), lambda path: _write_caseloads(path, pop))

    # An attacker's account is not a benign look-alike, even when a change moved it too.
    attacked = {a for run in runs for a in run.accounts}
    lookalikes = [
        {
            "kind": i["kind"],
            "accounts": [pop.account_ids[a] for a in i["accounts"] if a not in attacked],
            "start": _iso(i["start_us"]),
            "end": _iso(i["end_us"]),
            "switchable": i["switchable"],
        }
        for i in found.instances
    ]
    _atomic_write(
        sidecar(out, "lookalikes.json"),
        lambda path: path.write_text(json.dumps(lookalikes, indent=1) + "\n"),
    )
    return (
        out,
        *(
            sidecar(out, s)
            for s in ("truth.parquet", "attacks.json", "caseloads.parquet", "lookalikes.json")
        ),
    )


def _write_truth(
    path: Path, malicious: list[np.ndarray], attack_ids: pa.Array, names: pa.Array
) -> None:
    """One row per malicious event, a row group per piece: never all of them at once."""
    schema = pa.schema(
        [("event_id", pa.int64()), ("attack_id", pa.string()), ("scenario", pa.string())]
    )
    pieces = [p for p in malicious if len(p)] or [np.zeros((0, 2), np.int64)]
    with pq.ParquetWriter(path, schema) as writer:
        for piece in pieces:
            codes = pa.array(piece[:, 1].astype(np.int32))
            columns = [pa.array(piece[:, 0]), attack_ids.take(codes), names.take(codes)]
            writer.write_table(pa.table(columns, schema=schema))


def _write_caseloads(path: Path, pop: Population) -> None:
    """The caseload table, ROW_GROUP pairs at a time (it has tens of millions at national size)."""
    accounts = pa.array(pop.account_ids, pa.string())
    schema = pa.schema([("account_id", pa.string()), ("record_id", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for low in range(0, max(1, len(pop.caseload_account)), ROW_GROUP):
            high = low + ROW_GROUP
            writer.write_table(
                pa.table(
                    [
                        accounts.take(pa.array(pop.caseload_account[low:high])),
                        _record_ids(pop, pop.caseload_person[low:high]),
                    ],
                    schema=schema,
                )
            )


def _record_ids(pop: Population, person: np.ndarray) -> pa.Array:
    """Record ids of `person` (-1: null): `JS` + 8 digits for job seekers, `YP` + 8 digits
    for young people.

    Built straight into an Arrow buffer (fixed width), far faster than formatting strings,
    and only for the rows being written: the ids of all persons are never held.
    """
    person = np.asarray(person)
    valid = person >= 0
    chosen = person[valid]
    n, width = len(chosen), 10
    young = pop.person_is_young[chosen]
    chars = np.empty((n, width), np.uint8)
    chars[:, 0] = np.where(young, ord("Y"), ord("J"))
    chars[:, 1] = np.where(young, ord("P"), ord("S"))
    number = pop.person_number[chosen]
    for position in range(width - 1, 1, -1):
        chars[:, position] = ord("0") + number % 10
        number = number // 10
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    ids = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars))
    if valid.all():
        return ids
    position = np.cumsum(valid) - 1  # row -> index among the valid rows
    return ids.take(pa.array(position, mask=~valid))
