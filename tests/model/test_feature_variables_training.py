"""Training decides the feature variables on the training cohort (issue 14.1): the simulator's
default model keeps its 139 features; a cohort with only IL-6, CRP and temperature trains
and scores with their features, the dropped variables listed and stored with the model."""

from __future__ import annotations

import numpy as np
import pytest
from oracle.catalogue import feature_names as oracle_names
from shared_bundle import OVERRIDES

from crs_ml.config import load_config
from crs_ml.ingest.load import load_cohort
from crs_ml.modeling.bundle import load_bundle
from crs_ml.modeling.train import train_model, training_data
from crs_ml.scoring.score import score
from crs_ml.simulate.simulator import simulate_cohort, write_cohort
from crs_ml.variables import CORE_VARIABLES, VARIABLES


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("variables_cohort")
    write_cohort(simulate_cohort(400, seed=23), folder)
    return load_cohort(folder)


def test_the_simulator_default_keeps_its_139_features(cohort):
    X, *_ = training_data(cohort, load_config(None, OVERRIDES))
    assert X.columns.tolist() == oracle_names()  # the 12 variables, same order as before


def test_a_cohort_with_three_markers_trains_and_scores(cohort, tmp_path):
    few = cohort.subset(cohort.patients["patient_id"])
    obs = few.observations
    few.observations = obs[obs["variable"].isin(["il6", "crp", "temperature"])].reset_index(
        drop=True
    )
    res = train_model(few, load_config(None, OVERRIDES))
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
