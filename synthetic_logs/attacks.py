"""Attack primitives: each adds events for one step of a scenario, all marked with the attack.

A run starts with the victims as acting accounts. Identity primitives (`take_over`,
`replay_credentials`) give the attacker new addresses and clients; `replay_session` rides a
stolen session (no login, the victim's client and hours); `act_as_self` is the account
holder itself; `create_accounts` makes the acting accounts create new ones, which then act;
`night_window` moves the hours and `off_day` the day; reading primitives (`bulk_read`,
`search_and_read`, `search_only`, `bulk_export`) emit sessions spread over the attack days,
under the scenario's stealth knobs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from synthetic_logs.errors import GeneratorError
from synthetic_logs.events import ACTION, APP, TYPE, EventBatch, make_batch
from synthetic_logs.normal import HOUR, DayPlan, sorted_uniforms
from synthetic_logs.population import (
    ATTACKER_CLIENTS,
    HOME_IPV6_SHARE,
    KIND,
    Population,
    random_addresses,
)
from synthetic_logs.scenario import PRIMITIVES, Scenario, Step
from synthetic_logs.timegrid import DayGrid, to_utc_us

PrimitiveFunction = Callable[..., None]
#: The function of each primitive, registered by `@primitive` under its own name; the
#: names and parameters a scenario file may use are `synthetic_logs.scenario.PRIMITIVES`.
PRIMITIVE_FUNCTIONS: dict[str, PrimitiveFunction] = {}


def primitive(function: PrimitiveFunction) -> PrimitiveFunction:
    """Register an attack primitive under its name, which `PRIMITIVES` must declare."""
    if function.__name__ not in PRIMITIVES:
        raise GeneratorError(f"primitive {function.__name__!r} is not declared in PRIMITIVES")
    PRIMITIVE_FUNCTIONS[function.__name__] = function
    return function


OFFICE_HOURS = (9.0, 17.0)
CHUNK_EVENTS = 2_000_000  # sessions are laid out this many events at a time: bounded memory


@dataclass
class AttackRun:
    """State of one attack instance while its steps run."""

    index: int
    scenario: Scenario
    acting: np.ndarray  # account codes acting now
    ip: np.ndarray  # address codes the attacker may use (one picked per session)
    ip_per_account: bool  # ip[i] belongs to acting account i (the victims' own addresses)
    client: np.ndarray  # client codes the attacker uses, per acting account
    days: np.ndarray  # attack days (day of each window's start)
    hours: tuple[float, float]
    not_before_us: int = 0
    failed_logins: int = 0
    accounts: list[int] = field(default_factory=list)  # every account the attacker used
    batches: list[EventBatch] = field(default_factory=list)
    emit: Callable[[EventBatch], None] | None = None  # where events go (else kept in batches)
    plan: DayPlan | None = None  # the benign day plan, for primitives that shape the victim's days
    login: bool = True  # sessions open with a login (False: a stolen session is replayed)
    own_hours: bool = False  # sessions in each acting account's own working hours
    own_days: bool = False  # sessions only on the days the acting account works (day plan)
    own_address: bool = False  # from the acting account's own address of the day (day plan)
    own_client: bool = False  # with the acting account's own client of the day (day plan)

    def add(self, batch: EventBatch) -> None:
        """Hand over a batch of the attack's events."""
        if self.emit is None:
            self.batches.append(batch)
        else:
            self.emit(batch)


