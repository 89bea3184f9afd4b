"""Time zones and UTC instants: one definition for every module that handles them."""

from __future__ import annotations

import zoneinfo

import pandas as pd

from detector.errors import InputError
from detector.vocabulary import DEFAULT_TIMEZONE

__all__ = [
    "DEFAULT_TIMEZONE",
    "check_timezone",
    "to_utc",
    "utc_timestamp",
]  # DEFAULT_TIMEZONE: from the vocabulary


def check_timezone(timezone: str) -> str:
    """The time zone name back, or :class:`InputError` when it is unknown."""
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InputError(f"unknown time zone: {timezone!r} (e.g. {DEFAULT_TIMEZONE})") from None
    return timezone


def to_utc(values: pd.Series) -> pd.Series:
    """Timestamps as tz-aware UTC (ns); naive values are UTC (contract section 1).

    Accepts timestamp columns and ISO-8601 text, with or without fractions of a
    second or offsets. Raises :class:`InputError` for values that are not instants.
    """
    is_text = not pd.api.types.is_datetime64_any_dtype(values)
    try:
        stamps = pd.to_datetime(values, utc=True, format="ISO8601" if is_text else None)
    except (ValueError, TypeError) as error:
        raise InputError(f"unreadable timestamp: {error}") from None
    return stamps.astype("datetime64[ns, UTC]")


def utc_timestamp(value: object) -> pd.Timestamp:
    """One UTC timestamp from anything pandas can read; naive means UTC (contract)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
