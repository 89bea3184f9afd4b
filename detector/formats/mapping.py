"""Field mappings declared as data: other logs' field names and values onto the contract.

A mapping is a TOML file (the shipped ones are ``detector/formats/mappings/*.toml``;
the form is documented in docs/formats.md):

- ``[columns]``: contract column = a dotted source path, or a list of paths
  (the first non-null one wins);
- ``[[cases.COLUMN]]``: ordered cases, the first whose ``when`` holds gives the
  column a constant ``value`` or the value at another path (``from``); rows no
  case matches fall back to ``[columns]``;
- ``time_unit``: the unit of numeric times (``s``, ``ms``, ``us``, ``ns``);
  text times are ISO 8601.

:func:`apply_mapping` turns one Arrow table of source records (nested structs
or flat dotted names) into the contract's columns, vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from detector.errors import InputError
from detector.schema import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from tomlcheck import KeyLines, Problem, by_line, format_problems, parse_toml, read_capped

CONTRACT_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
BUILTIN = ("ecs", "ocsf")
TIME_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_TOP_KEYS = {"name", "description", "time_unit", "columns", "cases"}
_CASE_KEYS = {"when", "value", "from"}
MAX_MAPPING_BYTES = 1 << 20  # a mapping is a page of TOML; a larger file is a mistake
_INTEGER = r"^\s*-?\d+\s*$"
_NUMBER = r"^\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


class MappingError(InputError):
    """A mapping file is malformed or does not cover the contract's required columns."""


Scalar = str | int | float | bool


@dataclass(frozen=True)
class Case:
    """One case of a column: when every ``when`` path holds one of its values, take ``value`` or ``source``."""

    when: tuple[tuple[str, tuple[str, ...]], ...]  # path -> accepted values, as lower-case text
    value: str | None = None
    source: tuple[str, ...] = ()


@dataclass(frozen=True)
class Mapping:
    """A parsed mapping: default source paths and ordered cases per contract column."""

    name: str
    columns: dict[str, tuple[str, ...]]
    cases: dict[str, tuple[Case, ...]]
    time_unit: str = "ms"
    origin: str = "<mapping>"

    @property
    def covered(self) -> tuple[str, ...]:
        """The contract columns this mapping fills, in the contract's order."""
        return tuple(c for c in CONTRACT_COLUMNS if c in self.columns or c in self.cases)

    @property
    def paths(self) -> set[str]:
        """Every source path the mapping reads."""
        found = {p for paths in self.columns.values() for p in paths}
        for cases in self.cases.values():
            for case in cases:
                found.update(path for path, _ in case.when)
                found.update(case.source)
        return found


def identity_mapping() -> Mapping:
    """The contract's own column names (an NDJSON or CSV export in the contract's form)."""
    return Mapping("contract", {c: (c,) for c in CONTRACT_COLUMNS}, {}, "ms", "<contract>")


def _text(value: Scalar) -> str:
    """A TOML value as the text source values are compared with (lower case; true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip().lower()


class _Problems:
    """Every problem of a mapping file, each on its line (tomllib gives no lines)."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = KeyLines(text)
        self.found: list[Problem] = []

    def add(self, message: str, table: str = "", key: str | None = None, index: int = 0) -> None:
        line = self.lines.line(table, index, *([key] if key else []))
        self.found.append(Problem(self.path, line, message))


def _flatten(table: dict, prefix: str = "") -> dict:
    """``{event = {action = "x"}}`` (TOML's dotted keys) as ``{"event.action": "x"}``."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _paths(value: object) -> tuple[str, ...] | None:
    """A dotted path or a list of them, as a tuple; None when it is neither."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(p, str) and p for p in items):
        return None
    return tuple(items)


