"""Read, validate and normalise a contract log (contract section 1): the one place that does.

Everything downstream works on an :class:`EventLog`: time-ordered events with
categorical string columns (so that later steps work on integer codes), UTC
nanosecond timestamps, actions from the contract's vocabulary (anything else is
``other``), and the rows that could not be used set aside with their reason.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from detector.engine import storage
from detector.errors import InputError

REQUIRED_COLUMNS = ("timestamp", "account_id", "action")
STRING_COLUMNS = (
    "account_id",
    "action",
    "record_id",
    "organization_id",
    "account_type",
    "application",
    "src_ip",
    "user_agent",
    "auth_method",
    "outcome",
    "target_account_id",
    "record_org_id",
)
OPTIONAL_COLUMNS = tuple(c for c in STRING_COLUMNS if c not in REQUIRED_COLUMNS) + (
    "event_id",
    "records_returned",
)
HIGH_CARDINALITY = ("record_id",)  # read and kept as Arrow text (see _to_frame)
DICTIONARY_COLUMNS = tuple(c for c in STRING_COLUMNS if c not in HIGH_CARDINALITY)
LOG_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS  # the columns the detector reads
# Events further than this from the log's central span (its 1st-99th percentile of
# timestamps) are rejected as far off: clock resets, typos, placeholder dates.
FAR_OFF_DAYS = 366
SPAN_QUANTILES = (0.01, 0.99)
_DAY_NS = 86_400 * 10**9
_NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
REJECT_OUT_OF_RANGE = "timestamp outside 1677-09-22..2262-04-11"
REJECT_FAR_OFF = f"timestamp over {FAR_OFF_DAYS} days outside the log's central span"
ACTIONS = (
    "login",
    "logout",
    "view_record",
    "search",
    "export",
    "update_record",
    "create_account",
    "grant_access",
    "other",
)


@dataclass
class EventLog:
    """A validated log: ``events`` in time order, ``rejects`` with a ``reason`` column."""

    events: pd.DataFrame
    rejects: pd.DataFrame
    notices: list[str] = field(default_factory=list)
    source: str = "<frame>"


def _is_text(arrow_type: pa.DataType) -> bool:
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


# --- Schemas: each file's checked, one for all of them ---------------------------------


def _kind(arrow_type: pa.DataType) -> str:
    """The family a column type belongs to; types of one family unify exactly."""
    if pa.types.is_dictionary(arrow_type):
        return "text" if _kind(arrow_type.value_type) == "text" else str(arrow_type)
    text_checks = ("is_string", "is_large_string", "is_binary", "is_large_binary")
    text_checks += ("is_string_view", "is_binary_view")
    if any(getattr(pa.types, check, lambda t: False)(arrow_type) for check in text_checks):
        return "text"
    if pa.types.is_null(arrow_type):
        return "null"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    return str(arrow_type)  # anything else unifies only with itself


def _target(kind: str, units: set[str], example: pa.DataType) -> pa.DataType:
    """The Arrow type a column of this family is read as."""
    if kind in ("text", "null"):
        return pa.string()  # (an all-null column: null text, read as "empty")
    if kind == "integer":
        return pa.int64()
    if kind == "float":
        return pa.float64()
    if kind == "timestamp":
        # One unit kept as is; mixed units meet at microseconds, which hold every instant
        # of seconds and milliseconds (and nanoseconds that are whole microseconds,
        # which the cast checks) and reach far beyond 1677-2262, so that far-off
        # instants still reach the rejects with their reason.
        return pa.timestamp(units.pop() if len(units) == 1 else "us", tz="UTC")
    return example


def _combine(column: str, first: str, second: str) -> str | None:
    """The family two families meet in, or None when they cannot be unified exactly."""
    if first == second or second == "null":
        return first
    if first == "null":
        return second
    if {first, second} == {"integer", "float"} and column == "records_returned":
        return "float"  # normalise reads it as float64 whatever its type
    if {first, second} == {"text", "timestamp"} and column == "timestamp":
        return "text"  # both parsed the one way: ISO-8601 instants, naive meaning UTC
    return None


def dataset_files(path: str | Path) -> list[tuple[str | Path, pa.Schema]]:
    """Each Parquet file of a log (a path or a URL) with its schema: the file, or a directory's files.

    Reads footers only. Files are those pyarrow reads as one dataset (names
    starting with ``.`` or ``_`` are skipped), in its order. Raises
    :class:`InputError` for a missing path, a directory without Parquet files,
    or a file that is not Parquet (naming it).
    """
    names = storage.parquet_files(path)  # a local path, or a URL (detector.engine.storage)
    files = []
    for name in names:
        try:
            files.append((storage.as_location(name), storage.read_schema(name)))
        except (pa.ArrowInvalid, OSError) as error:
            detail = str(error).split(": ")[-1]
            what = (
                "a Parquet file or a directory of Parquet files"
                if name == str(path)
                else "a Parquet file"
            )
            raise InputError(f"{name}: not {what} ({detail})") from None
    return files


def unified_schema(
    files: Sequence[tuple[str | Path, pa.Schema]],
    columns: Collection[str] = LOG_COLUMNS,
    required: Collection[str] = REQUIRED_COLUMNS,
) -> pa.Schema:
    """The one schema the given columns of every file are read as, without losing a value.

    Unified exactly: every text type (string, large string, binary, dictionary
    of those) as string; every integer width as int64; float widths as
    float64; timestamps of any zone as UTC (naive means UTC), in their unit
    or, when units differ, in microseconds; ``records_returned`` integers with
    floats as float64; ``timestamp`` text with timestamps as text (every file
    parsed the same way). A column that some files lack is null in those.
    Anything else, and a file lacking a ``required`` column, raises
    :class:`InputError` naming the file, the column and both types.
    Columns that no file holds are left out; other columns are ignored.
    """
    first: dict[str, tuple[str | Path, pa.DataType, str]] = {}  # column -> (file, type, family)
    units: dict[str, set[str]] = {}
    for file, schema in files:
        missing = [c for c in required if c not in schema.names]
        if missing:
            raise InputError(f"{file}: missing required column(s): {', '.join(missing)}")
        for name in columns:
            if name not in schema.names:
                continue
            arrow_type = schema.field(name).type
            kind = _kind(arrow_type)
            if kind == "timestamp":
                units.setdefault(name, set()).add(arrow_type.unit)
            if name not in first:
                first[name] = (file, arrow_type, kind)
                continue
            seen_file, seen_type, seen_kind = first[name]
            combined = _combine(name, seen_kind, kind)
            if combined is None:
                raise InputError(
                    f"{file}: column {name!r} is {arrow_type} here but {seen_type} in "
                    f"{seen_file}; these files cannot be read as one log"
                )
            first[name] = (seen_file, seen_type, combined)
    return pa.schema(
        [
            pa.field(name, _target(first[name][2], set(units.get(name, ())), first[name][1]))
            for name in columns
            if name in first
        ]
    )


# --- Reading a file (or a row group) in the unified schema ---------------------------


def _decoded(array: pa.Array) -> tuple[pa.Array, int]:
    """Text as a string array, invalid UTF-8 bytes replaced by U+FFFD; and how many values had them.

    Arrow checks the whole array at C++ speed; only when something is invalid
    are the distinct byte strings decoded one by one.
    """
    arrow_type = array.type
    if pa.types.is_null(arrow_type):
        return pa.nulls(len(array), pa.string()), 0
    try:
        if _is_text(arrow_type):
            array.validate(full=True)  # Parquet readers do not check UTF-8
        return array.cast(pa.string()), 0  # (binary -> string checks it)
    except pa.ArrowInvalid:
        pass
    large = pa.types.is_large_string(arrow_type) or pa.types.is_large_binary(arrow_type)
    as_bytes = (
        array.view(pa.large_binary() if large else pa.binary()) if _is_text(arrow_type) else array
    )
    encoded = pc.dictionary_encode(as_bytes)
    texts, bad = [], []
    for value in encoded.dictionary.to_pylist():  # distinct values, in the rare broken case
        try:
            texts.append(value.decode("utf-8"))
            bad.append(False)
        except UnicodeDecodeError:
            texts.append(value.decode("utf-8", errors="replace"))
            bad.append(True)
    indices = encoded.indices
    repaired = int(np.asarray(bad, dtype=bool)[indices.drop_null().to_numpy()].sum())
    return pa.array(texts, pa.string()).take(indices), repaired


_TEXT_DICTIONARY = pa.dictionary(pa.int32(), pa.string())


def _as_text(column: pa.ChunkedArray, dictionary: bool) -> tuple[pa.ChunkedArray, int]:
    """A text column as string (or dictionary of string) chunks; values repaired."""
    chunks, repaired = [], 0
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            values, bad = _decoded(chunk.dictionary)
            if bad:  # repaired values may coincide, and rows are what is counted: decode rows
                chunk, bad = _decoded(chunk.dictionary_decode())
            elif dictionary:
                if chunk.type != _TEXT_DICTIONARY:  # (already so: kept, no pass over rows)
                    chunk = pa.DictionaryArray.from_arrays(chunk.indices.cast(pa.int32()), values)
                chunks.append(chunk)
                continue
            else:
                chunk = values.take(chunk.indices)
        else:
            chunk, bad = _decoded(chunk)
        repaired += bad
        chunks.append(pc.dictionary_encode(chunk) if dictionary else chunk)
    kind = _TEXT_DICTIONARY if dictionary else pa.string()
    return pa.chunked_array(chunks, type=kind), repaired


def conform(
    table: pa.Table,
    schema: pa.Schema,
    source: str,
    dictionary: Collection[str] = (),
) -> tuple[pa.Table, dict[str, int]]:
    """A file's (or row group's) table in the :func:`unified_schema`, and repaired text counts.

    Columns come in the schema's order, those the table lacks as nulls; types
    are cast exactly (a value that would change raises :class:`InputError`
    naming ``source``); text columns named in ``dictionary`` come
    dictionary-encoded. Invalid UTF-8 bytes in text are replaced by U+FFFD:
    the second result counts the values so repaired, per column.
    """
    n = table.num_rows
    columns, repaired = [], {}
    for target in schema:
        as_dictionary = target.name in dictionary and pa.types.is_string(target.type)
        if target.name not in table.column_names:
            column = pa.chunked_array([pa.nulls(n, target.type)], type=target.type)
            if as_dictionary:
                column = column.dictionary_encode()
            columns.append(column)
            continue
        column = table.column(target.name)
        if pa.types.is_string(target.type):
            if pa.types.is_timestamp(column.type):  # timestamps among text timestamps
                column = column.cast(pa.timestamp(column.type.unit, tz="UTC")).cast(pa.string())
            column, bad = _as_text(column, as_dictionary)
            if bad:
                repaired[target.name] = bad
        elif column.type != target.type:
            try:
                column = column.cast(target.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                raise InputError(
                    f"{source}: column {target.name!r} ({column.type}) cannot be read exactly as "
                    f"{target.type}: {str(error).splitlines()[0]}"
                ) from None
        columns.append(column)
    return pa.table(columns, names=schema.names), repaired


def read_table(
    path: str | Path,
    accounts: Collection[str] | None = None,
    notices: list[str] | None = None,
) -> pa.Table:
    """Read the columns the detector uses from a Parquet file or directory.

    Every file's schema is checked and the files unified (:func:`unified_schema`),
    then each file is read and conformed (:func:`conform`). Low-cardinality
    string columns are read dictionary-encoded (cheap to turn into
    categoricals). ``record_id`` holds millions of distinct values: its
    per-row-group dictionaries would cost more to unify than one hashing pass,
    so it is read as text (and encoded once, by :func:`_to_frame`). A notice
    counting values whose invalid UTF-8 bytes were replaced goes to ``notices``.
    """
    files = dataset_files(path)
    schema = unified_schema(files)
    wanted = pa.array(sorted(set(accounts)), type=pa.string()) if accounts is not None else None
    tables, repaired = [], {}
    for file, file_schema in files:
        present = [c for c in schema.names if c in file_schema.names]
        read_dictionary = [
            c
            for c in present
            if c in DICTIONARY_COLUMNS and _kind(file_schema.field(c).type) == "text"
        ]
        # Filter push-down when the file's account ids are plain text; else filter after.
        push_down = wanted is not None and _is_text(file_schema.field("account_id").type)
        try:
            if push_down:
                table = storage.dataset(file, format="parquet").to_table(
                    columns=present, filter=ds.field("account_id").isin(wanted)
                )
            else:
                table = storage.read_table(file, columns=present, read_dictionary=read_dictionary)
        except (pa.ArrowInvalid, OSError) as error:
            raise InputError(f"{file}: cannot read Parquet data ({error})") from None
        table, bad = conform(table, schema, str(file), dictionary=DICTIONARY_COLUMNS)
        if wanted is not None and not push_down:
            keep = pc.is_in(table.column("account_id").cast(pa.string()), value_set=wanted)
            table = table.filter(pc.fill_null(keep, False))
        tables.append(table)
        for column, count in bad.items():
            repaired[column] = repaired.get(column, 0) + count
    if repaired and notices is not None:
        notices.append(
            f"{sum(repaired.values()):,} values with invalid UTF-8 bytes read with U+FFFD in their place ("
            + ", ".join(f"{column}: {count:,}" for column, count in repaired.items())
            + ")"
        )
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _as_category(values: pd.Series) -> pd.Series:
    """Strings as a categorical; empty strings count as missing."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = values.cat.categories
        if len(cats) and not pd.api.types.is_string_dtype(cats.dtype):
            values = values.cat.rename_categories(cats.astype(str))
    else:
        values = values.astype("string").astype("category")
    # A vectorised comparison, not `"" in categories` (which would hash millions of ids).
    if np.asarray(values.cat.categories == "", dtype=bool).any():
        values = values.cat.remove_categories([""])
    return values


