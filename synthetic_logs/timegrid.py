"""French local time (Europe/Paris) for a run of days, turned into UTC instants without a loop over events.

Behaviour is drawn in local time (a day index and seconds since local midnight);
`to_utc_us` converts whole arrays at once, honouring the daylight-saving switches:
on the spring-forward day a local time in 02:00-03:00 does not exist and lands at
03:00-04:00 local, on the fall-back day 02:00-03:00 is taken at its first occurrence.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

PARIS = ZoneInfo("Europe/Paris")
DAY_SECONDS = 86_400
US = 1_000_000


@dataclass(frozen=True)
class DayGrid:
    """The log's local calendar days (plus spare days so night windows can run past the end)."""

    start: dt.date
    days: int  # days in the log; arrays below hold `days + 2` entries
    weekday: np.ndarray  # 0 = Monday
    midnight_us: np.ndarray  # the local date at 00:00 read as if it were UTC, in µs since epoch
    offset_before: np.ndarray  # UTC offset (s) from local midnight until the switch
    offset_after: np.ndarray  # UTC offset (s) after the switch (same as before on ordinary days)
    switch_second: np.ndarray  # local second of day at which the offset changes
    holiday: np.ndarray  # bool: a French public holiday

    @property
    def is_weekday(self) -> np.ndarray:
        return self.weekday[: self.days] < 5

    @property
    def is_working_day(self) -> np.ndarray:
        """Weekdays that are not public holidays, for the log's days."""
        return self.is_weekday & ~self.holiday[: self.days]

    def switch_days(self) -> np.ndarray:
        """The log's days on which daylight saving time starts or ends."""
        return np.flatnonzero(self.offset_before[: self.days] != self.offset_after[: self.days])

    def date(self, day: int) -> dt.date:
        return self.start + dt.timedelta(days=int(day))


def _easter(year: int) -> dt.date:
    """Easter Sunday (Gregorian calendar; the anonymous algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    el = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * el) // 451
    month, day = divmod(h + el - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def french_holidays(year: int) -> set[dt.date]:
    """The eleven French public holidays of `year` (metropolitan France)."""
    easter = _easter(year)
    fixed = [(1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25)]
    moving = [easter + dt.timedelta(days=n) for n in (1, 39, 50)]  # Monday, Ascension, Whit Monday
    return {dt.date(year, m, d) for m, d in fixed} | set(moving)


def build_grid(start: dt.date, days: int) -> DayGrid:
    """Day grid for `days` local days from `start` (loops over days only)."""
    total = days + 2
    dates = [start + dt.timedelta(days=i) for i in range(total)]
    before = np.array(
        [dt.datetime.combine(d, dt.time(0), PARIS).utcoffset().total_seconds() for d in dates]
    )
    after = np.array(
        [dt.datetime.combine(d, dt.time(23, 59), PARIS).utcoffset().total_seconds() for d in dates]
    )
    # Both switches take effect at 03:00 local wall-clock time: in spring 02:xx (which does not
    # exist) keeps winter time and so lands at 03:xx; in autumn 02:xx is its first occurrence.
    switch = np.where(after != before, 3 * 3600, DAY_SECONDS)
    epoch = dt.date(1970, 1, 1)
    midnight = np.array([(d - epoch).days * DAY_SECONDS * US for d in dates], dtype=np.int64)
    weekday = np.array([d.weekday() for d in dates], dtype=np.int8)
    holidays = set().union(*(french_holidays(y) for y in {d.year for d in dates}))
    return DayGrid(
        start=start,
        days=days,
        weekday=weekday,
        midnight_us=midnight,
        offset_before=before.astype(np.int64),
        offset_after=after.astype(np.int64),
        switch_second=switch.astype(np.int64),
        holiday=np.array([d in holidays for d in dates], dtype=bool),
    )


def to_utc_us(grid: DayGrid, day: np.ndarray, local_seconds: np.ndarray) -> np.ndarray:
    """UTC instants (µs since epoch) of local times given as day index + seconds since local midnight.

    `local_seconds` may exceed one day (a night window running past midnight).
    """
    day = np.asarray(day, dtype=np.int64)
    local_us = np.round(np.asarray(local_seconds, dtype=np.float64) * US).astype(np.int64)
    carry = local_us // (DAY_SECONDS * US)
    day = np.minimum(day + carry, len(grid.weekday) - 1)
    local_us = local_us - carry * DAY_SECONDS * US
    offset = np.where(
        local_us < grid.switch_second[day] * US, grid.offset_before[day], grid.offset_after[day]
    )
    return grid.midnight_us[day] + local_us - offset * US