def _case(entry: object, column: str, add) -> Case | None:
    """One ``[[cases.COLUMN]]`` entry, or None after reporting what is wrong with it."""
    if not isinstance(entry, dict):
        add(f"a case of {column} must be a table")
        return None
    ok = True
    extra = sorted(set(entry) - _CASE_KEYS)
    for key in extra:
        add(f"unknown key {key!r} in a case (expected: from, value, when)", key)
        ok = False
    when = entry.get("when")
    conditions = []
    if not isinstance(when, dict) or not when:
        add("a case needs when = { path = value or [values], ... }", "when")
        ok = False
    else:
        for path, accepted in _flatten(when).items():
            values = accepted if isinstance(accepted, list) else [accepted]
            if not values or not all(isinstance(v, str | int | float | bool) for v in values):
                add(f"when.{path} must be a value or a list of values", "when")
                ok = False
            else:
                conditions.append((path, tuple(_text(v) for v in values)))
    if ("value" in entry) == ("from" in entry):
        add('a case needs exactly one of value = ... or from = "path"')
        return None
    if "value" in entry:
        if not isinstance(entry["value"], str | int):
            add("value must be text or an integer", "value")
            return None
        return Case(tuple(conditions), value=str(entry["value"])) if ok else None
    source = _paths(entry["from"])
    if source is None:
        add("from must be a dotted path or a list of them", "from")
        return None
    return Case(tuple(conditions), source=source) if ok else None


def _columns(raw: object, problems: _Problems) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        problems.add("columns must be a table", "", "columns")
        return {}
    columns = {}
    for column, value in raw.items():
        paths = _paths(value)
        if column not in CONTRACT_COLUMNS:
            problems.add(f"{column!r} is not a contract column", "columns", column)
        elif paths is None:
            problems.add(
                f"columns.{column} must be a dotted path or a list of them", "columns", column
            )
        else:
            columns[column] = paths
    return columns


def _cases(raw: object, problems: _Problems) -> dict[str, tuple[Case, ...]]:
    if not isinstance(raw, dict):
        problems.add("cases must hold [[cases.COLUMN]] tables", "", "cases")
        return {}
    cases = {}
    for column, entries in raw.items():
        table = f"cases.{column}"
        if column not in CONTRACT_COLUMNS:
            problems.add(f"{column!r} is not a contract column", table)
            continue
        if not isinstance(entries, list):
            problems.add(f"write the cases of {column} as [[{table}]] tables", table)
            continue
        parsed = []
        for i, entry in enumerate(entries):

            def add(message, key=None, i=i, table=table):
                problems.add(message, table, key, i)

            parsed.append(_case(entry, column, add))
        cases[column] = tuple(c for c in parsed if c is not None)
    return cases


def parse_mapping(text: str, origin: str = "<mapping>") -> Mapping:
    """Parse a mapping's TOML text; raise :class:`MappingError` listing every problem by line."""
    data, problem = parse_toml(origin, text)
    if problem is not None:
        raise MappingError(str(problem))
    problems = _Problems(origin, text)
    for key in sorted(set(data) - _TOP_KEYS):
        problems.add(f"unknown key {key!r} (expected: {', '.join(sorted(_TOP_KEYS))})", "", key)
    time_unit = data.get("time_unit", "ms")
    if time_unit not in TIME_UNITS:
        problems.add(
            f"time_unit {time_unit!r} is not one of {', '.join(TIME_UNITS)}", "", "time_unit"
        )
    mapping = Mapping(
        name=str(data.get("name", Path(origin).stem)),
        columns=_columns(data.get("columns", {}), problems),
        cases=_cases(data.get("cases", {}), problems),
        time_unit=time_unit,
        origin=origin,
    )
    found = by_line(problems.found)
    missing = [c for c in REQUIRED_COLUMNS if c not in mapping.covered]
    if missing and not found:  # a misspelt column is reported as such, not as missing too
        found = [
            Problem(
                origin, None, f"the mapping does not cover required column(s): {', '.join(missing)}"
            )
        ]
    if found:
        raise MappingError(format_problems(found))
    return mapping


