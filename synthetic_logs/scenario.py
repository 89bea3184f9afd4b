"""Scenario files: TOML over a small set of attack primitives, parsed into frozen dataclasses.

A scenario names its documented source, the victims, when and how hard the attack runs,
stealth knobs, and an ordered list of steps, each calling one primitive. Unknown keys,
wrong types and unknown primitives are load-time errors: every problem of a file is
collected with its line and key (``path:12: steps[1].scope: unknown value ...``), the
way rule files are checked (the shared part is :mod:`tomlcheck`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from synthetic_logs.errors import ScenarioError
from synthetic_logs.events import ACCOUNT_TYPES, APPLICATIONS
from synthetic_logs.population import STRUCTURE_KINDS
from tomlcheck import KeyLines, Problem, by_line, parse_toml, read_capped

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

KeyPath = tuple[str | int, ...]  # a key path: ("parameters", "victims"), ("steps", 1, "scope")


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in scenario by name (`cap_emploi`) or a scenario file by path.

    Raises ScenarioError with every problem of the file, each with its line.
    """
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        builtin = builtin_dir() / f"{name_or_path}.toml"
        if not builtin.exists():
            known = ", ".join(p.stem for p in sorted(builtin_dir().glob("*.toml")))
            message = f"unknown scenario (built-ins: {known})"
            raise ScenarioError([Problem(str(name_or_path), None, message)])
        path = builtin
    where = str(path)
    text, problem = read_capped(where, MAX_SCENARIO_BYTES, "a scenario file")
    if problem is None:
        data, problem = parse_toml(where, text)
    if problem is not None:
        raise ScenarioError([problem])
    return parse_scenario(data, where, text)


def parse_scenario(
    data: dict[str, Any], where: str = "<dict>", text: str | None = None
) -> Scenario:
    """Validate a scenario's parsed TOML into a Scenario, or raise ScenarioError.

    ``text``, the file's TOML, gives each problem its line.
    """
    checker = _Checker(where, text)
    scenario = checker.scenario(data)
    if checker.problems or scenario is None:
        raise ScenarioError(by_line(checker.problems))
    return scenario


def with_overrides(scenario: Scenario, **knobs: Any) -> Scenario:
    """A copy of `scenario` with stealth knobs or parameters replaced, e.g. rate_multiple=2.0."""
    stealth, parameters = {}, {}
    stealth_fields = {f.name: f for f in dataclasses.fields(Stealth)}
    parameter_fields = {f.name: f for f in dataclasses.fields(Parameters)}
    for key, value in knobs.items():
        try:
            if value is None and key in ("rate_multiple", "victim_structure"):
                (stealth if key in stealth_fields else parameters)[key] = None
            elif key in stealth_fields:
                stealth[key] = _coerce(value, _field_type(stealth_fields[key]), key)
            elif key in parameter_fields:
                parameters[key] = _coerce(value, _field_type(parameter_fields[key]), key)
            else:
                raise _Invalid("unknown knob")
        except _Invalid as invalid:
            table = "stealth" if key in stealth_fields else "parameters"
            named = f"{table}.{key}" if key in stealth_fields or key in parameter_fields else key
            problem = Problem(scenario.path, None, f"{named}: {invalid}")
            raise ScenarioError([problem]) from None
    return dataclasses.replace(
        scenario,
        stealth=dataclasses.replace(scenario.stealth, **stealth),
        parameters=dataclasses.replace(scenario.parameters, **parameters),
    )


class _Invalid(ValueError):
    """One value is wrong; the checker records it with the value's key and line."""


_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _field_type(field: dataclasses.Field) -> type | tuple:
    annotation = str(field.type)
    if annotation.startswith("tuple"):
        return tuple
    return _TYPES[annotation.split(" |")[0]]


