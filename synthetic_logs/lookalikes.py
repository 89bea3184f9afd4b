"""Benign look-alikes: normal behaviour that resembles an attack, so precision gets tested.

Nightly service batches, caseload hand-overs, onboarding waves, advisors working late and
remote work from a new home address (always on), and the organisation-wide changes of
`orgwide` (switchable). `plan_lookalikes` edits the population and day plan (before normal
life is drawn) and returns the extra events and one record per instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synthetic_logs.errors import GeneratorError
from synthetic_logs.events import ACTION, APP, AUTH, TYPE, EventBatch, make_batch
from synthetic_logs.normal import HOUR, DayPlan
from synthetic_logs.orgwide import ORGWIDE
from synthetic_logs.population import HOME_IPV6_SHARE, KIND, Population, random_addresses
from synthetic_logs.timegrid import DayGrid, to_utc_us

BASIC_KINDS = ("service_batch", "handover", "onboarding", "late_work", "remote_work")
# Organisation-wide kinds that the shipped detector leaves quiet: on in every data set.
# Opt-in (--lookalikes extended) are those the shipped detector alerts on today (measured
# with `detect(mode="both")` on the quality test's seeds 101, 202, 303; docs/generator.md),
# left as they are until the detector handles them (issue 9): browser_rollout with
# vpn_migration (a new client and a new address the same day: credential replay and
# account-admin rules, medium), batch_changes (model-only low alerts), outage_backlog
# (volume_far_above_own_and_peers, high) and app_rename (a high alert in its window).
OPT_IN = ("browser_rollout", "vpn_migration", "outage_backlog", "batch_changes", "app_rename")
DEFAULT_ORGWIDE: tuple[str, ...] = tuple(k for k in ORGWIDE if k not in OPT_IN)
LOOKALIKE_SETS = {
    "basic": (),
    "default": DEFAULT_ORGWIDE,
    "extended": tuple(ORGWIDE),
}


@dataclass
class Lookalikes:
    """Extra events and the instances to write to NAME.lookalikes.json (times in µs UTC)."""

    batches: list[EventBatch] = field(default_factory=list)
    instances: list[dict] = field(default_factory=list)  # kind, accounts (codes), start_us, end_us

    def add(self, kind: str, accounts, start_us: int, end_us: int) -> None:
        self.instances.append(
            {
                "kind": kind,
                "accounts": [int(a) for a in accounts],
                "start_us": int(start_us),
                "end_us": int(end_us),
                "switchable": kind in ORGWIDE,
            }
        )


def lookalike_kinds(chosen: str | tuple[str, ...] | list[str] = "default") -> tuple[str, ...]:
    """The organisation-wide kinds of a set name (`basic`, `default`, `extended`) or a list."""
    if isinstance(chosen, str):
        if chosen not in LOOKALIKE_SETS:
            raise GeneratorError(
                f"--lookalikes must be one of {', '.join(LOOKALIKE_SETS)}, got {chosen}"
            )
        return LOOKALIKE_SETS[chosen]
    unknown = [k for k in chosen if k not in ORGWIDE]
    if unknown:
        raise GeneratorError(
            f"unknown look-alike kind {unknown[0]!r} (one of: {', '.join(ORGWIDE)})"
        )
    return tuple(k for k in ORGWIDE if k in chosen)


def plan_lookalikes(
    rng: np.random.Generator,
    pop: Population,
    grid: DayGrid,
    plan: DayPlan,
    orgwide: tuple[str, ...] = DEFAULT_ORGWIDE,
) -> Lookalikes:
    """Edit the plan for hand-overs, onboarding, late work, remote work; draw service batches;
    then the organisation-wide changes named in `orgwide`, from a generator of their own."""
    found = Lookalikes()
    _handovers(rng, pop, grid, plan, found)
    _onboarding(rng, pop, grid, plan, found)
    _late_work(rng, pop, grid, plan, found)
    _remote_work(rng, pop, grid, plan, found)
    _service_batches(rng, pop, grid, found)
    if orgwide:
        # One generator per kind, spawned (rng's own stream is untouched): switching a kind on
        # or off moves neither the basic look-alikes nor the other kinds' draws.
        own = dict(zip(ORGWIDE, rng.spawn(len(ORGWIDE)), strict=True))
        for kind in orgwide:
            ORGWIDE[kind](own[kind], pop, grid, plan, found)
    return found


# Kinds whose accounts may still be an attacker's victims: batches, and changes that move
# a whole structure or more at once (a small population has one agency).
_NOT_EXCLUDED = {
    "service_batch",
    "browser_rollout",
    "vpn_migration",
    "outage_backlog",
    "agency_campaign",
    "dst_switch",
    "app_rename",
}


def lookalike_accounts(found: Lookalikes) -> set[int]:
    """Accounts playing a look-alike role (kept out of the attackers' victims)."""
    return {
        a for inst in found.instances if inst["kind"] not in _NOT_EXCLUDED for a in inst["accounts"]
    }


def _working_days(grid: DayGrid, low: int, high: int) -> np.ndarray:
    days = np.arange(max(0, low), min(grid.days, high))
    return days[grid.weekday[days] < 5]


def _service_batches(rng, pop: Population, grid: DayGrid, found: Lookalikes) -> None:
    """Every service account exports in bulk every night, from its fixed address, by API key."""
    services = np.flatnonzero(pop.account_type == TYPE["service"])
    if not len(services):
        return
    days = np.arange(grid.days)
    svc, day = np.repeat(services, len(days)), np.tile(days, len(services))
    exports_per_night = rng.integers(3, 9, len(services))
    launch_hour = rng.uniform(0.5, 3.5, len(services))  # each batch has its own schedule
    share = rng.uniform(0.002, 0.02, len(services))
    app = np.where(rng.random(len(services)) < 0.5, APP["bi"], APP["dossier"])
    rank = np.searchsorted(services, svc)
    counts = exports_per_night[rank] + 2
    group = np.repeat(np.arange(len(svc)), counts)
    ends = np.cumsum(counts)
    position = np.arange(ends[-1]) - (ends - counts)[group]
    start = (launch_hour[rank] * HOUR + rng.normal(0, 240, len(svc)))[group]
    local = start + position * rng.uniform(60, 400, len(group)) + position * 120
    action = np.where(position == 0, ACTION["login"], ACTION["export"])
    action[position == counts[group] - 1] = ACTION["logout"]
    returned = np.where(
        action == ACTION["export"],
        (share[rank][group] * pop.n_persons * rng.uniform(0.7, 1.3, len(group))).astype(np.int64),
        -1,
    )
    ts = to_utc_us(grid, day[group], local)
    batch = make_batch(
        ts, account=svc[group], action=action, application=app[rank][group], ip=pop.office_ip[svc[group]],
        ua=pop.client[svc[group]], auth=np.where(position == 0, AUTH["api_key"], -1), returned=returned,
    )  # fmt: skip
    found.batches.append(batch)
    first, last = ts[ends - counts], ts[ends - 1]
    for i in range(len(svc)):  # one instance per account-night: a few thousand at most
        found.add("service_batch", [svc[i]], first[i], last[i])


def _handovers(rng, pop: Population, grid: DayGrid, plan: DayPlan, found: Lookalikes) -> None:
    """An advisor leaves; a colleague of the same agency takes the caseload and reads into it."""
    advisors = np.flatnonzero(pop.account_type == TYPE["advisor"])
    if grid.days < 10 or len(advisors) < 4:
        return
    start, size, persons = pop.caseload_index()
    used: set[int] = set()
    for _ in range(max(1, len(advisors) // 250)):
        leaver = int(rng.choice(advisors))
        same_agency = (pop.account_org == pop.account_org[leaver]) & (
            pop.account_type == TYPE["advisor"]
        )
        mates = np.setdiff1d(np.flatnonzero(same_agency), [leaver, *used])
        if leaver in used or not len(mates):
            continue
        taker = int(rng.choice(mates))
        used.update((leaver, taker))
        day0 = int(rng.integers(grid.days // 3, grid.days - 5))
        pop.last_day[leaver] = day0 - 1
        plan.active[leaver, day0:] = False
        inherited = persons[start[leaver] : start[leaver] + size[leaver]]
        pop.caseload_account = np.concatenate(
            [pop.caseload_account, np.full(len(inherited), taker, np.int32)]
        )
        pop.caseload_person = np.concatenate([pop.caseload_person, inherited])
        days = _working_days(grid, day0, day0 + 6)[:4]
        plan.active[taker, days] = True
        # Reading into half the inherited files over a few days, plus an export of them.
        reads = rng.choice(inherited, size=max(1, len(inherited) // 2), replace=False)
        day = rng.choice(days, len(reads))
        local = rng.uniform(plan.start_s[taker, day], plan.end_s[taker, day])
        action = np.full(len(reads), ACTION["view_record"])
        returned = np.full(len(reads), -1)
        action[0], returned[0], reads[0] = ACTION["export"], len(inherited), -1
        ts = to_utc_us(grid, day, local)
        found.batches.append(make_batch(
            ts, account=taker, action=action, record=reads, application=pop.application[taker],
            ip=plan.ip[taker, day], ua=plan.client[taker, day], returned=returned,
        ))  # fmt: skip
        found.add("handover", [taker, leaver], ts.min(), ts.max())


def _onboarding(rng, pop: Population, grid: DayGrid, plan: DayPlan, found: Lookalikes) -> None:
    """An account manager creates a few accounts in office hours; they start work the next day."""
    managers = np.flatnonzero(pop.account_type == TYPE["account_manager"])
    if grid.days < 8:
        return
    waves = max(1, pop.n_accounts // 1000)
    for manager in rng.permutation(managers)[:waves]:
        org = pop.account_org[manager]
        kind = (
            TYPE["youth_advisor"]
            if pop.org_kind[org] == KIND["mission_locale"]
            else TYPE["advisor"]
        )
        recruits = np.flatnonzero(
            (pop.account_org == org)
            & (pop.account_type == kind)
            & (pop.first_day == 0)
            & (pop.last_day == grid.days - 1)
        )
        if len(recruits) < 2:
            continue
        recruits = rng.choice(recruits, min(len(recruits), int(rng.integers(2, 6))), replace=False)
        day = int(rng.choice(_working_days(grid, 3, grid.days - 4)))
        pop.first_day[recruits] = day + 1
        plan.active[recruits, : day + 1] = False
        plan.active[manager, day] = True
        # create_account then grant_access for each recruit, minutes apart, mid-morning.
        n = len(recruits)
        local = plan.start_s[manager, day] + 1800 + np.arange(2 * n) * rng.uniform(60, 240, 2 * n)
        action = np.tile([ACTION["create_account"], ACTION["grant_access"]], n)
        target = np.repeat(recruits, 2)
        ts = to_utc_us(grid, np.full(2 * n, day), local)
        found.batches.append(make_batch(
            ts, account=manager, action=action, application=APP["admin"], ip=plan.ip[manager, day],
            ua=plan.client[manager, day], target=target,
        ))  # fmt: skip
        end = to_utc_us(grid, np.array([min(day + 6, grid.days)]), np.array([0.0]))[0]
        found.add("onboarding", [manager, *recruits], ts.min(), end)


def _late_work(rng, pop: Population, grid: DayGrid, plan: DayPlan, found: Lookalikes) -> None:
    """Some busy advisors stay until 20:30-22:00 on a few days, doing more than usual."""
    staff = np.flatnonzero(np.isin(pop.account_type, [TYPE["advisor"], TYPE["youth_advisor"]]))
    staff = staff[pop.daily_events[staff] >= np.median(pop.daily_events[staff])]
    chosen = rng.choice(staff, max(1, len(staff) * 3 // 100), replace=False)
    for account in chosen:
        days = np.flatnonzero(plan.active[account])
        if not len(days):
            continue
        for day in rng.choice(days, min(len(days), int(rng.integers(2, 5))), replace=False):
            usual = plan.end_s[account, day] - plan.start_s[account, day]
            plan.end_s[account, day] = rng.uniform(20.5, 22.0) * HOUR
            plan.volume[account, day] *= (
                plan.end_s[account, day] - plan.start_s[account, day]
            ) / usual
            window = to_utc_us(
                grid, np.array([day, day]), np.array([18.0 * HOUR, plan.end_s[account, day]])
            )
            found.add("late_work", [account], window[0], window[1])


def _remote_work(rng, pop: Population, grid: DayGrid, plan: DayPlan, found: Lookalikes) -> None:
    """A few staff start working from a new home address (moved, new telework agreement)."""
    staff = np.flatnonzero(
        np.isin(pop.account_type, [TYPE["advisor"], TYPE["youth_advisor"], TYPE["partner_advisor"]])
    )
    if grid.days < 10:
        return
    chosen = rng.choice(staff, max(1, len(staff) // 100), replace=False)
    new_ips = pop.addresses.add(random_addresses(rng, len(chosen), HOME_IPV6_SHARE))
    for account, ip in zip(chosen, new_ips, strict=True):
        first = int(rng.integers(grid.days // 3, grid.days - 3))
        days = _working_days(grid, first, first + 7)[: int(rng.integers(3, 6))]
        days = days[plan.active[account, days]]
        if not len(days):
            continue
        plan.ip[account, days] = ip
        plan.client[account, days] = pop.client[account]
        window = to_utc_us(
            grid,
            np.array([days[0], days[-1]]),
            np.array([plan.start_s[account, days[0]], plan.end_s[account, days[-1]]]),
        )
        found.add("remote_work", [account], window[0], window[1])
