"""Completeness of every score, drivers led by measured values, and the rule for inputs that
were never missing in training (issue 21, items 1 and 2)."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import conftest_scoring as cs  # noqa: E402
from shared_bundle import build_bundle  # noqa: E402

from crs_ml.modeling.bundle import load_bundle  # noqa: E402
from crs_ml.modeling.completeness import (  # noqa: E402
    KEY_INPUTS,
    band_of,
    completeness,
    impute_untrained_missing,
    key_input_columns,
)
from crs_ml.scoring.drivers import top_drivers  # noqa: E402
from crs_ml.scoring.score import score_records  # noqa: E402

#: the README's example patient (IL-6 1,240 pg/mL at 10 h, 38.6 degC at 11 h), no age given
EXAMPLE = [
    ["patient", "p1", None, "product", "axi-cel", None],
    ["observation", "p1", 10, "il6", "1,240", "pg/mL"],
    ["observation", "p1", 11, "temperature", "38.6", "degC"],
]
COLUMNS = ["record", "patient_id", "hours", "variable", "value", "unit"]


@pytest.fixture(scope="module")
def trained(session_dir):
    return cs.setup(session_dir)


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    """The shared validation model (400 patients, landmarks 12-48 h, early stopping)."""
    return load_bundle(build_bundle(tmp_path_factory.getbasetemp()))


def _example(extra=()) -> pd.DataFrame:
    return pd.DataFrame([*EXAMPLE, *extra], columns=COLUMNS)


# --------------------------------------------------------------------------- completeness
def test_completeness_counts_key_inputs_measured_by_the_landmark():
    obs = pd.DataFrame(
        {
            "patient_id": ["a", "a", "a", "a", "b"],
            "hours": [-24.0, 10.0, 11.0, 13.0, 5.0],
            "variable": ["crp", "il6", "temperature", "ferritin", "il6"],
            "value": [5.0, 1240.0, 38.6, 900.0, np.nan],
        }
    )
    code = np.array([0, 0, 0, 0, 1])
    c = completeness(obs, code, np.array([12.0, 12.0, np.nan]))
    # a: CRP (baseline), IL-6, temperature by 12 h; ferritin at 13 h is after the landmark
    assert c.share[0] == pytest.approx(3 / len(KEY_INPUTS))
    assert c.band[0] == "sparse" and "Ferritin" in c.missing[0] and "IL-6" not in c.missing[0]
    # the key inputs not measured by L, named in the catalogue's order of KEY_INPUTS
    assert list(c.missing) == [
        "Heart rate, LDH, Ferritin, Systolic BP, Platelets, Creatinine",
        "IL-6, Temperature, CRP, Heart rate, LDH, Ferritin, Systolic BP, Platelets, Creatinine",
        None,
    ]
    ages = dict(zip(key_input_columns(), c.hours_since[0], strict=True))
    assert ages["hours_since_il6"] == 2 and ages["hours_since_crp"] == 36
    assert ages["hours_since_temperature"] == 1 and np.isnan(ages["hours_since_ferritin"])
    # b: its only row has no value; c: no landmark (not scored), so no completeness
    assert c.share[1] == 0 and c.band[1] == "sparse"
    assert np.isnan(c.share[2]) and c.band[2] is None and c.missing[2] is None


def test_completeness_bands_use_the_documented_thresholds():
    from crs_ml.modeling.completeness import FULL_FROM, SPARSE_BELOW

    shares = np.array([1.0, FULL_FROM, FULL_FROM - 1e-9, SPARSE_BELOW, SPARSE_BELOW - 1e-9, 0.0])
    assert list(band_of(shares)) == ["full", "full", "partial", "partial", "sparse", "sparse"]


# --------------------------------------------------------------------------- drivers
def test_drivers_group_unmeasured_and_imputed_inputs_into_one_line_each():
    names = ["il6_max", "ferritin_last", "ldh_max", "temperature_last", "age_years"]
    X = pd.DataFrame([[1240.0, np.nan, np.nan, 38.6, 60.0]], columns=names)
    shap = np.array([[0.40, 0.20, 0.11, -0.05, 0.30]])
    imputed = np.array([[False, False, False, False, True]])
    before = shap.copy()
    out = top_drivers(X, shap, names, np.array([12.0]), n=3, imputed=imputed)[0]
    assert out == (
        "IL-6 max to 12h = 1,240 pg/mL (+0.40); Temperature latest = 38.6 °C (-0.05); "
        "not measured yet: Ferritin, LDH (+0.31 together); "
        "imputed (training median): age (+0.30)"
    )
    assert np.array_equal(shap, before)  # presentation only


# --------------------------------------------------------------------------- imputation
def test_only_inputs_never_missing_in_training_are_imputed():
    stored = {
        "missing_share": {"age_years": 0.0, "il6_max": 0.9},
        "median": {"age_years": 58.0, "il6_max": 40.0},
    }
    X = pd.DataFrame({"age_years": [np.nan, 70.0], "il6_max": [np.nan, 3.0]})
    out, mask = impute_untrained_missing(X, ["age_years", "il6_max"], stored)
    assert list(out["age_years"]) == [58.0, 70.0] and np.isnan(out["il6_max"][0])
    assert mask.tolist() == [[True, False], [False, False]]
    assert np.isnan(X["age_years"][0])  # the input is not modified
    same, none = impute_untrained_missing(X, ["age_years", "il6_max"], {})
    assert same is X and not none.any()


def test_the_bundle_records_training_missingness_and_medians(trained):
    stored = trained.bundle.training_inputs
    X = trained.result.X
    assert stored["rows"] == len(X)
    assert stored["missing_share"]["age_years"] == 0.0
    assert stored["median"]["age_years"] == pytest.approx(float(X["age_years"].median()))
    some = X.columns[X.isna().any()][0]
    assert stored["missing_share"][some] == pytest.approx(float(X[some].isna().mean()))


def test_the_fill_puts_columns_in_model_order_and_names_a_missing_one(trained):
    from crs_ml.errors import ModelError

    bundle = trained.bundle
    names = bundle.feature_names
    X = trained.result.X[names].head(50)
    filled, mask = bundle.fill_untrained_missing(X[names[::-1]])  # another column order
    assert list(filled.columns) == names and mask.shape == (50, len(names))
    again, _ = bundle.fill_untrained_missing(X)  # already in the model's order
    pd.testing.assert_frame_equal(filled, again)
    with pytest.raises(ModelError, match=r"lacks 1 model features, e\.g\. \['age_years'\]"):
        bundle.fill_untrained_missing(X.drop(columns="age_years"))


# --------------------------------------------------------------------------- the example
def test_readme_example_patient_is_explained_by_what_was_measured(validated):
    out = score_records(validated, _example(), as_of_hours=12)
    row = out.iloc[0]
    assert row["status"] == "scored" and row["landmark_h"] == 12
    assert row["completeness"] == pytest.approx(2 / len(KEY_INPUTS))
    assert row["completeness_band"] == "sparse"
    assert row["hours_since_il6"] == 2 and row["hours_since_temperature"] == 1
    names = validated.feature_names
    shap = row[[f"shap_{n}" for n in names]].to_numpy(dtype=float)
    items = row["top_drivers"].split("; ")
    top = [t for t in items if not t.startswith(("not measured yet:", "imputed"))]
    assert items[: len(top)] == top and len(top) == 3
    assert not any("not measured" in t or "= 0 (" in t for t in top), items
    # IL-6 and temperature carry weight in this patient and are among its drivers
    smallest = min(abs(float(t.rsplit("(", 1)[1].rstrip(")"))) for t in top)
    for var, display in (("il6", "IL-6"), ("temperature", "Temperature")):
        weight = max(abs(shap[j]) for j, n in enumerate(names) if n.startswith(var + "_"))
        assert weight >= smallest
        assert any(t.startswith(display) for t in top), (display, items)
    # SHAP stays exact and additive; the message says the score rests on sparse data
    assert row["base_value"] + shap.sum() == pytest.approx(np.log(row["risk"] / (1 - row["risk"])))
    assert "sparse data: 2 of 9 key inputs measured" in row["message"]
    assert "score rests mostly on absent data" in row["message"]


def test_missing_age_is_imputed_with_the_training_median_and_flagged(trained):
    median = trained.bundle.training_inputs["median"]["age_years"]
    assert trained.bundle.training_inputs["missing_share"]["age_years"] == 0
    without = score_records(trained.bundle, _example(), as_of_hours=12).iloc[0]
    age = [["patient", "p1", None, "age_years", f"{median!r}", None]]
    with_age = score_records(trained.bundle, _example(age), as_of_hours=12).iloc[0]
    assert without["risk"] == pytest.approx(with_age["risk"], abs=1e-12)
    assert without["shap_age_years"] == pytest.approx(with_age["shap_age_years"], abs=1e-12)
    imputed_text = "imputed with the training median (never missing in training): "
    flagged = without["message"].split(imputed_text)[1].split("; ")[0].split(", ")
    assert "age" in flagged
    assert "age" not in with_age["message"].split(imputed_text)[1].split("; ")[0].split(", ")
    assert "imputed (training median): " in without["top_drivers"]
