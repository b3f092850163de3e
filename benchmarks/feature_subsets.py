"""Does a compact feature set close the small-sample gap? (README, "Predictive quality").

Ranks the features by mean |SHAP| of the default model (one inner split) fit on a separate
30,000-patient cohort (seed 400; 20,000 of its rows explained), then, for each K, trains the default
pipeline on the top-K features with the draws, test set and reference of bench_train.py
(1,000 patients, seeds 101-105; 30,000, seed 300; test 5,000, seed 1000) and prints the mean
AUROC, the reference AUROC, the gap and the calibration slopes at 24 h. Not part of
``make bench`` (about 15 minutes on 2 cores). Usage:
``python benchmarks/feature_subsets.py [--k 20 35 60]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
RANK_SEED = 400


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, nargs="+", default=[20, 35, 60])
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import bench_train as bench
    import xgboost as xgb

    from crs_ml.config import load_config
    from crs_ml.evaluation import metrics as M
    from crs_ml.features.catalogue import feature_catalogue
    from crs_ml.modeling.estimators import make_model

    cfg = load_config(HERE.parent / "configs" / "xgboost.yaml")  # the README's xgboost numbers
    catalogue = feature_catalogue(cfg.features)

    def fit(X, y, groups, cols):
        model = make_model(cfg.model, catalogue[catalogue["name"].isin(cols)], cfg.seed)
        return model.fit(X[cols], y, groups=groups)

    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        X, y, g = bench.landmark_data(cfg, 30000, RANK_SEED, tmp, cfg.task.landmarks_h)
        one_split = cfg.model.model_copy(update={"params": {**cfg.model.params, "inner_folds": 1}})
        ranker = make_model(one_split, None, cfg.seed).fit(X, y, groups=g)
        rows = np.random.default_rng(0).choice(len(X), min(20000, len(X)), replace=False)
        dm = xgb.DMatrix(X.iloc[rows].to_numpy(np.float64), feature_names=list(X.columns))
        shap = ranker.booster_.predict(dm, pred_contribs=True)[:, :-1]
        rank = pd.Series(np.abs(shap).mean(0), index=X.columns).sort_values(ascending=False)
        Xt, yt, _ = bench.landmark_data(cfg, 5000, bench.TEST_SEED, tmp, [bench.LANDMARK_H])
        draws = [
            bench.landmark_data(cfg, 1000, s, tmp, cfg.task.landmarks_h) for s in bench.DRAW_SEEDS
        ]
        reference = bench.landmark_data(cfg, 30000, bench.REFERENCE_SEED, tmp, cfg.task.landmarks_h)
        print("| features | mean AUROC, 1,000 patients | reference, 30,000 | gap | slopes |")
        print("|---|---|---|---|---|")
        for k in args.k:
            cols = list(rank.index[:k])

            def measure(data, cols=cols):
                p = fit(*data, cols).predict_proba(Xt[cols])[:, 1]
                return M.auroc(yt, p), M.calibration_intercept_slope(yt, p)[1]

            print(bench.gap_row(f"top {k}", measure, draws, reference), flush=True)


if __name__ == "__main__":
    main()
