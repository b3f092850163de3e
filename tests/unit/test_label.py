"""ASTCT-2019-derived-v1 grading on small hand-made patients (the reference cases)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crs_ml.cohort import EVENT_COLUMNS, OBSERVATION_COLUMNS, OUTCOME_COLUMNS, Cohort
from crs_ml.features.grading import (
    LABEL_DEFINITION,
    TIMELINE_COLUMNS,
    derive_outcomes,
    grade_events,
    state_timeline,
)


def _cohort(obs=(), events=(), patients=("p1",), outcomes=None) -> Cohort:
    """obs: (patient_id, hours, variable, value); events: (patient_id, hours, end, event, detail)."""
    o = pd.DataFrame(list(obs), columns=["patient_id", "hours", "variable", "value"])
    o = o.astype({"patient_id": object, "hours": "float64", "variable": object, "value": float})
    o["censored"] = np.zeros(len(o), dtype=np.int8)
    o["out_of_range"] = False
    o["source_row"] = np.arange(1, len(o) + 1, dtype=np.int64)
    e = pd.DataFrame(list(events), columns=["patient_id", "hours", "end_hours", "event", "detail"])
    e = e.astype({"patient_id": object, "hours": float, "end_hours": float, "event": object})
    e["detail"] = e["detail"].astype(object)
    e["source_row"] = np.arange(1, len(e) + 1, dtype=np.int64)
    p = pd.DataFrame({"patient_id": pd.Series(list(patients), dtype=object)})
    p["person_id"] = p["patient_id"]
    p["infusion_time"] = pd.Series(pd.NaT, index=p.index, dtype="datetime64[ns, UTC]")
    for col, val in (
        ("product", "axi-cel"),
        ("age_years", 60.0),
        ("sex", "F"),
        ("disease", "LBCL"),
        ("site", "A"),
    ):
        p[col] = val
    return Cohort(p, o[OBSERVATION_COLUMNS], e[EVENT_COLUMNS], outcomes=outcomes)


def _grade(obs=(), events=(), **kw) -> pd.Series:
    out = derive_outcomes(_cohort(obs, events), **kw).set_index("patient_id")
    return out.loc["p1"]


def T(h, v=38.5):
    return ("p1", h, "temperature", v)


def E(h, event, end=None, detail=None):
    return ("p1", h, np.nan if end is None else end, event, detail)


def test_no_data_is_grade_0():
    r = _grade()
    assert r.crs_max_grade == 0 and np.isnan(r.grade3_hours) and np.isnan(r.death_hours)
    assert r.label_definition == LABEL_DEFINITION


def test_fever_only_is_grade_1():
    assert _grade([T(10, 38.0)]).crs_max_grade == 1
    assert _grade([T(10, 37.99)]).crs_max_grade == 0


def test_hypotension_without_vasopressor_in_febrile_patient_is_grade_2():
    r = _grade([T(10), ("p1", 20, "sbp", 85.0)])
    assert r.crs_max_grade == 2 and np.isnan(r.grade3_hours)
    assert _grade([T(10), ("p1", 20, "sbp", 90.0)]).crs_max_grade == 1


def test_low_flow_oxygen_is_grade_2():
    assert _grade([T(10)], [E(12, "oxygen_low_flow", 20)]).crs_max_grade == 2


def test_one_vasopressor_with_vasopressin_is_grade_3():
    r = _grade([T(10)], [E(12, "vasopressor", 30), E(14, "vasopressin", 28)])
    assert r.crs_max_grade == 3 and r.grade3_hours == 12


def test_vasopressin_alone_does_not_count():
    assert _grade([T(10)], [E(12, "vasopressin", 30)]).crs_max_grade == 1


def test_high_flow_oxygen_is_grade_3():
    r = _grade([T(10)], [E(11, "oxygen_high_flow", 20)])
    assert r.crs_max_grade == 3 and r.grade3_hours == 11


def test_two_overlapping_vasopressors_are_grade_4():
    r = _grade([T(10)], [E(12, "vasopressor", 30), E(20, "vasopressor", 40)])
    assert r.crs_max_grade == 4 and r.grade3_hours == 12


def test_two_sequential_vasopressors_are_grade_3():
    r = _grade([T(10)], [E(12, "vasopressor", 18), E(20, "vasopressor", 30)])
    assert r.crs_max_grade == 3


def test_vasopressors_without_end_are_instants():
    # two instants at different hours never overlap; at the same hour they do
    assert _grade([T(10)], [E(12, "vasopressor"), E(13, "vasopressor")]).crs_max_grade == 3
    assert _grade([T(10)], [E(12, "vasopressor"), E(12, "vasopressor")]).crs_max_grade == 4


def test_positive_pressure_is_grade_4():
    assert _grade([T(10)], [E(15, "positive_pressure", 40)]).crs_max_grade == 4


def test_vasopressor_without_fever_or_treatment_is_not_crs():
    r = _grade([T(10, 37.2)], [E(12, "vasopressor", 30), E(12, "oxygen_high_flow", 30)])
    assert r.crs_max_grade == 0 and np.isnan(r.grade3_hours)


def test_vasopressor_after_tocilizumab_needs_no_fever():
    r = _grade([T(10, 37.0)], [E(5, "tocilizumab"), E(12, "vasopressor", 30)])
    assert r.crs_max_grade == 3 and r.grade3_hours == 12


@pytest.mark.parametrize("treatment", ["antipyretic", "corticosteroid"])
def test_other_fever_lifting_treatments(treatment):
    assert _grade([], [E(5, treatment), E(12, "vasopressor", 30)]).crs_max_grade == 3
    # treatment after the support does not reach back in time
    assert _grade([], [E(40, treatment), E(12, "vasopressor", 30)]).crs_max_grade == 0


def test_fever_outside_the_window_does_not_qualify():
    # fever at 0 h, vasopressor at 30 h: the vasopressor does not count (grade 1 from the fever)
    r = _grade([T(0)], [E(30, "vasopressor")])
    assert r.crs_max_grade == 1 and np.isnan(r.grade3_hours)
    # exactly 24 h later is still inside the window
    assert _grade([T(0)], [E(24, "vasopressor")]).crs_max_grade == 3
    # a configurable window
    assert _grade([T(0)], [E(30, "vasopressor")], fever_window_h=36.0).crs_max_grade == 3
    # treated before: fever no longer required
    r = _grade([T(0)], [E(2, "antipyretic"), E(30, "vasopressor")])
    assert r.crs_max_grade == 3 and r.grade3_hours == 30


def test_fever_during_running_support_sets_grade3_time():
    r = _grade([T(20)], [E(10, "vasopressor", 30)])
    assert r.crs_max_grade == 3 and r.grade3_hours == 20


def test_grade3_hours_is_start_of_first_qualifying_support():
    r = _grade(
        [T(5), ("p1", 8, "sbp", 80.0)],
        [E(9, "oxygen_low_flow", 12), E(16, "oxygen_high_flow", 20), E(18, "vasopressor", 25)],
    )
    assert r.crs_max_grade == 3 and r.grade3_hours == 16


def test_crs_death_is_grade_5_only_after_grade_3():
    r = _grade([T(10)], [E(12, "vasopressor", 30), E(50, "death", detail="CRS")])
    assert r.crs_max_grade == 5 and r.grade3_hours == 12 and r.death_hours == 50
    r = _grade([T(10)], [E(50, "death", detail="refractory crs")])
    assert r.crs_max_grade == 1 and r.death_hours == 50
    r = _grade([T(10)], [E(12, "vasopressor", 30), E(50, "death", detail="sepsis")])
    assert r.crs_max_grade == 3 and r.death_hours == 50


def test_pre_infusion_data_ignored():
    r = _grade([T(-10), ("p1", -5, "sbp", 70.0)], [E(-5, "tocilizumab"), E(-4, "vasopressor", -1)])
    assert r.crs_max_grade == 0
    # a pre-infusion antipyretic does not lift the fever requirement
    assert _grade([], [E(-2, "antipyretic"), E(5, "vasopressor")]).crs_max_grade == 0


def test_organ_toxicity_and_other_events_do_not_change_grade():
    r = _grade(
        [T(10), ("p1", 11, "creatinine", 5.0), ("p1", 11, "alt", 900.0)],
        [E(11, "icu_admission"), E(12, "anakinra")],
    )
    assert r.crs_max_grade == 1


def test_horizon_limits_grading():
    obs, ev = [T(100)], [E(400, "antipyretic"), E(400, "vasopressor")]
    assert _grade(obs, ev).crs_max_grade == 1
    assert _grade(obs, ev, horizon_h=None).crs_max_grade == 3


def test_followup_kept_from_existing_outcomes():
    known = pd.DataFrame({"patient_id": ["p1"], "followup_hours": [120.0]})
    out = derive_outcomes(_cohort([T(1)], outcomes=known))
    assert list(out.columns) == OUTCOME_COLUMNS
    assert out.loc[0, "followup_hours"] == 120.0
    assert np.isnan(derive_outcomes(_cohort([T(1)])).loc[0, "followup_hours"])


def test_grade_events_is_the_step_function():
    c = _cohort([T(10), T(60)], [E(12, "vasopressor", 20), E(15, "vasopressor", 18)])
    ge = grade_events(c.observations, c.events)
    assert list(ge.columns) == ["patient_id", "hours", "grade"]
    expected = [
        (10.0, 1),
        (12.0, 3),
        (15.0, 4),
        (np.nextafter(18.0, np.inf), 3),
        (np.nextafter(20.0, np.inf), 1),
        (np.nextafter(34.0, np.inf), 0),
        (60.0, 1),
        (np.nextafter(84.0, np.inf), 0),
    ]
    assert list(zip(ge["hours"], ge["grade"], strict=True)) == expected


def test_many_patients_are_graded_independently():
    obs = [("a", 5, "temperature", 39.0), ("b", 5, "temperature", 36.0)]
    ev = [
        ("a", 6, 10, "vasopressor", None),
        ("b", 6, 10, "vasopressor", None),
        ("c", 1, np.nan, "tocilizumab", None),
        ("c", 3, 9, "positive_pressure", None),
    ]
    out = derive_outcomes(_cohort(obs, ev, patients=("a", "b", "c", "d"))).set_index("patient_id")
    assert out["crs_max_grade"].to_dict() == {"a": 3, "b": 0, "c": 4, "d": 0}
    assert out.loc["c", "grade3_hours"] == 3.0


def test_state_timeline_columns():
    c = _cohort([T(10)], [E(12, "oxygen_high_flow", 14)])
    tl = state_timeline(c.observations, c.events)
    assert tl.columns.tolist() == ["patient_id", *TIMELINE_COLUMNS]
    at12 = tl[tl.hours == 12].iloc[0]
    assert at12.oxygen_level == 2 and at12.febrile and at12.grade == 3
    assert tl.iloc[-1].grade == 0