def _as_ids(values: pd.Series) -> pd.Series:
    """Arrow text ids kept as text (not a categorical); empty strings count as missing."""
    ids = pa.array(values.array)
    empty = pc.equal(ids, "")
    if pc.any(empty).as_py():
        ids = pc.if_else(empty, pa.scalar(None, ids.type), ids)
    return pd.Series(pd.arrays.ArrowStringArray(ids), copy=False)


_TEXT_CATEGORIES = pd.StringDtype("pyarrow", na_value=np.nan)  # what Arrow's to_pandas gives


def _categorical(
    array: pa.DictionaryArray, dtype: pd.StringDtype = _TEXT_CATEGORIES
) -> pd.Categorical:
    """An Arrow dictionary array as a pandas Categorical, without hashing its values again.

    Arrow's dictionaries hold distinct values, so pandas' uniqueness check (a
    hash of every value, a second or more for millions of record ids) is skipped
    through its fast path when this pandas has it.
    """
    categories = pd.Index(pd.array(array.dictionary, dtype=dtype))
    fast = getattr(pd.CategoricalDtype, "_from_fastpath", None)
    dtype = fast(categories, False) if fast else pd.CategoricalDtype(categories)
    codes = pc.fill_null(array.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32)
    return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)


def validated_frame(table: pa.Table) -> pd.DataFrame:
    """Validated events kept as Arrow (a partition wrote them) as the frame reading gave."""
    return _to_frame(table)


