"""Behaviour of trained pipelines on simulated cohorts (properties, not values)."""

from __future__ import annotations

import numpy as np
import pytest

from crs_ml.config import load_config
from crs_ml.modeling.train import train_model

CV = [
    "cv.folds=2",
    "cv.repeats=1",
    "cv.bootstrap=0",
    "task.landmarks_h=[12, 24, 36]",
    "cv.report_landmarks_h=[24]",
    "task.windows_h=[]",  # no short-horizon models: not what this tests
]
OVERRIDES = CV + ["model.n_estimators=60", "model.max_depth=3"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from crs_ml.ingest.load import load_cohort
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    out = tmp_path_factory.mktemp("behaviour")
    write_cohort(simulate_cohort(500, seed=31), out)
    return load_cohort(out)


@pytest.fixture(scope="module")
def monotone_result(cohort):
    cfg = load_config("configs/xgb_monotone.yaml", OVERRIDES)
    return train_model(cohort, cfg)


@pytest.mark.parametrize(
    "feature,direction", [("il6_pretoci_max", +1), ("crp_pretoci_max", +1), ("platelets_min", -1)]
)
def test_monotone_features_move_risk_one_way_for_untreated(monotone_result, feature, direction):
    res = monotone_result
    untreated = ~res.meta["treated_before_L"].to_numpy(dtype=bool)
    X = res.X.loc[untreated].reset_index(drop=True)
    assert len(X) > 100
    base = X[feature].to_numpy(dtype=float)
    scale = np.nanpercentile(res.X[feature].to_numpy(dtype=float), 90) + 1.0
    risks = []
    for step in np.linspace(0, 3, 7):
        Xs = X.copy()
        Xs[feature] = np.where(np.isnan(base), step * scale, base + step * scale)
        risks.append(res.model.predict_proba(Xs)[:, 1])
    diffs = np.diff(np.vstack(risks), axis=0) * direction
    assert (diffs >= -1e-12).all(), f"raising {feature} moved risk the wrong way"


def test_monotone_constraints_reach_the_booster(monotone_result):
    cons = monotone_result.model.monotone_constraints
    assert cons["il6_pretoci_max"] == 1 and cons["platelets_min"] == -1
    assert "il6_max" not in cons or cons["il6_max"] == 0  # post-tocilizumab IL-6 is unconstrained


def test_post_landmark_data_changes_no_prediction(cohort, monotone_result):
    from crs_ml.features.landmarks import build_landmark_dataset

    cfg = monotone_result.config
    changed = cohort.subset(cohort.patients["patient_id"])
    obs = changed.observations.copy()
    late = obs["hours"] > 36
    rng = np.random.default_rng(0)
    obs.loc[late, "value"] = obs.loc[late, "value"].to_numpy() * rng.uniform(0.1, 10, late.sum())
    changed.observations = obs
    ev = changed.events.copy()
    changed.events = ev[ev["hours"] <= 36].reset_index(drop=True)  # delete every later event
    X1, _, meta1 = build_landmark_dataset(
        cohort, cfg.task.landmarks_h, cfg.task.horizon_h, cfg.features
    )
    X2, _, meta2 = build_landmark_dataset(
        changed, cfg.task.landmarks_h, cfg.task.horizon_h, cfg.features
    )
    assert meta1[["patient_id", "landmark_h"]].equals(meta2[["patient_id", "landmark_h"]])
    p1 = monotone_result.model.predict_proba(X1)[:, 1]
    p2 = monotone_result.model.predict_proba(X2)[:, 1]
    assert np.array_equal(p1, p2)


def test_baselines_and_logistic_train_on_equal_terms(cohort):
    for name in ("logistic", "measix", "fever_rule"):
        res = train_model(cohort, load_config(f"configs/{name}.yaml", CV))
        assert res.oof.shape == (1, len(res.y))
        assert np.isfinite(res.oof).all()
        assert 0.4 < res.metrics["auroc_L24"] <= 1.0
