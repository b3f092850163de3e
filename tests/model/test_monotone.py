"""Monotone constraints from the feature catalogue hold for the calibrated risk: raising
il6_pretoci_max never lowers it, raising platelets_min never raises it, all else fixed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from crs_ml.config import ModelConfig
from crs_ml.modeling.estimators import XGBRiskModel, make_model

CATALOGUE = pd.DataFrame(
    {
        "name": ["noise_wave", "il6_pretoci_max", "landmark_h", "platelets_min", "noise_flat"],
        "monotone": [0, 1, 0, -1, 0],
    }
)


def noisy_cohort(n_persons: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """IL-6 and platelets carry signal, but with a NON-monotone bump in each (and a wave in
    a noise column) so that an unconstrained booster is free to bend the wrong way."""
    rng = np.random.default_rng(seed)
    rows = 3
    n = n_persons * rows
    log_il6 = rng.normal(3, 1.5, n)
    platelets = rng.gamma(4, 40, n)
    wave = rng.uniform(-3, 3, n)
    lp = (
        -2.0
        + 0.6 * (log_il6 - 3)
        - 0.01 * (platelets - 160)
        - 1.5 * ((log_il6 > 4) & (log_il6 < 5))  # non-monotone dip in IL-6
        + 1.2 * ((platelets > 200) & (platelets < 240))  # non-monotone bump in platelets
        + 1.2 * np.sin(2 * wave)
    )
    y = (rng.random(n) < expit(lp)).astype(int)
    X = pd.DataFrame(
        {
            "noise_wave": wave,
            "il6_pretoci_max": np.exp(log_il6),
            "landmark_h": np.tile([6.0, 12.0, 24.0], n_persons),
            "platelets_min": platelets,
            "noise_flat": rng.normal(size=n),
        }
    )
    X.loc[rng.random(n) < 0.1, "il6_pretoci_max"] = np.nan
    return X, y, np.repeat(np.arange(n_persons), rows)


def grid_risk(model, X_rows: pd.DataFrame, column: str, grid: np.ndarray) -> np.ndarray:
    """Risk (rows x grid values) with ``column`` set to each grid value, others fixed."""
    stacked = X_rows.loc[X_rows.index.repeat(grid.size)].reset_index(drop=True)
    stacked[column] = np.tile(grid, len(X_rows))
    return model.predict_proba(stacked)[:, 1].reshape(len(X_rows), grid.size)


@pytest.fixture(scope="module")
def cohort():
    return noisy_cohort(700, seed=21)


@pytest.fixture(scope="module")
def constrained(cohort):
    X, y, persons = cohort
    cfg = ModelConfig(
        type="xgboost",
        monotone=True,
        params={"n_estimators": 120, "max_depth": 4, "learning_rate": 0.1, "n_jobs": 1},
    )
    return make_model(cfg, CATALOGUE, seed=0).fit(X, y, groups=persons)


def test_constraints_reach_xgboost_aligned_with_columns(constrained):
    assert constrained._monotone_tuple() == (0, 1, 0, -1, 0)
    assert constrained.platt_slope_ > 0  # a negative Platt slope would flip the direction


def test_raising_il6_never_lowers_risk(cohort, constrained):
    X, _, _ = cohort
    rows = X.sample(80, random_state=1)
    grid = np.quantile(X["il6_pretoci_max"].dropna(), np.linspace(0, 1, 40))
    risk = grid_risk(constrained, rows, "il6_pretoci_max", grid)
    assert np.all(np.diff(risk, axis=1) >= -1e-12)
    assert np.max(risk[:, -1] - risk[:, 0]) > 0.05  # the feature is actually used


def test_raising_platelets_never_raises_risk(cohort, constrained):
    X, _, _ = cohort
    rows = X.sample(80, random_state=2)
    grid = np.quantile(X["platelets_min"], np.linspace(0, 1, 40))
    risk = grid_risk(constrained, rows, "platelets_min", grid)
    assert np.all(np.diff(risk, axis=1) <= 1e-12)
    assert np.max(risk[:, 0] - risk[:, -1]) > 0.02


def test_constraints_follow_names_not_positions(cohort):
    X, y, persons = cohort
    shuffled = X[["platelets_min", "noise_flat", "il6_pretoci_max", "landmark_h", "noise_wave"]]
    model = XGBRiskModel(
        n_estimators=60,
        max_depth=4,
        learning_rate=0.1,
        n_jobs=1,
        monotone_constraints={"il6_pretoci_max": 1, "platelets_min": -1},
    ).fit(shuffled, y, groups=persons)
    assert model._monotone_tuple() == (-1, 0, 1, 0, 0)
    rows = shuffled.sample(40, random_state=3)
    il6 = grid_risk(model, rows, "il6_pretoci_max", np.geomspace(1, 5000, 25))
    plt = grid_risk(model, rows, "platelets_min", np.linspace(10, 400, 25))
    assert np.all(np.diff(il6, axis=1) >= -1e-12)
    assert np.all(np.diff(plt, axis=1) <= 1e-12)
