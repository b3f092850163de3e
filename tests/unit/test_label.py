"""ASTCT-2019-derived-v4 grading on small hand-made patients (the reference cases)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from crs_ml.cohort import EVENT_COLUMNS, OBSERVATION_COLUMNS, OUTCOME_COLUMNS, Cohort
from crs_ml.config import LabelConfig, config_from_dict, config_to_yaml, load_config
from crs_ml.errors import ConfigError
from crs_ml.features.grading import (
    LABEL_DEFINITION,
    TIMELINE_COLUMNS,
    derive_outcomes,
    grade_events,
    label_definition,
    oxygen_flow,
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
    # fever at 2 h, tocilizumab at 5 h: the vasopressor at 40 h (outside the fever window)
    r = _grade([T(2), T(10, 37.0)], [E(5, "tocilizumab"), E(40, "vasopressor", 50)])
    assert r.crs_max_grade == 3 and r.grade3_hours == 40


@pytest.mark.parametrize("treatment", ["antipyretic", "corticosteroid"])
def test_other_fever_lifting_treatments(treatment):
    assert _grade([T(1)], [E(5, treatment), E(40, "vasopressor", 50)]).crs_max_grade == 3
    # treatment after the support does not reach back in time
    assert _grade([T(1)], [E(60, treatment), E(40, "vasopressor", 50)]).crs_max_grade == 1


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


@pytest.mark.parametrize(
    ("detail", "grade"),
    [
        ("septic shock, CRS excluded", 3),
        ("no evidence of CRS; died of sepsis", 3),
        ("death not due to CRS", 3),
        ("non-CRS death (infection)", 3),
        ("CRS was ruled out. Cause: ICANS", 3),
        ("cytokine release syndrome unlikely", 3),
        ("CRS not excluded", 5),
        ("no fever on day 3, later died of refractory CRS", 5),
        ("sepsis excluded; CRS", 5),
        ("D89.832", 5),
        ("no CRS", 3),
        ("no improvement of CRS", 5),
        ("no response to CRS therapy", 5),
        ("non-resolving CRS", 5),
        ("not controlled CRS", 5),
    ],
)
def test_a_negated_crs_mention_does_not_make_a_death_grade_5(detail, grade):
    r = _grade([T(10)], [E(12, "vasopressor", 30), E(50, "death", detail=detail)])
    assert r.crs_max_grade == grade and r.death_hours == 50


def test_a_value_loading_flagged_out_of_range_is_no_fever_or_hypotension():
    """A temperature of 380 (a typo for 38.0) and an sbp of 5, flagged by loading: no
    feature reads them, and neither does the grading (labels, CRS state, not_at_risk)."""
    c = _cohort([T(10, 380.0), ("p1", 11, "sbp", 5.0)], [E(12, "vasopressor", 30)])
    assert derive_outcomes(c).loc[0, "crs_max_grade"] == 3  # read when not flagged
    c.observations["out_of_range"] = True
    out = derive_outcomes(c).loc[0]
    assert out.crs_max_grade == 0 and np.isnan(out.grade3_hours)


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
        ("c", 30, 39, "positive_pressure", None),
    ]
    obs.append(("c", 0.5, "temperature", 38.4))
    out = derive_outcomes(_cohort(obs, ev, patients=("a", "b", "c", "d"))).set_index("patient_id")
    assert out["crs_max_grade"].to_dict() == {"a": 3, "b": 0, "c": 4, "d": 0}
    assert out.loc["c", "grade3_hours"] == 30.0


def test_state_timeline_columns():
    c = _cohort([T(10)], [E(12, "oxygen_high_flow", 14)])
    tl = state_timeline(c.observations, c.events)
    assert tl.columns.tolist() == ["patient_id", *TIMELINE_COLUMNS]
    at12 = tl[tl.hours == 12].iloc[0]
    assert at12.oxygen_level == 2 and at12.febrile and at12.grade == 3
    assert tl.iloc[-1].grade == 0


def S(h, v=80.0):
    return ("p1", h, "sbp", v)


# ASTCT 2019: fever first, then treatment may mask it. (observations, events, grade, grade3_hours)
FEVER_FIRST_CASES = {
    "never febrile, prophylactic dexamethasone, vasopressor for another reason": (
        [T(10, 37.2)],
        [E(0, "corticosteroid", detail="dexamethasone 10 mg"), E(30, "vasopressor", 40)],
        0,
        np.nan,
    ),
    "never febrile, antipyretic, oxygen": (
        [T(10, 37.5)],
        [E(5, "antipyretic"), E(12, "oxygen_low_flow", 20, "nasal cannula 2 L/min")],
        0,
        np.nan,
    ),
    "never febrile, tocilizumab, high flow and a vasopressor": (
        [],
        [E(5, "tocilizumab"), E(12, "oxygen_high_flow", 20), E(13, "vasopressor", 18)],
        0,
        np.nan,
    ),
    "fever, tocilizumab, vasopressor 2 days later without fever": (
        [T(10), T(20, 37.0), T(58, 36.8)],
        [E(12, "tocilizumab"), E(60, "vasopressor", 70)],
        3,
        60.0,
    ),
    "prophylactic steroid, later fever, hypotension with fever": (
        [T(30), S(32)],
        [E(0, "corticosteroid")],
        2,
        np.nan,
    ),
    "prophylactic steroid, later fever, vasopressor within the fever window": (
        [T(30)],
        [E(0, "corticosteroid"), E(40, "vasopressor", 50)],
        3,
        40.0,
    ),
    "prophylactic steroid, later fever, vasopressor outside the window: prophylaxis lifts nothing": (
        [T(30)],
        [E(0, "corticosteroid"), E(80, "vasopressor", 90)],
        1,
        np.nan,
    ),
    "prophylactic steroid, fever, then tocilizumab: lifted from the tocilizumab": (
        [T(30)],
        [E(0, "corticosteroid"), E(31, "tocilizumab"), E(80, "vasopressor", 90)],
        3,
        80.0,
    ),
    "treatment at the hour of the first fever counts": (
        [T(10)],
        [E(10, "antipyretic"), E(50, "vasopressor", 60)],
        3,
        50.0,
    ),
    "treatment just before the first fever does not": (
        [T(10)],
        [E(9.99, "antipyretic"), E(50, "vasopressor", 60)],
        1,
        np.nan,
    ),
    "a fever before infusion is not the first fever": (
        [T(-5)],
        [E(2, "tocilizumab"), E(30, "vasopressor", 40)],
        0,
        np.nan,
    ),
    "treatment days after a resolved fever still lifts it (rule as written)": (
        [T(10), T(40, 37.0)],
        [E(100, "corticosteroid"), E(120, "vasopressor", 130)],
        3,
        120.0,
    ),
    "anakinra (anti-cytokine therapy) after the fever lifts it": (
        [T(2)],
        [E(5, "anakinra"), E(40, "vasopressor", 50)],
        3,
        40.0,
    ),
    "never febrile, treated, vasopressor, CRS death: not CRS, no grade 5": (
        [],
        [E(5, "tocilizumab"), E(12, "vasopressor", 30), E(40, "death", detail="CRS")],
        0,
        np.nan,
    ),
}


@pytest.mark.parametrize("case", FEVER_FIRST_CASES, ids=list(FEVER_FIRST_CASES))
def test_fever_first_then_treatment_may_mask_it(case):
    obs, events, grade, grade3_hours = FEVER_FIRST_CASES[case]
    r = _grade(obs, events)
    assert r.crs_max_grade == grade
    np.testing.assert_equal(r.grade3_hours, grade3_hours)


def test_treated_in_the_timeline_starts_at_the_first_treatment_after_fever():
    c = _cohort([T(30)], [E(0, "corticosteroid"), E(31, "tocilizumab")])
    tl = state_timeline(c.observations, c.events).set_index("hours")
    assert not tl.loc[30.0, "treated"] and tl.loc[31.0, "treated"]


# (event, detail, grade) in a patient febrile from 10 h, oxygen from 12 to 20 h
OXYGEN_CASES = [
    ("oxygen_low_flow", "nasal cannula 8 L/min", 3),
    ("oxygen_low_flow", "nasal cannula 6 L/min", 2),
    ("oxygen_low_flow", "nasal cannula 6.5 L/min", 3),
    ("oxygen_low_flow", "NC 4lpm", 2),
    ("oxygen_low_flow", "NC 7lpm", 3),
    ("oxygen_low_flow", "10 l/min.", 3),
    ("oxygen_low_flow", "2 L/min", 2),
    ("oxygen_low_flow", "nasal cannula 10 liters per minute", 3),
    ("oxygen_low_flow", "weaned from 8 L/min to 4 L/min", 3),
    ("oxygen_low_flow", "FiO2 50%", 3),
    ("oxygen_low_flow", "FiO2: 0.5", 3),
    ("oxygen_low_flow", "FiO2 40%", 2),
    ("oxygen_low_flow", "blow-by", 2),
    ("oxygen_low_flow", "nasal cannula", 2),
    ("oxygen_low_flow", None, 2),
    ("oxygen_high_flow", None, 3),
    ("oxygen_high_flow", "high-flow nasal cannula 40 L/min, FiO2 60%", 3),
    ("oxygen_high_flow", "HFNC 5 L/min", 2),
    ("oxygen_high_flow", "high flow nasal cannula 6 lpm, FiO2 35%", 2),
    ("oxygen_high_flow", "face mask 5 L/min", 3),
    ("oxygen_high_flow", "Venturi mask FiO2 35%", 3),
    ("oxygen_high_flow", "non-rebreather 15 L/min", 3),
    ("positive_pressure", "CPAP 5 L/min FiO2 30%", 4),
    # a named facemask, Venturi or non-rebreather is grade 3 whichever event records it, and
    # a named blow-by grade 2
    ("oxygen_low_flow", "simple face mask 5 L/min", 3),
    ("oxygen_low_flow", "Venturi mask 4 L/min", 3),
    ("oxygen_low_flow", "non-rebreather mask", 3),
    ("oxygen_high_flow", "blow-by", 2),
    ("oxygen_high_flow", "blow by O2 near the face", 2),
]


@pytest.mark.parametrize(("event", "detail", "grade"), OXYGEN_CASES)
def test_oxygen_graded_by_the_flow_in_the_detail(event, detail, grade):
    r = _grade([T(10)], [E(12, event, 20, detail)])
    assert r.crs_max_grade == grade
    np.testing.assert_equal(r.grade3_hours, 12.0 if grade >= 3 else np.nan)


def test_oxygen_flow_parses_flow_and_fio2():
    detail = pd.Series(["NC 4lpm", "HFNC 40 L/min, FiO2 60%", "FiO2 0.35", None, "nasal"])
    out = oxygen_flow(detail)
    np.testing.assert_array_equal(out["flow_l_min"], [4.0, 40.0, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(out["fio2"], [np.nan, 0.6, 0.35, np.nan, np.nan])
    assert out["cannula"].tolist() == [True, True, False, False, True]


# vasopressor rows (hours, end, detail) in a patient febrile from 10 h -> max grade
VASOPRESSOR_CASES = {
    "one drug split at a rate change is one vasopressor": (
        [(12, 20, "norepinephrine 0.05 mcg/kg/min"), (20, 30, "Norepinephrine 0.1 mcg/kg/min")],
        3,
    ),
    "a rate row inside a running infusion is the same one": (
        [(12, 30, "norepinephrine"), (15, None, "norepinephrine")],
        3,
    ),
    "noradrenaline is norepinephrine": ([(12, 30, "Levophed"), (14, 20, "noradrenaline")], 3),
    "two drugs at once are several": ([(12, 30, "norepinephrine"), (14, 20, "epinephrine")], 4),
    "a switch at one hour overlaps at that instant": (
        [(12, 20, "norepinephrine"), (20, 30, "phenylephrine")],
        4,
    ),
    "rows without a drug are each their own": ([(12, 30, None), (14, 20, None)], 4),
    "the same drug again after a gap is one at a time": (
        [(12, 20, "norepinephrine"), (25, 30, "norepinephrine")],
        3,
    ),
    "vasopressin recorded as a vasopressor does not count": (
        [(12, 30, "norepinephrine"), (14, 20, "vasopressin 0.03 U/min")],
        3,
    ),
    "vasopressin alone recorded as a vasopressor": ([(12, 30, "argipressin")], 1),
    "vasopressin named first beside another drug": (
        [(12, 30, "vasopressin 0.03 U/min + norepinephrine")],
        3,
    ),
    "dosing text names no drug: two such rows at once are two": (
        [(12, 30, "titrate to MAP >= 65"), (14, 20, "titrate to MAP >= 65")],
        4,
    ),
}


@pytest.mark.parametrize("case", VASOPRESSOR_CASES, ids=list(VASOPRESSOR_CASES))
def test_several_vasopressors_are_different_drugs_at_once(case):
    rows, grade = VASOPRESSOR_CASES[case]
    r = _grade([T(10)], [E(h, "vasopressor", end, detail) for h, end, detail in rows])
    assert r.crs_max_grade == grade
    np.testing.assert_equal(r.grade3_hours, 12.0 if grade >= 3 else np.nan)


def test_vasopressors_running_count_drugs_in_the_timeline():
    ev = [E(12, "vasopressor", 20, "norepinephrine"), E(20, "vasopressor", 30, "norepinephrine"),
          E(25, "vasopressor", 28, "epinephrine")]  # fmt: skip
    tl = state_timeline(*_tables([T(10)], ev)).set_index("hours")
    assert tl.loc[tl.index < 25, "vasopressors"].max() == 1  # the norepinephrine rows: one
    assert tl.loc[25.0, "vasopressors"] == 2 and tl["vasopressors"].max() == 2


def _tables(obs, events):
    c = _cohort(obs, events)
    return c.observations, c.events


@pytest.mark.parametrize(
    ("detail", "grade"),
    [
        ("CRS", 5),
        ("refractory CRS-related shock", 5),
        ("cytokine release syndrome", 5),
        ("Cytokine-release syndrome", 5),
        ("D89.835", 5),
        ("D89835", 5),
        ("sepsis", 3),
        ("progressive disease", 3),
        (None, 3),
    ],
)
def test_grade_5_needs_a_death_from_crs(detail, grade):
    r = _grade([T(10)], [E(12, "vasopressor", 30), E(40, "death", detail=detail)])
    assert r.crs_max_grade == grade and r.death_hours == 40


def test_label_settings_pass_through():
    obs, ev = [T(0)], [E(30, "vasopressor"), E(40, "oxygen_low_flow", 45, "NC 8 L/min")]
    assert _grade(obs, ev).crs_max_grade == 1  # both outside the 24 h fever window
    wide = LabelConfig(fever_window_h=48.0)
    r = _grade(obs, ev, settings=wide)
    assert r.crs_max_grade == 3 and r.grade3_hours == 30
    assert r.label_definition != LABEL_DEFINITION and "fever window 48 h" in r.label_definition
    # a higher low-flow limit makes 8 L/min low flow
    ev2 = [E(10, "oxygen_low_flow", 12, "NC 8 L/min")]
    assert _grade(obs, ev2).crs_max_grade == 3
    assert _grade(obs, ev2, settings=LabelConfig(low_flow_max_l_min=8.0)).crs_max_grade == 2
    # an FiO2 limit
    ev3 = [E(10, "oxygen_low_flow", 12, "FiO2 45%")]
    assert _grade(obs, ev3).crs_max_grade == 3
    assert _grade(obs, ev3, settings=LabelConfig(high_flow_fio2_above=0.5)).crs_max_grade == 2
    # the keyword window overrides the settings' window
    assert _grade(obs, ev, settings=wide, fever_window_h=24.0).crs_max_grade == 1


def test_label_settings_are_a_config_section():
    cfg = load_config(overrides=["label.fever_window_h=36", "label.low_flow_max_l_min=4"])
    assert cfg.label.fever_window_h == 36.0 and cfg.label.low_flow_max_l_min == 4.0
    assert load_config().label == LabelConfig()
    with pytest.raises(ConfigError, match="fever_window_h"):
        load_config(overrides=["label.fever_window_h=-1"])


def test_label_settings_reach_the_features_of_the_config():
    cfg = load_config(overrides=["label.fever_window_h=48"])
    assert cfg.features.grading == cfg.label
    assert load_config().features.grading == LabelConfig()
    # features.grading is the label section: a value given there is replaced by it (a
    # model's stored config with --set label... is graded by the new label)
    assert load_config(overrides=["features.grading.fever_window_h=48"]).features.grading == (
        LabelConfig()
    )
    stored = cfg.model_dump(mode="json")
    assert "grading" in stored["features"]
    again = config_from_dict(stored, ["label.fever_window_h=12"])
    assert again.features.grading.fever_window_h == 12 == again.label.fever_window_h
    cfg2 = load_config(overrides=["label.fever_window_h=48"])
    cfg2.label = LabelConfig(fever_window_h=6)  # pydantic models may be assigned to
    assert config_from_dict(cfg2.model_dump(mode="json")).features.grading.fever_window_h == 6
    # a config written out (tuned.yaml, a run's config.yaml) leaves it out: edit label only

    text = config_to_yaml(cfg)
    assert "grading" not in text
    edited = yaml.safe_load(text)
    edited["label"]["fever_window_h"] = 12.0
    assert config_from_dict(edited).features.grading.fever_window_h == 12.0


def test_the_crs_state_and_scoring_grade_as_the_labels():
    from types import SimpleNamespace

    from crs_ml.evaluation.validate import model_settings
    from crs_ml.features.builder import build_features
    from crs_ml.scoring.statuses import statuses

    cfg = load_config(overrides=["label.low_flow_max_l_min=8"])
    c = _cohort([T(10), ("p1", 1, "crp", 5.0)], [E(12, "oxygen_low_flow", 40, "NC 8 L/min")])
    points = pd.DataFrame({"patient_id": ["p1"], "landmark_h": [24.0]})
    # 8 L/min: low flow (grade 2) under the config's labels, high flow (3) by default
    assert build_features(c, points, cfg.features)["astct_grade_so_far"].item() == 2
    assert build_features(c, points, load_config().features)["astct_grade_so_far"].item() == 3
    at_24 = {"landmarks": np.array([24.0]), "as_of_hours": 24.0}
    assert statuses(c, **at_24, grading=cfg.features.grading).status.tolist() == ["scored"]
    assert statuses(c, **at_24).status.tolist() == ["not_at_risk"]
    # a model stored before features.grading was built with the default grading
    stored = cfg.model_dump(mode="json")
    assert model_settings(SimpleNamespace(manifest={"config": stored}))["features"].grading == (
        cfg.label
    )
    del stored["features"]["grading"]
    old = model_settings(SimpleNamespace(manifest={"config": stored}))["features"]
    assert old.grading == LabelConfig()


def test_training_warns_when_the_outcomes_were_graded_with_other_settings(caplog):
    from crs_ml.modeling.train import warn_label_settings

    c = _cohort([T(0)], [E(30, "vasopressor")])
    wide = LabelConfig(fever_window_h=48.0)
    c.outcomes = derive_outcomes(c, settings=wide)
    assert warn_label_settings(c, load_config(overrides=["label.fever_window_h=48"])) == []
    with caplog.at_level("WARNING"):
        other = warn_label_settings(c, load_config())
    assert other == [label_definition(wide)] and "crs-ml label --config" in caplog.text
    c.outcomes["label_definition"] = "site charted ASTCT grades"  # not ours: not compared
    assert warn_label_settings(c, load_config()) == []