def _to_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a DataFrame, string columns as categoricals.

    High-cardinality text (record ids) stays Arrow text, without a copy: encoding
    millions of distinct ids took a third of a partition's reading time, and the
    kernel compares them by hash (:func:`detector.features.kernel.text_hashes`).
    """
    texts = [
        name
        for name in HIGH_CARDINALITY
        if name in table.column_names and _is_text(table.schema.field(name).type)
    ]
    # Dictionary columns become categoricals here, without pandas checking that
    # the (already distinct) dictionary values are distinct.
    dictionaries = [
        field.name
        for field in table.schema
        if pa.types.is_dictionary(field.type)
        and pa.types.is_string(field.type.value_type)
        and field.name not in texts
    ]
    plain = table.drop_columns(texts + dictionaries).to_pandas(ignore_metadata=True)
    columns: dict[str, Any] = {name: plain[name] for name in plain.columns}
    for name in dictionaries:
        column = table.column(name).unify_dictionaries().combine_chunks()
        columns[name] = _categorical(column, _TEXT_CATEGORIES)
    for name in texts:
        columns[name] = pd.Series(pd.arrays.ArrowStringArray(table.column(name)), copy=False)
    # One frame built at once, in the table's order (inserting columns one by one costs more).
    return pd.DataFrame({name: columns[name] for name in table.column_names}, copy=False)


def _instants(raw: pd.Series, source: str) -> pd.Series:
    """UTC instants, in whatever unit pandas holds them, from timestamp or ISO-8601 values.

    Naive values are UTC; text that does not parse is NaT.
    """
    if isinstance(raw.dtype, pd.CategoricalDtype):
        raw = raw.astype("string")
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        return raw.dt.tz_localize("UTC")
    if pd.api.types.is_string_dtype(raw.dtype) or raw.dtype == object:
        parsed = pd.to_datetime(raw, utc=True, format="ISO8601", errors="coerce")
        if parsed.notna().sum() == 0 and raw.notna().any():
            example = raw[raw.notna()].iloc[0]
            raise InputError(
                f"{source}: column 'timestamp' holds no parseable timestamp (first value: {example!r})"
            )
        return parsed
    raise InputError(
        f"{source}: column 'timestamp' has type {raw.dtype}; expected a timestamp or ISO-8601 text"
    )


def _timestamps(
    raw: pd.Series, source: str
) -> tuple[pd.Series, np.ndarray, np.ndarray, str | None]:
    """(UTC nanosecond timestamps, out of range, far off, a notice or None).

    Instants that nanoseconds cannot hold (before 1677-09-22 or after
    2262-04-11) are *out of range*; instants outside :func:`accepted_span` are
    *far off*. Both are NaT in the result, for the rejects.
    """
    parsed = _instants(raw, source)
    ticks = pd.DatetimeIndex(parsed).asi8  # in the parsed unit; NaT is int64 min
    per_tick = _NS_PER_UNIT[parsed.dt.unit]
    limit = np.iinfo(np.int64).max // per_tick  # nanoseconds reach +-(2**63 - 1)
    present = ticks != np.iinfo(np.int64).min
    in_range = present & (ticks >= -limit) & (ticks <= limit)
    nanoseconds = np.where(in_range, ticks, 0) * per_tick
    span = accepted_span(nanoseconds[in_range])
    far_off = np.zeros(len(ticks), dtype=bool)
    notice = None
    if span is not None:
        far_off = in_range & ((nanoseconds < span[0]) | (nanoseconds > span[1]))
    if far_off.any():
        notice = far_off_notice(
            int(far_off.sum()), span[0] + FAR_OFF_DAYS * _DAY_NS, span[1] - FAR_OFF_DAYS * _DAY_NS
        )
    nanoseconds[~in_range | far_off] = np.iinfo(np.int64).min  # NaT
    stamps = pd.Series(pd.DatetimeIndex(nanoseconds.view("datetime64[ns]")).tz_localize("UTC"))
    return stamps, present & ~in_range, far_off, notice


def far_off_notice(count: int, central_first_ns: int, central_last_ns: int) -> str:
    """The notice that counts far-off events, naming the log's central span."""
    days = pd.to_datetime([central_first_ns, central_last_ns], utc=True).strftime("%Y-%m-%d")
    return (
        f"{count:,} events more than {FAR_OFF_DAYS} days outside the log's central"
        f" span ({days[0]} to {days[1]}, the 1st to 99th percentile of its timestamps)"
        " rejected as far off"
    )


