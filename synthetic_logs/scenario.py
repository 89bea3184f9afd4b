"""Scenario files: TOML over a small set of attack primitives, parsed into frozen dataclasses.

A scenario names its documented source, the victims, when and how hard the attack runs,
stealth knobs, and an ordered list of steps, each calling one primitive. Unknown keys,
wrong types and unknown primitives are load-time errors naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from synthetic_logs.errors import ScenarioError
from synthetic_logs.events import ACCOUNT_TYPES, APPLICATIONS
from synthetic_logs.population import STRUCTURE_KINDS

SCOPES = ("job_seekers", "young_people", "all", "other_structures")
FAMILIES = ("documented", "quiet")  # replays of the documented breaches; issue 9's quiet classes
GROUPS = ("documented", "quiet", "all")  # names that select built-ins by family


@dataclass(frozen=True)
class Parameters:
    """When and against whom the attack runs."""

    victim_type: str
    victims: int = 1
    victim_structure: str | None = None  # a structure kind, e.g. "mission_locale"
    start_day: int = 8  # offset from the log start (clipped to the log, see docs/generator.md)
    duration_days: int = 1
    hours: tuple[float, float] = (8.0, 20.0)  # local; end < start runs past midnight
    weekends: bool = True
    attacker_addresses: int = 1
    attacker_clients: int = 1


@dataclass(frozen=True)
class Stealth:
    """Knobs that make the attack quieter."""

    rate_multiple: float | None = (
        None  # cap daily records at this multiple of the victim's usual volume
    )
    office_hours_only: bool = False  # weekdays 09:00-17:00 local only
    reuse_victim_address: bool = False
    reuse_victim_client: bool = False


@dataclass(frozen=True)
class Step:
    """One primitive call; `params` holds its validated parameters with defaults filled in."""

    primitive: str
    params: tuple[tuple[str, Any], ...]

    def get(self, key: str) -> Any:
        return dict(self.params)[key]


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    source: tuple[tuple[str, Any], ...]
    parameters: Parameters
    stealth: Stealth
    steps: tuple[Step, ...]
    path: str = "<object>"
    family: str = "documented"

    @property
    def source_dict(self) -> dict[str, Any]:
        return dict(self.source)


# primitive -> {parameter: (type, default)}; a default of REQUIRED must be given.
REQUIRED = object()
PRIMITIVES: dict[str, dict[str, tuple[type | tuple[type, ...], Any]]] = {
    "take_over": {"failed_logins": (int, 0)},
    "replay_credentials": {"failed_logins": (int, 0)},
    "create_accounts": {
        "count": (int, REQUIRED),
        "account_type": (str, "youth_advisor"),
        "application": (str, "admin"),
    },
    "replay_session": {"address": (str, "residential")},
    "act_as_self": {},
    "night_window": {"start_hour": (float, REQUIRED), "end_hour": (float, REQUIRED)},
    "off_day": {"kind": (str, "any")},
    "bulk_read": {
        "scope": (str, REQUIRED),
        "population_share": (float, 0.0),
        "per_day": (int, 0),
        "daily_multiple": (float, 0.0),
        "search_share": (float, 0.05),
        "application": (str, ""),
    },
    "search_and_read": {
        "scope": (str, REQUIRED),
        "population_share": (float, REQUIRED),
        "reads_per_search": (float, 6.0),
        "records_per_search": (int, 40),
        "application": (str, ""),
    },
    "search_only": {
        "searches_per_day": (int, REQUIRED),
        "records_per_search": (int, 30),
        "application": (str, ""),
    },
    "bulk_export": {
        "scope": (str, REQUIRED),
        "population_share": (float, REQUIRED),
        "exports": (int, REQUIRED),
        "application": (str, "bi"),
    },
}
_CHOICES = {
    "scope": SCOPES,
    "account_type": ACCOUNT_TYPES,
    "application": APPLICATIONS + ("",),
    "victim_type": ACCOUNT_TYPES,
    "victim_structure": STRUCTURE_KINDS,
    "address": ("residential", "own"),
    "kind": ("saturday", "holiday", "any"),
    "family": FAMILIES,
}
_TOP = {
    "name": str,
    "summary": str,
    "source": dict,
    "parameters": dict,
    "stealth": dict,
    "steps": list,
    "family": str,
}
_TOP_REQUIRED = ("name", "summary", "source", "parameters", "steps")
_SOURCE_REQUIRED = ("article", "dates", "facts")


def builtin_dir() -> Path:
    return Path(str(resources.files("synthetic_logs") / "scenarios"))


def list_builtin_scenarios(family: str = "all") -> list[Scenario]:
    """The built-in scenarios of a family (`documented`, `quiet` or `all`), sorted by name."""
    found = [load_scenario(p) for p in sorted(builtin_dir().glob("*.toml"))]
    return [s for s in found if family in ("all", s.family)]


# Scenario files are a few kB; past this a file is a mistake (or hostile) and costs seconds.
MAX_SCENARIO_BYTES = 1024 * 1024


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name (`cap_emploi`) or a scenario file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        builtin = builtin_dir() / f"{name_or_path}.toml"
        if not builtin.exists():
            known = ", ".join(p.stem for p in sorted(builtin_dir().glob("*.toml")))
            raise ScenarioError(str(name_or_path), None, f"unknown scenario (built-ins: {known})")
        path = builtin
    where = str(path)
    try:
        with path.open("rb") as file:  # read one byte past the cap, never a whole huge file
            raw = file.read(MAX_SCENARIO_BYTES + 1)
        if len(raw) > MAX_SCENARIO_BYTES:
            raise ScenarioError(
                where, None, f"file is larger than {MAX_SCENARIO_BYTES:,} bytes (1 MiB), the limit"
            )
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ScenarioError(where, None, "no such file") from None
    except UnicodeDecodeError as error:
        raise ScenarioError(
            where, None, f"not UTF-8 text: {error.reason} at byte {error.start}"
        ) from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ScenarioError(
            where, None, "invalid TOML: arrays or tables nested too deeply"
        ) from None
    except tomllib.TOMLDecodeError as error:
        # tomllib only says where in its message: "... (at line 3, column 7)".
        found = re.search(r"^(.*) \(at line (\d+), column \d+\)$", str(error))
        if found:
            raise ScenarioError(where, f"line {found[2]}", f"invalid TOML: {found[1]}") from None
        raise ScenarioError(where, None, f"invalid TOML: {error}") from None
    except ValueError as error:  # Python refuses integers of over 4,300 digits
        raise ScenarioError(where, None, f"invalid TOML: {error}") from None
    return parse_scenario(data, where)


def parse_scenario(data: dict[str, Any], where: str = "<dict>") -> Scenario:
    """Validate a scenario's parsed TOML into a Scenario, or raise ScenarioError."""
    _check_table(data, _TOP, _TOP_REQUIRED, "", where)
    for key in _SOURCE_REQUIRED:
        if key not in data["source"]:
            raise ScenarioError(where, f"source.{key}", "missing required key")
    parameters = _dataclass_from(Parameters, data["parameters"], "parameters", where)
    stealth = _dataclass_from(Stealth, data.get("stealth", {}), "stealth", where)
    if not data["steps"]:
        raise ScenarioError(where, "steps", "needs at least one step")
    steps = tuple(_parse_step(raw, f"steps[{i}]", where) for i, raw in enumerate(data["steps"]))
    family = _coerce(data.get("family", "documented"), str, "family", where)
    return Scenario(
        name=data["name"],
        summary=data["summary"],
        source=tuple(data["source"].items()),
        parameters=parameters,
        stealth=stealth,
        steps=steps,
        path=where,
        family=family,
    )


