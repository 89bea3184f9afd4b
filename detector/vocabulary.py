"""The detector's vocabulary, declared once: severities, modes, time zone, action groups, baselines.

Every module and every click option reads these names from here (in the
manner of pySigma's ``SigmaLevel``). Tables keep plain strings (``"high"``,
``"both"``): the enums are ``StrEnum`` so that a member *is* its string, and
the tuples below are plain strings in a fixed order for code that needs one.
This module imports nothing from the detector, so any module may import it.
"""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    """An alert's or a rule's severity, ordered ``LOW < MEDIUM < HIGH``.

    Members compare by rank with each other (not alphabetically); against a
    plain string they compare as strings.
    """

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """0 for low, 1 for medium, 2 for high."""
        return SEVERITIES.index(self.value)

    @property
    def weight(self) -> float:
        """The score a rule of this severity gives an alert (the highest rule wins)."""
        return SEVERITY_SCORE[self.value]

    def __lt__(self, other: object) -> bool:
        if isinstance(other, Severity):
            return self.rank < other.rank
        return NotImplemented

    def __le__(self, other: object) -> bool:
        if isinstance(other, Severity):
            return self.rank <= other.rank
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if isinstance(other, Severity):
            return self.rank > other.rank
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if isinstance(other, Severity):
            return self.rank >= other.rank
        return NotImplemented


#: Severities in increasing order; the rank of a severity is its index here.
SEVERITIES: tuple[str, ...] = ("low", "medium", "high")
#: Most urgent first, for lists an analyst reads top down.
SEVERITIES_URGENT_FIRST: tuple[str, ...] = tuple(reversed(SEVERITIES))
#: The score a rule of each severity gives its alert.
SEVERITY_SCORE: dict[str, float] = {"low": 0.5, "medium": 0.7, "high": 0.85}
#: Colour of each severity in figures and in the report's badges.
SEVERITY_COLOURS: dict[str, str] = {"high": "#c62828", "medium": "#ef6c00", "low": "#f9a825"}
#: Colour for a severity the vocabulary does not know (free text in a CSV).
UNKNOWN_SEVERITY_COLOUR = "#9e9e9e"


class Mode(StrEnum):
    """What raises alerts: the rules, the model, or both fused."""

    RULES = "rules"
    MODEL = "model"
    BOTH = "both"


#: Every mode, in the order the CLI lists them.
MODES: tuple[str, ...] = tuple(m.value for m in Mode)
#: The mode `detector score` uses unless told otherwise.
DEFAULT_MODE: str = Mode.BOTH.value
#: Modes that evaluate rules.
RULE_MODES: tuple[str, ...] = (Mode.RULES.value, Mode.BOTH.value)

# Behaviour (office hours, nights, days) is French local time unless told otherwise.
DEFAULT_TIMEZONE = "Europe/Paris"

#: Actions that expose one record, named by ``record_id``.
SINGLE_RECORD_ACTIONS: tuple[str, ...] = ("view_record", "update_record", "export")
#: Actions that read or change a record and always name one (no bulk form).
RECORD_ACTIONS: tuple[str, ...] = ("view_record", "update_record")
#: Actions whose answer holds ``records_returned`` records.
BULK_ACTIONS: tuple[str, ...] = ("search", "export")
#: Actions that create or empower another account.
ACCOUNT_ADMIN_ACTIONS: tuple[str, ...] = ("create_account", "grant_access")
#: Actions that open or close a session.
SESSION_ACTIONS: tuple[str, ...] = ("login", "logout")

#: Actions grouped the way an analyst reads an account's activity (figures, report).
ACTION_GROUPS: dict[str, str] = {
    **{action: "sessions" for action in SESSION_ACTIONS},
    **{action: "record reads" for action in RECORD_ACTIONS},
    **{action: "searches & exports" for action in BULK_ACTIONS},
    **{action: "account admin" for action in ACCOUNT_ADMIN_ACTIONS},
}
#: The groups in drawing order; an action in no group is "other".
GROUP_ORDER: tuple[str, ...] = (
    "sessions",
    "record reads",
    "searches & exports",
    "account admin",
    "other",
)

# Baselines of a volume from earlier windows. A baseline feature is named
# ``<stat>_<volume>`` (``own_median_records_read``): build and split names with
# `baseline_name` and `baseline_volume`, never by hand.
OWN_MEDIAN = "own_median"
OWN_MAX = "own_max"
PEER_MEDIAN = "peer_median"
PEER_P95 = "peer_p95"
#: Robust z of the volume against the account's own history and against its peers.
Z_OWN = "z_own"
Z_PEER = "z_peer"
#: The robust scales behind the z scores: window constants, not catalogue features.
OWN_SCALE = "_own_scale"
PEER_SCALE = "_peer_scale"
#: Statistics stored for each baselined volume, in column order.
BASELINE_STATS: tuple[str, ...] = (OWN_MEDIAN, OWN_MAX, PEER_MEDIAN, PEER_P95)
#: Every catalogued baseline feature of a volume: the statistics, then the z scores.
BASELINE_FEATURE_STATS: tuple[str, ...] = (*BASELINE_STATS, Z_OWN, Z_PEER)


def baseline_name(stat: str, volume: str) -> str:
    """The name of a volume's baseline: ``baseline_name(PEER_P95, "events")`` is ``peer_p95_events``."""
    return f"{stat}_{volume}"


def baseline_volume(name: str) -> str | None:
    """The volume a baseline feature is about (``own_median_events`` -> ``events``), or None."""
    for stat in BASELINE_FEATURE_STATS:
        if name.startswith(stat + "_"):
            return name[len(stat) + 1 :]
    return None