def load_mapping(name_or_path: str | Path) -> Mapping:
    """A shipped mapping by name (``ecs``, ``ocsf``) or a mapping TOML file."""
    if str(name_or_path) in BUILTIN:
        ref = resources.files("detector.formats.mappings") / f"{name_or_path}.toml"
        return parse_mapping(ref.read_text(encoding="utf-8"), f"{name_or_path} (shipped)")
    path = Path(name_or_path)
    if not path.is_file():
        raise MappingError(f"no such mapping file: {path} (shipped mappings: {', '.join(BUILTIN)})")
    text, problem = read_capped(str(path), MAX_MAPPING_BYTES, "a mapping file")
    if problem is not None:
        raise MappingError(str(problem))
    return parse_mapping(text, str(path))


# --- applying a mapping to Arrow data ------------------------------------------------


def _array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _first_if_list(array: pa.Array) -> pa.Array:
    """A list's first element (null for empty or null lists): ``resources[].uid`` reads the first."""
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        length = pc.list_value_length(array)
        array = pc.if_else(pc.greater(length, 0), array, pa.scalar(None, array.type))
        return _array(pc.list_element(array, 0))
    return array


def leaf(table: pa.Table, path: str, keep_list: bool = False) -> pa.Array | None:
    """The values at a dotted path, or None when this table has no such field.

    A flat column named exactly ``path`` (CSV headers, ``{"user.name": ...}``)
    wins; otherwise the longest leading column name is followed through structs.
    """
    names = table.column_names
    last = (lambda a: a) if keep_list else _first_if_list
    if path in names:
        return last(_array(table.column(path)))
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:i])
        if head in names:
            array, rest = _array(table.column(head)), parts[i:]
            break
    else:
        return None
    for name in rest:
        array = _first_if_list(array)
        if not pa.types.is_struct(array.type) or array.type.get_field_index(name) < 0:
            return None
        array = _array(pc.struct_field(array, [array.type.get_field_index(name)]))
    return last(array)


def as_text(array: pa.Array) -> pa.Array:
    """Values as text: booleans as true/false, numbers in decimal, nested values as null."""
    if pa.types.is_string(array.type):
        return array
    if pa.types.is_dictionary(array.type):
        return pc.cast(array, pa.string())
    if pa.types.is_nested(array.type):
        return pa.nulls(len(array), pa.string())
    if pa.types.is_timestamp(array.type):
        return pc.cast(pc.cast(array, pa.timestamp("ns", tz="UTC")), pa.string())
    return pc.cast(array, pa.string())


def as_epoch_ns(array: pa.Array, unit: str) -> tuple[pa.Array, np.ndarray]:
    """(instants as int64 ns UTC with nulls, which non-null values could not be read).

    Timestamps are taken as they are (naive means UTC), numbers as epoch times in
    ``unit``, text holding only a number likewise, any other text as ISO 8601.
    """
    n = len(array)
    scale = TIME_UNITS[unit]
    if pa.types.is_timestamp(array.type):
        values = pc.cast(array, pa.timestamp("ns", tz=array.type.tz)).cast(pa.int64())
        return values, np.zeros(n, dtype=bool)
    if pa.types.is_integer(array.type):
        return pc.multiply(pc.cast(array, pa.int64()), scale), np.zeros(n, dtype=bool)
    if pa.types.is_floating(array.type):
        return pc.cast(pc.round(pc.multiply(array, float(scale))), pa.int64()), np.zeros(n, bool)
    text = as_text(array)
    present = text.is_valid().to_numpy(zero_copy_only=False)
    out = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    integer = pc.fill_null(pc.match_substring_regex(text, _INTEGER), False).to_numpy(
        zero_copy_only=False
    )
    if integer.any():
        idx = np.flatnonzero(integer)
        numbers = pc.cast(pc.utf8_trim_whitespace(text.take(idx)), pa.int64()).to_numpy()
        out[idx] = numbers * scale
        ok[idx] = True
    iso = present & ~integer
    if iso.any():
        idx = np.flatnonzero(iso)
        parsed = pd.to_datetime(
            pd.Series(text.take(idx).to_pandas()), utc=True, format="ISO8601", errors="coerce"
        )
        good = parsed.notna().to_numpy()
        out[idx[good]] = pd.DatetimeIndex(parsed[good]).as_unit("ns").asi8
        ok[idx[good]] = True
    return pa.array(out, mask=~ok), present & ~ok