def with_overrides(scenario: Scenario, **knobs: Any) -> Scenario:
    """A copy of `scenario` with stealth knobs or parameters replaced, e.g. rate_multiple=2.0."""
    stealth, parameters = {}, {}
    stealth_fields = {f.name: f for f in dataclasses.fields(Stealth)}
    parameter_fields = {f.name: f for f in dataclasses.fields(Parameters)}
    for key, value in knobs.items():
        if value is None and key in ("rate_multiple", "victim_structure"):
            (stealth if key in stealth_fields else parameters)[key] = None
        elif key in stealth_fields:
            stealth[key] = _coerce(
                value, _field_type(stealth_fields[key]), f"stealth.{key}", scenario.path
            )
        elif key in parameter_fields:
            parameters[key] = _coerce(
                value, _field_type(parameter_fields[key]), f"parameters.{key}", scenario.path
            )
        else:
            raise ScenarioError(scenario.path, key, "unknown knob")
    return dataclasses.replace(
        scenario,
        stealth=dataclasses.replace(scenario.stealth, **stealth),
        parameters=dataclasses.replace(scenario.parameters, **parameters),
    )


def _check_table(table: dict, types: dict, required: tuple, prefix: str, where: str) -> None:
    for key, value in table.items():
        if key not in types:
            raise ScenarioError(where, prefix + key, "unknown key")
        if not isinstance(value, types[key]):
            raise ScenarioError(
                where, prefix + key, f"expected {types[key].__name__}, got {type(value).__name__}"
            )
    for key in required:
        if key not in table:
            raise ScenarioError(where, prefix + key, "missing required key")


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _field_type(field: dataclasses.Field) -> type | tuple:
    annotation = str(field.type)
    if annotation.startswith("tuple"):
        return tuple
    return _TYPES[annotation.split(" |")[0]]


