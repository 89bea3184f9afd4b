"""The population's table of habits per account type, and the arrays built from it."""

from __future__ import annotations

import numpy as np

from synthetic_logs.events import ACCOUNT_TYPES, APP, TYPE
from synthetic_logs.population import HABITS, build_population, per_type


def test_habits_name_every_account_type_in_code_order():
    assert tuple(HABITS) == ACCOUNT_TYPES
    assert abs(sum(h.share for h in HABITS.values()) - 1.0) < 1e-9


def test_per_type_arrays_are_indexed_by_type_code():
    medians = per_type({t: h.median_daily_events for t, h in HABITS.items()}, float)
    for name, code in TYPE.items():
        assert medians[code] == HABITS[name].median_daily_events


def test_each_account_gets_its_types_application_and_caseload_range():
    pop = build_population(np.random.default_rng(3), accounts=300, days=10)
    sizes = np.bincount(pop.caseload_account, minlength=pop.n_accounts)
    for name, habits in HABITS.items():
        mine = pop.account_type == TYPE[name]
        assert mine.sum() >= habits.min_accounts, name
        assert (pop.application[mine] == APP[habits.application]).all(), name
        if habits.caseload is None:
            assert (sizes[mine] == 0).all(), name
        elif name != "training_org":  # trainees repeat and are kept once
            low, high = habits.caseload
            assert ((sizes[mine] >= low) & (sizes[mine] <= high)).all(), name