def accepted_span(instants: np.ndarray) -> tuple[int, int] | None:
    """(first, last) instant accepted in a log, as int64 UTC nanoseconds; None: all are.

    ``instants`` are the log's timestamps (int64 ns, any order). Events are far
    off when more than ``FAR_OFF_DAYS`` days outside the log's central span,
    from the 1st to the 99th percentile of its instants (linear interpolation),
    so that up to 1 % of stray events at either end cannot stretch it: a clock
    reset to 1970 or a typo's year 2100 in a log of weeks lies far outside.
    When all instants lie within ``FAR_OFF_DAYS`` days of one another none can
    be far off, and the percentiles are skipped (None).
    """
    margin = FAR_OFF_DAYS * _DAY_NS
    if len(instants) == 0 or int(instants.max()) - int(instants.min()) <= margin:
        return None
    low, high = np.quantile(instants, SPAN_QUANTILES)
    return int(low) - margin, int(high) + margin


def _normalise_actions(action: pd.Series) -> tuple[pd.Categorical, str | None]:
    """Map actions onto the contract's vocabulary; unknown or missing ones become ``other``.

    Works on the categories, not the rows: ten million rows cost one gather.
    """
    known = action.cat.categories.astype(str).str.strip().str.lower()
    target = np.array([ACTIONS.index(a) if a in ACTIONS else ACTIONS.index("other") for a in known])
    codes = action.cat.codes.to_numpy()
    new_codes = np.where(
        codes >= 0, target[np.maximum(codes, 0)] if len(target) else 0, ACTIONS.index("other")
    )
    note = None
    is_unknown = np.array([a not in ACTIONS for a in known], dtype=bool)
    if is_unknown.any():
        counts = np.bincount(codes[codes >= 0], minlength=len(known))
        unknown_counts = counts * is_unknown
        total = int(unknown_counts.sum()) + int((codes < 0).sum())
        if total:
            order = np.argsort(-unknown_counts)[:3]
            examples = ", ".join(repr(known[i]) for i in order if unknown_counts[i])
            note = f"{total:,} events with unknown or missing actions counted as 'other'" + (
                f" (e.g. {examples})" if examples else ""
            )
    elif (codes < 0).any():
        note = f"{int((codes < 0).sum()):,} events with missing actions counted as 'other'"
    return pd.Categorical.from_codes(new_codes.astype(np.int8), categories=list(ACTIONS)), note


