"""Saved state for incremental scoring: ``detector score today/ --state state/``.

A state directory keeps what history the detector needs, never events:

```
state/
  manifest.json           {"format": "logsentinel-state/1", "version": 7, "current": "v000007", ...}
  v000007/
    windows.parquet       the kernel's per-window aggregates (sums, hour histogram, instants)
    first_seen.<column>.parquet   (account_id, value, day): first use of each address, client, application
    created.parquet       (account_id, day): accounts created by create_account
    model.skops           the fitted window model (when one was fitted)
```

A run writes a new version directory, then swaps the manifest with an atomic
rename: a crash at any point leaves the previous version current and usable.
Only the current and the previous versions are kept.

Overlap between a new log and the state is decided per local day:

- a day not in the state is scored;
- a day already in the state is *re-delivered* when the new log holds at
  least as many events for it as the state counted: its aggregates replace
  the stored ones and it is scored again;
- otherwise the new log's events of that day are *late events* of a day
  already scored: they are ignored (a notice counts them), never added twice.

Within a run, events repeating an ``event_id`` are counted once.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from detector.errors import DetectorError
from detector.features.kernel import NOVELTY, Aggregates, plain_first_seen

FORMAT = "logsentinel-state/1"
MANIFEST = "manifest.json"
HOURS = [f"h{h:02d}" for h in range(24)]
REFIT_AFTER_DAYS = 7  # a stored model older than this many new days is fitted again
FULL_HISTORY_DAYS = 28  # a model fitted on fewer days than this is fitted again next run


class StateError(DetectorError):
    """A state directory that cannot be used."""


@dataclass
class State:
    """A state directory's current version: stored aggregates, model and bookkeeping."""

    path: Path
    version: int = 0
    timezone: str | None = None
    first_day: int | None = None
    history: Aggregates | None = None
    model_path: Path | None = None
    model_days: int = 0  # days the stored model was fitted on
    model_age: int = 0  # days scored since it was fitted
    notices: list[str] = field(default_factory=list)

    def day_events(self) -> pd.Series:
        """Events per stored local day."""
        if self.history is None:
            return pd.Series(dtype=np.int64)
        return self.history.windows.groupby("day")["events"].sum().astype(np.int64)


