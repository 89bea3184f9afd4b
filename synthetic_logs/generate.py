"""Generate a data set: population, normal life, look-alikes, attacks; write the contract files.

For `--out data/x/logs.parquet` it writes `logs.parquet` (the event log),
`logs.truth.parquet`, `logs.attacks.json`, `logs.caseloads.parquet` (contract, section 3)
and `logs.lookalikes.json` (one object per benign look-alike instance).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
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
)
from synthetic_logs.lookalikes import lookalike_accounts, plan_lookalikes
from synthetic_logs.normal import RecordPicker, normal_day, plan_days
from synthetic_logs.population import Population, build_population
from synthetic_logs.scenario import Scenario, builtin_dir, load_scenario
from synthetic_logs.timegrid import build_grid, to_utc_us

DEFAULT_START = dt.date(2024, 1, 8)  # a Monday
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
    """`data/logs.parquet` + `truth.parquet` -> `data/logs.truth.parquet`."""
    return out.with_name(f"{out.stem}.{suffix}")


def generate_dataset(
    out: str | Path,
    scenarios: Sequence[str | Path | Scenario] | None = None,
    seed: int = 7,
    accounts: int = 2000,
    days: int = 28,
    start: dt.date | None = None,
    progress: Progress | None = None,
) -> GenerationSummary:
    """Generate a log with ground truth into `out` (a .parquet path) and its side files.

    `scenarios=None` runs the four built-ins, `[]` none (a benign log). Each item is a
    built-in name, a TOML path or a Scenario object.
    """
    report = progress or (lambda stage, fraction: None)
    if accounts < 50:
        raise GeneratorError(f"--accounts must be at least 50, got {accounts}")
    if days < 1:
        raise GeneratorError(f"--days must be at least 1, got {days}")
    out = Path(out)
    if out.suffix != ".parquet":
        raise GeneratorError(f"--out must end in .parquet, got {out}")
    chosen = _resolve(scenarios)
    start = start or DEFAULT_START
    rng = np.random.default_rng(seed)

    report("population", 0.0)
    grid = build_grid(start, days)
    pop = build_population(rng, accounts, days)
    plan = plan_days(rng, pop, grid)
    found = plan_lookalikes(rng, pop, grid, plan)
    picker = RecordPicker(pop)  # after the look-alikes: hand-overs add caseload rows
    report("attacks", 0.05)
    excluded = lookalike_accounts(found)
    runs = []
    for index, scenario in enumerate(chosen):
        run = run_attack(rng, index, scenario, pop, grid, excluded)
        excluded.update(run.accounts)
        runs.append(run)
    extra = concat([*found.batches, *[b for run in runs for b in run.batches]])
    out.parent.mkdir(parents=True, exist_ok=True)
    record_ids = _person_ids(pop)
    report("normal life", 0.1)
    with _LogWriter(out, pop, record_ids) as writer:
        for day, chunk in enumerate(_time_ordered(rng, pop, grid, plan, picker, extra)):
            writer.add(chunk)
            report("normal life and writing", 0.1 + 0.85 * (day + 1) / days)
    events, malicious = writer.written, writer.malicious()
    files = _write_sides(out, extra, pop, record_ids, runs, found, malicious)
    report("done", 1.0)
    return GenerationSummary(
        events=events,
        accounts=pop.n_accounts,
        persons=pop.n_persons,
        attacks=len(runs),
        malicious_events=len(malicious),
        lookalikes=len(found.instances),
        start=start,
        days=days,
        files=files,
    )


def _resolve(scenarios: Sequence[str | Path | Scenario] | None) -> list[Scenario]:
    if scenarios is None:
        return [load_scenario(p) for p in sorted(builtin_dir().glob("*.toml"))]
    return [s if isinstance(s, Scenario) else load_scenario(s) for s in scenarios]


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


def _time_ordered(rng, pop, grid, plan, picker, extra: EventBatch) -> Iterator[EventBatch]:
    """All events in time order: each local day's normal life merged with the extra events
    (look-alikes, attacks) of the same span. Many cache-sized sorts instead of one huge one."""
    extra = extra.take(np.argsort(extra.ts))
    midnights = to_utc_us(grid, np.arange(1, grid.days), np.zeros(grid.days - 1))
    cuts = np.concatenate([[0], np.searchsorted(extra.ts, midnights), [len(extra)]])
    for day in range(grid.days):
        chunk = concat(
            [normal_day(rng, pop, grid, plan, picker, day), extra.slice(cuts[day], cuts[day + 1])]
        )
        yield chunk.take(np.argsort(chunk.ts))


class _LogWriter:
    """Writes time-ordered chunks as row groups of ~ROW_GROUP rows, encoding and writing in a
    background thread (Arrow releases the GIL) while the next chunk is generated."""

    def __init__(self, out: Path, pop: Population, record_ids: pa.Array):
        self.pop, self.record_ids = pop, record_ids
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
        # store_schema=False: readers see plain strings, not dictionaries. Statistics and
        # dictionary pages only where they are cheap and useful.
        self.writer = pq.ParquetWriter(
            out,
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
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: list[EventBatch] = []
        self.future: Future | None = None
        self.written = 0
        self._malicious: list[np.ndarray] = []

    def __enter__(self) -> _LogWriter:
        return self

    def __exit__(self, *error) -> None:
        if self.pending and error[0] is None:
            self._flush()
        if self.future is not None:
            self.future.result()
        self.pool.shutdown()
        self.writer.close()

    def add(self, chunk: EventBatch) -> None:
        self.pending.append(chunk)
        if sum(len(p) for p in self.pending) >= ROW_GROUP:
            self._flush()

    def malicious(self) -> np.ndarray:
        """(event_id, attack code) of every malicious event written."""
        return np.concatenate(self._malicious) if self._malicious else np.zeros((0, 2), np.int64)

    def _flush(self) -> None:
        chunks, self.pending = self.pending, []
        first_id = self.written
        for chunk in chunks:
            bad = np.flatnonzero(chunk.attack >= 0)
            self._malicious.append(np.stack([bad + self.written, chunk.attack[bad]], axis=1))
            self.written += len(chunk)
        if self.future is not None:
            self.future.result()  # one row group in flight at most: bounded memory
        self.future = self.pool.submit(self._write, chunks, first_id)

    def _write(self, chunks: list[EventBatch], first_id: int) -> None:
        """One row group from consecutive chunks (joined by Arrow without copying)."""
        tables = []
        for chunk in chunks:
            tables.append(self._table(chunk, first_id))
            first_id += len(chunk)
        table = pa.concat_tables(tables)
        self.writer.write_table(table, row_group_size=max(1, len(table)))

    def _table(self, chunk: EventBatch, first_id: int) -> pa.Table:
        pop, d = self.pop, self.dictionaries
        account = chunk.account
        columns = [
            pa.array(chunk.ts, pa.timestamp("us", tz="UTC")),
            pa.array(np.arange(first_id, first_id + len(chunk), dtype=np.int64)),
            _codes(account, d["account_id"]),
            _codes(chunk.action, d["action"]),
            self.record_ids.take(pa.array(chunk.record, mask=chunk.record < 0)),
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
    extra: EventBatch,
    pop: Population,
    record_ids: pa.Array,
    runs,
    found,
    malicious: np.ndarray,
) -> tuple[Path, ...]:
    """Truth, attacks, caseloads and look-alikes beside the log."""
    attack_ids = pa.array([f"{run.scenario.name}-{run.index + 1}" for run in runs], pa.string())
    names = pa.array([run.scenario.name for run in runs], pa.string())
    truth = pa.table({
        "event_id": pa.array(malicious[:, 0].astype(np.int64)),
        "attack_id": attack_ids.take(pa.array(malicious[:, 1].astype(np.int32))),
        "scenario": names.take(pa.array(malicious[:, 1].astype(np.int32))),
    })  # fmt: skip
    pq.write_table(truth, sidecar(out, "truth.parquet"))

    attacks = []
    for run in runs:
        mine = extra.ts[extra.attack == run.index]
        if not len(mine):
            raise GeneratorError(f"scenario {run.scenario.name} produced no event")
        attacks.append({
            "attack_id": f"{run.scenario.name}-{run.index + 1}",
            "scenario": run.scenario.name,
            "accounts": [pop.account_ids[a] for a in run.accounts],
            "start": _iso(int(mine.min())),
            "end": _iso(int(mine.max())),
        })  # fmt: skip
    sidecar(out, "attacks.json").write_text(json.dumps(attacks, indent=2) + "\n")

    caseloads = pa.table({
        "account_id": pa.array(pop.account_ids, pa.string()).take(pa.array(pop.caseload_account)),
        "record_id": record_ids.take(pa.array(pop.caseload_person)),
    })  # fmt: skip
    pq.write_table(caseloads, sidecar(out, "caseloads.parquet"))

    lookalikes = [
        {
            "kind": i["kind"],
            "accounts": [pop.account_ids[a] for a in i["accounts"]],
            "start": _iso(i["start_us"]),
            "end": _iso(i["end_us"]),
        }
        for i in found.instances
    ]
    sidecar(out, "lookalikes.json").write_text(json.dumps(lookalikes, indent=1) + "\n")
    return (
        out,
        *(
            sidecar(out, s)
            for s in ("truth.parquet", "attacks.json", "caseloads.parquet", "lookalikes.json")
        ),
    )


def _person_ids(pop: Population) -> pa.Array:
    """Record ids: `JS` + 8 digits for job seekers, `YP` + 8 digits for young people.

    Built straight into an Arrow buffer (fixed width), far faster than formatting strings.
    """
    n = pop.n_persons
    width = 10
    chars = np.empty((n, width), np.uint8)
    chars[:, 0] = np.where(pop.person_is_young, ord("Y"), ord("J"))
    chars[:, 1] = np.where(pop.person_is_young, ord("P"), ord("S"))
    number = pop.person_number.astype(np.int64)
    for position in range(width - 1, 1, -1):
        chars[:, position] = ord("0") + number % 10
        number //= 10
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars))