def _distinct_count(numbers: np.ndarray) -> int:
    """Distinct values of an int array, by a sort (numpy 2.4's hashing ``unique`` is ~15x slower)."""
    ordered = np.sort(numbers)
    return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1 if len(ordered) else 0


def _duplicated_ids(ids: pd.Series) -> str | None:
    """A notice counting events whose event_id an earlier event already has, or None."""
    values = ids.dropna()
    if pd.api.types.is_integer_dtype(values.dtype) and len(values):
        numbers = values.to_numpy(np.int64)
        if (numbers[1:] > numbers[:-1]).all():  # ascending (row numbers, most logs): distinct
            return None
        # Integer ids are most often a compact range: a scatter beats hashing.
        low, span = numbers.min(), int(numbers.max()) - int(numbers.min()) + 1
        distinct = (
            int(np.count_nonzero(np.bincount(numbers - low, minlength=span)))
            if span <= 4 * len(numbers)
            else _distinct_count(numbers)
        )
    else:
        distinct = values.nunique()
    repeats = len(values) - distinct
    if not repeats:
        return None
    counts = values.value_counts()  # the rare broken case only
    return (
        f"event_id is not unique: {repeats:,} events repeat an earlier event's id"
        f" ({int((counts > 1).sum()):,} ids repeated)"
    )