def _coerce(value: Any, expected: type | tuple, key: str, where: str) -> Any:
    """Check a TOML value against the expected type (ints count as floats; bools never as ints)."""
    name = getattr(expected, "__name__", str(expected))
    if expected is tuple:
        if not (
            isinstance(value, (list, tuple))
            and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise ScenarioError(where, key, "expected a list of two hours, e.g. [22, 5]")
        if not all(0 <= v <= 24 for v in value):
            raise ScenarioError(where, key, "hours must be between 0 and 24")
        return (float(value[0]), float(value[1]))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
        raise ScenarioError(where, key, f"expected {name}, got {type(value).__name__}")
    short = key.rsplit(".", 1)[-1]
    if short in _CHOICES and value not in _CHOICES[short]:
        raise ScenarioError(
            where,
            key,
            f"unknown value {value!r} (one of: {', '.join(c for c in _CHOICES[short] if c)})",
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise ScenarioError(where, key, "must not be negative")
    if short.endswith("_hour") and value > 24:
        raise ScenarioError(where, key, "hours must be between 0 and 24")
    if short in ("victims", "count", "exports", "duration_days") and value < 1:
        raise ScenarioError(where, key, "must be at least 1")
    return value


def _dataclass_from(cls: type, table: dict, prefix: str, where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise ScenarioError(where, f"{prefix}.{key}", "unknown key")
        values[key] = _coerce(value, _field_type(fields[key]), f"{prefix}.{key}", where)
    for name, field in fields.items():
        if field.default is dataclasses.MISSING and name not in values:
            raise ScenarioError(where, f"{prefix}.{name}", "missing required key")
    return cls(**values)


def _parse_step(raw: Any, prefix: str, where: str) -> Step:
    if not isinstance(raw, dict):
        raise ScenarioError(where, prefix, "expected a table")
    if "primitive" not in raw:
        raise ScenarioError(where, f"{prefix}.primitive", "missing required key")
    primitive = raw["primitive"]
    if primitive not in PRIMITIVES:
        raise ScenarioError(
            where,
            f"{prefix}.primitive",
            f"unknown primitive {primitive!r} (one of: {', '.join(PRIMITIVES)})",
        )
    schema = PRIMITIVES[primitive]
    params = {}
    for key, value in raw.items():
        if key == "primitive":
            continue
        if key not in schema:
            raise ScenarioError(
                where, f"{prefix}.{key}", f"unknown key for primitive {primitive!r}"
            )
        params[key] = _coerce(value, schema[key][0], f"{prefix}.{key}", where)
    for key, (_, default) in schema.items():
        if key not in params:
            if default is REQUIRED:
                raise ScenarioError(where, f"{prefix}.{key}", "missing required key")
            params[key] = default
    if "population_share" in params and params["population_share"] > 1:
        raise ScenarioError(where, f"{prefix}.population_share", "must be at most 1")
    if primitive == "bulk_read" and not (
        params["population_share"] or params["per_day"] or params["daily_multiple"]
    ):
        raise ScenarioError(
            where, prefix, "bulk_read needs population_share, per_day or daily_multiple"
        )
    return Step(primitive, tuple(sorted(params.items())))
