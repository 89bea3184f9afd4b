"""Generate a data set: population, normal life, look-alikes, attacks; write the contract files.

For `--out data/x/logs.parquet` it writes `logs.parquet` (the event log),
`logs.truth.parquet`, `logs.attacks.json`, `logs.caseloads.parquet` (contract, section 3)
and `logs.lookalikes.json` (one object per benign look-alike instance).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
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
from synthetic_logs.normal import RecordPicker, normal_life, plan_days
from synthetic_logs.population import Population, build_population
from synthetic_logs.scenario import Scenario, builtin_dir, load_scenario
from synthetic_logs.timegrid import build_grid

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
    report("normal life", 0.1)
    benign = normal_life(rng, pop, grid, plan, RecordPicker(pop))
    report("attacks", 0.55)
    excluded = lookalike_accounts(found)
    runs = []
    for index, scenario in enumerate(chosen):
        run = run_attack(rng, index, scenario, pop, grid, excluded)
        excluded.update(run.accounts)
        runs.append(run)
    events = concat([benign, *found.batches, *[b for run in runs for b in run.batches]])
    del benign
    report("sorting", 0.7)
    events = events.take(np.argsort(events.ts, kind="stable"))
    report("writing", 0.8)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = _write(out, events, pop, runs, found, chosen)
    report("done", 1.0)
    return GenerationSummary(
        events=len(events),
        accounts=pop.n_accounts,
        persons=pop.n_persons,
        attacks=len(runs),
        malicious_events=int((events.attack >= 0).sum()),
        lookalikes=len(found.instances),
        start=start,
        days=days,
        files=files,
    )


def _resolve(scenarios: Sequence[str | Path | Scenario] | None) -> list[Scenario]:
    if scenarios is None:
        return [load_scenario(p) for p in sorted(builtin_dir().glob("*.toml"))]
    return [s if isinstance(s, Scenario) else load_scenario(s) for s in scenarios]


def _iso(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).isoformat()


def _strings(codes: np.ndarray, vocabulary: Sequence[str]) -> pa.Array:
    """Plain string column from codes (-1 = null), via a dictionary take (no Python loop)."""
    codes = np.asarray(codes)
    indices = pa.array(codes.astype(np.int32), mask=codes < 0)
    return pa.array(list(vocabulary), pa.string()).take(indices)


def _write(out: Path, events: EventBatch, pop: Population, runs, found, chosen) -> tuple[Path, ...]:
    n = len(events)
    record_ids = _person_ids(pop)
    columns = {
        "timestamp": pa.array(events.ts, pa.timestamp("us", tz="UTC")),
        "event_id": pa.array(np.arange(n, dtype=np.int64)),
        "account_id": _strings(events.account, pop.account_ids),
        "action": _strings(events.action, ACTIONS),
        "record_id": record_ids.take(pa.array(events.record, mask=events.record < 0)),
        "organization_id": _strings(pop.account_org[events.account], pop.org_ids),
        "account_type": _strings(pop.account_type[events.account], ACCOUNT_TYPES),
        "application": _strings(events.application, APPLICATIONS),
        "src_ip": _strings(events.ip, pop.addresses.values),
        "user_agent": _strings(events.ua, pop.clients.values),
        "auth_method": _strings(events.auth, AUTH_METHODS),
        "outcome": _strings(events.outcome, OUTCOMES),
        "records_returned": pa.array(events.returned, pa.int64(), mask=events.returned < 0),
        "target_account_id": _strings(events.target, pop.account_ids),
        "record_org_id": _strings(
            np.where(events.record >= 0, pop.person_org[np.maximum(events.record, 0)], -1),
            pop.org_ids,
        ),
    }
    pq.write_table(pa.table(columns), out, row_group_size=ROW_GROUP)

    malicious = np.flatnonzero(events.attack >= 0)
    attack_ids = [f"{run.scenario.name}-{run.index + 1}" for run in runs]
    names = [run.scenario.name for run in runs]
    truth = pa.table({
        "event_id": pa.array(malicious.astype(np.int64)),
        "attack_id": _strings(events.attack[malicious], attack_ids),
        "scenario": _strings(events.attack[malicious], names),
    })  # fmt: skip
    pq.write_table(truth, sidecar(out, "truth.parquet"))

    attacks = []
    for run, attack_id in zip(runs, attack_ids, strict=True):
        mine = events.ts[events.attack == run.index]
        if not len(mine):
            raise GeneratorError(f"scenario {run.scenario.name} produced no event")
        attacks.append({
            "attack_id": attack_id,
            "scenario": run.scenario.name,
            "accounts": [pop.account_ids[a] for a in run.accounts],
            "start": _iso(int(mine.min())),
            "end": _iso(int(mine.max())),
        })  # fmt: skip
    sidecar(out, "attacks.json").write_text(json.dumps(attacks, indent=2) + "\n")

    caseloads = pa.table({
        "account_id": _strings(pop.caseload_account, pop.account_ids),
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
    """Record ids: `JS` + 8 digits for job seekers, `YP` + 8 digits for young people."""
    import pyarrow.compute as pc

    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(pop.n_persons)), pa.string()), 8, "0")
    prefix = pa.array(np.where(pop.person_is_young, "YP", "JS"))
    return pc.binary_join_element_wise(prefix, digits, "")
