"""Features of issue 9: accumulation over days, days off, novelty among peers, the working set."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from detector.features import accumulation, calendar
from detector.features.table import build_feature_table
from detector.schema import normalise

COLUMNS = ["timestamp", "account_id", "action", "record_id", "organization_id", "record_org_id"]


def _day_number(date: str) -> int:
    return (dt.date.fromisoformat(date) - dt.date(1970, 1, 1)).days


def test_easter_and_french_public_holidays():
    assert calendar.easter(2024) == dt.date(2024, 3, 31)
    assert calendar.easter(2025) == dt.date(2025, 4, 20)
    holidays = calendar.french_holidays(2024)
    assert len(holidays) == 11
    for date in ("2024-04-01", "2024-05-09", "2024-05-20", "2024-07-14", "2024-11-11"):
        assert dt.date.fromisoformat(date) in holidays


def test_off_days_are_weekends_and_holidays():
    days = [_day_number(d) for d in ("2024-01-19", "2024-01-20", "2024-01-21", "2024-05-08")]
    assert list(calendar.off_days(np.array(days))) == [False, True, True, True]
    # 2024-01-08 (Monday) .. 2024-01-22: two weekends, four days off.
    before = calendar.off_days_before(
        np.array([_day_number("2024-01-22")]), _day_number("2024-01-08")
    )
    assert list(before) == [4]


def _cusum(z_by_day: list[float]) -> list[float]:
    """The sum after each day, for one account with a fixed reference (centre 0, scale 1)."""
    total, out = np.zeros(1), []
    for z in z_by_day:
        total = accumulation.step(total, accumulation.daily_term(np.array([z]), np.zeros(1)))
        out.append(float(total[0]))
    return out


def test_one_busy_day_cannot_reach_the_rule_threshold_but_two_days_of_excess_do():
    assert max(_cusum([0, 0, 40, 0, 0])) < 5  # one day adds at most DAILY_CAP - ALLOWANCE
    assert _cusum([0, 0, 40, 0, 0])[-1] < _cusum([0, 0, 40])[-1]  # ordinary days drain it
    assert _cusum([4.5, 4.5])[-1] >= 5  # two days of strong excess
    assert _cusum([3.5, 3.5, 3.5])[-1] >= 5  # three days of moderate excess
    assert _cusum([1.5] * 20)[-1] == 0  # within the allowance: never accumulates


def test_the_reference_stays_the_one_from_before_the_excess():
    # Each day's own median follows the excess (as a 28-day median soon does);
    # the sum keeps judging against the level from before it began.
    days = np.arange(6)
    values = np.array([[2.0, 2.0, 30.0, 30.0, 30.0, 30.0]])
    centre = np.array([[2.0, 2.0, 2.0, 16.0, 30.0, 30.0]])
    scale = np.full((1, 6), 3.0)
    before, kept_centre, _ = accumulation.sums_before(
        values, centre, scale, np.zeros((1, 6)), days, np.array([5])
    )
    assert before[0, 0] >= 3 * (accumulation.DAILY_CAP - accumulation.ALLOWANCE) - 1e-9
    assert kept_centre[0, 0] == 2.0


def test_a_shift_of_the_whole_group_is_no_ones_excess():
    z = np.array([[6.0], [5.0], [7.0], [6.5], [5.5], [8.0]])  # six accounts, one day
    groups = np.array([0, 0, 0, 0, 0, 1])
    shift = accumulation.same_day_shift(z, groups)
    assert shift[0, 0] == 6.0  # the group's median
    assert shift[5, 0] == 0.0  # a group of one shifts nothing


def _reading_log(days: list[tuple[str, int, int]], start_hour: int = 8) -> pd.DataFrame:
    """Account 'a' of structure s0: per day (date, reads in s0, reads in other structures)."""
    rows = []
    for date, own, other in days:
        base = pd.Timestamp(f"{date}T{start_hour:02d}:00Z")
        for i in range(own + other):
            org = "s0" if i < own else f"s{1 + i % 7}"
            rows.append(
                (base + pd.Timedelta(minutes=i), "a", "view_record", f"{date}-{i}", "s0", org)
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def test_a_sustained_shift_accumulates_and_one_busy_day_does_not():
    dates = pd.bdate_range("2024-01-08", periods=18).strftime("%Y-%m-%d")
    plan = [(d, 20, 2) for d in dates]
    plan[8] = (dates[8], 20, 40)  # one busy day outside the structure
    for i in (13, 14, 15):  # then a sustained excess
        plan[i] = (dates[i], 20, 25)
    table = build_feature_table(normalise(_reading_log(plan)), None).features
    cusum = table["cusum_out_of_caseload_reads"].to_numpy()
    assert cusum[8] < 5
    assert cusum[14] >= 5 or cusum[15] >= 5
    assert (cusum[:8] < 5).all()


def test_off_day_features_come_from_the_account_calendar():
    dates = list(pd.bdate_range("2024-01-08", periods=9).strftime("%Y-%m-%d")) + ["2024-01-20"]
    table = build_feature_table(normalise(_reading_log([(d, 10, 0) for d in dates])), None)
    last = table.features.iloc[-1]
    assert last["off_day"] == 1
    assert last["own_off_days_worked"] == 0
    assert last["off_days_since_first_seen"] == 2  # the weekend of 13-14 January
    assert table.features["off_day"].iloc[:-1].eq(0).all()


def test_without_caseloads_the_working_set_comes_from_structures_read_before():
    dates = list(pd.bdate_range("2024-01-08", periods=7).strftime("%Y-%m-%d"))
    plan = [(d, 10, 0) for d in dates[:6]] + [(dates[6], 10, 7)]
    table = build_feature_table(normalise(_reading_log(plan)), None)
    assert list(table.features["new_structures"]) == [0, 0, 0, 0, 0, 0, 7]
    assert any("working set derived from its own history" in n for n in table.notices)


def test_a_client_most_peers_switch_to_is_new_but_not_rare():
    rows = []
    accounts = [f"u{i:02d}" for i in range(30)]
    for day in range(8):
        for n, account in enumerate(accounts):
            agent = "browser-1"
            if day == 7 and n < 25:
                agent = "browser-2"  # rolled out to most accounts
            if day == 7 and n == 29:
                agent = "attacker-tool"
            stamp = pd.Timestamp("2024-01-08T08:00Z") + pd.Timedelta(days=day, minutes=n)
            rows.append((stamp, account, "login", "advisor", agent))
    frame = pd.DataFrame(
        rows, columns=["timestamp", "account_id", "action", "account_type", "user_agent"]
    )
    table = build_feature_table(normalise(frame), None).features
    last = table[table["day"] == dt.date(2024, 1, 15)].set_index("account_id")
    assert last.loc["u00", "new_clients"] == 1 and last.loc["u00", "new_rare_clients"] == 0
    assert last.loc["u29", "new_clients"] == 1 and last.loc["u29", "new_rare_clients"] == 1
    assert last.loc["u00", "peer_new_clients_share"] > 0.8
