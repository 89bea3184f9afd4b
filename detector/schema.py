"""Read, validate and normalise a contract log (contract section 1): the one place that does.

Everything downstream works on an :class:`EventLog`: time-ordered events with
categorical string columns (so that later steps work on integer codes), UTC
nanosecond timestamps, actions from the contract's vocabulary (anything else is
``other``), and the rows that could not be used set aside with their reason.
"""

from __future__ import annotations

from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

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
HIGH_CARDINALITY = ("record_id",)  # read as text, encoded once by Arrow (see _to_frame)
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


def _dataset(path: Path) -> ds.Dataset:
    if not path.exists():
        raise InputError(f"no such file or directory: {path}")
    try:
        if path.is_dir():
            return ds.dataset(path, format="parquet", exclude_invalid_files=False)
        return ds.dataset(path, format="parquet")
    except (pa.ArrowInvalid, OSError) as error:
        detail = str(error).split(": ")[-1]
        raise InputError(
            f"{path}: not a Parquet file or a directory of Parquet files ({detail})"
        ) from None


def read_table(path: str | Path, accounts: Collection[str] | None = None) -> pa.Table:
    """Read the columns the detector uses from a Parquet file or directory.

    Low-cardinality string columns are read dictionary-encoded (cheap to turn
    into categoricals). ``record_id`` holds millions of distinct values: its
    per-row-group dictionaries would cost more to unify than one hashing pass,
    so it is read as text (and encoded once, by :func:`_to_frame`).
    """
    path = Path(path)
    dataset = _dataset(path)
    names = set(dataset.schema.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise InputError(f"{path}: missing required column(s): {', '.join(missing)}")
    columns = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in names]
    text = [c for c in columns if _is_text(dataset.schema.field(c).type)]
    read_dictionary = [c for c in text if c not in HIGH_CARDINALITY]
    try:
        if accounts is not None:
            wanted = pa.array(sorted(set(accounts)), type=pa.string())
            table = dataset.to_table(columns=columns, filter=ds.field("account_id").isin(wanted))
        elif path.is_dir():
            table = dataset.to_table(columns=columns)
        else:
            table = pq.read_table(path, columns=columns, read_dictionary=read_dictionary)
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(f"{path}: cannot read Parquet data ({error})") from None
    return table


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


def _categorical(array: pa.DictionaryArray) -> pd.Categorical:
    """An Arrow dictionary array as a pandas Categorical, without hashing its values again.

    Arrow's dictionaries hold distinct values, so pandas' uniqueness check (a
    hash of every value, a second or more for millions of record ids) is skipped
    through its fast path when this pandas has it.
    """
    categories = pd.Index(pd.array(array.dictionary, dtype=pd.StringDtype("pyarrow")))
    fast = getattr(pd.CategoricalDtype, "_from_fastpath", None)
    dtype = fast(categories, False) if fast else pd.CategoricalDtype(categories)
    codes = pc.fill_null(array.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32)
    return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)


