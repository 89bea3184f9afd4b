"""What pruned days leave behind: a per-account summary of the days a state no longer stores.

``detector score --state DIR --keep-days N`` drops the stored windows of days
older than the last N. Most features read at most ``HISTORY_DAYS`` earlier
days (own and peer baselines) and need nothing of them; a few read the whole
past of an account, and the summary carries exactly what those read:

- ``days``: earlier active days (``history_days``, novelty's minimum history);
- ``first_day``: the first active day (account age);
- ``off_days``: days off (weekends, public holidays) it was active on (own_off_days_worked);
- ``h00`` ... ``h23``: the summed 24-hour histogram (rare hours);
- ``type_first``/``type_any``, ``org_first``/``org_any``: the first event's
  account type and organisation, and the first non-missing one (the account's
  type and peer group).

Every column folds by a rule that does not need the dropped windows again
(sums, minimum, first value in time order), so a summary folds into the next.
First-seen pairs are not summarised: their tables are kept whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from detector.features.calendar import off_days

HOURS = [f"h{h:02d}" for h in range(24)]
ATTRIBUTES = ("type", "org")
COLUMNS = ["account_id", "days", "first_day", "off_days", *HOURS] + [
    f"{name}_{kind}" for name in ATTRIBUTES for kind in ("first", "any")
]


def empty_summary() -> pd.DataFrame:
    """A summary of no dropped day."""
    frame = pd.DataFrame({c: pd.Series(dtype=np.int64) for c in COLUMNS})
    for column in COLUMNS:
        if column == "account_id" or column.endswith(("_first", "_any")):
            frame[column] = pd.Series(dtype=object)
    return frame


def summarise(
    windows: pd.DataFrame, hours: np.ndarray, earlier: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The summary of ``windows`` (kernel aggregates of the dropped days, with their
    ``hours``) folded into ``earlier`` (the summary of days dropped before, all older).
    """
    order = np.lexsort((windows["day"].to_numpy(), windows["account_id"].to_numpy()))
    windows = windows.iloc[order]
    frame = pd.DataFrame(
        {
            "account_id": windows["account_id"].astype(str).to_numpy(),
            "days": np.ones(len(windows), dtype=np.int64),
            "first_day": windows["day"].to_numpy().astype(np.int64),
            "off_days": off_days(windows["day"].to_numpy().astype(np.int64)).astype(np.int64),
            **{h: hours[order, i].astype(np.int64) for i, h in enumerate(HOURS)},
        }
    )
    for name in ATTRIBUTES:
        for kind in ("first", "any"):
            frame[f"{name}_{kind}"] = windows[f"_{name}_{kind}"].to_numpy(dtype=object)
    if earlier is not None and len(earlier):
        frame = pd.concat([earlier[COLUMNS], frame], ignore_index=True)  # earlier days first
    grouped = frame.groupby("account_id", sort=True)
    summary = grouped[["days", "off_days", *HOURS]].sum()
    summary["first_day"] = grouped["first_day"].min()
    firsts = frame.drop_duplicates("account_id", keep="first").set_index("account_id")
    for name in ATTRIBUTES:
        summary[f"{name}_first"] = firsts[f"{name}_first"].reindex(summary.index)
        summary[f"{name}_any"] = grouped[f"{name}_any"].first()  # first non-missing
    return summary.reset_index()[COLUMNS]


@dataclass
class Prior:
    """A summary aligned on the feature table's accounts (zeros where an account has none)."""

    present: np.ndarray  # (accounts,) the account has dropped days
    days: np.ndarray  # (accounts,) dropped active days
    off_days: np.ndarray  # (accounts,) dropped active days that were days off
    first_day: np.ndarray  # (accounts,) first dropped day, as a day index; int64 max when none
    hours: np.ndarray  # (accounts, 24)
    attributes: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (first, any), object arrays


def align(summary: pd.DataFrame, accounts: pd.Index, first_day: int) -> Prior:
    """``summary``'s rows for ``accounts`` (the table's, sorted), days relative to ``first_day``."""
    n_acc = len(accounts)
    row = pd.Index(summary["account_id"].astype(str)).get_indexer(accounts.astype(str))
    present = row >= 0
    take = row[present]
    days = np.zeros(n_acc, dtype=np.int64)
    days[present] = summary["days"].to_numpy(dtype=np.int64)[take]
    off = np.zeros(n_acc, dtype=np.int64)
    off[present] = summary["off_days"].to_numpy(dtype=np.int64)[take]
    first = np.full(n_acc, np.iinfo(np.int64).max)
    first[present] = summary["first_day"].to_numpy(dtype=np.int64)[take] - first_day
    hours = np.zeros((n_acc, 24), dtype=np.int64)
    hours[present] = summary[HOURS].to_numpy(dtype=np.int64)[take]
    attributes = {}
    for name in ATTRIBUTES:
        pair = []
        for kind in ("first", "any"):
            values = np.full(n_acc, None, dtype=object)
            values[present] = summary[f"{name}_{kind}"].to_numpy(dtype=object)[take]
            pair.append(values)
        attributes[name] = (pair[0], pair[1])
    return Prior(present, days, off, first, hours, attributes)


def attribute(prior: Prior, name: str, kept: np.ndarray) -> np.ndarray:
    """An account's type or organisation over dropped and kept days: the first event's,
    else the first non-missing one (``kept``: that of the kept windows alone)."""
    first, any_value = prior.attributes[name]
    earlier = np.where(pd.notna(first), first, np.where(pd.notna(any_value), any_value, kept))
    return np.where(prior.present, earlier, kept)
