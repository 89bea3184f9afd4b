"""The partition phase's estimate of what is left: at the rate since the first partition
came back, not from the start (the pool starting and the first reads would inflate it)."""

from __future__ import annotations

from detector.engine import local
from detector.engine.local import TimeLeft


def test_time_left_counts_from_the_first_partition(monkeypatch):
    clock = iter([100.0, 100.0, 110.0, 130.0])
    monkeypatch.setattr(local.time, "perf_counter", lambda: next(clock))
    left = TimeLeft(total_rows=1_000)
    assert left.after(10) == ""  # the first partition: no rate yet (start-up 100 s ignored)
    assert left.after(20) == ""  # back at the same instant: still none
    assert left.after(110) == ": about 89 s left"  # 100 rows in 10 s, 890 to go
    assert left.after(1_000) == ": about 0 s left"
