"""Training decides the feature variables on the training cohort (issue 14.1): the simulator's
default model keeps its 139 features; a cohort with only IL-6, CRP and temperature trains
and scores with their features, the dropped variables listed and stored with the model."""

from __future__ import annotations

import numpy as np
import pytest
from oracle.catalogue import feature_names as oracle_names
from shared_bundle import OVERRIDES as SHARED
from shared_bundle import XGBOOST_CONFIG

from crs_ml.config import load_config
from crs_ml.ingest.load import load_cohort
from crs_ml.modeling.bundle import load_bundle
from crs_ml.modeling.train import train_model, training_data
from crs_ml.scoring.score import score
from crs_ml.simulate.simulator import simulate_cohort, write_cohort
from crs_ml.variables import CORE_VARIABLES, VARIABLES

OVERRIDES = [*SHARED, "task.windows_h=[]"]  # no short-horizon models: not tested here


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("variables_cohort")
    write_cohort(simulate_cohort(400, seed=23), folder)
    return load_cohort(folder)


def test_the_simulator_default_keeps_its_139_features(cohort):
    X, *_ = training_data(cohort, load_config(XGBOOST_CONFIG, OVERRIDES))
    assert X.columns.tolist() == oracle_names()  # the 12 variables, same order as before


def test_a_cohort_with_three_markers_trains_and_scores(cohort, tmp_path):
    few = cohort.subset(cohort.patients["patient_id"])
    obs = few.observations
    few.observations = obs[obs["variable"].isin(["il6", "crp", "temperature"])].reset_index(
        drop=True
    )
    res = train_model(few, load_config(XGBOOST_CONFIG, OVERRIDES))
    assert res.config.features.variables == ["temperature", "il6", "crp"]
    assert set(res.dropped_variables) == set(VARIABLES) - {"temperature", "il6", "crp"}
    assert {"il6_last", "crp_pretoci_max", "temperature_max"} <= set(res.X.columns)
    assert "ldh_last" not in res.X and set(CORE_VARIABLES) & set(res.dropped_variables)
    assert res.X["measix_landmark"].isna().all()  # LDH and platelets never measured
    res.save(tmp_path / "bundle")
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.feature_names == res.X.columns.tolist()
    out = score(bundle, few, as_of_hours=24)
    assert len(out) == few.n_patients and np.isfinite(out["risk"].dropna()).all()
    assert out["risk"].notna().any()


def test_a_cohort_with_every_catalogue_variable_trains_scores_and_validates(tmp_path):
    """Issue 14, done-when 1: every built-in catalogue variable measured -> a feature block
    for each; scoring explains with them and validation reports on them."""
    from crs_ml.evaluation.validate import validate_cohort
    from crs_ml.simulate.params import default_params, with_sites

    params = with_sites(default_params(), A=0.5, B=0.5)  # site A draws the cytokine panel
    folder = tmp_path / "all_markers"
    write_cohort(simulate_cohort(240, seed=31, params=params, markers="all"), folder)
    full = load_cohort(folder)
    builtin = [v for v in VARIABLES if v in set(full.observations["variable"])]
    assert len(builtin) == 25  # the simulator measures every catalogue variable
    res = train_model(full, load_config(XGBOOST_CONFIG, OVERRIDES))
    assert res.dropped_variables == [] and set(res.config.features.variables) == set(builtin)
    for v in builtin:
        assert f"{v}_measured" in res.X and res.X[f"{v}_measured"].max() == 1.0, v
    assert res.X["ifng_pretoci_max"].notna().any() and "d_dimer_max" in res.X
    assert res.X["fibrinogen_min"].notna().any()  # falls with risk: summarised by its minimum
    res.save(tmp_path / "bundle")
    bundle = load_bundle(tmp_path / "bundle")
    out = score(bundle, full, as_of_hours=48)
    scored = out["risk"].notna()
    assert len(out) == full.n_patients and scored.mean() > 0.8  # the rest: a message each
    assert (out.loc[~scored, "message"] != "").all()
    for v in ("ifng", "d_dimer", "fibrinogen", "bilirubin"):  # explained with the new markers
        assert f"shap_{v}_last" in out and out.loc[scored, f"shap_{v}_last"].notna().all()
    m = validate_cohort(bundle, full, [24.0], n_boot=0, seed=1).metrics
    assert 0.5 < m["landmarks"]["24"]["overall"]["auroc"] <= 1.0
