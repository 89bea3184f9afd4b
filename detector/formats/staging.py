"""Stage a non-contract log as a contract Parquet dataset, for the normal pipeline to read.

A log in another format (NDJSON, CSV) or another schema (ECS, OCSF, a user's
mapping) is converted batch by batch, in bounded memory, into Parquet files in
a staging directory (temporary, or one the user keeps with ``--staged-out``).
The pipeline then reads that directory like any contract log, so it gets the
same filter push-down on Parquet as a native log. Rows that cannot be used are
set aside here, with their position in the source, like :mod:`detector.schema`
does for a contract log.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from detector.engine.storage import as_location, is_url
from detector.errors import InputError
from detector.formats.mapping import Mapping, identity_mapping, load_mapping
from detector.formats.readers import detect_format, read_batches
from detector.schema import REQUIRED_COLUMNS, found_caseloads

PART = "part-{:05d}.parquet"
_LOG_SUFFIXES = (".parquet", ".pq", ".ndjson", ".jsonl", ".json", ".csv")


def log_sibling(log: str | Path, suffix: str) -> Path:
    """A file named after a log of any format: ``x/logs.ndjson.gz`` -> ``x/logs<suffix>``."""
    log = Path(log)
    name = log.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    for ext in _LOG_SUFFIXES:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return log.with_name(name + suffix)


@dataclass
class StageResult:
    """What staging wrote and what it set aside."""

    records: int
    staged: int
    rejects: pd.DataFrame
    notices: list[str] = field(default_factory=list)


def _schema(mapping: Mapping) -> pa.Schema:
    fields = []
    for column in mapping.covered:
        if column == "timestamp":
            fields.append(pa.field(column, pa.timestamp("ns", tz="UTC")))
        elif column == "records_returned":
            fields.append(pa.field(column, pa.int64()))
        else:
            fields.append(pa.field(column, pa.string()))
    if "event_id" not in mapping.covered:
        fields.append(pa.field("event_id", pa.int64()))
    return pa.schema(fields)


def _prepare_out(out_dir: Path) -> None:
    """Create the staging directory; only our own part files may be in it (they are replaced)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: the staging path exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    others = [
        p.name
        for p in out_dir.iterdir()
        if not (p.name.startswith("part-") and p.suffix == ".parquet")
    ]
    if others:
        raise InputError(
            f"{out_dir}: the staging directory holds other files ({others[0]}, ...); give an empty one"
        )
    for old in out_dir.glob("part-*.parquet"):
        old.unlink()


def _reject_frame(table: pa.Table, bad: np.ndarray, reasons: np.ndarray) -> pd.DataFrame:
    """The rows of a mapped batch marked ``bad``, as text, with their position and reason."""
    rows = np.flatnonzero(bad)
    frame = table.take(pa.array(rows)).to_pandas()
    for column in frame.columns:
        frame[column] = frame[column].astype("string")
    frame.insert(0, "row", pd.array(rows, dtype="Int64"))
    frame.insert(1, "reason", reasons)
    return frame


def stage(log: str | Path, out_dir: str | Path, fmt: str, mapping: Mapping) -> StageResult:
    """Convert ``log`` (in ``fmt``, read through ``mapping``) into contract Parquet in ``out_dir``.

    Each batch is mapped, its unusable rows set aside (no account, no timestamp,
    an unreadable timestamp; malformed lines or rows), sorted by time and written
    as one part file. Without a mapped ``event_id``, an event's id is its 0-based
    position among the source's records (the contract's default).
    """
    from detector.formats.mapping import apply_mapping  # the heavy half, when staging

    out_dir = Path(out_dir)
    _prepare_out(out_dir)
    schema = _schema(mapping)
    rejects: list[pd.DataFrame] = []
    never_found: set[str] | None = None
    records = staged = parts = 0
    for batch in read_batches(log, fmt):
        n = batch.table.num_rows
        records += n
        if batch.bad:
            rejects.append(
                pd.DataFrame(
                    {
                        "row": pd.array([None] * len(batch.bad), dtype="Int64"),
                        "reason": [b[1] for b in batch.bad],
                        "line": pd.array([b[0] for b in batch.bad], dtype="Int64"),
                        "text": pd.array([b[2] for b in batch.bad], dtype="string"),
                    }
                )
            )
        if n == 0:
            continue
        mapped = apply_mapping(batch.table, mapping)
        never_found = (
            mapped.missing_paths if never_found is None else never_found & mapped.missing_paths
        )
        table = mapped.table
        if "event_id" not in table.column_names:
            ids = np.arange(batch.first_row, batch.first_row + n, dtype=np.int64)
            table = table.append_column("event_id", pa.array(ids))
        account = table.column("account_id")
        no_account = pc.fill_null(pc.equal(pc.utf8_length(account), 0), True).to_numpy(
            zero_copy_only=False
        )
        no_time = table.column("timestamp").is_null().to_numpy(zero_copy_only=False)
        bad = no_account | no_time
        if bad.any():
            reasons = np.select(
                [no_account[bad], mapped.bad_time[bad]],
                ["missing account_id", "unparseable timestamp"],
                default="missing timestamp",
            )
            frame = _reject_frame(table, bad, reasons)
            frame["row"] += batch.first_row
            rejects.append(frame)
            table = table.filter(pa.array(~bad))
        table = table.set_column(
            table.schema.get_field_index("timestamp"),
            "timestamp",
            pc.cast(table.column("timestamp"), pa.timestamp("ns", tz="UTC")),
        )
        if "records_returned" in table.column_names:
            returned = pc.cast(pc.floor(table.column("records_returned")), pa.int64(), safe=False)
            table = table.set_column(
                table.schema.get_field_index("records_returned"), "records_returned", returned
            )
        # Time order within a part: tight row-group statistics for push-down by time.
        table = table.take(pc.sort_indices(table, [("timestamp", "ascending")]))
        pq.write_table(table.select(schema.names).cast(schema), out_dir / PART.format(parts))
        parts += 1
        staged += table.num_rows
    if parts == 0:  # an empty log is still a dataset with the contract's columns
        pq.write_table(schema.empty_table(), out_dir / PART.format(0))
    absent = [
        column
        for column in REQUIRED_COLUMNS
        if records
        and _sources(mapping, column)
        and _sources(mapping, column) <= (never_found or set())
    ]
    if absent:
        detail = "; ".join(f"{c} <- {', '.join(sorted(_sources(mapping, c)))}" for c in absent)
        raise InputError(f"{log}: no record holds a field mapped to required column(s): {detail}")
    notices = []
    unused = sorted(
        p for p in (never_found or set()) if any(p in paths for paths in mapping.columns.values())
    )
    if unused and records:
        notices.append(
            f"{log}: source field(s) never found by mapping {mapping.name}: {', '.join(unused)}"
        )
    all_rejects = (
        pd.concat(rejects, ignore_index=True)
        if rejects
        else pd.DataFrame(columns=["row", "reason"])
    )
    if len(all_rejects):
        counts = all_rejects["reason"].value_counts()
        notices.append(
            f"{len(all_rejects):,} rows rejected ("
            + ", ".join(f"{count:,} {why}" for why, count in counts.items())
            + ")"
        )
    return StageResult(records, staged, all_rejects, notices)


