"""Keyed pseudonyms for the identifiers in the detector's outputs (``--pseudonymise``).

An identifier becomes ``<kind>-`` and the first 16 hex digits of
HMAC-SHA-256(key, ``<kind>\\0<value>``): stable for one key (an analyst can
still follow one account across runs and files), not reversible nor linkable
without the key. Account ids and target accounts share the kind ``acct``, so an
account created by another keeps one pseudonym in both columns.

Columns are pseudonymised whole: the distinct values are hashed once and mapped
back through pandas categories / codes or an Arrow dictionary; no Python loop
over events.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from detector.errors import DetectorError

KEY_ENV = "LOGSENTINEL_PSEUDONYM_KEY"
MIN_KEY_BYTES = 16
HEX_DIGITS = 16
#: Column -> kind of identifier (the pseudonym's prefix).
COLUMNS: dict[str, str] = {
    "account_id": "acct",
    "target_account_id": "acct",
    "src_ip": "ip",
    "record_id": "rec",
    # Incident ids hash an account id without a key: they would let a guess be checked.
    "incident_id": "inc",
}
LIST_COLUMNS: dict[str, str] = {"accounts": "acct"}  # the incidents table's account lists


class PseudonymKeyError(DetectorError):
    """No usable key for ``--pseudonymise``."""


def load_key(key_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> bytes:
    """The key from ``key_file`` (surrounding whitespace stripped), else from ``$LOGSENTINEL_PSEUDONYM_KEY``."""
    environ = os.environ if environ is None else environ
    if key_file is not None:
        try:
            key = Path(key_file).read_bytes().strip()
        except OSError as error:
            raise PseudonymKeyError(
                f"cannot read pseudonym key file {key_file}: {error.strerror or error}"
            ) from None
        source = f"pseudonym key file {key_file}"
    elif environ.get(KEY_ENV):
        key = environ[KEY_ENV].strip().encode("utf-8")
        source = f"${KEY_ENV}"
    else:
        raise PseudonymKeyError(
            f"--pseudonymise needs a key: --pseudonym-key-file FILE or ${KEY_ENV}"
        )
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"{source} holds {len(key)} bytes; a pseudonym key needs at least {MIN_KEY_BYTES}"
        )
    return key


class Pseudonymiser:
    """Replaces identifiers by keyed pseudonyms; one instance per key."""

    def __init__(self, key: bytes):
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyError(f"a pseudonym key needs at least {MIN_KEY_BYTES} bytes")
        # Keyed once: each value then costs a copy and an update (a third less than hmac.new).
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def pseudonym(self, value: object, kind: str) -> str:
        """The pseudonym of one value (its text form), e.g. ``acct-3f9c0a1b2c3d4e5f``."""
        mac = self._keyed.copy()
        mac.update(f"{kind}\0{value}".encode())
        return f"{kind}-{mac.hexdigest()[:HEX_DIGITS]}"

    def _many(self, values, kind: str) -> list[str]:
        # One HMAC per distinct value: callers pass categories / uniques / a dictionary.
        return [self.pseudonym(value, kind) for value in values]

    def series(self, values: pd.Series, kind: str) -> pd.Series:
        """A pandas column with every non-null value pseudonymised; categorical stays categorical."""
        if isinstance(values.dtype, pd.CategoricalDtype):
            categories = self._many(values.cat.categories, kind)
            if len(set(categories)) == len(categories):  # else (never seen) map as plain values
                return values.cat.rename_categories(categories)
            values = values.astype(object)
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        mapped = np.array(self._many(uniques, kind) + [None], dtype=object)
        out = pd.Series(mapped[codes], index=values.index, name=values.name)  # -1 -> None
        return out.astype(values.dtype) if pd.api.types.is_string_dtype(values.dtype) else out

    def arrow(self, values: pa.Array | pa.ChunkedArray, kind: str) -> pa.Array | pa.ChunkedArray:
        """An Arrow column as pseudonymised strings (nulls stay null), via its dictionary."""
        encoded = pc.dictionary_encode(values)
        if isinstance(encoded, pa.ChunkedArray):
            return pa.chunked_array(
                [self.arrow(chunk, kind) for chunk in encoded.chunks], type=pa.string()
            )
        dictionary = pa.array(self._many(encoded.dictionary.to_pylist(), kind), type=pa.string())
        return dictionary.take(encoded.indices)

    def is_pseudonymised(self, values: pd.Series, kind: str) -> bool:
        """Whether every non-null value already has the form of a ``kind`` pseudonym."""
        present = values.dropna().astype(str)
        return bool(len(present)) and bool(
            present.str.fullmatch(f"{kind}-[0-9a-f]{{{HEX_DIGITS}}}").all()
        )

    def originals(
        self, pseudonyms: Collection[str], candidates: pa.Array | pa.ChunkedArray, kind: str
    ) -> dict[str, str]:
        """``pseudonym -> value`` for the ``candidates`` whose pseudonym is in ``pseudonyms``.

        What an analyst holding the key can do: find the accounts behind
        pseudonymised alerts in the raw log.
        """
        distinct = pc.unique(candidates).drop_null()
        hashed = self.arrow(distinct, kind).to_pylist()
        wanted = set(pseudonyms)
        return {h: str(v) for h, v in zip(hashed, distinct.to_pylist(), strict=True) if h in wanted}

    def lists(self, values: pd.Series, kind: str) -> pd.Series:
        """A column of lists with every element pseudonymised (each distinct value hashed once)."""
        flat = values.explode()
        mapped = self.series(flat.astype(object), kind)
        return (
            mapped.groupby(level=0, sort=False)
            .agg(lambda v: [x for x in v if pd.notna(x)])
            .reindex(values.index, fill_value=[])
        )

    def frame(self, frame: pd.DataFrame, columns: Mapping[str, str] = COLUMNS) -> pd.DataFrame:
        """A copy of ``frame`` with each of ``columns`` (and list columns) it holds pseudonymised."""
        present = {c: self.series(frame[c], columns[c]) for c in columns if c in frame.columns}
        present |= {c: self.lists(frame[c], k) for c, k in LIST_COLUMNS.items() if c in frame}
        return frame.assign(**present) if present else frame