def _to_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a DataFrame, string columns as categoricals.

    High-cardinality text (record ids) is dictionary-encoded by Arrow in a second
    thread while pandas converts the other columns (Arrow releases the GIL), and
    becomes a categorical without pandas hashing it again (:func:`_categorical`).
    """
    encode = [
        name
        for name in HIGH_CARDINALITY
        if name in table.column_names and _is_text(table.schema.field(name).type)
    ]
    with ThreadPoolExecutor(max_workers=1) as pool:
        encoded = {
            name: pool.submit(
                lambda column: pc.dictionary_encode(column.combine_chunks()), table.column(name)
            )
            for name in encode
        }
        frame = table.drop_columns(encode).to_pandas(ignore_metadata=True)
        for name, future in encoded.items():
            frame[name] = _categorical(future.result())
    return frame[table.column_names]


def _parse_timestamps(raw: pd.Series, source: str) -> pd.Series:
    """UTC timestamps (ns) from timestamp or ISO-8601 string values; naive means UTC."""
    if isinstance(raw.dtype, pd.CategoricalDtype):
        raw = raw.astype("string")
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        return raw.dt.tz_localize("UTC").astype("datetime64[ns, UTC]")
    if pd.api.types.is_string_dtype(raw.dtype) or raw.dtype == object:
        parsed = pd.to_datetime(raw, utc=True, format="ISO8601", errors="coerce")
        if parsed.notna().sum() == 0 and raw.notna().any():
            example = raw[raw.notna()].iloc[0]
            raise InputError(
                f"{source}: column 'timestamp' holds no parseable timestamp (first value: {example!r})"
            )
        return parsed.astype("datetime64[ns, UTC]")
    raise InputError(
        f"{source}: column 'timestamp' has type {raw.dtype}; expected a timestamp or ISO-8601 text"
    )


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


def normalise(frame: pd.DataFrame, source: str = "<frame>") -> EventLog:
    """Validate and normalise a contract log already in memory.

    Rows without account or timestamp go to ``rejects``; unknown actions become
    ``other``; ``outcome`` defaults to ``success``; missing ``event_id`` means
    the row position. Raises :class:`InputError` for a frame that cannot be a log.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing required column(s): {', '.join(missing)}")
    notices: list[str] = []
    n = len(frame)
    events = pd.DataFrame(index=pd.RangeIndex(n))
    if "event_id" in frame.columns:
        events["event_id"] = frame["event_id"].to_numpy()
    else:
        events["event_id"] = np.arange(n, dtype=np.int64)
    raw_ts = frame["timestamp"].reset_index(drop=True)
    events["timestamp"] = _parse_timestamps(raw_ts, source)
    for column in STRING_COLUMNS:
        if column in frame.columns:
            events[column] = _as_category(frame[column].reset_index(drop=True))
    if "records_returned" in frame.columns:
        returned = pd.to_numeric(frame["records_returned"].reset_index(drop=True), errors="coerce")
        negative = int((returned < 0).sum())
        if negative:
            notices.append(f"{negative:,} negative records_returned values counted as 0")
        events["records_returned"] = returned.clip(lower=0).fillna(0).to_numpy(np.float64)

    no_timestamp = raw_ts.isna().to_numpy()
    unparseable = events["timestamp"].isna().to_numpy() & ~no_timestamp
    no_account = events["account_id"].isna().to_numpy()
    bad = no_timestamp | unparseable | no_account
    rejects = frame.reset_index(drop=True).loc[bad].copy()
    # One reason per rejected row, the most basic problem first.
    reason = np.select(
        [no_account[bad], no_timestamp[bad]],
        ["missing account_id", "missing timestamp"],
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
    return normalise(_to_frame(read_table(path, accounts=accounts)), source=str(path))


def read_events(path: str | Path, accounts: Collection[str] | None = None) -> pd.DataFrame:
    """The normalised events of a log, optionally only those of some accounts."""
    return read_log(path, accounts).events


def read_caseloads(path: str | Path) -> pd.DataFrame:
    """The caseload side table (contract section 2): ``account_id``, ``record_id``."""
    path = Path(path)
    dataset = _dataset(path)
    missing = [c for c in ("account_id", "record_id") if c not in dataset.schema.names]
    if missing:
        raise InputError(f"{path}: caseload table lacks column(s): {', '.join(missing)}")
    try:
        table = dataset.to_table(columns=["account_id", "record_id"])
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(f"{path}: cannot read Parquet data ({error})") from None
    return table.to_pandas().dropna().astype({"account_id": "string", "record_id": "string"})


def sibling(log_path: str | Path, suffix: str) -> Path:
    """A file named after a log, beside it: ``x/logs.parquet`` -> ``x/logs<suffix>``.

    The contract's side files (caseloads, truth, attacks) and the alerts are named so.
    """
    log_path = Path(log_path)
    name = log_path.name
    stem = name[: -len(".parquet")] if name.endswith(".parquet") else name
    return log_path.with_name(stem + suffix)


def default_caseloads_path(log_path: str | Path) -> Path:
    """Where the caseload table of a log is looked for: ``<stem>.caseloads.parquet`` beside it."""
    return sibling(log_path, ".caseloads.parquet")


# Partitioned reading (detector.engine): a log read a few row groups at a time.


def parquet_files(path: str | Path) -> list[str]:
    """The Parquet files of a log (a file, or a directory read as one dataset), in order."""
    return sorted(_dataset(Path(path)).files)


def log_columns(path: str | Path, schema: pa.Schema) -> tuple[list[str], list[str]]:
    """(columns the detector reads, those to read dictionary-encoded) of a log's schema."""
    names = set(schema.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise InputError(f"{path}: missing required column(s): {', '.join(missing)}")
    columns = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in names]
    text = [c for c in columns if _is_text(schema.field(c).type)]
    return columns, [c for c in text if c not in HIGH_CARDINALITY]


def read_row_groups(file: str, row_groups: list[int], columns: list[str]) -> pa.Table:
    """Some row groups of one Parquet file, the detector's columns only."""
    try:
        parquet = pq.ParquetFile(file)
        _, dictionary = log_columns(file, parquet.schema_arrow)
        parquet = pq.ParquetFile(file, read_dictionary=dictionary)
        return parquet.read_row_groups(row_groups, columns=columns)
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(f"{file}: cannot read Parquet data ({error})") from None


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
