"""Completing the kept day joins its stored events (Arrow, dictionaries) with the new log's
(a frame of categoricals): the joined frame is the one decoding every text column gave,
whatever dictionaries the parts carried."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from detector.engine.state import concat_events
from detector.schema import normalise


def _kept() -> pa.Table:
    """Stored events: dictionaries holding values no event uses, an empty string among them."""
    ts = pd.to_datetime(["2024-02-04 08:00", "2024-02-04 09:00", "2024-02-04 07:00"], utc=True)
    return pa.table(
        {
            "timestamp": pa.array(ts),
            "account_id": pa.DictionaryArray.from_arrays(
                pa.array([2, 0, 2], pa.int8()), pa.array(["zed", "unused", "amy"])
            ),
            "action": pa.array(["login", "view_record", "search"]),
            "record_id": pa.array([None, "r1", None]),
            "src_ip": pa.DictionaryArray.from_arrays(
                pa.array([0, 1, None], pa.int32()), pa.array(["10.0.0.9", ""])
            ),
        }
    )


def _new() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(["2024-02-04 08:30", "2024-02-04 10:00"], utc=True),
            "account_id": ["bob", "amy"],
            "action": ["view_record", "logout"],
            "record_id": ["r2", None],
            "src_ip": ["10.0.0.1", "10.0.0.9"],
        }
    )
    return normalise(frame).events


def _decoded(frame: pd.DataFrame) -> pd.DataFrame:
    """Every categorical as plain values (missing as None)."""
    out = frame.copy()
    for name in out.columns:
        if isinstance(out[name].dtype, pd.CategoricalDtype):
            out[name] = out[name].astype(object).where(out[name].notna(), None)
    return out


def test_joined_events_are_in_time_order_with_used_categories_sorted():
    events = concat_events([_kept(), _new()])
    assert list(events["timestamp"].dt.hour) == [7, 8, 8, 9, 10]
    assert list(events["account_id"]) == ["amy", "amy", "bob", "zed", "amy"]
    # Only the values events use, sorted (as decoding and encoding again gave them):
    # the kernel's windows come in category order.
    assert list(events["account_id"].cat.categories) == ["amy", "bob", "zed"]
    assert list(events["src_ip"].cat.categories) == ["10.0.0.1", "10.0.0.9"]
    assert events["src_ip"].isna().tolist() == [True, False, False, True, False]
    assert list(events["action"].cat.categories)[:3] == ["login", "logout", "view_record"]


def test_a_column_plain_in_one_part_gives_the_same_frame():
    kept = _kept()
    plain = kept.set_column(1, "account_id", kept["account_id"].cast(pa.string()))
    expected = _decoded(concat_events([kept, _new()]))
    pd.testing.assert_frame_equal(_decoded(concat_events([plain, _new()])), expected)
