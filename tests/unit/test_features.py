"""Landmark features on small hand-made patients; expected values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from crs_ml.cohort import EVENT_COLUMNS, OBSERVATION_COLUMNS, Cohort
from crs_ml.config import FeatureConfig
from crs_ml.errors import ConfigError, InputError
from crs_ml.features.builder import _visible, build_features
from crs_ml.features.catalogue import catalogue_markdown, feature_catalogue
from crs_ml.variables import CORE_VARIABLES

#: the 12 variables of the features before issue 14 (the simulator's default model)
CORE = FeatureConfig(variables=list(CORE_VARIABLES))


def _cohort(obs=(), events=(), patients=None) -> Cohort:
    """obs: (pid, hours, variable, value[, source_row]); events: (pid, hours, end, event)."""
    rows = [tuple(r) + (None,) * (5 - len(r)) for r in obs]
    o = pd.DataFrame(rows, columns=["patient_id", "hours", "variable", "value", "source_row"])
    o["source_row"] = [s if s is not None else i + 1 for i, s in enumerate(o["source_row"])]
    o = o.astype({"patient_id": object, "hours": float, "variable": object, "value": float})
    o["source_row"] = o["source_row"].astype("int64")
    o["censored"] = np.zeros(len(o), dtype=np.int8)
    o["out_of_range"] = False
    e = pd.DataFrame(list(events), columns=["patient_id", "hours", "end_hours", "event"])
    e = e.astype({"patient_id": object, "hours": float, "end_hours": float, "event": object})
    e["detail"] = pd.Series([None] * len(e), dtype=object)
    e["source_row"] = np.arange(1, len(e) + 1, dtype=np.int64)
    patients = patients or {"A": ("axi-cel", 60.0, "F", "LBCL")}
    p = pd.DataFrame(
        [(k, *v) for k, v in patients.items()],
        columns=["patient_id", "product", "age_years", "sex", "disease"],
    ).astype(object)
    p["person_id"] = p["patient_id"]
    p["infusion_time"] = pd.Series(pd.NaT, index=p.index, dtype="datetime64[ns, UTC]")
    p["age_years"] = p["age_years"].astype(float)
    p["site"] = "S1"
    return Cohort(p, o[OBSERVATION_COLUMNS], e[EVENT_COLUMNS])


def _at(cohort, landmark, pid="A", config=None) -> pd.Series:
    pts = pd.DataFrame({"patient_id": [pid], "landmark_h": [float(landmark)]})
    return build_features(cohort, pts, config or FeatureConfig()).iloc[0]


IL6 = [
    ("A", -10, "il6", 4.0),
    ("A", -2, "il6", 6.0),
    ("A", 2, "il6", 20.0),
    ("A", 12, "il6", 100.0),
    ("A", 20, "il6", 50.0),
    ("A", 30, "il6", 999.0),
]
TEMP = [
    ("A", -1, "temperature", 36.8),
    ("A", 3, "temperature", 37.5),
    ("A", 8, "temperature", 38.4),
    ("A", 14, "temperature", 39.2),
    ("A", 20, "temperature", 37.9),
    ("A", 40, "temperature", 39.5),
]


def test_per_variable_summaries_lab():
    f = _at(_cohort(IL6), 24)
    assert f.il6_baseline == 6.0
    assert f.il6_last == 50.0 and f.il6_max == 100.0
    assert f.il6_change == pytest.approx(math.log(50.0 / 6.0))
    # (0, 24] holds hours 2, 12, 20: slope = Sxy / Sxx around the means
    t, v = np.array([2.0, 12.0, 20.0]), np.array([20.0, 100.0, 50.0])
    expected = ((t - t.mean()) * (v - v.mean())).sum() / ((t - t.mean()) ** 2).sum()
    assert f.il6_slope_24h == pytest.approx(expected)
    assert f.il6_n == 5 and f.il6_hours_since_last == 4.0 and f.il6_measured == 1.0
    # at L = 12 the 12 h value is visible (inclusive), the 20 h one is not
    g = _at(_cohort(IL6), 12)
    assert g.il6_last == 100.0 and g.il6_n == 4 and g.il6_hours_since_last == 0.0


def test_unmeasured_variable_is_missing_not_zero():
    f = _at(_cohort(IL6), 24)
    assert np.isnan(f.crp_last) and np.isnan(f.crp_max) and np.isnan(f.crp_hours_since_last)
    assert f.crp_n == 0 and f.crp_measured == 0


def test_only_baseline_values():
    f = _at(_cohort([("A", -3, "ldh", 250.0)]), 6)
    assert f.ldh_baseline == 250.0 and f.ldh_last == 250.0 and f.ldh_hours_since_last == 9.0
    assert f.ldh_change == 0.0 and np.isnan(f.ldh_slope_24h)


def test_min_variables_and_vital_change_is_a_difference():
    obs = [
        ("A", -5, "platelets", 150.0),
        ("A", 6, "platelets", 90.0),
        ("A", 18, "platelets", 120.0),
        *TEMP,
    ]
    f = _at(_cohort(obs), 24)
    assert f.platelets_min == 90.0 and "platelets_max" not in f.index
    assert f.platelets_change == pytest.approx(math.log(120.0 / 150.0))
    assert f.temperature_change == pytest.approx(37.9 - 36.8)
    assert f.temperature_max == 39.2


def test_last_tie_break_is_the_larger_source_row():
    # same result time: the later row of the input file wins, whatever the table order
    obs = [("A", 5, "crp", 30.0, 9), ("A", 5, "crp", 10.0, 4)]
    assert _at(_cohort(obs), 24).crp_last == 30.0
    obs = [("A", 5, "crp", 10.0, 4), ("A", 5, "crp", 30.0, 9)]
    assert _at(_cohort(obs), 24).crp_last == 30.0


def test_slope_needs_two_distinct_times():
    obs = [("A", 5, "crp", 10.0), ("A", 5, "crp", 30.0)]
    assert np.isnan(_at(_cohort(obs), 24).crp_slope_24h)
    obs = [("A", -30, "crp", 10.0), ("A", 5, "crp", 30.0)]  # -30 is outside (L-24, L]
    assert np.isnan(_at(_cohort(obs), 24).crp_slope_24h)
    obs = [("A", 1, "crp", 10.0), ("A", 5, "crp", 30.0)]
    assert _at(_cohort(obs), 24).crp_slope_24h == pytest.approx(5.0)


def test_non_numeric_results_are_ignored():
    obs = [("A", 2, "crp", 10.0), ("A", 4, "crp", np.nan)]
    f = _at(_cohort(obs), 24)
    assert f.crp_last == 10.0 and f.crp_n == 1


def test_fever_features_and_onset_censoring():
    c = _cohort(TEMP)
    f = _at(c, 24)
    assert f.fever_onset_h == 8.0 and f.fever_onset_censored == 0.0
    # readings carried forward: 8 -> 14 (38.4) and 14 -> 20 (39.2) are febrile
    assert f.febrile_hours == 12.0
    assert f.temperature_max_early == 39.2 and f.high_fever_early == 1.0
    assert f.febrile_now == 0.0
    g = _at(c, 12)
    assert g.fever_onset_h == 8.0 and g.febrile_hours == 4.0 and g.febrile_now == 1.0
    assert g.temperature_max_early == 38.4 and g.high_fever_early == 0.0
    h = _at(c, 6)
    assert h.fever_onset_h == 6.0 and h.fever_onset_censored == 1.0 and h.febrile_hours == 0.0
    assert h.temperature_max_early == 37.5


def test_temperature_max_early_window_is_cut_at_36h_and_configurable():
    f = _at(_cohort(TEMP), 48)
    assert f.temperature_max == 39.5 and f.temperature_max_early == 39.2
    cfg = FeatureConfig(early_fever_window_h=48.0, high_fever_c=39.4)
    g = _at(_cohort(TEMP), 48, config=cfg)
    assert g.temperature_max_early == 39.5 and g.high_fever_early == 1.0
    assert np.isnan(_at(_cohort(IL6), 24).high_fever_early)


def test_pre_tocilizumab_summaries():
    obs = [
        *IL6,
        ("A", 10, "crp", 80.0),
        ("A", 4, "crp", 40.0),
        ("A", 3, "temperature", 39.0),
        ("A", 11, "temperature", 40.0),
        ("A", 1, "ferritin", 500.0),
    ]
    c = _cohort(obs, [("A", 10, np.nan, "tocilizumab")])
    f = _at(c, 24)
    assert f.il6_pretoci_max == 20.0 and f.il6_pretoci_last == 20.0 and f.il6_max == 100.0
    # a result at the hour of the first dose is not "before" it
    assert f.crp_pretoci_max == 40.0 and f.crp_pretoci_last == 40.0 and f.crp_last == 80.0
    assert f.temperature_pretoci_max == 39.0 and f.ferritin_pretoci_max == 500.0
    # before the dose is visible every value counts
    g = _at(c, 8)
    assert g.il6_pretoci_max == 20.0 and g.tocilizumab_given == 0.0
    h = _at(_cohort(obs), 24)  # never treated: all values
    assert h.il6_pretoci_max == 100.0 and h.il6_pretoci_last == 50.0


def test_treatment_features():
    ev = [
        ("A", 10, np.nan, "tocilizumab"),
        ("A", 14, np.nan, "tocilizumab"),
        ("A", 12, np.nan, "antipyretic"),
        ("A", 30, np.nan, "corticosteroid"),
    ]
    f = _at(_cohort(IL6, ev), 24)
    assert f.tocilizumab_given == 1.0 and f.hours_since_tocilizumab == 14.0
    assert f.antipyretic_given == 1.0 and f.hours_since_antipyretic == 12.0
    assert f.corticosteroid_given == 0.0 and np.isnan(f.hours_since_corticosteroid)


def test_crs_state_features():
    obs = [*TEMP]
    ev = [
        ("A", 9, 30, "oxygen_low_flow"),
        ("A", 16, 40, "vasopressor"),
        ("A", 18, 19, "vasopressor"),
        ("A", 25, 26, "oxygen_high_flow"),
    ]
    c = _cohort(obs, ev)
    f = _at(c, 24)
    assert f.oxygen_level == 1 and f.vasopressor_level == 2
    assert f.astct_grade_so_far == 4 and f.hours_since_crs_onset == 24 - 8
    g = _at(c, 17)
    assert g.vasopressor_level == 1 and g.astct_grade_so_far == 3
    h = _at(c, 7)
    assert h.astct_grade_so_far == 0 and np.isnan(h.hours_since_crs_onset)
    assert h.oxygen_level == 0 and h.vasopressor_level == 0


def test_running_support_is_cut_at_the_landmark():
    # the second vasopressor starts after L: at L only one was running
    ev = [("A", 16, 40, "vasopressor"), ("A", 30, 35, "vasopressor")]
    f = _at(_cohort(TEMP, ev), 24)
    assert f.vasopressor_level == 1 and f.astct_grade_so_far == 3


def test_static_one_hots():
    pts = {
        "A": ("axi-cel", 61.0, "F", "LBCL"),
        "B": ("tisa-cel", 50.0, "M", "B-ALL"),
        "C": (None, np.nan, "U", None),
        "D": ("other", 40.0, None, "CLL"),
    }
    c = _cohort([], patients=pts)
    X = build_features(c, pd.DataFrame({"patient_id": list(pts), "landmark_h": 24.0}))
    prod = X.filter(like="product_")
    dis = X.filter(like="disease_")
    assert prod.columns.tolist()[:2] == ["product_axi_cel", "product_tisa_cel"]
    assert prod.sum(axis=1).tolist() == [1, 1, 0, 1]
    assert X.product_other.tolist() == [0, 0, 0, 1]
    assert X.costim_cd28.tolist()[:2] == [1, 0] and X.costim_cd28.iloc[2:].isna().all()
    assert X.disease_lbcl.tolist() == [1, 0, 0, 0] and X.disease_b_all.tolist() == [0, 1, 0, 0]
    assert dis.sum(axis=1).tolist() == [1, 1, 0, 1] and X.disease_other.tolist() == [0, 0, 0, 1]
    assert X.sex_female.tolist()[:2] == [1, 0] and X.sex_female.iloc[2:].isna().all()
    assert X.age_years.iloc[0] == 61.0 and np.isnan(X.age_years.iloc[2])
    assert (X.landmark_h == 24.0).all()


def test_measix_and_easix():
    obs = [
        ("A", -5, "ldh", 300.0),
        ("A", -5, "crp", 20.0),
        ("A", -5, "platelets", 150.0),
        ("A", -5, "creatinine", 1.5),
        ("A", 10, "crp", 60.0),
        ("A", 10, "platelets", 100.0),
    ]
    f = _at(_cohort(obs), 24)
    assert f.measix_baseline == pytest.approx(300 * 2.0 / 150)  # CRP 20 mg/L = 2 mg/dL
    assert f.easix_baseline == pytest.approx(300 * 1.5 / 150)
    assert f.measix_landmark == pytest.approx(300 * 6.0 / 100)
    assert f.easix_landmark == pytest.approx(300 * 1.5 / 100)
    zero = _at(
        _cohort([("A", -5, "ldh", 300.0), ("A", -5, "crp", 20.0), ("A", -5, "platelets", 0.0)]), 24
    )
    assert np.isnan(zero.measix_baseline)


def test_columns_follow_the_catalogue_and_groups():
    c = _cohort(IL6)
    X = build_features(c, pd.DataFrame({"patient_id": ["A"], "landmark_h": [24.0]}))
    cat = feature_catalogue()
    assert X.columns.tolist() == cat["name"].tolist()
    assert (X.dtypes == "float64").all() and len(feature_catalogue(CORE)) == 139
    cfg = FeatureConfig(groups=["labs", "fever"])
    Xg = build_features(c, pd.DataFrame({"patient_id": ["A"], "landmark_h": [24.0]}), cfg)
    assert "landmark_h" in Xg.columns and "temperature_last" not in Xg.columns
    assert set(feature_catalogue(cfg)["group"]) == {"labs", "fever", "landmark"}
    with pytest.raises(ConfigError, match="unknown group"):
        feature_catalogue(FeatureConfig(groups=["labs", "vibes"]))


def test_catalogue_contract():
    cat = feature_catalogue(CORE)  # the new markers' signs: test_feature_variables.py
    assert cat["name"].is_unique
    mono = dict(zip(cat["name"], cat["monotone"], strict=True))
    assert {k for k, v in mono.items() if v == 1} == {
        "il6_pretoci_max",
        "il6_pretoci_last",
        "crp_pretoci_max",
        "crp_pretoci_last",
        "ferritin_pretoci_max",
        "temperature_pretoci_max",
    }
    assert {k for k, v in mono.items() if v == -1} == {
        "platelets_min",
        "platelets_last",
        "platelets_baseline",
    }
    md = catalogue_markdown(CORE)
    assert md.count("\n") == len(cat) + 2 and all(f"`{n}`" in md for n in cat["name"])


def test_rows_follow_points_in_order_and_multiple_landmarks():
    c = _cohort(
        [*IL6, ("B", 1, "il6", 7.0)],
        patients={"A": ("axi-cel", 60.0, "F", "LBCL"), "B": ("ide-cel", 70.0, "M", "MM")},
    )
    pts = pd.DataFrame({"patient_id": ["B", "A", "A", "B"], "landmark_h": [6.0, 24.0, 12.0, 24.0]})
    X = build_features(c, pts)
    assert X.il6_last.tolist() == [7.0, 50.0, 100.0, 7.0]
    for i in range(len(pts)):
        one = build_features(c, pts.iloc[[i]])
        pd.testing.assert_frame_equal(one, X.iloc[[i]].reset_index(drop=True), check_exact=True)


def test_patient_without_data_and_unknown_patient():
    c = _cohort(IL6, patients={"A": ("axi-cel", 60.0, "F", "LBCL"), "Z": ("axi-cel", 1, "F", "MM")})
    f = _at(c, 24, pid="Z")
    assert f.il6_n == 0 and np.isnan(f.il6_last) and f.astct_grade_so_far == 0
    with pytest.raises(InputError, match="not in the patients table"):
        _at(c, 24, pid="nobody")
    empty = build_features(c, pd.DataFrame({"patient_id": [], "landmark_h": []}))
    assert empty.shape == (0, len(feature_catalogue()))


def test_the_guard_is_inclusive_and_cuts_running_supports():
    c = _cohort(
        IL6,
        [
            ("A", 20, 40, "vasopressor"),
            ("A", 24, np.nan, "tocilizumab"),
            ("A", 25, 26, "antipyretic"),
        ],
    )
    pts = pd.DataFrame({"patient_id": ["A"], "landmark_h": [24.0]})
    vo = _visible(c.observations, pts)
    assert vo["hours"].max() == 20.0 and set(vo["point"]) == {0}
    ve = _visible(c.events, pts)
    assert ve["event"].tolist() == ["vasopressor", "tocilizumab"]
    assert ve["end_hours"].iloc[0] == 24.0 and np.isnan(ve["end_hours"].iloc[1])
