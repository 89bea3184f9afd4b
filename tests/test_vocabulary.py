"""The vocabulary is declared once: its order, and every module that still keeps a copy agrees."""

from __future__ import annotations

import click

from detector import vocabulary as v
from detector.vocabulary import Mode, Severity


def test_severities_are_ordered_by_rank_not_alphabetically():
    assert sorted([Severity.HIGH, Severity.LOW, Severity.MEDIUM]) == [
        Severity.LOW,
        Severity.MEDIUM,
        Severity.HIGH,
    ]
    assert Severity.LOW < Severity.HIGH and Severity.HIGH >= Severity.MEDIUM
    assert [s.rank for s in Severity] == [0, 1, 2]
    assert tuple(Severity) == v.SEVERITIES
    assert v.SEVERITIES_URGENT_FIRST == ("high", "medium", "low")


def test_a_severity_is_its_string_in_tables_and_lookups():
    assert Severity.HIGH == "high" and f"{Severity.HIGH}" == "high"
    assert {"high": 1}[Severity.HIGH] == 1
    # Against a plain string the comparison stays a string comparison.
    assert ("high" < Severity.LOW) is ("high" < "low")


def test_rule_weights_rise_with_severity():
    weights = [s.weight for s in Severity]
    assert weights == sorted(weights) and len(set(weights)) == 3
    assert set(v.SEVERITY_SCORE) == set(v.SEVERITIES) == set(v.SEVERITY_COLOURS)


def test_modes_agree_with_the_pipeline_and_the_clis():
    from detector import pipeline
    from detector.cli.bench import bench

    assert tuple(Mode) == v.MODES == ("rules", "model", "both")
    # pipeline.py keeps its own copy until it reads the vocabulary.
    assert tuple(pipeline.MODES) == v.MODES
    (mode,) = [p for p in bench.params if p.name == "modes"]
    assert isinstance(mode.type, click.Choice) and tuple(mode.type.choices) == v.MODES


def test_action_groups_cover_every_contract_action_once():
    from detector.schema import ACTIONS

    assert set(v.ACTION_GROUPS) == set(ACTIONS) - {"other"}  # "other" is its own group
    assert set(v.ACTION_GROUPS.values()) | {"other"} == set(v.GROUP_ORDER)


def test_the_time_zone_is_the_one_timeutil_checks():
    from detector import timeutil

    assert timeutil.DEFAULT_TIMEZONE is v.DEFAULT_TIMEZONE
    assert timeutil.check_timezone(v.DEFAULT_TIMEZONE) == "Europe/Paris"


def test_baseline_names_are_built_and_split_by_the_vocabulary():
    from detector.features.catalogue import BASELINED_VOLUMES, FEATURES

    assert v.baseline_name(v.PEER_P95, "records_read") == "peer_p95_records_read"
    assert v.baseline_volume("z_own_out_of_caseload_share") == "out_of_caseload_share"
    assert v.baseline_volume("records_read") is None
    # Every catalogued baseline is named by the vocabulary, and nothing else looks like one.
    baselines = {n for n in FEATURES if v.baseline_volume(n) is not None}
    assert baselines == {
        v.baseline_name(stat, volume)
        for volume in BASELINED_VOLUMES
        for stat in v.BASELINE_FEATURE_STATS
    }


def test_a_baseline_of_a_volume_is_in_the_volumes_unit():
    from detector.features.catalogue import BASELINED_VOLUMES, FEATURES
    from detector.vocabulary import OWN_MAX, OWN_MEDIAN, PEER_MEDIAN, PEER_P95, Z_OWN, baseline_name

    for volume in BASELINED_VOLUMES:
        for stat in (OWN_MEDIAN, OWN_MAX, PEER_MEDIAN, PEER_P95):
            assert FEATURES[baseline_name(stat, volume)].unit == FEATURES[volume].unit
        assert FEATURES[baseline_name(Z_OWN, volume)].unit == "z"
    assert FEATURES[baseline_name(OWN_MEDIAN, "out_of_caseload_share")].unit == "share"
