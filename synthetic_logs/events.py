"""Columnar event batches: every generated event is a row of small integer codes.

Strings (account ids, addresses, clients...) live once in vocabularies and are
only materialised when the log is written, which keeps generation vectorised and light.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

ACCOUNT_TYPES = (
    "advisor",
    "partner_advisor",
    "training_org",
    "youth_advisor",
    "account_manager",
    "service",
)
ACTIONS = (
    "login",
    "logout",
    "view_record",
    "search",
    "export",
    "update_record",
    "create_account",
    "grant_access",
)
APPLICATIONS = ("dossier", "kairos", "ouiform", "imilo", "bi", "admin", "kairos2")
AUTH_METHODS = ("password", "mfa", "sso", "api_key")
OUTCOMES = ("success", "failure")

TYPE = {name: code for code, name in enumerate(ACCOUNT_TYPES)}
ACTION = {name: code for code, name in enumerate(ACTIONS)}
APP = {name: code for code, name in enumerate(APPLICATIONS)}
AUTH = {name: code for code, name in enumerate(AUTH_METHODS)}
SUCCESS, FAILURE = 0, 1
NONE = -1  # code for a null value in every integer column


@dataclass
class EventBatch:
    """Events as parallel arrays; -1 means null in the code columns."""

    ts: np.ndarray  # int64 µs since epoch, UTC
    account: np.ndarray  # int32 index into the account vocabulary
    action: np.ndarray  # int8, ACTIONS
    record: np.ndarray  # int32 person index or -1
    application: np.ndarray  # int8, APPLICATIONS
    ip: np.ndarray  # int32 index into the address vocabulary
    ua: np.ndarray  # int32 index into the client vocabulary
    auth: np.ndarray  # int8, AUTH_METHODS or -1
    outcome: np.ndarray  # int8, OUTCOMES
    returned: np.ndarray  # int64 records_returned or -1
    target: np.ndarray  # int32 account index or -1
    attack: np.ndarray  # int16 attack index or -1 (benign)

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, start: int, stop: int) -> EventBatch:
        return EventBatch(**{f.name: getattr(self, f.name)[start:stop] for f in fields(self)})

    def take(self, order: np.ndarray) -> EventBatch:
        return EventBatch(**{f.name: getattr(self, f.name)[order] for f in fields(self)})


_DTYPES = {
    "ts": np.int64,
    "account": np.int32,
    "action": np.int8,
    "record": np.int32,
    "application": np.int8,
    "ip": np.int32,
    "ua": np.int32,
    "auth": np.int8,
    "outcome": np.int8,
    "returned": np.int64,
    "target": np.int32,
    "attack": np.int16,
}
# Columns that may be left out of make_batch, and their value then.
_DEFAULTS = {
    "record": NONE,
    "auth": NONE,
    "outcome": SUCCESS,
    "returned": NONE,
    "target": NONE,
    "attack": NONE,
}


def make_batch(ts: np.ndarray, **columns) -> EventBatch:
    """A batch of len(ts) events; scalars broadcast, missing columns take their null/default."""
    n = len(ts)
    values = {}
    for name, dtype in _DTYPES.items():
        value = ts if name == "ts" else columns.pop(name, _DEFAULTS.get(name))
        if value is None:
            raise TypeError(f"column {name!r} is required")
        array = np.asarray(value)
        values[name] = (
            np.full(n, array, dtype=dtype) if array.ndim == 0 else array.astype(dtype, copy=False)
        )
    if columns:
        raise TypeError(f"unknown columns: {sorted(columns)}")
    return EventBatch(**values)


def concat(batches: list[EventBatch]) -> EventBatch:
    """One batch holding every event of `batches`, in order."""
    batches = [b for b in batches if len(b)]
    if not batches:
        return make_batch(np.zeros(0, np.int64), account=0, action=0, application=0, ip=0, ua=0)
    return EventBatch(
        **{name: np.concatenate([getattr(b, name) for b in batches]) for name in _DTYPES}
    )


def to_records(batch: EventBatch) -> np.ndarray:
    """The batch as one structured array (one row per event), e.g. to park it on disk."""
    records = np.empty(len(batch), dtype=[(name, dtype) for name, dtype in _DTYPES.items()])
    for name in _DTYPES:
        records[name] = getattr(batch, name)
    return records


def from_records(records: np.ndarray) -> EventBatch:
    """The inverse of `to_records`."""
    return EventBatch(**{name: np.ascontiguousarray(records[name]) for name in _DTYPES})
