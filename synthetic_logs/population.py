"""The population: structures, accounts and their habits, persons and caseloads.

Everything is drawn from one seeded generator. Per-account habits are heterogeneous
on purpose (volume, hours, remote days, addresses, clients, share of reads outside
the caseload) so that a detector cannot learn one global "normal".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synthetic_logs.errors import GeneratorError
from synthetic_logs.events import ACCOUNT_TYPES, APP, AUTH, TYPE

STRUCTURE_KINDS = ("agency", "cap_emploi", "training_org", "mission_locale", "it")
KIND = {name: code for code, name in enumerate(STRUCTURE_KINDS)}
_KIND_PREFIX = {
    "agency": "agence",
    "cap_emploi": "capemploi",
    "training_org": "of",
    "mission_locale": "ml",
    "it": "dsi",
}


@dataclass(frozen=True)
class TypeHabits:
    """What an account type is like: how many, how busy, where, with which caseload and tool."""

    share: float  # share of the accounts (at least `min_accounts` of each type)
    min_accounts: int
    median_daily_events: float  # median events per working day
    home_kind: str | None  # structure kind it works in (None: placed apart, see _structures)
    caseload: tuple[int, int] | None  # range of persons followed; None: no caseload
    application: str  # main application


# One row per account type, in `events.ACCOUNT_TYPES` order (checked below). The order is
# also the order in which accounts are drawn, so it is part of what a seed generates.
HABITS: dict[str, TypeHabits] = {
    "advisor": TypeHabits(0.50, 4, 48, "agency", (100, 400), "dossier"),
    "partner_advisor": TypeHabits(0.14, 5, 36, "cap_emploi", (50, 150), "dossier"),
    "training_org": TypeHabits(0.10, 2, 16, "training_org", (10, 60), "kairos"),
    "youth_advisor": TypeHabits(0.20, 4, 42, "mission_locale", (50, 200), "imilo"),
    "account_manager": TypeHabits(0.04, 4, 20, None, None, "admin"),
    "service": TypeHabits(0.02, 1, 0, "it", None, "bi"),
}
if tuple(HABITS) != ACCOUNT_TYPES:
    raise GeneratorError("population.HABITS must list events.ACCOUNT_TYPES, in that order")


def per_type(values: dict[str, object], dtype: object) -> np.ndarray:
    """An array indexed by type code (`events.TYPE`) from a value per type name."""
    return np.array([values[name] for name in ACCOUNT_TYPES], dtype=dtype)


ACCOUNTS_PER_STRUCTURE = {
    "agency": 25,
    "cap_emploi": 8,
    "training_org": 2,
    "mission_locale": 10,
    "it": 10,
}
# Persons registered in the past, followed by nobody now, as a share of the followed ones.
PAST_SHARE = 0.6

# First octets of public ranges seen from French offices and homes; attackers draw from the same
# pools so that an address's range alone tells nothing.
_FIRST_OCTETS = np.array(
    [77, 78, 80, 81, 82, 83, 86, 88, 90, 91, 92, 109, 176, 185, 193, 194, 195, 212, 213, 217]
)

_IPV6_PREFIXES = np.array(["2a01:e0a", "2a01:cb00", "2a01:cb1d", "2001:861", "2a02:8428"])
HOME_IPV6_SHARE = 0.3

FLEET_CLIENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Firefox/115.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 Edg/119.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
)
SERVICE_CLIENTS = (
    "ft-batch/2.4 (OpenJDK 17)",
    "obiee-scheduler/12.2.1.4",
    "extract-nightly/1.9 (python 3.11)",
)
ATTACKER_CLIENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36 OPR/104.0.0.0",
    "python-requests/2.31.0",
)


class Vocabulary:
    """Append-only list of strings with integer codes (addresses, clients, account ids)."""

    def __init__(self, values: tuple[str, ...] | list[str] = ()):
        self.values: list[str] = list(values)

    def add(self, values: list[str]) -> np.ndarray:
        """Append new values; give their codes."""
        first = len(self.values)
        self.values.extend(values)
        return np.arange(first, len(self.values), dtype=np.int32)

    def codes(self, values: list[str]) -> np.ndarray:
        """Codes of `values`, appending those not yet known."""
        known = {v: i for i, v in enumerate(self.values)}
        return np.array([known[v] if v in known else self.add([v])[0] for v in values], np.int32)


def random_addresses(rng: np.random.Generator, n: int, ipv6_share: float = 0.0) -> list[str]:
    """n public-looking addresses as strings; about `ipv6_share` of them IPv6.

    French residential lines are often IPv6 (Free, Orange, Bouygues prefixes).
    """
    first = rng.choice(_FIRST_OCTETS, size=n)
    rest = rng.integers(1, 255, size=(n, 3))
    six = rng.random(n) < ipv6_share
    prefix = rng.choice(_IPV6_PREFIXES, size=n)
    groups = rng.integers(0, 65536, size=(n, 3))
    return [
        f"{p}:{g[0]:x}:{g[1]:x}::{g[2]:x}" if v6 else f"{a}.{b}.{c}.{d}"
        for v6, p, g, a, (b, c, d) in zip(
            six.tolist(),
            prefix.tolist(),
            groups.tolist(),
            first.tolist(),
            rest.tolist(),
            strict=True,
        )
    ]


@dataclass
class Population:
    """Accounts (one row per index), structures, persons and caseloads, as arrays."""

    account_ids: list[str]
    account_type: np.ndarray  # int8, events.ACCOUNT_TYPES
    account_org: np.ndarray  # int32 structure index
    org_ids: list[str]
    org_kind: np.ndarray  # int8, STRUCTURE_KINDS
    daily_events: np.ndarray  # float, this account's usual events per working day
    start_hour: np.ndarray  # usual first hour (local, fractional)
    end_hour: np.ndarray  # usual last hour
    out_share: np.ndarray  # share of record reads outside the caseload
    remote_weekdays: np.ndarray  # bool (accounts, 5): usual remote-work weekdays
    office_ip: np.ndarray  # int32 address code
    home_ip: np.ndarray  # int32 address code
    client: np.ndarray  # int32 usual client code
    alt_client: np.ndarray  # int32 second client (or the same)
    auth: np.ndarray  # int8 login method
    application: np.ndarray  # int8 main application
    bi_user: np.ndarray  # bool: weekly export goes through the BI module
    export_weekday: np.ndarray  # int8 weekday of the weekly caseload export
    first_day: np.ndarray  # int32 first day the account works (new hires later than 0)
    last_day: np.ndarray  # int32 last day the account works (leavers before the end)
    person_org: np.ndarray  # int32 structure following each person
    person_is_young: np.ndarray  # bool: young person (mission locale) vs job seeker
    person_number: (
        np.ndarray
    )  # int32 number in the record id (shuffled: ids say nothing of caseloads)
    caseload_account: np.ndarray  # int32, caseload pairs
    caseload_person: np.ndarray  # int32
    addresses: Vocabulary
    clients: Vocabulary

    @property
    def n_accounts(self) -> int:
        return len(self.account_ids)

    @property
    def n_persons(self) -> int:
        return len(self.person_org)

    def caseload_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR view of the caseloads: (start, size, persons) with persons grouped by account."""
        order = np.argsort(self.caseload_account, kind="stable")
        size = np.bincount(self.caseload_account, minlength=self.n_accounts).astype(np.int64)
        start = np.concatenate([[0], np.cumsum(size)[:-1]])
        return start, size, self.caseload_person[order]

    def persons_by_org(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR view of persons grouped by the structure following them."""
        order = np.argsort(self.person_org, kind="stable").astype(np.int32)
        size = np.bincount(self.person_org, minlength=len(self.org_ids)).astype(np.int64)
        start = np.concatenate([[0], np.cumsum(size)[:-1]])
        return start, size, order

    def add_accounts(self, ids: list[str], account_type: int, org: int, like: int) -> np.ndarray:
        """Append accounts (created during the log) that copy the habits of account `like`."""
        codes = np.arange(self.n_accounts, self.n_accounts + len(ids), dtype=np.int32)
        self.account_ids.extend(ids)
        n = len(ids)
        for name in (
            "daily_events", "start_hour", "end_hour", "out_share", "remote_weekdays", "office_ip",
            "home_ip", "client", "alt_client", "auth", "application", "bi_user", "export_weekday",
            "first_day", "last_day",
        ):  # fmt: skip
            array = getattr(self, name)
            setattr(
                self, name, np.concatenate([array, np.repeat(array[like : like + 1], n, axis=0)])
            )
        self.account_type = np.concatenate([self.account_type, np.full(n, account_type, np.int8)])
        self.account_org = np.concatenate([self.account_org, np.full(n, org, np.int32)])
        return codes


# --------------------------------------------------------------------------- building
# One phase a function, called in this order by build_population: every draw from the
# seeded generator happens in the same order as before the phases were named, so a seed
# still generates the same bytes.


def _type_counts(accounts: int) -> dict[str, int]:
    """Accounts per type: each type's share (at least its minimum); advisors take the rest."""
    counts = {
        name: max(habits.min_accounts, int(round(habits.share * accounts)))
        for name, habits in HABITS.items()
    }
    others = sum(count for name, count in counts.items() if name != "advisor")
    counts["advisor"] = max(HABITS["advisor"].min_accounts, accounts - others)
    return counts


def _account_types(rng: np.random.Generator, counts: dict[str, int]) -> np.ndarray:
    """Phase 1: the type code of each account, shuffled."""
    types = np.concatenate([np.full(count, TYPE[name], np.int8) for name, count in counts.items()])
    rng.shuffle(types)
    return types


@dataclass
class _Structures:
    """Structures of each kind: ids, kinds, and where each kind's block starts."""

    org_ids: list[str] = field(default_factory=list)
    kinds: list[int] = field(default_factory=list)
    first: dict[str, int] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)

    def draw(self, rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
        """`n` structures of `kind`, uniformly."""
        return self.first[kind] + rng.integers(0, self.count[kind], n)

    def all_of(self, kind: str) -> np.ndarray:
        return self.first[kind] + np.arange(self.count[kind])


def _structures(counts: dict[str, int]) -> _Structures:
    """Phase 2: enough structures of each kind for the accounts that work there."""
    structures = _Structures()
    for kind in STRUCTURE_KINDS:
        members = sum(c for name, c in counts.items() if HABITS[name].home_kind == kind)
        k = max(1, int(np.ceil(members / ACCOUNTS_PER_STRUCTURE[kind])))
        structures.first[kind], structures.count[kind] = len(structures.org_ids), k
        structures.org_ids.extend(f"{_KIND_PREFIX[kind]}-{i + 1:04d}" for i in range(k))
        structures.kinds.extend([KIND[kind]] * k)
    return structures


def _placement(rng: np.random.Generator, types: np.ndarray, structures: _Structures) -> np.ndarray:
    """Phase 3: each account's structure; account managers work at missions locales
    (at least two) and agencies."""
    account_org = np.zeros(len(types), np.int32)
    for name, habits in HABITS.items():
        if habits.home_kind is not None:
            mask = types == TYPE[name]
            account_org[mask] = structures.draw(rng, habits.home_kind, mask.sum())
    managers = np.flatnonzero(types == TYPE["account_manager"])
    at_ml = np.zeros(len(managers), bool)
    at_ml[: max(2, len(managers) // 2)] = True
    account_org[managers[at_ml]] = structures.draw(rng, "mission_locale", at_ml.sum())
    account_org[managers[~at_ml]] = structures.draw(rng, "agency", (~at_ml).sum())
    return account_org


def _working_habits(rng: np.random.Generator, types: np.ndarray) -> dict[str, np.ndarray]:
    """Phase 4: volume, hours, reads outside the caseload and remote days, per account."""
    n = len(types)
    median = per_type({t: h.median_daily_events for t, h in HABITS.items()}, float)[types]
    daily_events = median * rng.lognormal(0.0, 0.45, n)
    start_hour = np.clip(rng.normal(8.6, 0.45, n), 7.3, 10.0)
    end_hour = np.clip(rng.normal(17.3, 0.5, n), 15.8, 18.6)
    out_share = np.clip(rng.beta(3.0, 14.0, n), 0.03, 0.45)  # mean ~18 %, varies per account
    out_share[types == TYPE["training_org"]] *= 0.3
    # Team leads and referents: a few advisors read across the agency's cases all day.
    leads = (types == TYPE["advisor"]) & (rng.random(n) < 0.03)
    out_share[leads] = rng.uniform(0.5, 0.8, leads.sum())
    daily_events[leads] *= 1.5
    remote_count = rng.choice([0, 0, 1, 1, 2], size=n)
    remote_weekdays = rng.random((n, 5)).argsort(axis=1) < remote_count[:, None]
    remote_weekdays[types == TYPE["service"]] = False
    return {
        "daily_events": daily_events,
        "start_hour": start_hour,
        "end_hour": end_hour,
        "out_share": out_share,
        "remote_weekdays": remote_weekdays,
    }


def _addresses_and_clients(
    rng: np.random.Generator, types: np.ndarray, account_org: np.ndarray, n_orgs: int
) -> dict[str, object]:
    """Phase 5: office and home addresses, usual and second clients, per account."""
    n = len(types)
    addresses = Vocabulary()
    # Each structure has one or two egress addresses; accounts use one of them.
    org_ips = addresses.add(random_addresses(rng, 2 * n_orgs)).reshape(-1, 2)
    office_ip = org_ips[account_org, (rng.random(n) < 0.25).astype(int)]
    home_ip = addresses.add(random_addresses(rng, n, HOME_IPV6_SHARE))

    clients = Vocabulary(FLEET_CLIENTS + SERVICE_CLIENTS)
    fleet_of_org = rng.integers(0, len(FLEET_CLIENTS), n_orgs)
    client = np.where(
        rng.random(n) < 0.85, fleet_of_org[account_org], rng.integers(0, len(FLEET_CLIENTS), n)
    ).astype(np.int32)
    alt_client = np.where(
        rng.random(n) < 0.4, rng.integers(0, len(FLEET_CLIENTS), n), client
    ).astype(np.int32)
    service = types == TYPE["service"]
    client[service] = len(FLEET_CLIENTS) + rng.integers(0, len(SERVICE_CLIENTS), service.sum())
    alt_client[service] = client[service]
    return {
        "addresses": addresses,
        "office_ip": office_ip,
        "home_ip": home_ip,
        "clients": clients,
        "client": client,
        "alt_client": alt_client,
    }


def _access(
    rng: np.random.Generator, types: np.ndarray, account_org: np.ndarray, org_kind: np.ndarray
) -> dict[str, np.ndarray]:
    """Phase 6: login method, main application, BI use and weekly export day, per account."""
    n = len(types)
    # Agency staff log in with MFA; partners, training organisations and missions locales with a
    # password alone (as documented for Cap Emploi and Kairos); batches with an API key.
    auth = np.full(n, AUTH["password"], np.int8)
    at_ml = np.isin(account_org, np.flatnonzero(org_kind == KIND["mission_locale"]))
    auth[(types == TYPE["advisor"]) | ((types == TYPE["account_manager"]) & ~at_ml)] = AUTH["mfa"]
    auth[types == TYPE["service"]] = AUTH["api_key"]
    application = per_type({t: APP[h.application] for t, h in HABITS.items()}, np.int8)[types]
    staff = np.isin(types, [TYPE["advisor"], TYPE["youth_advisor"], TYPE["partner_advisor"]])
    return {
        "auth": auth,
        "application": application,
        "bi_user": staff & (rng.random(n) < 0.15),
        "export_weekday": rng.integers(0, 5, n).astype(np.int8),
    }


def _persons_and_caseloads(
    rng: np.random.Generator, types: np.ndarray, account_org: np.ndarray, structures: _Structures
) -> dict[str, np.ndarray]:
    """Phase 7: persons and caseloads.

    Each caseload-holding account (but training organisations) follows its own block of
    persons; the past registrants are followed by nobody; training organisations follow
    trainees who are job seekers followed by an agency.
    """
    case_size = np.zeros(len(types), np.int64)
    for name, habits in HABITS.items():
        if habits.caseload is not None:
            low, high = habits.caseload
            mask = types == TYPE[name]
            drawn = rng.lognormal(np.log((low + high) / 2), 0.3, mask.sum())
            case_size[mask] = np.clip(drawn, low, high).astype(np.int64)
    owners = np.flatnonzero((case_size > 0) & (types != TYPE["training_org"]))
    young_owner = types[owners] == TYPE["youth_advisor"]
    js_owners, yp_owners = owners[~young_owner], owners[young_owner]
    js_followed = np.repeat(js_owners, case_size[js_owners])
    yp_followed = np.repeat(yp_owners, case_size[yp_owners])
    n_js_past = int(PAST_SHARE * len(js_followed))
    n_yp_past = int(PAST_SHARE * len(yp_followed))
    js_past = rng.choice(structures.all_of("agency"), n_js_past)
    yp_past = rng.choice(structures.all_of("mission_locale"), n_yp_past)
    person_org = np.concatenate(
        [account_org[js_followed], js_past, account_org[yp_followed], yp_past]
    ).astype(np.int32)
    person_is_young = np.concatenate(
        [
            np.zeros(len(js_followed) + n_js_past, bool),
            np.ones(len(yp_followed) + n_yp_past, bool),
        ]
    )
    yp_first = len(js_followed) + n_js_past
    caseload_account = np.concatenate([js_followed, yp_followed]).astype(np.int32)
    caseload_person = np.concatenate(
        [np.arange(len(js_followed)), yp_first + np.arange(len(yp_followed))]
    ).astype(np.int32)
    trainers = np.flatnonzero(types == TYPE["training_org"])
    trainee_owner = np.repeat(trainers, case_size[trainers])
    trainees = rng.integers(0, max(1, len(js_followed)), len(trainee_owner))
    # Random trainees may repeat within one organisation: keep each pair once.
    pairs = np.unique(trainee_owner.astype(np.int64) * len(person_org) + trainees)
    return {
        "person_org": person_org,
        "person_is_young": person_is_young,
        "caseload_account": np.concatenate(
            [caseload_account, (pairs // len(person_org)).astype(np.int32)]
        ),
        "caseload_person": np.concatenate(
            [caseload_person, (pairs % len(person_org)).astype(np.int32)]
        ),
    }


def build_population(rng: np.random.Generator, accounts: int, days: int) -> Population:
    """Draw structures, `accounts` accounts with their habits, persons and caseloads."""
    counts = _type_counts(accounts)
    types = _account_types(rng, counts)
    n = len(types)
    structures = _structures(counts)
    org_kind = np.array(structures.kinds, dtype=np.int8)
    account_org = _placement(rng, types, structures)
    habits = _working_habits(rng, types)
    network = _addresses_and_clients(rng, types, account_org, len(structures.org_ids))
    access = _access(rng, types, account_org, org_kind)
    persons = _persons_and_caseloads(rng, types, account_org, structures)
    # Drawn last: ids are a permutation, and so are the numbers in record ids.
    account_ids = [f"u{i:06d}" for i in rng.permutation(np.arange(100_000, 100_000 + n)).tolist()]
    person_number = rng.permutation(len(persons["person_org"])).astype(np.int32)
    return Population(
        account_ids=account_ids,
        account_type=types,
        account_org=account_org,
        org_ids=structures.org_ids,
        org_kind=org_kind,
        first_day=np.zeros(n, np.int32),
        last_day=np.full(n, days - 1, np.int32),
        person_number=person_number,
        **habits,
        **network,
        **access,
        **persons,
    )
