"""Accumulation over days: a one-sided CUSUM of each account's daily excess.

A quiet misuse reads a few dozen records too many every day: no single day is
far from the account's history, but the excess does not go away. The CUSUM
adds each day's excess (a robust z against the account's own baseline, less
what the account's structure and peer group shifted the same day) and lets
ordinary days drain it:

    S_d = max(0, S_{d-1} + min(z_d - shift_d, DAILY_CAP) - ALLOWANCE)

- ``DAILY_CAP`` bounds one day's contribution, so one busy day cannot raise
  the sum above ``DAILY_CAP - ALLOWANCE``; a rule asking for more needs two
  or more days in excess.
- ``shift_d`` is the median z of the account's structure (and, if larger, of
  its account type) that day, inactive members counted as zero volume: a
  campaign, an outage backlog or a hand-over that moves a whole structure is
  not excess for any one of its accounts.
- the reference is the account's own median and robust spread (at least a
  quarter of the median) once it has 5 earlier active days; while a sum is
  under way it stays the one from before the excess began (a 28-day median
  would soon absorb a sustained excess). An account without 5 earlier active
  days is not judged (new accounts are the business of the rules on new
  accounts, against their peers).

Only days within ``HORIZON_DAYS`` before a day count, so that a run with saved
state (which stores the account-day table) and a run over the whole log agree.
Everything here works on the (accounts x days) matrices of the feature table,
never on events; the current day's term is computed in
:func:`detector.features.derive.derive` from the same functions, so the replay
behind ``detected_at`` sees the sum grow event by event.
"""

from __future__ import annotations

import numpy as np

#: Volumes whose daily excess accumulates.
CUSUM_VOLUMES: tuple[str, ...] = ("records_touched", "out_of_caseload_reads")
ALLOWANCE = 1.5  # robust z an account may exceed its baseline by, every day, without accumulating
DAILY_CAP = 5.0  # the most one day's z counts: one day alone gives at most DAILY_CAP - ALLOWANCE
HORIZON_DAYS = 14  # earlier calendar days the sum looks back over
MIN_SHIFT_MEMBERS = 5  # members with a baseline needed to call a same-day shift
MIN_HISTORY = 5  # earlier active days before an account's own level is trusted as a reference
RELATIVE_NOISE = 0.25  # workloads vary by a quarter from day to day: never a finer scale


def own_scale(median: np.ndarray, scale: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The baseline's robust scale, at least a quarter of the median; NaN under MIN_HISTORY days."""
    return np.where(count >= MIN_HISTORY, np.fmax(scale, RELATIVE_NOISE * median), np.nan)


def reference(own_median: np.ndarray, own_scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, scale) a day is judged against: the account's own baseline (NaN: not judged).

    Only the account's own level is a reference for a change: a new account,
    without one, is judged by the rules on new accounts against its peers.
    """
    return own_median, own_scale


def frozen(
    previous: np.ndarray, centre: np.ndarray, scale: np.ndarray, kept: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The reference of a day: while the sum is above 0, the one of the day the excess began.

    Baselines are medians of the 28 days before, so a sustained excess soon
    becomes its own baseline; the change detector keeps judging against the
    account's level from before the change, as a CUSUM should.
    """
    rest = ~(previous > 0)
    return np.where(rest, centre, kept[0]), np.where(rest, scale, kept[1])


def daily_term(z: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """What one day adds to the sum (may be negative: an ordinary day drains it)."""
    return np.minimum(z - np.nan_to_num(shift), DAILY_CAP) - ALLOWANCE


def step(previous: np.ndarray, term: np.ndarray) -> np.ndarray:
    """The sum after a day: previous + term, never below 0; a day not judged (NaN) keeps it."""
    return np.where(np.isnan(term), previous, np.maximum(previous + term, 0.0))


def same_day_shift(z_all: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(accounts x days): the median z of each account's group that day, at least 0.

    ``z_all`` holds every account's z on every day (inactive days as zero
    volume), NaN where the account has no own baseline; ``groups`` the
    account's group code (-1: none). Groups with fewer than
    ``MIN_SHIFT_MEMBERS`` judged members shift nothing.
    """
    n_acc, n_days = z_all.shape
    shift = np.zeros((n_acc, n_days))
    member = np.flatnonzero(groups >= 0)
    if len(member) == 0 or n_days == 0:
        return shift
    member = member[np.argsort(groups[member], kind="stable")]
    group = groups[member]
    # (days x members), members grouped: each group's run sorted day by day (NaN last).
    # Sorts of contiguous runs, not a group-by: structures number in thousands.
    ordered = np.ascontiguousarray(z_all[member].T)
    present, start, size = np.unique(group, return_index=True, return_counts=True)
    for first, n in zip(start.tolist(), size.tolist(), strict=True):
        if n >= MIN_SHIFT_MEMBERS:  # smaller groups shift nothing
            ordered[:, first : first + n].sort(axis=1)
    count = np.add.reduceat(~np.isnan(ordered), start, axis=1)  # (days x groups present)
    day = np.arange(n_days)[:, None]
    low = ordered[day, start + np.maximum(count - 1, 0) // 2]
    high = ordered[day, start + count // 2]  # in the run (a count of 0 is masked below)
    # pandas' median: the middle value, or (a + b) / 2 of the two middle ones.
    median = np.where(count % 2 == 1, high, (low + high) / 2)
    table = np.zeros((int(group.max()) + 1, n_days))
    table[present] = np.where(count >= MIN_SHIFT_MEMBERS, np.maximum(median, 0.0), 0.0).T
    shift[groups >= 0] = table[groups[groups >= 0]]
    return shift


def sums_before(
    values: np.ndarray,
    centre: np.ndarray,
    scale: np.ndarray,
    shift: np.ndarray,
    days: np.ndarray,
    columns: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sum over the HORIZON_DAYS calendar days before each of ``columns``, and the
    reference (centre, scale) the next day is judged against.

    Arrays are (accounts x day columns): ``values`` NaN where the account was
    inactive, ``centre``/``scale`` from :func:`reference`, ``shift`` from
    :func:`same_day_shift`; ``days`` the calendar day of each column (ascending).
    Results are (accounts x len(columns)).
    """
    n_acc = values.shape[0]
    out = np.zeros((n_acc, len(columns)))
    ref = (np.full(out.shape, np.nan), np.full(out.shape, np.nan))
    if len(columns) == 0 or len(days) == 0:
        return out, ref[0], ref[1]
    column_of_day = np.full(int(days[-1] - days[0]) + 1, -1, dtype=np.int64)
    column_of_day[days - days[0]] = np.arange(len(days))
    target = days[columns]
    # Each matrix with a NaN column after its last: a day without a column reads it, so
    # one gather per matrix and day gives the cells (the shift's NaN read as 0 once).
    padded = [
        np.concatenate([matrix, np.full((n_acc, 1), np.nan)], axis=1)
        for matrix in (values, centre, scale)
    ]
    padded.append(np.nan_to_num(np.concatenate([shift, np.zeros((n_acc, 1))], axis=1)))
    for back in range(HORIZON_DAYS, 0, -1):  # oldest first: a loop over days, never events
        day = target - back - days[0]
        col = np.where(day >= 0, column_of_day[np.maximum(day, 0)], -1)
        value, day_centre, day_scale, day_shift = (np.take(m, col, axis=1) for m in padded)
        ref = frozen(out, day_centre, day_scale, ref)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (value - ref[0]) / ref[1]
        out = step(out, daily_term(z, day_shift))
    return out, ref[0], ref[1]