def _coerce(value: Any, expected: type | tuple, key: str) -> Any:
    """Check a TOML value against the expected type (ints count as floats; bools never as ints).

    ``key`` is the value's own name (``victims``), which picks its allowed choices and range.
    """
    name = getattr(expected, "__name__", str(expected))
    if expected is tuple:
        if not (
            isinstance(value, (list, tuple))
            and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise _Invalid("expected a list of two hours, e.g. [22, 5]")
        if not all(0 <= v <= 24 for v in value):
            raise _Invalid("hours must be between 0 and 24")
        return (float(value[0]), float(value[1]))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
        raise _Invalid(f"expected {name}, got {type(value).__name__}")
    if key in _CHOICES and value not in _CHOICES[key]:
        choices = ", ".join(c for c in _CHOICES[key] if c)
        raise _Invalid(f"unknown value {value!r} (one of: {choices})")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise _Invalid("must not be negative")
    if key.endswith("_hour") and value > 24:
        raise _Invalid("hours must be between 0 and 24")
    if key in ("victims", "count", "exports", "duration_days") and value < 1:
        raise _Invalid("must be at least 1")
    return value


def _dotted(path: KeyPath) -> str:
    """A key path as the message names it: ``steps[1].scope``, ``parameters.victims``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


class _Checker:
    """Walks a parsed scenario key by key, recording every problem with its line."""

    def __init__(self, where: str, text: str | None):
        self.where = where
        self.lines = KeyLines(text) if text is not None else None
        self.problems: list[Problem] = []

    def problem(self, path: KeyPath, message: str) -> None:
        line = self.lines.line(*path) if self.lines is not None else None
        self.problems.append(Problem(self.where, line, f"{_dotted(path)}: {message}"))

    def value(self, path: KeyPath, value: Any, expected: type | tuple) -> Any:
        """The coerced value, or None (recorded) when it is wrong."""
        try:
            return _coerce(value, expected, str(path[-1]))
        except _Invalid as invalid:
            self.problem(path, str(invalid))
            return None

    def scenario(self, data: dict[str, Any]) -> Scenario | None:
        for key, value in data.items():
            if key not in _TOP:
                self.problem((key,), "unknown key")
            elif not isinstance(value, _TOP[key]):
                self.problem((key,), f"expected {_TOP[key].__name__}, got {type(value).__name__}")
        top = {k: v for k, v in data.items() if k in _TOP and isinstance(v, _TOP[k])}
        for key in _TOP_REQUIRED:
            if key not in data:
                self.problem((key,), "missing required key")
        source = top.get("source", {})
        if "source" in top:
            for key in _SOURCE_REQUIRED:
                if key not in source:
                    self.problem(("source", key), "missing required key")
        parameters = self.dataclass_from(Parameters, top.get("parameters"), "parameters")
        stealth = self.dataclass_from(Stealth, top.get("stealth", {}), "stealth")
        steps = top.get("steps")
        if steps == []:
            self.problem(("steps",), "needs at least one step")
        parsed = [self.step(i, raw) for i, raw in enumerate(steps or [])]
        family = self.value(("family",), top.get("family", "documented"), str)
        if self.problems or parameters is None or stealth is None:
            return None
        return Scenario(
            name=data["name"],
            summary=data["summary"],
            source=tuple(source.items()),
            parameters=parameters,
            stealth=stealth,
            steps=tuple(parsed),
            path=self.where,
            family=family,
        )

    def dataclass_from(self, cls: type, table: dict | None, name: str) -> Any:
        if table is None:
            return None  # missing or not a table: already recorded
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values, ok = {}, True
        for key, value in table.items():
            if key not in fields:
                self.problem((name, key), "unknown key")
                ok = False
                continue
            values[key] = self.value((name, key), value, _field_type(fields[key]))
            ok = ok and values[key] is not None
        for key, field in fields.items():
            if field.default is dataclasses.MISSING and key not in table:
                self.problem((name, key), "missing required key")
                ok = False
        return cls(**values) if ok else None

    def step(self, index: int, raw: Any) -> Step | None:
        if not isinstance(raw, dict):
            self.problem(("steps", index), "expected a table")
            return None
        if "primitive" not in raw:
            self.problem(("steps", index, "primitive"), "missing required key")
            return None
        primitive = raw["primitive"]
        if primitive not in PRIMITIVES:
            known = ", ".join(PRIMITIVES)
            self.problem(
                ("steps", index, "primitive"),
                f"unknown primitive {primitive!r} (one of: {known})",
            )
            return None
        schema = PRIMITIVES[primitive]
        before = len(self.problems)
        params = {}
        for key, value in raw.items():
            if key == "primitive":
                continue
            if key not in schema:
                self.problem(("steps", index, key), f"unknown key for primitive {primitive!r}")
                continue
            params[key] = self.value(("steps", index, key), value, schema[key][0])
        for key, (_, default) in schema.items():
            if key not in params and key not in raw:
                if default is REQUIRED:
                    self.problem(("steps", index, key), "missing required key")
                params[key] = default
        if len(self.problems) > before:
            return None
        if params.get("population_share", 0) > 1:
            self.problem(("steps", index, "population_share"), "must be at most 1")
            return None
        if primitive == "bulk_read" and not (
            params["population_share"] or params["per_day"] or params["daily_multiple"]
        ):
            self.problem(
                ("steps", index), "bulk_read needs population_share, per_day or daily_multiple"
            )
            return None
        return Step(primitive, tuple(sorted(params.items())))
