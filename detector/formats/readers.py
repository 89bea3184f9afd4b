"""Read logs in other file formats as a stream of bounded Arrow batches.

NDJSON / JSON lines (plain or ``.gz``), CSV (plain or ``.gz``) and Parquet files
or directories, chosen by extension or named. Each batch comes with the rows
that could not be parsed (malformed JSON lines, CSV rows of the wrong width),
so that they are counted and set aside, never dropped in silence.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.json as pjson

from detector.errors import InputError

FORMATS = ("parquet", "ndjson", "csv")
_EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "ndjson",
    ".csv": "csv",
}
BLOCK_BYTES = 32 << 20  # text read per batch: bounded memory whatever the file's size
PARQUET_BATCH_ROWS = 500_000


@dataclass
class Batch:
    """Source records as an Arrow table, the position of its first record, and bad rows."""

    table: pa.Table
    first_row: int  # 0-based position of the batch's first record among the file's records
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (line, reason, text)


def detect_format(path: str | Path, named: str | None = None) -> str:
    """The input format: ``named`` when given, else from the extension (``.gz`` looked through)."""
    if named:
        if named not in FORMATS:
            raise InputError(
                f"unknown input format {named!r}; expected one of {', '.join(FORMATS)}"
            )
        return named
    path = Path(path)
    if path.is_dir():
        return "parquet"
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    raise InputError(
        f"{path}: cannot tell the format from the extension; use --input-format "
        f"({', '.join(FORMATS)})"
    )


def _open(path: Path):
    try:
        with path.open("rb") as probe:
            compressed = probe.read(2) == b"\x1f\x8b"
        return gzip.open(path, "rb") if compressed else path.open("rb")
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror or error})") from None


def _blocks(path: Path) -> Iterator[bytes]:
    """The file's bytes in blocks that end on a line end."""
    with _open(path) as stream:
        rest = b""
        while True:
            try:
                data = stream.read(BLOCK_BYTES)
            except (OSError, EOFError, gzip.BadGzipFile) as error:
                raise InputError(f"{path}: cannot read ({error})") from None
            if not data:
                break
            data = rest + data
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            yield data[: cut + 1]
            rest = data[cut + 1 :]
        if rest.strip():
            yield rest + b"\n"


def _parse_lines_one_by_one(block: bytes, first_line: int) -> tuple[pa.Table, list]:
    """The slow path for a block Arrow refused: find the bad lines, keep the good ones.

    Only blocks holding a malformed line (or values whose type changes within the
    block) come here; the good records are rebuilt as text-typed nested columns.
    """
    good, bad = [], []
    for offset, line in enumerate(block.split(b"\n")):  # one dirty block, not the whole log
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            bad.append(
                (first_line + offset, "malformed JSON line", line.decode("utf-8", "replace"))
            )
            continue
        if not isinstance(record, dict):
            bad.append(
                (first_line + offset, "JSON line is not an object", line.decode("utf-8", "replace"))
            )
            continue
        good.append(record)
    return _records_table(good), bad


def _records_table(records: list[dict]) -> pa.Table:
    """Records as a table whose columns are the union of every record's fields."""
    if not records:
        return pa.table({})
    try:
        structs = pa.array(records)  # infers from every record (from_pylist reads only the first)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        structs = pa.array([_stringify(r) for r in records])
    return pa.Table.from_struct_array(structs)


def _stringify(value):
    """Leaves as text (a field holding numbers here and text there), structure kept."""
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def read_ndjson(path: Path) -> Iterator[Batch]:
    """Batches of an NDJSON file (one JSON object per line; blank lines skipped)."""
    line, row = 1, 0
    for block in _blocks(path):
        try:
            table = pjson.read_json(
                io.BytesIO(block), read_options=pjson.ReadOptions(block_size=len(block) + 1)
            )
            bad = []
            if table.num_rows != sum(1 for part in block.split(b"\n") if part.strip()):
                raise pa.ArrowInvalid("record count mismatch")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            table, bad = _parse_lines_one_by_one(block, line)
        yield Batch(table, row, bad)
        line += block.count(b"\n")
        row += table.num_rows


def read_csv(path: Path) -> Iterator[Batch]:
    """Batches of a CSV file with a header; every column read as text (the mapping types it)."""
    with _open(path) as stream:
        header = stream.readline().decode("utf-8", "replace").strip()
    if not header:
        raise InputError(f"{path}: empty CSV file (no header line)")
    names = next(csv.reader([header]))
    bad: list[tuple[int, str, str]] = []

    def skip(row) -> str:
        bad.append((int(row.number or 0), "malformed CSV row", row.text))
        return "skip"

    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pcsv.ParseOptions(invalid_row_handler=skip),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.string() for name in names}, strings_can_be_null=True
            ),
        )
        row = 0
        for record_batch in reader:
            table = pa.Table.from_batches([record_batch])
            yield Batch(table, row, bad[:])
            bad.clear()
            row += table.num_rows
        if bad:
            yield Batch(pa.table({name: pa.array([], pa.string()) for name in names}), row, bad[:])
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(f"{path}: cannot read CSV ({error})") from None


def read_parquet(path: Path) -> Iterator[Batch]:
    """Batches of a Parquet file or directory (nested columns kept)."""
    try:
        dataset = ds.dataset(path, format="parquet")
        row = 0
        for record_batch in dataset.to_batches(batch_size=PARQUET_BATCH_ROWS):
            yield Batch(pa.Table.from_batches([record_batch]), row)
            row += record_batch.num_rows
    except (pa.ArrowInvalid, OSError) as error:
        detail = str(error).split(": ")[-1]
        raise InputError(f"{path}: not readable as Parquet ({detail})") from None


def read_batches(path: str | Path, fmt: str) -> Iterator[Batch]:
    """Batches of a log in ``fmt`` (see :func:`detect_format`)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file or directory: {path}")
    return {"parquet": read_parquet, "ndjson": read_ndjson, "csv": read_csv}[fmt](path)
