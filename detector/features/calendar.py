"""Days off: weekends and French public holidays, computed (no calendar dependency).

An account that never works on a day off and works on one is out of its own
calendar, whatever the hour. Days are local day numbers since 1970-01-01 (a
Thursday), as the feature table's windows use.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

_EPOCH = dt.date(1970, 1, 1)
# Fixed French public holidays (month, day): New Year, Labour Day, Victory in Europe,
# Bastille Day, Assumption, All Saints, Armistice, Christmas.
FIXED_HOLIDAYS = ((1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25))
# Movable ones, in days after Easter Sunday: Easter Monday, Ascension, Whit Monday.
EASTER_OFFSETS = (1, 39, 50)


def easter(year: int) -> dt.date:
    """Easter Sunday of a Gregorian year (the anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def french_holidays(year: int) -> list[dt.date]:
    """The eleven French public holidays of a year (metropolitan France)."""
    sunday = easter(year)
    fixed = [dt.date(year, month, day) for month, day in FIXED_HOLIDAYS]
    return fixed + [sunday + dt.timedelta(days=offset) for offset in EASTER_OFFSETS]


def off_days(days: np.ndarray) -> np.ndarray:
    """Per day number: a Saturday, a Sunday or a French public holiday."""
    days = np.asarray(days, dtype=np.int64)
    if len(days) == 0:
        return np.zeros(0, dtype=bool)
    weekend = (days + 3) % 7 >= 5  # day 0 was a Thursday (weekday 3, Monday = 0)
    first, last = (_EPOCH + dt.timedelta(days=int(d)) for d in (days.min(), days.max()))
    holidays = [
        (date - _EPOCH).days
        for year in range(first.year, last.year + 1)
        for date in french_holidays(year)
    ]
    return weekend | np.isin(days, holidays)


def off_days_before(days: np.ndarray, first_day: int) -> np.ndarray:
    """Per day number: how many days off lie in [first_day, day)."""
    days = np.asarray(days, dtype=np.int64)
    if len(days) == 0:
        return np.zeros(0, dtype=np.int64)
    span = np.arange(first_day, max(int(days.max()), first_day) + 1)
    before = np.concatenate([[0], np.cumsum(off_days(span))])
    return before[np.clip(days - first_day, 0, len(span))]
