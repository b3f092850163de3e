"""Features for every catalogue variable (issue 14, parts 1 and 5): declared in the variable
catalogue, chosen by ``features.variables``, empty ones dropped on the training cohort."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from crs_ml.cohort import EVENT_COLUMNS, OBSERVATION_COLUMNS, Cohort
from crs_ml.config import FeatureConfig
from crs_ml.features.builder import KERNELS, build_features
from crs_ml.features.catalogue import (
    feature_catalogue,
    feature_declarations,
    select_feature_variables,
)
from crs_ml.variables import CORE_VARIABLES, VARIABLES

SUMMARIES = ["baseline", "last", "change", "slope_24h", "n", "hours_since_last", "measured"]


def _cohort(rows, events=()) -> Cohort:
    o = pd.DataFrame(rows, columns=["patient_id", "hours", "variable", "value"])
    o = o.astype({"patient_id": object, "hours": float, "variable": object, "value": float})
    o["censored"], o["out_of_range"] = np.int8(0), False
    o["source_row"] = np.arange(1, len(o) + 1, dtype=np.int64)
    e = pd.DataFrame(list(events), columns=["patient_id", "hours", "end_hours", "event"])
    e = e.astype({"patient_id": object, "hours": float, "end_hours": float, "event": object})
    e["detail"] = pd.Series([None] * len(e), dtype=object)
    e["source_row"] = np.arange(1, len(e) + 1, dtype=np.int64)
    p = pd.DataFrame({"patient_id": pd.Series(["A"], dtype=object), "person_id": "A"})
    p["infusion_time"] = pd.Series(pd.NaT, index=p.index, dtype="datetime64[ns, UTC]")
    p["product"], p["age_years"], p["sex"], p["disease"], p["site"] = (
        "axi-cel",
        60.0,
        "F",
        "MM",
        "S",
    )
    return Cohort(p, o[OBSERVATION_COLUMNS], e[EVENT_COLUMNS])


def test_every_catalogue_variable_gets_the_standard_summaries():
    names = set(feature_catalogue()["name"])
    for v, var in VARIABLES.items():
        extreme = "min" if var.direction < 0 else "max"
        assert {f"{v}_{s}" for s in [*SUMMARIES, extreme]} <= names, v
        assert f"{v}_{'max' if extreme == 'min' else 'min'}" not in names
        assert {f"{v}_pretoci_{s}" for s in var.pretoci} <= names
        if var.monotone or var.pretoci or var.direction < 0:
            assert var.evidence, f"{v}: a declared direction, sign or summary needs its reason"
    # every declaration has its code, and the default model's 12 keep their 139 features
    assert {f.aggregation for f in feature_declarations()} <= set(KERNELS)
    core = feature_catalogue(FeatureConfig(variables=list(CORE_VARIABLES)))
    assert len(core) == 139
    mono = dict(zip(feature_catalogue()["name"], feature_catalogue()["monotone"], strict=True))
    assert mono["ifng_pretoci_max"] == 1 and mono["il10_pretoci_max"] == 1
    assert mono["fibrinogen_min"] == -1 and mono["d_dimer_max"] == 1
    assert mono["tnf_alpha_pretoci_max"] == 0 and mono["alt_max"] == 0


def test_new_markers_are_summarised_from_their_values():
    rows = [
        ("A", -5, "fibrinogen", 350.0),
        ("A", 6, "fibrinogen", 180.0),
        ("A", 20, "fibrinogen", 220.0),
        ("A", 4, "ifng", 40.0),
        ("A", 12, "ifng", 900.0),
        ("A", 18, "ifng", 300.0),
        ("A", 10, "d_dimer", 2.5),
    ]
    X = build_features(
        _cohort(rows, [("A", 11, np.nan, "tocilizumab")]),
        pd.DataFrame({"patient_id": ["A"], "landmark_h": [24.0]}),
    ).iloc[0]
    assert X.fibrinogen_min == 180.0 and X.fibrinogen_baseline == 350.0
    assert X.fibrinogen_change == pytest.approx(np.log(220.0 / 350.0))
    assert X.ifng_max == 900.0 and X.ifng_pretoci_max == 40.0  # before the dose at 11 h
    assert X.d_dimer_measured == 1.0 and X.d_dimer_last == 2.5
    assert X.wbc_measured == 0.0 and np.isnan(X.wbc_last) and X.wbc_n == 0.0


def test_unmeasured_variables_are_dropped_on_the_training_cohort_only():
    rows = [("A", 1, "il6", 30.0), ("A", 2, "crp", 12.0), ("A", 3, "temperature", 38.5)]
    rows += [("A", 4, "wbc", np.nan)]  # a non-numeric result is no value
    cfg, dropped = select_feature_variables(_cohort(rows), FeatureConfig())
    assert cfg.variables == ["temperature", "il6", "crp"]
    assert set(dropped) == set(VARIABLES) - {"temperature", "il6", "crp"}
    # a given list is kept as given (the trained model's list at scoring time)
    listed = FeatureConfig(variables=["il6", "ldh"])
    assert select_feature_variables(_cohort(rows), listed) == (listed, [])
    X = build_features(_cohort(rows), pd.DataFrame({"patient_id": ["A"], "landmark_h": [6.0]}), cfg)
    assert X.columns.tolist() == feature_catalogue(cfg)["name"].tolist()
    assert "ldh_last" not in X and X.il6_last.iloc[0] == 30.0 and np.isnan(X.measix_landmark[0])
    with pytest.raises(ValueError, match="not in the variable catalogue"):
        FeatureConfig(variables=["il6", "sodium"])


def test_a_variable_added_to_the_catalogue_at_run_time_gets_features(monkeypatch):
    lymph = dataclasses.replace(
        VARIABLES["spo2"], name="lymphocytes_pct", display="Lymphocytes", direction=-1
    )
    monkeypatch.setitem(VARIABLES, "lymphocytes_pct", lymph)
    cfg = FeatureConfig(variables=["il6", "lymphocytes_pct"])
    rows = [("A", 2, "lymphocytes_pct", 12.0), ("A", 8, "lymphocytes_pct", 4.0)]
    X = build_features(
        _cohort(rows), pd.DataFrame({"patient_id": ["A"], "landmark_h": [24.0]}), cfg
    )
    assert X.lymphocytes_pct_min.iloc[0] == 4.0 and X.lymphocytes_pct_n.iloc[0] == 2.0
    assert X.lymphocytes_pct_slope_24h.iloc[0] == pytest.approx(-8.0 / 6.0)
    monkeypatch.delitem(VARIABLES, "lymphocytes_pct")
    assert "lymphocytes_pct_min" not in set(feature_catalogue()["name"])  # no stale cache