def as_number(array: pa.Array) -> pa.Array:
    """Values as float64: numbers as they are, numeric text parsed, anything else null."""
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        return pc.cast(array, pa.float64())
    text = as_text(array)
    numeric = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
    cleaned = pc.if_else(numeric, pc.utf8_trim_whitespace(text), pa.scalar(None, pa.string()))
    return pc.cast(cleaned, pa.float64())


def _holds(table: pa.Table, path: str, accepted: tuple[str, ...]) -> pa.Array:
    """Per record: the value at ``path`` is one of ``accepted`` (any element, for a list)."""
    values = leaf(table, path, keep_list=True)
    n = table.num_rows
    if values is None:
        return pa.array(np.zeros(n, dtype=bool))
    wanted = pa.array(accepted, pa.string())
    if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        flat = _array(pc.list_flatten(values))
        parents = pc.list_parent_indices(values).to_numpy(zero_copy_only=False)
        hit = pc.fill_null(pc.is_in(_normal(flat), value_set=wanted), False)
        out = np.zeros(n, dtype=bool)
        out[parents[hit.to_numpy(zero_copy_only=False)]] = True
        return pa.array(out)
    return pc.fill_null(pc.is_in(_normal(values), value_set=wanted), False)


def _normal(values: pa.Array) -> pa.Array:
    return pc.utf8_lower(pc.utf8_trim_whitespace(as_text(values)))


@dataclass
class Mapped:
    """A batch in the contract's form, and which rows have an unreadable timestamp."""

    table: pa.Table
    bad_time: np.ndarray
    missing_paths: set[str]


def _combine(values: list[pa.Array]) -> pa.Array:
    """The first non-null of several candidate columns of the same kind."""
    return values[0] if len(values) == 1 else pc.coalesce(*values)


def apply_mapping(table: pa.Table, mapping: Mapping) -> Mapped:
    """One batch of source records as contract columns (see :class:`Mapping`).

    Strings for text columns, ``timestamp`` as int64 ns UTC (null when missing
    or unreadable), ``records_returned`` as float64, ``event_id`` as text.
    """
    n = table.num_rows
    missing: set[str] = set()
    cache: dict[str, pa.Array | None] = {}

    def get(path: str) -> pa.Array | None:
        if path not in cache:
            cache[path] = leaf(table, path)
            if cache[path] is None:
                missing.add(path)
        return cache[path]

    bad_time = np.zeros(n, dtype=bool)

    def typed(column: str, array: pa.Array | None) -> pa.Array:
        nonlocal bad_time
        if column == "timestamp":
            if array is None:
                return pa.nulls(n, pa.int64())
            values, bad = as_epoch_ns(array, mapping.time_unit)
            bad_time |= bad
            return values
        if column == "records_returned":
            return as_number(array) if array is not None else pa.nulls(n, pa.float64())
        return as_text(array) if array is not None else pa.nulls(n, pa.string())

    def from_paths(column: str, paths: tuple[str, ...]) -> pa.Array:
        return _combine([typed(column, get(p)) for p in paths])

    out: dict[str, pa.Array] = {}
    for column in mapping.covered:
        if column in mapping.columns:
            values = from_paths(column, mapping.columns[column])
        else:
            values = typed(column, None)
        # The first matching case wins: apply them from the last to the first.
        for case in reversed(mapping.cases.get(column, ())):
            held = pa.array(np.ones(n, dtype=bool))
            for path, accepted in case.when:
                held = pc.and_(held, _holds(table, path, accepted))
            if case.value is not None:
                replacement = typed(
                    column, pa.array(np.full(n, case.value, dtype=object), pa.string())
                )
            else:
                replacement = from_paths(column, case.source)
            values = pc.if_else(held, replacement, values)
        out[column] = values
    return Mapped(pa.table(out), bad_time, missing)