def normalise(frame: pd.DataFrame, source: str = "<frame>") -> EventLog:
    """Validate and normalise a contract log already in memory.

    Rows without account or timestamp, or whose timestamp does not parse, is
    out of range or far off (:func:`accepted_span`), go to ``rejects`` with a
    reason; unknown actions become ``other``; ``outcome`` defaults to
    ``success``; missing ``event_id`` means the row position; duplicated ids
    are counted in a notice. Raises :class:`InputError` for a frame that
    cannot be a log.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing required column(s): {', '.join(missing)}")
    notices: list[str] = []
    n = len(frame)
    columns: dict[str, Any] = {}  # the frame is built at once from them (cheaper than inserts)
    if "event_id" in frame.columns:
        columns["event_id"] = frame["event_id"].to_numpy()
    else:
        columns["event_id"] = np.arange(n, dtype=np.int64)
    raw_ts = frame["timestamp"].reset_index(drop=True)
    columns["timestamp"], out_of_range, far_off, far_note = _timestamps(raw_ts, source)
    if far_note:
        notices.append(far_note)
    for column in STRING_COLUMNS:
        if column in frame.columns:
            values = frame[column].reset_index(drop=True)
            arrow_text = isinstance(values.array, pd.arrays.ArrowStringArray)
            if column in HIGH_CARDINALITY and arrow_text:
                columns[column] = _as_ids(values)
            else:
                columns[column] = _as_category(values)
    if "records_returned" in frame.columns:
        returned = pd.to_numeric(frame["records_returned"].reset_index(drop=True), errors="coerce")
        negative = int((returned < 0).sum())
        if negative:
            notices.append(f"{negative:,} negative records_returned values counted as 0")
        columns["records_returned"] = returned.clip(lower=0).fillna(0).to_numpy(np.float64)
    events = pd.DataFrame(columns, index=pd.RangeIndex(n))
    duplicated = _duplicated_ids(events["event_id"])
    if duplicated:
        notices.append(duplicated)

    no_timestamp = raw_ts.isna().to_numpy()
    unparseable = events["timestamp"].isna().to_numpy() & ~(no_timestamp | out_of_range | far_off)
    no_account = events["account_id"].isna().to_numpy()
    bad = no_timestamp | unparseable | out_of_range | far_off | no_account
    rejects = frame.reset_index(drop=True).loc[bad].copy()
    # One reason per rejected row, the most basic problem first.
    reason = np.select(
        [no_account[bad], no_timestamp[bad], out_of_range[bad], far_off[bad]],
        ["missing account_id", "missing timestamp", REJECT_OUT_OF_RANGE, REJECT_FAR_OFF],
        default="unparseable timestamp",
    )
    rejects.insert(0, "row", np.flatnonzero(bad))
    rejects.insert(1, "reason", reason)
    if bad.any():
        events = events.loc[~bad]
        notices.append(rejects_notice(rejects))

    events["action"], unknown_note = _normalise_actions(events["action"])
    if unknown_note:
        notices.append(unknown_note)

    timestamps = pd.DatetimeIndex(events["timestamp"]).asi8
    if len(timestamps) > 1 and not (timestamps[1:] >= timestamps[:-1]).all():
        events = events.iloc[np.argsort(timestamps, kind="stable")]
    # (Accounts whose every row was rejected stay among the categories, without events.)
    events = events.reset_index(drop=True)
    return EventLog(
        events=events, rejects=rejects.reset_index(drop=True), notices=notices, source=source
    )


def read_log(path: str | Path, accounts: Collection[str] | None = None) -> EventLog:
    """Read and normalise a contract log (a Parquet file or a directory of them).

    With ``accounts``, only those accounts' events are read (a report's drill-down).
    """
    notices: list[str] = []
    log = normalise(_to_frame(read_table(path, accounts, notices)), source=str(path))
    log.notices[:0] = notices
    return log


def read_events(path: str | Path, accounts: Collection[str] | None = None) -> pd.DataFrame:
    """The normalised events of a log, optionally only those of some accounts."""
    return read_log(path, accounts).events


def read_caseloads(path: str | Path) -> pd.DataFrame:
    """The caseload side table (contract section 2): ``account_id``, ``record_id``.

    Its files are checked and read like a log's (:func:`unified_schema`, :func:`conform`).
    """
    columns = ("account_id", "record_id")
    files = dataset_files(path)
    try:
        schema = unified_schema(files, columns=columns, required=columns)
    except InputError as error:
        raise InputError(f"caseload table: {error}") from None
    tables = []
    for file, _ in files:
        try:
            table = storage.read_table(file, columns=list(columns))
        except (pa.ArrowInvalid, OSError) as error:
            raise InputError(f"{file}: cannot read Parquet data ({error})") from None
        tables.append(conform(table, schema, str(file))[0])
    table = pa.concat_tables(tables)
    return table.to_pandas().dropna().astype({"account_id": "string", "record_id": "string"})


def sibling(log_path: str | Path, suffix: str) -> str | Path:
    """A file named after a log, beside it: ``x/logs.parquet`` -> ``x/logs<suffix>``.

    The contract's side files (caseloads, truth, attacks) and the alerts are named so.
    """
    name = storage.name(log_path)
    stem = name[: -len(".parquet")] if name.endswith(".parquet") else name
    return storage.with_name(log_path, stem + suffix)  # a URL beside a URL


def default_caseloads_path(log_path: str | Path) -> str | Path:
    """Where the caseload table of a log is looked for: ``<stem>.caseloads.parquet`` beside it."""
    return sibling(log_path, ".caseloads.parquet")


def found_caseloads(log_path: str | Path) -> str | Path | None:
    """The caseload table beside a log (:func:`default_caseloads_path`), None when there is none.

    The log's own location is resolved first, so that a bad URL is named as the log.
    """
    storage.resolve(log_path)
    path = default_caseloads_path(log_path)
    return path if storage.exists(path) else None


# Partitioned reading (detector.engine): a log read a few row groups at a time.


def log_schema(path: str | Path) -> tuple[list[str], pa.Schema]:
    """(the Parquet files of a log in order, the one schema they are read as).

    Every file's footer is checked (:func:`dataset_files`, :func:`unified_schema`).
    """
    files = dataset_files(path)
    return [str(file) for file, _ in files], unified_schema(files)


def read_row_groups(
    file: str, row_groups: list[int], schema: pa.Schema, keep: np.ndarray | None = None
) -> tuple[pa.Table, dict[str, int]]:
    """Some row groups of one Parquet file, conformed to the log's schema (:func:`conform`),
    and the values whose invalid UTF-8 bytes were replaced, per column.

    ``keep`` (a bool per row read): only those rows, selected before they are
    conformed (checking text costs per value; the replay keeps a few rows).
    """
    try:
        parquet = storage.open_parquet(file)
        file_schema = parquet.schema_arrow
        present = [c for c in schema.names if c in file_schema.names]
        dictionary = [
            c
            for c in present
            if c in DICTIONARY_COLUMNS and _kind(file_schema.field(c).type) == "text"
        ]
        parquet = storage.open_parquet(file, read_dictionary=dictionary)
        table = parquet.read_row_groups(row_groups, columns=present)
        if keep is not None:
            table = table.filter(pa.array(keep))
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(f"{file}: cannot read Parquet data ({error})") from None
    return conform(table, schema, file, dictionary=DICTIONARY_COLUMNS)


def normalise_table(table: pa.Table, source: str) -> EventLog:
    """Validate and normalise events read as an Arrow table (see :func:`normalise`)."""
    return normalise(_to_frame(table), source=source)


def rejects_notice(rejects: pd.DataFrame) -> str | None:
    """The one line that counts rejected rows by reason (None when there are none)."""
    if rejects.empty:
        return None
    counts = rejects["reason"].value_counts()
    return (
        f"{len(rejects):,} rows rejected ("
        + ", ".join(f"{count:,} {why}" for why, count in counts.items())
        + ")"
    )


REPAIRED_TEXT = "values with invalid UTF-8 bytes read with U+FFFD in their place"


def repaired_notice(repaired: dict[str, int]) -> str | None:
    """The notice counting text values repaired while reading, per column (None: none)."""
    if not repaired:
        return None
    return (
        f"{sum(repaired.values()):,} {REPAIRED_TEXT} ("
        + ", ".join(f"{column}: {count:,}" for column, count in repaired.items())
        + ")"
    )
