"""Organisation-wide benign changes: look-alikes that move many accounts at once.

A browser rolled out to most accounts in a day, a VPN migration for home workers, an outage
morning and its backlog afternoon, an agency-wide campaign, a reorganisation, an auditor
reading across structures, a nightly batch changing its schedule, an application renamed
for a whole account type, and the daylight-saving switches. Each function edits the day
plan (before normal life is drawn) or adds events, and records its instances; all draw
from their own generator so that switching one on or off does not reshuffle the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from synthetic_logs.events import ACTION, APP, AUTH, TYPE, make_batch
from synthetic_logs.normal import HOUR, DayPlan
from synthetic_logs.population import KIND, Population, random_addresses
from synthetic_logs.timegrid import DAY_SECONDS, DayGrid, to_utc_us

if TYPE_CHECKING:
    from synthetic_logs.lookalikes import Lookalikes

NEW_BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0"
)
ROLLOUT_SHARE = 0.85  # accounts that get the new browser on the rollout day
VPN_ADDRESSES = 4  # egress addresses of the new VPN concentrators
CAMPAIGN_FACTOR = 3.0  # an agency's campaign: everyone reads three times as much
STAFF = ("advisor", "partner_advisor", "training_org", "youth_advisor", "account_manager")


def _staff(pop: Population) -> np.ndarray:
    return np.isin(pop.account_type, [TYPE[t] for t in STAFF])


def _working(grid: DayGrid, low: int, high: int) -> np.ndarray:
    days = np.arange(max(0, low), min(grid.days, high))
    return days[grid.is_working_day[days]]


def _change_day(rng, grid: DayGrid) -> int | None:
    """A working day in the second half of the log (after a warm-up), or None."""
    days = _working(grid, grid.days // 2, grid.days - 2)
    return int(rng.choice(days)) if len(days) else None


def _span(grid: DayGrid, first: int, last: int) -> tuple[int, int]:
    """UTC µs from local midnight of day `first` to the end of local day `last`."""
    ts = to_utc_us(grid, np.array([first, last]), np.array([0.0, DAY_SECONDS - 1.0]))
    return int(ts[0]), int(ts[1])


def browser_rollout(rng, pop: Population, grid: DayGrid, plan: DayPlan, found: Lookalikes) -> None:
    """A new browser version installed on most staff machines in one day."""
    day = _change_day(rng, grid)
    if day is None:
        return
    code = pop.clients.codes([NEW_BROWSER])[0]
    chosen = np.flatnonzero(_staff(pop) & (rng.random(pop.n_accounts) < ROLLOUT_SHARE))
    plan.client[chosen, day:] = code
    found.add("browser_rollout", chosen, *_span(grid, day, min(grid.days - 1, day + 3)))


def vpn_migration(rng, pop: Population, grid: DayGrid, plan: DayPlan, found: Lookalikes) -> None:
    """Home workers move to a new VPN: every remote day from then on comes from its egress."""
    day = _change_day(rng, grid)
    if day is None:
        return
    egress = pop.addresses.add(random_addresses(rng, VPN_ADDRESSES))
    at_home = plan.ip[:, day:] == pop.home_ip[:, None]
    at_home &= plan.active[:, day:]
    movers = np.flatnonzero(at_home.any(axis=1))
    rows, cols = np.nonzero(at_home[movers])
    plan.ip[movers[rows], day + cols] = egress[movers[rows] % VPN_ADDRESSES]
    found.add("vpn_migration", movers, *_span(grid, day, min(grid.days - 1, day + 7)))


def outage_backlog(rng, pop: Population, grid: DayGrid, plan: DayPlan, found: Lookalikes) -> None:
    """The application is down until late morning; everyone catches up in the afternoon."""
    day = _change_day(rng, grid)
    if day is None:
        return
    present = np.flatnonzero(plan.active[:, day] & _staff(pop))
    back = (11.0 + rng.uniform(0.0, 0.75, len(present))) * HOUR
    plan.start_s[present, day] = np.maximum(plan.start_s[present, day], back)
    plan.end_s[present, day] = np.maximum(plan.end_s[present, day], back + 3 * HOUR)
    plan.volume[present, day] *= 1.5  # the morning's work done in the afternoon
    # Events other look-alikes already drew for that morning wait for the application too.
    first, last = _span(grid, day, day)
    noon = int(to_utc_us(grid, np.array([day]), np.array([11.0 * HOUR]))[0])
    staff = _staff(pop)
    for batch in found.batches:  # squeezed, in order, into 11:00-13:45
        morning = (batch.ts >= first) & (batch.ts < noon) & staff[batch.account]
        batch.ts[morning] = noon + (batch.ts[morning] - first) // 4
    found.add("outage_backlog", present, first, last)


def agency_campaign(rng, pop: Population, grid: DayGrid, plan: DayPlan, found: Lookalikes) -> None:
    """Everyone in one agency reads three times as much for a week, inside their caseloads."""
    day = _change_day(rng, grid)
    agencies = np.flatnonzero(pop.org_kind == KIND["agency"])
    if day is None or not len(agencies):
        return
    advisors = pop.account_type == TYPE["advisor"]
    size = np.bincount(pop.account_org[advisors], minlength=len(pop.org_ids))[agencies]
    agency = int(agencies[np.argmax(size)])
    members = np.flatnonzero(advisors & (pop.account_org == agency))
    days = _working(grid, day, day + 7)[:5]
    start, case_size, persons = pop.caseload_index()
    acc, d = np.nonzero(plan.active[np.ix_(members, days)])
    acc, d = members[acc], days[d]
    has_cases = case_size[acc] > 0
    acc, d = acc[has_cases], d[has_cases]
    # The extra reads: (factor - 1) times the usual reads, spread over the account's day.
    extra = rng.poisson((CAMPAIGN_FACTOR - 1) * 0.6 * pop.daily_events[acc] * plan.volume[acc, d])
    group = np.repeat(np.arange(len(acc)), extra)
    local = (
        plan.start_s[acc, d][group]
        + rng.random(len(group)) * (plan.end_s[acc, d] - plan.start_s[acc, d])[group]
    )
    pick = (rng.random(len(group)) * case_size[acc][group]).astype(np.int64)
    found.batches.append(make_batch(
        to_utc_us(grid, d[group], local), account=acc[group], action=ACTION["view_record"],
        record=persons[start[acc][group] + pick], application=plan.application[acc, d][group],
        ip=plan.ip[acc, d][group], ua=plan.client[acc, d][group],
    ))  # fmt: skip
    if len(days):
        found.add("agency_campaign", members, *_span(grid, int(days[0]), int(days[-1])))


def reorganisation(rng, pop: Population, grid: DayGrid, plan: DayPlan, found: Lookalikes) -> None:
    """An agency closes: its advisors leave and another agency's advisors take its caseloads,
    each reading into a share of the inherited files over the following week."""
    day = _change_day(rng, grid)
    agencies = np.flatnonzero(pop.org_kind == KIND["agency"])
    advisors = pop.account_type == TYPE["advisor"]
    staffed = [a for a in agencies.tolist() if (advisors & (pop.account_org == a)).sum() >= 2]
    if day is None or len(staffed) < 3:
        return
    closing, taking = (int(a) for a in rng.choice(staffed[1:], 2, replace=False))
    free = ~np.isin(np.arange(pop.n_accounts), list(_in_roles(found)))
    leavers = np.flatnonzero(advisors & free & (pop.account_org == closing) & (pop.last_day >= day))
    takers = np.flatnonzero(
        advisors & free & (pop.account_org == taking) & (pop.first_day == 0)
        & (pop.last_day == grid.days - 1)
    )  # fmt: skip
    if not len(leavers) or not len(takers):
        return
    pop.last_day[leavers] = np.minimum(pop.last_day[leavers], day - 1)
    plan.active[leavers, day:] = False
    start, size, persons = pop.caseload_index()
    inherited = np.concatenate([persons[start[a] : start[a] + size[a]] for a in leavers])
    heir = takers[rng.integers(0, len(takers), len(inherited))]
    pop.caseload_account = np.concatenate([pop.caseload_account, heir.astype(np.int32)])
    pop.caseload_person = np.concatenate([pop.caseload_person, inherited.astype(np.int32)])
    days = _working(grid, day, day + 7)[:5]
    if not len(days):
        return
    reads = rng.random(len(inherited)) < 0.3  # each heir opens about a third of its new files
    acc, record = heir[reads], inherited[reads]
    d = days[rng.integers(0, len(days), len(acc))]
    plan.active[acc, d] = True
    local = plan.start_s[acc, d] + rng.random(len(acc)) * (
        plan.end_s[acc, d] - plan.start_s[acc, d]
    )
    found.batches.append(make_batch(
        to_utc_us(grid, d, local), account=acc, action=ACTION["view_record"], record=record,
        application=plan.application[acc, d], ip=plan.ip[acc, d], ua=plan.client[acc, d],
    ))  # fmt: skip
    found.add("reorganisation", np.concatenate([takers, leavers]), *_span(grid, day, int(days[-1])))


def auditor(rng, pop: Population, grid: DayGrid, plan: DayPlan, found: Lookalikes) -> None:
    """An internal auditor reads a few dozen files across all structures every working day."""
    candidates = np.flatnonzero(
        (pop.account_type == TYPE["advisor"])
        & (pop.first_day == 0)
        & (pop.last_day == grid.days - 1)
    )
    if not len(candidates):
        return
    account = int(rng.choice(candidates))
    days = _working(grid, 0, grid.days)
    plan.active[account, days] = True
    count = rng.integers(30, 80, len(days))
    d = np.repeat(days, count)
    local = plan.start_s[account, d] + rng.random(len(d)) * (
        plan.end_s[account, d] - plan.start_s[account, d]
    )
    found.batches.append(make_batch(
        to_utc_us(grid, d, local), account=account, action=ACTION["view_record"],
        record=rng.integers(0, pop.n_persons, len(d)), application=plan.application[account, d],
        ip=plan.ip[account, d], ua=plan.client[account, d],
    ))  # fmt: skip
    found.add("auditor", [account], *_span(grid, 0, grid.days - 1))


def batch_changes(rng, pop: Population, grid: DayGrid, plan: DayPlan, found: Lookalikes) -> None:
    """One nightly batch moves its launch hour, runs twice one night and doubles at month end.

    Its ordinary nights (drawn with the other service batches) are replaced by these.
    """
    services = np.flatnonzero(pop.account_type == TYPE["service"])
    if not len(services) or grid.days < 4:
        return
    account = int(rng.choice(services))
    _drop_account(found, account)
    nights = np.arange(grid.days)
    launch = np.full(grid.days, rng.uniform(0.5, 1.5)) + rng.normal(0, 0.05, grid.days)
    moved = int(rng.integers(grid.days // 3, grid.days - 1))
    launch[moved:] += 2.0  # new schedule from that night on
    exports = np.full(grid.days, int(rng.integers(3, 9)))
    # The run in the first night of a month closes the month that ended: twice the exports.
    month_end = np.flatnonzero([grid.date(n).day == 1 for n in nights])
    exports[month_end] *= 2
    twice = int(rng.integers(0, grid.days))
    nights = np.append(nights, twice)  # the rerun, an hour after the first run
    launch = np.append(launch, launch[twice] + 1.0)
    exports = np.append(exports, exports[twice])
    counts = exports + 2
    group = np.repeat(np.arange(len(nights)), counts)
    ends = np.cumsum(counts)
    position = np.arange(ends[-1]) - (ends - counts)[group]
    local = launch[group] * HOUR + position * rng.uniform(120, 300, len(group))
    action = np.full(len(group), ACTION["export"])
    action[position == 0] = ACTION["login"]
    action[position == counts[group] - 1] = ACTION["logout"]
    share = rng.uniform(0.002, 0.02)
    returned = np.where(
        action == ACTION["export"],
        (share * pop.n_persons * rng.uniform(0.7, 1.3, len(group))).astype(np.int64),
        -1,
    )
    ts = to_utc_us(grid, nights[group], local)
    found.batches.append(make_batch(
        ts, account=account, action=action, application=APP["bi"], ip=pop.office_ip[account],
        ua=pop.client[account], auth=np.where(position == 0, AUTH["api_key"], -1), returned=returned,
    ))  # fmt: skip
    found.add("batch_changes", [account], int(ts.min()), int(ts.max()))


def _in_roles(found: Lookalikes) -> set[int]:
    """Accounts whose caseload or start a hand-over or an onboarding already changed."""
    return {a for i in found.instances if i["kind"] in _ROLES for a in i["accounts"]}


_ROLES = ("handover", "onboarding")


def _drop_account(found: Lookalikes, account: int) -> None:
    """Remove an account's events and instances from the look-alikes drawn so far."""
    found.batches[:] = [b.take(np.flatnonzero(b.account != account)) for b in found.batches]
    found.instances[:] = [i for i in found.instances if i["accounts"] != [account]]