def _sources(mapping: Mapping, column: str) -> set[str]:
    """The paths that can fill a column; empty when a case gives it a constant."""
    cases = mapping.cases.get(column, ())
    if any(case.value is not None for case in cases):
        return set()
    return set(mapping.columns.get(column, ())) | {p for case in cases for p in case.source}


@dataclass
class ContractLog:
    """A log as the pipeline reads it: its contract Parquet path, side files, what was set aside."""

    path: Path  # the contract log (the input itself, or the staging directory)
    original: Path
    caseloads: Path | None
    rejects: pd.DataFrame
    notices: list[str]
    staged: bool

    def sibling(self, suffix: str) -> Path:
        """A file named after the original log, beside it (alerts, caseloads)."""
        return log_sibling(self.original, suffix)

    def merge_rejects(self, rejects: pd.DataFrame) -> pd.DataFrame:
        """The rows set aside while staging, then those the pipeline set aside."""
        if not len(self.rejects):
            return rejects
        if not len(rejects):
            return self.rejects
        return pd.concat([self.rejects, rejects], ignore_index=True)


def resolve_mapping(schema: str | None, mapping: str | Path | None) -> Mapping | None:
    """The mapping named by ``--schema`` or ``--mapping`` (at most one), or None."""
    if schema and mapping:
        raise InputError("give --schema or --mapping, not both")
    chosen = schema or mapping
    return load_mapping(chosen) if chosen else None


def _path(value: str | Path | None) -> str | Path | None:
    return as_location(value) if value is not None else None  # a URL stays text


def _url_log(
    log: str, input_format: str | None, chosen: Mapping | None, caseloads: str | Path | None
) -> ContractLog:
    """A log named by URL: contract Parquet only (staging reads local files)."""
    if chosen is not None or input_format not in (None, "parquet"):
        raise InputError(
            f"{log}: a log named by URL must be contract Parquet; stage other formats from a local copy"
        )
    if caseloads is None:
        caseloads = found_caseloads(log)
    return ContractLog(log, log, caseloads, pd.DataFrame(), [], staged=False)


@contextmanager
def contract_log(
    log: str | Path,
    input_format: str | None = None,
    schema: str | None = None,
    mapping: str | Path | None = None,
    staged_out: str | Path | None = None,
    caseloads: str | Path | None = None,
) -> Iterator[ContractLog]:
    """The log as contract Parquet for the pipeline, staged when it is not already so.

    A Parquet log without a mapping is used as it is. Anything else is staged
    (see :func:`stage`) into ``staged_out`` or a temporary directory removed on
    exit. ``caseloads`` defaults to ``<stem>.caseloads.parquet`` beside ``log``.
    """
    chosen = resolve_mapping(schema, mapping)
    if is_url(log):  # read in place by the pipeline (detector.engine.storage)
        yield _url_log(log, input_format, chosen, caseloads)
        return
    log = Path(log)
    if not log.exists():
        if chosen is None and input_format in (None, "parquet"):
            # The command's own reader names the missing file, in its own words.
            yield ContractLog(log, log, _path(caseloads), pd.DataFrame(), [], staged=False)
            return
        raise InputError(f"no such file or directory: {log}")
    fmt = detect_format(log, input_format)
    if caseloads is None and log_sibling(log, ".caseloads.parquet").exists():
        caseloads = log_sibling(log, ".caseloads.parquet")
    caseloads = _path(caseloads)
    if fmt == "parquet" and chosen is None:
        yield ContractLog(log, log, caseloads, pd.DataFrame(), [], staged=False)
        return
    with tempfile.TemporaryDirectory(prefix="logsentinel-staged-") as temporary:
        out_dir = Path(staged_out) if staged_out else Path(temporary) / "log"
        result = stage(log, out_dir, fmt, chosen or identity_mapping())
        yield ContractLog(out_dir, log, caseloads, result.rejects, result.notices, staged=True)
