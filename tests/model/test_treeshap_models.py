"""The project's trained boosters take the lookup-table TreeSHAP path, and it gives what
xgboost's pred_contribs gives on their landmark features: the xgboost pipeline's day-14
booster and its short-horizon window boosters, the stack's xgboost member and the stack's
window models. Tolerance as in tests/unit/test_treeshap.py (1e-5 on the raw margin scale)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from scipy.special import logit
from shared_bundle import build_bundle, build_stack_bundle

from crs_ml.modeling.bundle import load_bundle
from crs_ml.modeling.explain import explain
from crs_ml.modeling.treeshap import ShallowTreeShap, pred_contribs, shallow_plan

ATOL = 1e-5


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> pd.DataFrame:
    """Landmark features of new simulated patients at every landmark."""
    from crs_ml.config import Config
    from crs_ml.features.landmarks import build_landmark_dataset
    from crs_ml.ingest.load import load_cohort
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    out = tmp_path_factory.mktemp("treeshap_cohort")
    write_cohort(simulate_cohort(150, seed=404), out)
    X, _, _ = build_landmark_dataset(load_cohort(out), [6, 24, 48, 96], 336, Config().features)
    return X


def _assert_parity(booster, frame: pd.DataFrame) -> None:
    assert isinstance(shallow_plan(booster), ShallowTreeShap), shallow_plan(booster)
    matrix = np.ascontiguousarray(frame.to_numpy(dtype=np.float64), dtype=np.float32)
    assert np.isnan(matrix).any()
    ref = booster.predict(xgb.DMatrix(matrix, missing=np.nan), pred_contribs=True,
                          validate_features=False)  # fmt: skip
    np.testing.assert_allclose(pred_contribs(booster, matrix), ref, rtol=0, atol=ATOL)


def _boosters(bundle) -> list:
    """(name, booster, column names) of every booster the bundle scores with."""
    out = []
    for label, b in [("day 14", bundle)] + [(h.label, hb) for h, hb in bundle.horizons]:
        if b.booster is not None:
            out.append((label, b.booster, b.feature_names))
        for name, est, cols in getattr(b.estimator, "members_", []):
            if hasattr(est, "booster_"):
                out.append((f"{label} {name}", est.booster_, list(cols or b.feature_names)))
    return out


@pytest.mark.parametrize("build", [build_bundle, build_stack_bundle], ids=["xgboost", "stack"])
def test_trained_boosters_take_the_tables_and_match_xgboost(build, features, tmp_path_factory):
    bundle = load_bundle(build(tmp_path_factory.getbasetemp()))
    boosters = _boosters(bundle)
    assert len(boosters) >= 2  # the day-14 model and a short-horizon window
    for _, booster, names in boosters:
        _assert_parity(booster, features[names])
    # the contract the scores rely on: base + sum(SHAP) is the calibrated log-odds
    ex = explain(bundle, features)
    np.testing.assert_allclose(ex.base_value + ex.contributions.sum(axis=1),
                               logit(bundle.predict_risk(features)), atol=1e-5)  # fmt: skip
