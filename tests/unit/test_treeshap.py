"""Exact TreeSHAP by lookup tables (crs_ml.modeling.treeshap) against xgboost's pred_contribs.

Tolerance: 1e-5 absolute on the raw margin scale. xgboost sums its float32 terms tree by tree
in float32 (rounding ~1e-7 per tree, ~1e-6 over a few hundred trees); the tables are
computed in float64 from the same float32 thresholds, leaves and covers. A wrong direction at
one node or a wrong cover weight moves a contribution by a fraction of a leaf value (1e-3 and
more here), far above the tolerance.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb

from crs_ml.modeling.treeshap import (
    MAX_INTERNAL_NODES,
    ShallowTreeShap,
    pred_contribs,
    shallow_plan,
)

ATOL = 1e-5


def _data(n=3000, p=6, seed=0, missing=0.25):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)).astype(np.float32)
    X[rng.random(X.shape) < missing] = np.nan
    z = np.nan_to_num(X)
    eta = z[:, 0] + z[:, 1] * z[:, 2] - 0.8 * np.isnan(X[:, 3]) + 0.5 * np.abs(z[:, 0])
    y = (eta + rng.normal(size=n) > 0.7).astype(int)
    return X, y


def _train(X, y, rounds=60, **params):
    params = {"objective": "binary:logistic", "eta": 0.3, "nthread": 1, **params}
    return xgb.train(params, xgb.DMatrix(X, y, missing=np.nan), rounds)


def _trees(booster) -> list[dict]:
    return json.loads(bytes(booster.save_raw("json")))["learner"]["gradient_booster"]["model"][
        "trees"
    ]


def _xgboost(booster, X) -> np.ndarray:
    return booster.predict(xgb.DMatrix(X, missing=np.nan), pred_contribs=True)


def _edge_rows(booster, X, seed=1) -> np.ndarray:
    """Rows of X with split features moved exactly onto thresholds, to the next float32 on
    either side, or to missing, plus one row missing every split feature."""
    rng = np.random.default_rng(seed)
    rows = X[rng.integers(len(X), size=400)].copy()
    for tree in _trees(booster):
        left = np.asarray(tree["left_children"])
        for node in np.flatnonzero(left != -1):
            f = tree["split_indices"][node]
            t = np.float32(tree["split_conditions"][node])
            pick = rng.integers(len(rows), size=8)
            rows[pick[:2], f] = t
            rows[pick[2:4], f] = np.nextafter(t, np.float32(-np.inf))
            rows[pick[4:6], f] = np.nextafter(t, np.float32(np.inf))
            rows[pick[6:], f] = np.nan
    every_missing = X[:1].copy()
    every_missing[:] = np.nan
    return np.vstack([rows, every_missing])


def _assert_parity(booster, X):
    plan = ShallowTreeShap.from_booster(booster)
    for rows in (X, _edge_rows(booster, X)):
        ours, ref = plan.contributions(rows), _xgboost(booster, rows)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=0, atol=ATOL)
    # the fast path is the one pred_contribs takes for this booster
    assert isinstance(shallow_plan(booster), ShallowTreeShap)
    np.testing.assert_array_equal(pred_contribs(booster, X), plan.contributions(X))
    return plan


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_tables_match_xgboost_at_each_depth(depth):
    X, y = _data(seed=depth)
    booster = _train(X, y, max_depth=depth, base_score=0.3, subsample=0.8, seed=depth)
    _assert_parity(booster, X)
    if depth == 1:
        assert all(sum(c != -1 for c in t["left_children"]) == 1 for t in _trees(booster))


def test_a_feature_reused_below_itself():
    # two features and depth 3: most trees split on one feature at the root and again below
    X = _data(p=4, seed=5)[0][:, :2].copy()
    z = np.nan_to_num(X)
    y = ((np.abs(z[:, 0]) > 0.7) ^ (z[:, 1] > 0.3)).astype(int)
    booster = _train(X, y, max_depth=3, base_score=0.7, rounds=40)
    reused = 0
    for tree in _trees(booster):
        internal = [i for i, c in enumerate(tree["left_children"]) if c != -1]
        features = [tree["split_indices"][i] for i in internal]
        reused += len(set(features)) < len(features)
    assert reused >= 10
    _assert_parity(booster, X)


def test_single_leaf_trees_and_stumps_in_one_booster():
    X, y = _data(seed=6)
    booster = _train(X, y, max_depth=2, rounds=15)
    # continued with a huge split penalty: the further trees are single leaves
    booster = xgb.train({"objective": "binary:logistic", "eta": 0.3, "max_depth": 2,
                         "gamma": 1e6, "nthread": 1}, xgb.DMatrix(X, y), 5,
                        xgb_model=booster)  # fmt: skip
    sizes = [len(t["left_children"]) for t in _trees(booster)]
    assert sizes.count(1) == 5 and max(sizes) > 1
    _assert_parity(booster, X)
    only_leaves = _train(X, y, max_depth=2, rounds=4, gamma=1e6)
    plan = _assert_parity(only_leaves, X)
    assert not plan.contributions(X)[:, :-1].any()


def test_base_score_of_a_squared_error_model_is_its_margin():
    X, y = _data(seed=7)
    target = y * 3.0 + np.nan_to_num(X[:, 0])
    booster = xgb.train({"objective": "reg:squarederror", "max_depth": 2, "base_score": 2.5,
                         "nthread": 1}, xgb.DMatrix(X, target), 30)  # fmt: skip
    _assert_parity(booster, X)


def test_missing_values_follow_each_nodes_default_direction():
    # missingness of feature 3 carries signal: its splits learn both default directions
    X, y = _data(seed=8, missing=0.4)
    booster = _train(X, y, max_depth=2, rounds=80)
    defaults = {d for t in _trees(booster) for d, c in zip(t["default_left"],
                t["left_children"], strict=True) if c != -1}  # fmt: skip
    assert defaults == {0, 1}
    rows = np.full((5, X.shape[1]), np.nan, dtype=np.float32)
    rows[1:, 0] = [-1, 0, 1, 2]
    np.testing.assert_allclose(pred_contribs(booster, rows), _xgboost(booster, rows), atol=ATOL)


def test_rows_do_not_depend_on_their_block_or_the_thread_count():
    from crs_ml.modeling.treeshap import BLOCK_ROWS

    X, y = _data(n=3 * BLOCK_ROWS + 7, seed=9)
    booster = _train(X, y, max_depth=2)
    every = pred_contribs(booster, X, threads=1)
    assert np.array_equal(every, pred_contribs(booster, X, threads=2))
    for row in (0, BLOCK_ROWS - 1, BLOCK_ROWS, len(X) - 1):
        assert np.array_equal(every[row : row + 1], pred_contribs(booster, X[row : row + 1]))


def test_deep_trees_fall_back_to_xgboost():
    X, y = _data(seed=10)
    booster = _train(X, y, max_depth=5, min_child_weight=0.1)
    assert max(sum(c != -1 for c in t["left_children"]) for t in _trees(booster)) > (
        MAX_INTERNAL_NODES
    )
    reason = shallow_plan(booster)
    assert isinstance(reason, str) and "internal nodes" in reason
    before = booster.save_config()
    np.testing.assert_array_equal(pred_contribs(booster, X, threads=1), _xgboost(booster, X))
    assert booster.save_config() == before  # the caller's booster keeps its thread setting


def test_dart_falls_back_to_xgboost():
    X, y = _data(seed=11)
    booster = _train(X, y, max_depth=2, rounds=10, booster="dart", rate_drop=0.1)
    assert "dart" in shallow_plan(booster)
    np.testing.assert_allclose(pred_contribs(booster, X), _xgboost(booster, X), atol=0)


def test_wrong_columns_are_refused():
    X, y = _data(seed=12)
    booster = xgb.train({"max_depth": 2, "nthread": 1},
                        xgb.DMatrix(X, y, feature_names=[f"f{i}" for i in range(6)]), 5)  # fmt: skip
    with pytest.raises(ValueError, match="not the booster's features"):
        pred_contribs(booster, X, feature_names=[f"g{i}" for i in range(6)])
    with pytest.raises(ValueError, match="expects 6 feature columns"):
        pred_contribs(booster, X[:, :5])
