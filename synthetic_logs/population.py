"""The population: structures, accounts and their habits, persons and caseloads.

Everything is drawn from one seeded generator. Per-account habits are heterogeneous
on purpose (volume, hours, remote days, addresses, clients, share of reads outside
the caseload) so that a detector cannot learn one global "normal".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthetic_logs.events import APP, AUTH, TYPE

STRUCTURE_KINDS = ("agency", "cap_emploi", "training_org", "mission_locale", "it")
KIND = {name: code for code, name in enumerate(STRUCTURE_KINDS)}
_KIND_PREFIX = {
    "agency": "agence",
    "cap_emploi": "capemploi",
    "training_org": "of",
    "mission_locale": "ml",
    "it": "dsi",
}

# Share of accounts per type (at least MIN_PER_TYPE of each).
TYPE_SHARES = {
    "advisor": 0.50,
    "partner_advisor": 0.14,
    "training_org": 0.10,
    "youth_advisor": 0.20,
    "account_manager": 0.04,
    "service": 0.02,
}
MIN_PER_TYPE = {
    "advisor": 4,
    "partner_advisor": 5,
    "training_org": 2,
    "youth_advisor": 4,
    "account_manager": 4,
    "service": 1,
}
# Median events per working day and the structure kind of each type.
MEDIAN_DAILY_EVENTS = {
    "advisor": 48,
    "partner_advisor": 36,
    "training_org": 16,
    "youth_advisor": 42,
    "account_manager": 20,
    "service": 0,
}
HOME_KIND = {
    "advisor": "agency",
    "partner_advisor": "cap_emploi",
    "training_org": "training_org",
    "youth_advisor": "mission_locale",
    "service": "it",
}
ACCOUNTS_PER_STRUCTURE = {
    "agency": 25,
    "cap_emploi": 8,
    "training_org": 2,
    "mission_locale": 10,
    "it": 10,
}
# Caseload size range (persons followed) per type; None = no caseload.
CASELOAD_RANGE = {
    "advisor": (100, 400),
    "partner_advisor": (50, 150),
    "training_org": (10, 60),
    "youth_advisor": (50, 200),
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


def _type_counts(accounts: int) -> dict[str, int]:
    counts = {
        t: max(MIN_PER_TYPE[t], int(round(share * accounts))) for t, share in TYPE_SHARES.items()
    }
    counts["advisor"] = max(
        MIN_PER_TYPE["advisor"], accounts - sum(v for t, v in counts.items() if t != "advisor")
    )
    return counts


def build_population(rng: np.random.Generator, accounts: int, days: int) -> Population:
    """Draw structures, `accounts` accounts with their habits, persons and caseloads."""
    counts = _type_counts(accounts)
    types = np.concatenate([np.full(c, TYPE[t], np.int8) for t, c in counts.items()])
    rng.shuffle(types)
    n = len(types)

    # Structures: enough of each kind for its accounts; account managers work at missions
    # locales (at least one) and agencies.
    org_kind_list: list[int] = []
    org_ids: list[str] = []
    first_org: dict[str, int] = {}
    n_orgs: dict[str, int] = {}
    for kind in STRUCTURE_KINDS:
        members = sum(c for t, c in counts.items() if HOME_KIND.get(t) == kind)
        k = max(1, int(np.ceil(members / ACCOUNTS_PER_STRUCTURE[kind])))
        first_org[kind], n_orgs[kind] = len(org_ids), k
        org_ids.extend(f"{_KIND_PREFIX[kind]}-{i + 1:04d}" for i in range(k))
        org_kind_list.extend([KIND[kind]] * k)
    org_kind = np.array(org_kind_list, dtype=np.int8)

    account_org = np.zeros(n, np.int32)
    for t, kind in HOME_KIND.items():
        mask = types == TYPE[t]
        account_org[mask] = first_org[kind] + rng.integers(0, n_orgs[kind], mask.sum())
    managers = np.flatnonzero(types == TYPE["account_manager"])
    at_ml = np.zeros(len(managers), bool)
    at_ml[: max(2, len(managers) // 2)] = True  # at least two at missions locales
    account_org[managers[at_ml]] = first_org["mission_locale"] + rng.integers(
        0, n_orgs["mission_locale"], at_ml.sum()
    )
    account_org[managers[~at_ml]] = first_org["agency"] + rng.integers(
        0, n_orgs["agency"], (~at_ml).sum()
    )

    # Habits.
    median = np.array([MEDIAN_DAILY_EVENTS[t] for t in TYPE_SHARES], dtype=float)[types]
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

    addresses = Vocabulary()
    # Each structure has one or two egress addresses; accounts use one of them.
    org_ips = addresses.add(random_addresses(rng, 2 * len(org_ids))).reshape(-1, 2)
    office_ip = org_ips[account_org, (rng.random(n) < 0.25).astype(int)]
    home_ip = addresses.add(random_addresses(rng, n, HOME_IPV6_SHARE))

    clients = Vocabulary(FLEET_CLIENTS + SERVICE_CLIENTS)
    fleet_of_org = rng.integers(0, len(FLEET_CLIENTS), len(org_ids))
    client = np.where(
        rng.random(n) < 0.85, fleet_of_org[account_org], rng.integers(0, len(FLEET_CLIENTS), n)
    ).astype(np.int32)
    alt_client = np.where(
        rng.random(n) < 0.4, rng.integers(0, len(FLEET_CLIENTS), n), client
    ).astype(np.int32)
    service = types == TYPE["service"]
    client[service] = len(FLEET_CLIENTS) + rng.integers(0, len(SERVICE_CLIENTS), service.sum())
    alt_client[service] = client[service]

    # Agency staff log in with MFA; partners, training organisations and missions locales with a
    # password alone (as documented for Cap Emploi and Kairos); batches with an API key.
    auth = np.full(n, AUTH["password"], np.int8)
    auth[
        (types == TYPE["advisor"])
        | (
            (types == TYPE["account_manager"])
            & ~np.isin(account_org, np.flatnonzero(org_kind == KIND["mission_locale"]))
        )
    ] = AUTH["mfa"]
    auth[service] = AUTH["api_key"]
    app_of_type = {
        "advisor": "dossier",
        "partner_advisor": "dossier",
        "training_org": "kairos",
        "youth_advisor": "imilo",
        "account_manager": "admin",
        "service": "bi",
    }
    application = np.array([APP[app_of_type[t]] for t in TYPE_SHARES], np.int8)[types]
    staff = np.isin(types, [TYPE["advisor"], TYPE["youth_advisor"], TYPE["partner_advisor"]])
    bi_user = staff & (rng.random(n) < 0.15)
    export_weekday = rng.integers(0, 5, n).astype(np.int8)

    # Persons: each caseload-holding account (but training organisations) follows its own block
    # of persons; the past registrants are followed by nobody.
    case_size = np.zeros(n, np.int64)
    for t, (low, high) in CASELOAD_RANGE.items():
        mask = types == TYPE[t]
        mid = (low + high) / 2
        case_size[mask] = np.clip(rng.lognormal(np.log(mid), 0.3, mask.sum()), low, high).astype(
            np.int64
        )
    owners = np.flatnonzero((case_size > 0) & (types != TYPE["training_org"]))
    young_owner = types[owners] == TYPE["youth_advisor"]
    js_owners, yp_owners = owners[~young_owner], owners[young_owner]
    js_followed = np.repeat(js_owners, case_size[js_owners])
    yp_followed = np.repeat(yp_owners, case_size[yp_owners])
    n_js_past = int(PAST_SHARE * len(js_followed))
    n_yp_past = int(PAST_SHARE * len(yp_followed))
    agencies = first_org["agency"] + np.arange(n_orgs["agency"])
    mls = first_org["mission_locale"] + np.arange(n_orgs["mission_locale"])
    person_org = np.concatenate(
        [
            account_org[js_followed],
            rng.choice(agencies, n_js_past),
            account_org[yp_followed],
            rng.choice(mls, n_yp_past),
        ]
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
        [
            np.arange(len(js_followed)),
            yp_first + np.arange(len(yp_followed)),
        ]
    ).astype(np.int32)
    # Training organisations follow trainees who are job seekers followed by an agency.
    trainers = np.flatnonzero(types == TYPE["training_org"])
    trainee_owner = np.repeat(trainers, case_size[trainers])
    trainees = rng.integers(0, max(1, len(js_followed)), len(trainee_owner))
    # Random trainees may repeat within one organisation: keep each pair once.
    pairs = np.unique(trainee_owner.astype(np.int64) * len(person_org) + trainees)
    caseload_account = np.concatenate(
        [caseload_account[: len(caseload_person)], (pairs // len(person_org)).astype(np.int32)]
    )
    caseload_person = np.concatenate([caseload_person, (pairs % len(person_org)).astype(np.int32)])
    return Population(
        account_ids=[
            f"u{i:06d}" for i in rng.permutation(np.arange(100_000, 100_000 + n)).tolist()
        ],
        account_type=types,
        account_org=account_org,
        org_ids=org_ids,
        org_kind=org_kind,
        daily_events=daily_events,
        start_hour=start_hour,
        end_hour=end_hour,
        out_share=out_share,
        remote_weekdays=remote_weekdays,
        office_ip=office_ip,
        home_ip=home_ip,
        client=client,
        alt_client=alt_client,
        auth=auth,
        application=application,
        bi_user=bi_user,
        export_weekday=export_weekday,
        first_day=np.zeros(n, np.int32),
        last_day=np.full(n, days - 1, np.int32),
        person_org=person_org,
        person_is_young=person_is_young,
        person_number=rng.permutation(len(person_org)).astype(np.int32),
        caseload_account=caseload_account,
        caseload_person=caseload_person,
        addresses=addresses,
        clients=clients,
    )