def load_state(path: str | Path, timezone: str) -> State:
    """The current version of a state directory (an empty state when it does not exist)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        if path.exists() and not path.is_dir():
            raise StateError(f"{path}: not a state directory")
        return State(path)
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        raise StateError(f"{manifest_path}: unreadable state manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StateError(f"{manifest_path}: not a logsentinel state manifest ({FORMAT})")
    if manifest["timezone"] != timezone:
        raise StateError(
            f"{path} was built with time zone {manifest['timezone']}, not {timezone}"
        )
    current = path / manifest["current"]
    try:
        windows = pq.read_table(current / "windows.parquet").to_pandas()
        first_seen = {
            column: pq.read_table(current / f"first_seen.{column}.parquet")
            for column, _ in NOVELTY
            if (current / f"first_seen.{column}.parquet").exists()
        }
        created = pq.read_table(current / "created.parquet")
    except (OSError, pa.ArrowInvalid) as error:
        raise StateError(f"{current}: unreadable state ({error})") from None
    hours = windows[HOURS].to_numpy(dtype=np.int32)
    history = Aggregates(
        windows.drop(columns=HOURS), hours, first_seen, created, events=int(windows["events"].sum())
    )
    model = current / "model.skops"
    return State(
        path,
        version=int(manifest["version"]),
        timezone=timezone,
        first_day=int(manifest["first_day"]),
        history=history,
        model_path=model if model.exists() else None,
        model_days=int(manifest.get("model_days", 0)),
        model_age=int(manifest.get("model_age", 0)),
    )


def _only_days(part: Aggregates, keep) -> Aggregates:
    """The part of an aggregate whose days pass ``keep`` (a function of a day array)."""
    rows = keep(part.windows["day"].to_numpy())
    first_seen = {
        column: table.filter(pa.array(keep(table["day"].to_numpy().astype(np.int64))))
        for column, table in part.first_seen.items()
    }
    created = part.created.filter(pa.array(keep(part.created["day"].to_numpy().astype(np.int64))))
    windows = part.windows.loc[rows].reset_index(drop=True)
    return Aggregates(windows, part.hours[rows], first_seen, created, int(windows["events"].sum()))


def merge(state: State, parts: list[Aggregates]) -> tuple[list[Aggregates], set[int], list[str]]:
    """(history then new aggregates, days to score, notices), by the overlap rule above."""
    stored = state.day_events()
    new_days = pd.concat([p.windows[["day", "events"]] for p in parts if len(p.windows)])
    new_days = new_days.groupby("day")["events"].sum() if len(new_days) else pd.Series(dtype=int)
    overlap = new_days.index.intersection(stored.index)
    replaced = [d for d in overlap if new_days[d] >= stored[d]]
    late = [d for d in overlap if new_days[d] < stored[d]]
    notices = []
    if replaced:
        notices.append(
            f"{len(replaced)} day(s) already in the state re-delivered, replaced and scored again: "
            + ", ".join(str(pd.Timestamp(int(d), unit="D").date()) for d in replaced)
        )
    if late:
        notices.append(
            f"{int(new_days[late].sum()):,} events of {len(late)} day(s) already scored ignored"
            " (late events; re-deliver the whole day to replace it): "
            + ", ".join(str(pd.Timestamp(int(d), unit="D").date()) for d in late)
        )
    late_days, replaced_days = np.array(late, dtype=np.int64), np.array(replaced, dtype=np.int64)
    merged = []
    if state.history is not None:
        merged.append(_only_days(state.history, lambda d: ~np.isin(d, replaced_days)))
    merged += [_only_days(p, lambda d: ~np.isin(d, late_days)) for p in parts]
    scored = set(int(d) for d in new_days.index) - set(int(d) for d in late)
    return merged, scored, notices


def combine(parts: list[Aggregates]) -> Aggregates:
    """One aggregate of many: windows stacked, first-seen pairs reduced to their first day."""
    parts = [p for p in parts if len(p.windows)]
    windows = pd.concat([p.windows for p in parts], ignore_index=True)
    hours = np.concatenate([p.hours for p in parts]) if parts else np.zeros((0, 24), np.int32)
    first_seen = {}
    for column, _ in NOVELTY:
        tables = [p.first_seen[column] for p in parts if column in p.first_seen]
        if tables:
            tables = [plain_first_seen(t) for t in tables]  # the kernel's come as dictionaries
            first_seen[column] = _first_days(pa.concat_tables(tables, promote_options="permissive"))
    created = pa.concat_tables([p.created for p in parts]) if parts else pa.table({})
    return Aggregates(windows, hours, first_seen, created, int(windows["events"].sum()))


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    encoded = pc.dictionary_encode(column.combine_chunks())
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _first_days(seen: pa.Table) -> pa.Table:
    """Each (account_id, value) pair once, with its first day (one hashing pass, in Arrow codes)."""
    day = seen["day"].to_numpy().astype(np.int64)
    order = np.argsort(day, kind="stable")
    account, value = _codes(seen["account_id"]), _codes(seen["value"])
    key = (account * (int(value.max()) + 1 if len(value) else 1) + value)[order]
    keep = order[~pd.Series(key).duplicated(keep="first").to_numpy()]
    kept = seen.take(pa.array(keep))
    return pa.table(
        {
            "account_id": pc.cast(kept["account_id"], pa.string()),
            "value": pc.cast(kept["value"], pa.string()),
            "day": pc.cast(kept["day"], pa.int32()),
        }
    )


def save_state(
    state: State,
    history: Aggregates,
    first_day: int,
    model=None,
    model_days: int = 0,
    model_age: int = 0,
) -> Path:
    """Write a new version of the state, then make it current by an atomic manifest swap."""
    state.path.mkdir(parents=True, exist_ok=True)
    version = state.version + 1
    name = f"v{version:06d}"
    staging = state.path / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    windows = history.windows.copy()
    for h, column in enumerate(HOURS):
        windows[column] = history.hours[:, h]
    pq.write_table(pa.Table.from_pandas(windows, preserve_index=False), staging / "windows.parquet")
    for column, table in history.first_seen.items():
        pq.write_table(table, staging / f"first_seen.{column}.parquet")
    pq.write_table(history.created, staging / "created.parquet")
    if model is not None:
        model.save(staging / "model.skops")
    elif state.model_path is not None:
        shutil.copy2(state.model_path, staging / "model.skops")
    final = state.path / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)  # the new version is complete before the manifest names it
    manifest = {
        "format": FORMAT,
        "version": version,
        "current": name,
        "timezone": state.timezone,
        "first_day": first_day,
        "days": int(history.windows["day"].nunique()),
        "model_days": model_days,
        "model_age": model_age,
    }
    temporary = state.path / f".{MANIFEST}.tmp"
    temporary.write_text(json.dumps(manifest, indent=2))
    os.replace(temporary, state.path / MANIFEST)  # the swap: atomic on POSIX file systems
    for old in state.path.glob("v*"):  # keep the current and the previous version
        if old.is_dir() and old.name not in (name, f"v{state.version:06d}"):
            shutil.rmtree(old, ignore_errors=True)
    return final