def attack_days(scenario: Scenario, grid: DayGrid) -> np.ndarray:
    """The days the attack runs, its start and length clipped to the log (see docs/generator.md)."""
    p = scenario.parameters
    duration = max(1, p.duration_days)
    start = min(p.start_day, max(grid.days - duration, grid.days // 2))
    days = np.arange(start, min(grid.days, start + duration))
    if scenario.stealth.office_hours_only or not p.weekends:
        weekdays = days[(grid.weekday[days] < 5) & ~grid.holiday[days]]
        if not len(weekdays):  # a one-day attack on a weekend moves to the nearest weekday
            every = np.arange(grid.days)
            every = every[(grid.weekday[every] < 5) & ~grid.holiday[every]]
            weekdays = every[np.argsort(np.abs(every - start), kind="stable")[:1]]
        days = weekdays
    return days


def run_attack(
    rng: np.random.Generator,
    index: int,
    scenario: Scenario,
    pop: Population,
    grid: DayGrid,
    excluded: set[int],
    emit: Callable[[EventBatch], None] | None = None,
    plan: DayPlan | None = None,
) -> AttackRun:
    """Pick victims and run every step of `scenario`; the events go to `emit`, else they are
    in the returned run's `batches`."""
    p = scenario.parameters
    victims = _pick_victims(rng, scenario, pop, grid, excluded, plan)
    hours = OFFICE_HOURS if scenario.stealth.office_hours_only else p.hours
    run = AttackRun(
        index,
        scenario,
        victims,
        pop.office_ip[victims],
        True,
        pop.client[victims],
        attack_days(scenario, grid),
        hours,
        emit=emit,
        plan=plan,
    )
    run.accounts.extend(int(v) for v in victims)
    for step in scenario.steps:
        PRIMITIVE_FUNCTIONS[step.primitive](rng, run, step, pop, grid)
    return run


def _pick_victims(
    rng, scenario: Scenario, pop: Population, grid: DayGrid, excluded: set[int], plan=None
) -> np.ndarray:
    p = scenario.parameters
    ok = (
        (pop.account_type == TYPE[p.victim_type])
        & (pop.first_day == 0)
        & (pop.last_day == grid.days - 1)
    )
    if p.victim_structure:
        ok &= pop.org_kind[pop.account_org] == KIND[p.victim_structure]
    candidates = np.setdiff1d(np.flatnonzero(ok), np.fromiter(excluded, np.int64, len(excluded)))
    # A theft through BI goes through an account that uses BI (as Similo's users do).
    if any(s.primitive == "bulk_export" and s.get("application") == "bi" for s in scenario.steps):
        bi_users = candidates[pop.bi_user[candidates]]
        if len(bi_users) >= p.victims:
            candidates = bi_users
    # Misuse in the account's own working days needs an account at work: not one on leave.
    own_days = any(s.primitive in ("act_as_self", "replay_session") for s in scenario.steps)
    if own_days and plan is not None and len(candidates):
        at_work = plan.active[np.ix_(candidates, attack_days(scenario, grid))].mean(axis=1) >= 0.8
        if at_work.sum() >= p.victims:
            candidates = candidates[at_work]
    if len(candidates) < p.victims:
        raise GeneratorError(
            f"scenario {scenario.name}: the population has only {len(candidates)} free {p.victim_type} accounts for {p.victims} victims; raise --accounts"
        )
    return rng.choice(candidates, p.victims, replace=False).astype(np.int32)


def _new_identity(rng, run: AttackRun, pop: Population, step: Step) -> None:
    """The attacker logs in with the victim's secret from its own addresses and client."""
    p, stealth = run.scenario.parameters, run.scenario.stealth
    if not stealth.reuse_victim_address:
        # Residential proxies as well as hosting: some attacker addresses are IPv6 too.
        run.ip = pop.addresses.add(random_addresses(rng, max(1, p.attacker_addresses), 0.15))
        run.ip_per_account = False
    if not stealth.reuse_victim_client:
        count = min(len(ATTACKER_CLIENTS), max(1, p.attacker_clients))
        picked = rng.choice(len(ATTACKER_CLIENTS), count, replace=False)
        codes = pop.clients.codes([ATTACKER_CLIENTS[i] for i in picked])
        run.client = codes[np.arange(len(run.acting)) % len(codes)].astype(np.int32)
    run.failed_logins = step.get("failed_logins")


@primitive
def take_over(
    rng: np.random.Generator, run: AttackRun, step: Step, pop: Population, grid: DayGrid
) -> None:
    """Account taken over by social engineering: the victim's password, used from elsewhere."""
    _new_identity(rng, run, pop, step)


@primitive
def replay_credentials(
    rng: np.random.Generator, run: AttackRun, step: Step, pop: Population, grid: DayGrid
) -> None:
    """Credentials stolen by an infostealer, replayed from a new address and client."""
    _new_identity(rng, run, pop, step)


@primitive
def replay_session(
    rng: np.random.Generator, run: AttackRun, step: Step, pop: Population, grid: DayGrid
) -> None:
    """A stolen session cookie replayed: no login, the victim's exact client, in the victim's
    working hours, from residential addresses (or, `address = "own"`, the victim's machine)."""
    run.login = False
    run.own_hours = run.own_days = run.own_client = True
    run.client = pop.client[run.acting].astype(np.int32)
    if step.get("address") == "own":
        run.ip, run.ip_per_account = pop.office_ip[run.acting], True
        run.own_address = True
    else:
        count = max(1, run.scenario.parameters.attacker_addresses)
        run.ip = pop.addresses.add(random_addresses(rng, count, HOME_IPV6_SHARE))
        run.ip_per_account = False


@primitive
def act_as_self(
    rng: np.random.Generator, run: AttackRun, step: Step, pop: Population, grid: DayGrid
) -> None:
    """The account holder misuses its own access: its working days and hours, its address of
    the day and its client."""
    run.own_hours = run.own_days = run.own_address = run.own_client = True
    run.client = pop.client[run.acting].astype(np.int32)
    run.ip, run.ip_per_account = pop.office_ip[run.acting], True


@primitive
def off_day(
    rng: np.random.Generator, run: AttackRun, step: Step, pop: Population, grid: DayGrid
) -> None:
    """Move the attack to one day off (a Saturday or a public holiday, `kind`), the first at
    or after the attack's first day, and make it a day the acting accounts never work."""
    kind = step.get("kind")
    days = np.arange(grid.days)
    saturday = grid.weekday[: grid.days] == 5
    holiday = grid.holiday[: grid.days]
    wanted = {"saturday": saturday, "holiday": holiday, "any": saturday | holiday}[kind]
    if kind == "any" and (holiday & (days >= run.days[0])).any():
        wanted = holiday  # a holiday when there is one, else a Saturday
    candidates = days[wanted]
    if not len(candidates):
        what = {"saturday": "Saturday", "holiday": "French public holiday", "any": "day off"}[kind]
        raise GeneratorError(
            f"scenario {run.scenario.name}: no {what} in the log's {grid.days} days from "
            f"{grid.start.isoformat()}; choose another --start or more --days"
        )
    later = candidates[candidates >= run.days[0]]
    run.days = np.array([later[0] if len(later) else candidates[-1]])
    if run.plan is not None:  # an account that never works on days off
        off = ~grid.is_working_day
        run.plan.active[np.ix_(run.acting, np.flatnonzero(off))] = False


@primitive
def night_window(
    rng: np.random.Generator, run: AttackRun, step: Step, pop: Population, grid: DayGrid
) -> None:
    """Move the attack's daily window (local hours; an end before the start runs past midnight)."""
    if not run.scenario.stealth.office_hours_only:
        run.hours = (step.get("start_hour"), step.get("end_hour"))


@primitive
def create_accounts(
    rng: np.random.Generator, run: AttackRun, step: Step, pop: Population, grid: DayGrid
) -> None:
    """The acting account creates accounts in its structure (and grants them access); they act next."""
    creator = int(run.acting[0])
    count = step.get("count")
    kind = TYPE[step.get("account_type")]
    used = set(pop.account_ids)
    fresh = [f"u{i:06d}" for i in rng.integers(100_000, 1_000_000, 4 * count + 8).tolist()]
    ids = list(dict.fromkeys(i for i in fresh if i not in used))[:count]
    peers = np.flatnonzero(pop.account_type == kind)
    like = (
        int(peers[np.argsort(pop.daily_events[peers])[len(peers) // 2]]) if len(peers) else creator
    )
    created = pop.add_accounts(ids, kind, int(pop.account_org[creator]), like)
    pop.first_day[created] = run.days[0]
    for habit in ("auth", "office_ip", "home_ip", "client", "alt_client"):  # the creator's setting
        getattr(pop, habit)[created] = getattr(pop, habit)[creator]
    # One session of the creator: login, then create_account + grant_access per new account.
    day = int(run.days[0])
    start = _window(rng, run, np.array([day]), pop, np.array([creator]))[0][0] + rng.uniform(
        60, 600
    )
    n = 2 * count + 2
    local = start + np.cumsum(rng.uniform(40, 200, n))
    action = np.concatenate(
        [
            [ACTION["login"]],
            np.tile([ACTION["create_account"], ACTION["grant_access"]], count),
            [ACTION["logout"]],
        ]
    )
    target = np.concatenate([[-1], np.repeat(created, 2), [-1]])
    if not run.login:  # a replayed session is already open: no login, no logout
        local, action, target, n = local[1:-1], action[1:-1], target[1:-1], n - 2
    ip = run.ip[0] if run.ip_per_account else run.ip[rng.integers(0, len(run.ip))]
    client = run.client[0]
    if run.plan is not None and run.own_client:
        client = run.plan.client[creator, day]
    if run.plan is not None and run.own_address:
        ip = run.plan.ip[creator, day]
    ts = to_utc_us(grid, np.full(n, day), local)
    _failed_logins(rng, run, grid, creator, ip, client, ts[0], pop)
    run.add(make_batch(
        ts, account=creator, action=action, application=APP[step.get("application")], ip=ip,
        ua=client, auth=np.where(action == ACTION["login"], pop.auth[creator], -1), target=target,
        attack=run.index,
    ))  # fmt: skip
    if run.scenario.stealth.reuse_victim_address or run.ip_per_account:
        run.ip = pop.office_ip[[creator]]  # the new accounts come from the manager's office
        run.ip_per_account = False
    # The new accounts have their own credentials, and no habits yet: the scenario's hours.
    run.login = True
    run.own_hours = run.own_days = run.own_address = run.own_client = False
    run.acting = created
    run.client = np.resize(run.client, len(created))
    run.accounts.extend(int(c) for c in created)
    run.not_before_us = int(ts[-1]) + 10 * 60 * 1_000_000


@primitive
def bulk_read(
    rng: np.random.Generator, run: AttackRun, step: Step, pop: Population, grid: DayGrid
) -> None:
    """Sustained reading of person records one by one, with a few look-up searches.

    Volume: up to `per_day` records per account and day (75-100 % of it, so a floor just above
    is never reached), or `daily_multiple` times the account's usual daily events, or else
    `population_share` of the scope spread over the sessions.
    """
    pool = _pool(pop, step.get("scope"), run)
    if step.get("per_day"):
        per_day = np.full(len(run.acting), float(step.get("per_day")))
        reads = _per_session(rng, run, per_day, pop, ceiling=True)
    elif step.get("daily_multiple"):
        usual = step.get("daily_multiple") * pop.daily_events[run.acting]
        reads = _per_session(rng, run, usual, pop)
    else:
        reads = _daily_volumes(rng, run, pop, step.get("population_share") * len(pool))
    searches = np.round(reads * step.get("search_share")).astype(np.int64)
    _emit_sessions(
        rng, run, step, pop, grid, pool, reads, searches, lambda n: rng.integers(1, 4, n)
    )


@primitive
def search_and_read(
    rng: np.random.Generator, run: AttackRun, step: Step, pop: Population, grid: DayGrid
) -> None:
    """Bursts of searches, each followed by reads of the records it returned."""
    pool = _pool(pop, step.get("scope"), run)
    reads = _daily_volumes(rng, run, pop, step.get("population_share") * len(pool))
    searches = np.maximum(1, np.round(reads / max(step.get("reads_per_search"), 1.0))).astype(
        np.int64
    )
    mean = step.get("records_per_search")
    _emit_sessions(rng, run, step, pop, grid, pool, reads, searches, lambda n: rng.poisson(mean, n))


@primitive
def search_only(
    rng: np.random.Generator, run: AttackRun, step: Step, pop: Population, grid: DayGrid
) -> None:
    """Enumeration by search alone: `searches_per_day` searches per account and day, each
    returning about `records_per_search` persons, and no record ever opened."""
    searches = _per_session(
        rng, run, np.full(len(run.acting), float(step.get("searches_per_day"))), pop
    )
    mean = step.get("records_per_search")
    _emit_sessions(
        rng,
        run,
        step,
        pop,
        grid,
        np.zeros(0, np.int64),
        np.zeros(len(searches), np.int64),
        searches,
        lambda n: rng.poisson(mean, n),
    )


@primitive
def bulk_export(
    rng: np.random.Generator, run: AttackRun, step: Step, pop: Population, grid: DayGrid
) -> None:
    """Large exports (records_returned in the thousands) through an application such as BI."""
    pool = _pool(pop, step.get("scope"), run)
    records = _daily_volumes(rng, run, pop, step.get("population_share") * len(pool))
    sessions = len(records)
    exports = np.maximum(1, np.full(sessions, step.get("exports") // max(1, sessions)))
    # Under a rate cap, a few small exports rather than dozens of one-record ones.
    exports = np.maximum(1, np.minimum(exports, records // 20))
    per_export = np.maximum(1, records // exports)
    _emit_sessions(
        rng,
        run,
        step,
        pop,
        grid,
        pool,
        np.zeros(sessions, np.int64),
        np.zeros(sessions, np.int64),
        None,
        exports=exports,
        per_export=per_export,
    )


def _pool(pop: Population, scope: str, run: AttackRun) -> np.ndarray:
    """Persons the attack may read: a kind of person, or (`other_structures`) persons of the
    first acting account's kind followed by other structures than its own."""
    if scope == "other_structures":
        account = int(run.acting[0])
        young = pop.account_type[account] == TYPE["youth_advisor"] or (
            pop.account_type[account] == TYPE["account_manager"]
            and pop.org_kind[pop.account_org[account]] == KIND["mission_locale"]
        )
        return np.flatnonzero(
            (pop.person_is_young == young) & (pop.person_org != pop.account_org[account])
        )
    if scope == "job_seekers":
        return np.flatnonzero(~pop.person_is_young)
    if scope == "young_people":
        return np.flatnonzero(pop.person_is_young)
    return np.arange(pop.n_persons)


def _daily_volumes(rng, run: AttackRun, pop: Population, total: float) -> np.ndarray:
    """Records per session (acting account x day, account-major), under the rate cap if any.

    Sessions vary around the mean (scripts get throttled, attackers pause); the cap is
    `rate_multiple` times the account's usual daily events (peers' median for new accounts).
    """
    sessions = len(run.acting) * len(run.days)
    spread = rng.gamma(6.0, 1 / 6.0, sessions)
    per_session = np.ceil(total * spread / spread.sum()).astype(np.int64)
    return _under_rate_cap(per_session, run, pop)


def _under_rate_cap(per_session: np.ndarray, run: AttackRun, pop: Population) -> np.ndarray:
    """Per-session counts capped at `rate_multiple` times each acting account's usual day."""
    multiple = run.scenario.stealth.rate_multiple
    if multiple is None:
        return per_session
    usual = pop.daily_events[np.repeat(run.acting, len(run.days))]
    return np.minimum(per_session, np.maximum(1, np.round(multiple * usual)).astype(np.int64))


def _per_session(
    rng, run: AttackRun, mean: np.ndarray, pop: Population, ceiling: bool = False
) -> np.ndarray:
    """Counts per session (acting account x day, account-major) around each account's `mean`
    (or, with `ceiling`, 75-100 % of it), varying from day to day, under the rate cap if any."""
    sessions = len(run.acting) * len(run.days)
    spread = rng.uniform(0.75, 1.0, sessions) if ceiling else rng.gamma(6.0, 1 / 6.0, sessions)
    per_session = np.maximum(1, np.floor(np.repeat(mean, len(run.days)) * spread)).astype(np.int64)
    return _under_rate_cap(per_session, run, pop)


def _window(
    rng, run: AttackRun, days: np.ndarray, pop: Population, accounts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Local start and end seconds of each day's attack window (end may pass midnight); with
    `own_hours`, each acting account's usual hours."""
    if run.own_hours:
        start_h, end_h = pop.start_hour[accounts], pop.end_hour[accounts]
    else:
        start_h, end_h = run.hours
        if end_h <= start_h:
            end_h += 24
    start = (start_h + rng.uniform(0, 0.4, len(days))) * HOUR
    end = (end_h - rng.uniform(0, 0.4, len(days))) * HOUR
    return start, np.maximum(end, start + 600)


def _failed_logins(rng, run: AttackRun, grid, account, ip, client, first_ts, pop) -> None:
    n = run.failed_logins
    if n <= 0:
        return
    ts = first_ts - np.sort(rng.uniform(30, 900, n))[::-1].astype(np.int64) * 1_000_000
    run.add(
        make_batch(
            ts,
            account=account,
            action=ACTION["login"],
            application=pop.application[account],
            ip=ip,
            ua=client,
            auth=pop.auth[account],
            outcome=1,
            attack=run.index,
        )
    )
    run.failed_logins = 0


def _emit_sessions(
    rng, run, step, pop, grid, pool, reads, searches, hits, exports=None, per_export=None
) -> None:
    """One session per (acting account, day): login, the session's actions in time order, logout.

    Laid out CHUNK_EVENTS at a time; when there is more than one chunk, the records read
    are drawn up front so that no record is read twice while the pool lasts.
    """
    n_days = len(run.days)
    acc = np.repeat(run.acting, n_days)
    who = np.repeat(np.arange(len(run.acting)), n_days)
    day = np.tile(run.days, len(run.acting))
    if exports is None:
        exports = np.zeros(len(acc), np.int64)
        per_export = np.zeros(len(acc), np.int64)
    middle = reads + searches + exports
    keep = middle > 0
    if run.own_days and run.plan is not None:  # only on the days the account works
        planned = acc < run.plan.active.shape[0]
        keep &= ~planned | run.plan.active[np.where(planned, acc, 0), day]
    sessions = [x[keep] for x in (acc, who, day, reads, searches, exports, per_export)]
    if not keep.any():
        return
    chunk = (np.cumsum(middle[keep]) - 1) // CHUNK_EVENTS
    cuts = [0, *(np.flatnonzero(np.diff(chunk)) + 1).tolist(), len(chunk)]
    if len(cuts) == 2:
        _emit_chunk(rng, run, step, pop, grid, pool, hits, None, *sessions)
        return
    records = _distinct(rng, pool, int(sessions[3].sum())).astype(np.int32)
    used = 0
    for low, high in zip(cuts[:-1], cuts[1:], strict=True):
        part = [x[low:high] for x in sessions]
        n = int(part[3].sum())
        _emit_chunk(rng, run, step, pop, grid, pool, hits, records[used : used + n], *part)
        used += n


def _emit_chunk(
    rng,
    run,
    step,
    pop,
    grid,
    pool,
    hits,
    records,
    acc,
    who,
    day,
    reads,
    searches,
    exports,
    per_export,
) -> None:
    """The sessions given (one per row), with `records` as the reads' records (None: drawn here)."""
    middle = reads + searches + exports
    counts = middle + 2
    group = np.repeat(np.arange(len(acc)), counts)
    ends = np.cumsum(counts)
    position = np.arange(ends[-1]) - (ends - counts)[group]
    start, end = _window(rng, run, day, pop, acc)
    day_start_us = to_utc_us(grid, day, start)
    late = day_start_us < run.not_before_us  # sessions may not start before the accounts exist
    start = start + np.where(late, (run.not_before_us - day_start_us) / 1e6, 0.0)
    end = np.maximum(end, start + 600)
    local = start[group] + sorted_uniforms(rng, counts) * (end - start)[group]

    # Inside a session: actions in random order, then login first and logout last.
    kinds = np.array([ACTION["view_record"], ACTION["search"], ACTION["export"]], np.int8)
    action = np.empty(len(group), np.int8)
    inner = (position > 0) & (position < counts[group] - 1)
    per_kind = np.stack([reads, searches, exports], axis=1).ravel()
    inner_actions = np.repeat(np.tile(kinds, len(acc)), per_kind)
    inner_group = np.repeat(np.arange(len(acc)), middle)
    shuffle = np.argsort(inner_group + rng.random(len(inner_group)))  # shuffle within sessions
    action[inner] = inner_actions[shuffle]
    action[position == 0] = ACTION["login"]
    action[position == counts[group] - 1] = ACTION["logout"]

    record = np.full(len(group), -1, np.int32)
    is_read = action == ACTION["view_record"]
    record[is_read] = _distinct(rng, pool, int(is_read.sum())) if records is None else records
    returned = np.full(len(group), -1, np.int64)
    is_search = action == ACTION["search"]
    if hits is not None:
        returned[is_search] = hits(int(is_search.sum()))
    is_export = action == ACTION["export"]
    returned[is_export] = np.maximum(
        1, np.round(per_export[group[is_export]] * rng.uniform(0.8, 1.2, is_export.sum()))
    ).astype(np.int64)

    app_name = step.get("application")
    application = (
        np.full(len(group), APP[app_name], np.int8) if app_name else pop.application[acc[group]]
    )
    if run.ip_per_account:
        session_ip = run.ip[who]
    else:
        session_ip = run.ip[rng.integers(0, len(run.ip), len(acc))]
    session_client = run.client[who]
    if run.plan is not None and (run.own_address or run.own_client):
        planned = acc < run.plan.ip.shape[0]
        row = np.where(planned, acc, 0)
        if run.own_address:  # office or home, as that day
            session_ip = np.where(planned, run.plan.ip[row, day], session_ip)
        if run.own_client:  # the browser of the day (after an update, the new one)
            session_client = np.where(planned, run.plan.client[row, day], session_client)
    auth = np.where(action == ACTION["login"], pop.auth[acc[group]], -1)
    ts = to_utc_us(grid, day[group], local)
    first = ends - counts
    _failed_logins(rng, run, grid, acc[0], session_ip[0], run.client[who[0]], ts[first[0]], pop)
    batch = make_batch(
        ts, account=acc[group], action=action, record=record, application=application,
        ip=session_ip[group], ua=session_client[group], auth=auth, returned=returned, attack=run.index,
    )  # fmt: skip
    if not run.login:  # a replayed session is already open: no login, no logout
        batch = batch.take(np.flatnonzero(inner))
    run.add(batch)


def _distinct(rng, pool: np.ndarray, n: int) -> np.ndarray:
    """n records from pool, without repeats while the pool lasts (scrapers do not re-read)."""
    if n <= len(pool):
        return pool[rng.choice(len(pool), n, replace=False)]
    return pool[rng.integers(0, len(pool), n)]
