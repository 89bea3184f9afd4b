"""Normal working life: who works which day, when, from where, and what they do.

`plan_days` draws one row per (account, day) -- presence, hours, address, client,
volume -- and `normal_day_slices` turns the plan into events without a loop over events:
per account-day counts, then repeat/cumsum to lay out sorted times inside each day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthetic_logs.events import ACTION, APP, NONE, TYPE, EventBatch, concat, make_batch
from synthetic_logs.population import KIND, Population
from synthetic_logs.timegrid import DAY_SECONDS, DayGrid, to_utc_us

HOUR = 3600.0
LUNCH = (12.0 * HOUR, 13.5 * HOUR)
LUNCH_WEIGHT = 0.3  # activity during lunch relative to the rest of the day
ACCOUNTS_PER_SLICE = 10_000  # accounts drawn at once (~0.5M events): bounds a day's temporaries

# Share of the actions between login and logout, per account type.
_MIX_ACTIONS = ("view_record", "search", "update_record", "export", "grant_access")
ACTION_MIX = {
    "advisor": (0.60, 0.22, 0.16, 0.02, 0.0),
    "partner_advisor": (0.64, 0.22, 0.12, 0.02, 0.0),
    "training_org": (0.58, 0.25, 0.16, 0.01, 0.0),
    "youth_advisor": (0.60, 0.22, 0.16, 0.02, 0.0),
    "account_manager": (0.25, 0.25, 0.10, 0.0, 0.40),
}


@dataclass
class DayPlan:
    """One cell per (account, day); look-alikes edit it before events are drawn."""

    active: np.ndarray  # bool: the account works that day
    start_s: np.ndarray  # float: local second of the first event
    end_s: np.ndarray  # float: local second of the last event
    ip: np.ndarray  # int32 address code of the day
    client: np.ndarray  # int32 client code of the day
    volume: np.ndarray  # float: multiplier of the account's usual daily volume
    application: np.ndarray  # int8 main application of the day (a rename changes it)


def plan_days(rng: np.random.Generator, pop: Population, grid: DayGrid) -> DayPlan:
    """Presence (working days minus leave), hours, address (office or home) and client per account-day.

    Public holidays are days off, like weekends.
    """
    n, days = pop.n_accounts, grid.days
    day = np.arange(days)
    working = grid.is_working_day
    active = np.broadcast_to(working, (n, days)).copy()
    # A third of the accounts take a block of leave; everyone has the odd day off.
    on_leave = rng.random(n) < 0.3
    leave_start = rng.integers(0, max(1, days - 3), n)
    leave_len = rng.integers(3, 8, n)
    in_leave = (day >= leave_start[:, None]) & (day < (leave_start + leave_len)[:, None])
    active &= ~(on_leave[:, None] & in_leave)
    active &= rng.random((n, days)) > 0.03
    # Now and then someone catches up on a weekend morning.
    weekend_work = ~working & (rng.random((n, days)) < 0.01)
    active |= weekend_work
    active &= (day >= pop.first_day[:, None]) & (day <= pop.last_day[:, None])
    active[pop.account_type == TYPE["service"]] = False  # batches are look-alikes

    start_s = np.clip(pop.start_hour[:, None] + rng.normal(0, 0.3, (n, days)), 7.0, 11.0) * HOUR
    end_s = np.clip(pop.end_hour[:, None] + rng.normal(0, 0.35, (n, days)), 14.5, 19.0) * HOUR
    end_s = np.where(weekend_work, start_s + rng.uniform(1.5, 4.0, (n, days)) * HOUR, end_s)
    weekday = np.minimum(grid.weekday[:days], 4)
    remote = pop.remote_weekdays[:, weekday] & working
    ip = np.where(remote, pop.home_ip[:, None], pop.office_ip[:, None]).astype(np.int32)
    client = np.where(rng.random((n, days)) < 0.1, pop.alt_client[:, None], pop.client[:, None])
    volume = rng.gamma(6.0, 1 / 6.0, (n, days)) * np.where(weekend_work, 0.4, 1.0)
    application = np.repeat(pop.application[:, None], days, axis=1)
    return DayPlan(active, start_s, end_s, ip, client.astype(np.int32), volume, application)


def sorted_uniforms(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    """For groups of `counts` events laid end to end, sorted uniforms in (0, 1) within each group."""
    total = int(counts.sum())
    gaps = rng.standard_exponential(total)
    running = np.cumsum(gaps)
    ends = np.cumsum(counts)
    starts = ends - counts
    nonempty = counts > 0
    before = np.zeros(len(counts))
    before[nonempty] = running[starts[nonempty]] - gaps[starts[nonempty]]
    last = np.zeros(len(counts))
    last[nonempty] = running[ends[nonempty] - 1]
    span = last - before + rng.standard_exponential(len(counts))
    group = np.repeat(np.arange(len(counts)), counts)
    return (running - before[group]) / span[group]


def working_times(
    u: np.ndarray, group: np.ndarray, start_s: np.ndarray, end_s: np.ndarray
) -> np.ndarray:
    """Map sorted uniforms to local seconds in each group's [start, end], with a lunch dip.

    The map is monotone, so times stay sorted within a group; `start_s`, `end_s` are per group.
    """
    lunch0 = np.clip(LUNCH[0], start_s, end_s)
    lunch1 = np.clip(LUNCH[1], start_s, end_s)
    morning = lunch0 - start_s
    lunch = LUNCH_WEIGHT * (lunch1 - lunch0)
    total = morning + lunch + end_s - lunch1
    x = u * total[group]
    m, ml = morning[group], (morning + lunch)[group]
    return np.where(
        x < m,
        start_s[group] + x,
        np.where(x < ml, lunch0[group] + (x - m) / LUNCH_WEIGHT, lunch1[group] + (x - ml)),
    )


class RecordPicker:
    """Draws person records for reads: inside the caseload or outside it (colleagues' cases)."""

    def __init__(self, pop: Population):
        self.pop = pop
        self.case_start, self.case_size, self.case_persons = pop.caseload_index()
        self.org_start, self.org_size, self.org_persons = pop.persons_by_org()
        young = np.flatnonzero(pop.person_is_young)
        self.first_young = int(young[0]) if len(young) else pop.n_persons
        self.young_types = np.isin(pop.account_type, [TYPE["youth_advisor"]]) | (
            (pop.account_type == TYPE["account_manager"])
            & (pop.org_kind[pop.account_org] == KIND["mission_locale"])
        )

    def pick(
        self, rng: np.random.Generator, account: np.ndarray, out_share: np.ndarray
    ) -> np.ndarray:
        """One record per read by `account`; out of caseload with probability `out_share`."""
        n = len(account)
        size = self.case_size[account]
        inside = (rng.random(n) >= out_share) & (size > 0)
        u = rng.random(n)
        record = np.empty(n, np.int32)
        record[inside] = self.case_persons[
            self.case_start[account[inside]] + (u[inside] * size[inside]).astype(np.int64)
        ]
        # Outside: mostly a colleague's case in the same structure, else anyone of the right kind.
        out = ~inside
        org = self.pop.account_org[account[out]]
        org_size = self.org_size[org]
        colleague = (rng.random(out.sum()) < 0.7) & (org_size > 0)
        young = self.young_types[account[out]]
        low = np.where(young, self.first_young, 0)
        high = np.where(young, self.pop.n_persons, max(self.first_young, 1))
        anyone = low + (u[out] * (high - low)).astype(np.int64)
        mine = self.org_persons[
            np.minimum(
                self.org_start[org] + (u[out] * org_size).astype(np.int64),
                len(self.org_persons) - 1,
            )
        ]
        record[out] = np.where(colleague, mine, anyone)
        return record

    def caseload_size(self, account: np.ndarray) -> np.ndarray:
        return self.case_size[account]


def normal_day_slices(
    rng: np.random.Generator,
    pop: Population,
    grid: DayGrid,
    plan: DayPlan,
    picker: RecordPicker,
    day: int,
) -> list[EventBatch]:
    """Every benign working event of local day `day` (all inside that local day), as slices of
    ACCOUNTS_PER_SLICE accounts, which bounds the temporaries of a large population's day (the
    caller joins them once, with the day's other events).

    Called day by day: the arrays stay cache-sized and no fresh memory pages need faulting in.
    """
    acc = np.flatnonzero(plan.active[:, day]).astype(np.int32)
    return [
        _account_days(rng, pop, grid, plan, picker, acc[i : i + ACCOUNTS_PER_SLICE], day)
        for i in range(0, max(1, len(acc)), ACCOUNTS_PER_SLICE)
    ]


_READS = np.zeros(len(ACTION), bool)
_READS[[ACTION["view_record"], ACTION["update_record"], ACTION["export"]]] = True


def _account_days(rng, pop, grid, plan, picker, acc: np.ndarray, day: int) -> EventBatch:
    """Sessions, reads, searches, exports and failed logins of the accounts `acc` on `day`."""
    inner = rng.poisson(pop.daily_events[acc] * plan.volume[acc, day])
    counts = inner + 2  # login and closing event
    group = np.repeat(np.arange(len(acc)), counts)
    first = np.cumsum(counts) - counts
    e_acc = acc[group]
    e_type = pop.account_type[acc][group]
    u = sorted_uniforms(rng, counts)
    local = working_times(u, group, plan.start_s[acc, day], plan.end_s[acc, day])
    del u

    action = _draw_actions(rng, e_type)
    action[first] = ACTION["login"]
    closes = rng.random(len(acc)) < 0.85  # some sessions just time out
    action[(first + counts - 1)[closes]] = ACTION["logout"]
    # A third of the longer days log in again after lunch (the session expired).
    again = (counts >= 8) & (rng.random(len(acc)) < 0.3)
    relogin = first[again] + (counts[again] * 0.55).astype(np.int64)
    action[relogin] = ACTION["login"]

    record = np.full(len(action), NONE, np.int32)
    reads = _READS[action]
    record[reads] = picker.pick(rng, e_acc[reads], pop.out_share[e_acc[reads]])
    returned = np.full(len(action), NONE, np.int64)
    searches = action == ACTION["search"]
    hits = np.floor(rng.lognormal(np.log(6.0), 1.1, searches.sum())).astype(np.int64)
    hits[rng.random(len(hits)) < 0.06] = 0
    returned[searches] = hits

    application = plan.application[acc, day][group]
    youth = np.flatnonzero(e_type == TYPE["youth_advisor"])
    application[youth[rng.random(len(youth)) < 0.15]] = APP["ouiform"]
    managers = np.flatnonzero(
        (e_type == TYPE["account_manager"]) & (action != ACTION["grant_access"])
    )
    at_ml = pop.org_kind[pop.account_org[e_acc[managers]]] == KIND["mission_locale"]
    application[managers] = np.where(at_ml, APP["imilo"], APP["dossier"])

    # Weekly caseload export: one event of the export weekday becomes a bulk export.
    case_size = picker.caseload_size(acc)
    weekly = (grid.weekday[day] == pop.export_weekday[acc]) & (case_size > 0) & (counts >= 3)
    slot = first[weekly] + 1 + (rng.random(weekly.sum()) * (counts[weekly] - 2)).astype(np.int64)
    action[slot] = ACTION["export"]
    record[slot] = NONE
    size = case_size[weekly] * rng.uniform(0.85, 1.0, weekly.sum())
    returned[slot] = np.round(size).astype(np.int64)
    application[slot] = np.where(
        pop.bi_user[acc[weekly]], APP["bi"], plan.application[acc[weekly], day]
    )

    target = np.full(len(action), NONE, np.int32)
    grants = action == ACTION["grant_access"]
    target[grants] = _colleagues(rng, pop, e_acc[grants])
    auth = np.full(len(action), NONE, np.int8)
    logins = np.flatnonzero(action == ACTION["login"])
    auth[logins] = pop.auth[e_acc[logins]]

    ts = to_utc_us(grid, day, np.clip(local, 0.0, DAY_SECONDS - 1.0))
    events = make_batch(
        ts, account=e_acc, action=action, record=record, application=application,
        ip=plan.ip[acc, day][group], ua=plan.client[acc, day][group], auth=auth,
        returned=returned, target=target,
    )  # fmt: skip
    return concat([events, _failed_logins(rng, pop, grid, plan, acc, day, local[first])])


def _draw_actions(rng: np.random.Generator, account_type: np.ndarray) -> np.ndarray:
    action = np.full(len(account_type), ACTION["view_record"], np.int8)
    u = rng.random(len(account_type))
    codes = np.array([ACTION[a] for a in _MIX_ACTIONS], np.int8)
    for name, mix in ACTION_MIX.items():
        mask = account_type == TYPE[name]
        cumulative = np.cumsum(mix) / np.sum(mix)
        action[mask] = codes[
            np.minimum(np.searchsorted(cumulative, u[mask], side="right"), len(codes) - 1)
        ]
    return action


def _colleagues(rng: np.random.Generator, pop: Population, account: np.ndarray) -> np.ndarray:
    """A random account of the same structure as each of `account` (itself when alone)."""
    order = np.argsort(pop.account_org, kind="stable")
    size = np.bincount(pop.account_org, minlength=len(pop.org_ids))
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    org = pop.account_org[account]
    return order[start[org] + (rng.random(len(account)) * size[org]).astype(np.int64)].astype(
        np.int32
    )


def _failed_logins(rng, pop, grid, plan, acc, day, login_local) -> EventBatch:
    """A mistyped password now and then, just before the day's first login."""
    fail = rng.random(len(acc)) < 0.04
    a, d = acc[fail], day
    local = np.maximum(login_local[fail] - rng.uniform(8, 120, fail.sum()), 0.0)
    return make_batch(
        to_utc_us(grid, d, local), account=a, action=ACTION["login"], application=plan.application[a, d],
        ip=plan.ip[a, d], ua=plan.client[a, d], auth=pop.auth[a], outcome=1,
    )  # fmt: skip