def app_rename(rng, pop: Population, grid: DayGrid, plan: DayPlan, found: Lookalikes) -> None:
    """Training organisations' application is renamed (kairos -> kairos2) from one day on."""
    day = _change_day(rng, grid)
    trainers = np.flatnonzero(pop.account_type == TYPE["training_org"])
    if day is None or not len(trainers):
        return
    plan.application[trainers, day:] = APP["kairos2"]
    found.add("app_rename", trainers, *_span(grid, day, min(grid.days - 1, day + 3)))


def dst_switch(rng, pop: Population, grid: DayGrid, plan: DayPlan, found: Lookalikes) -> None:
    """Each daylight-saving switch inside the log: everyone's UTC hours move by one."""
    for day in grid.switch_days().tolist():
        after = _working(grid, day, day + 4)
        if not len(after):
            continue
        staff = np.flatnonzero(plan.active[:, after].any(axis=1))
        found.add("dst_switch", staff, *_span(grid, day, int(after[-1])))


ORGWIDE = {
    "browser_rollout": browser_rollout,
    "vpn_migration": vpn_migration,
    "outage_backlog": outage_backlog,
    "agency_campaign": agency_campaign,
    "reorganisation": reorganisation,
    "auditor": auditor,
    "batch_changes": batch_changes,
    "app_rename": app_rename,
    "dst_switch": dst_switch,
}
