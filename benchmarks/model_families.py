"""Is the small-sample gap a property of xgboost or of the sample size? (README, "Predictive
quality").

Trains shipped configurations (configs/xgboost.yaml, the default until issue 15;
xgb_monotone.yaml, logistic.yaml, the m-EASIX baseline measix.yaml, additive.yaml,
compact_logistic.yaml and stack.yaml, the model of the default) on the draws, test set and
reference of bench_train.py (1,000 patients,
seeds 101-105; 30,000, seed 300; test 5,000, seed 1000) and prints, at the 24 h landmark, the
mean AUROC of the five draws, the reference AUROC, the gap and the draws' calibration slopes.
Not part of ``make bench`` (about 15 minutes on 2 cores). Usage:
``python benchmarks/model_families.py [--configs xgboost logistic ...]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = ["xgboost", "xgb_monotone", "logistic", "measix", "additive", "compact_logistic", "stack"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=CONFIGS)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    import bench_train as bench

    from crs_ml.config import load_config
    from crs_ml.evaluation import metrics as M
    from crs_ml.features.catalogue import feature_catalogue
    from crs_ml.modeling.estimators import feature_set_columns, make_model

    base = load_config(HERE.parent / "configs" / "xgboost.yaml")
    pipelines = {name: load_config(HERE.parent / "configs" / f"{name}.yaml").model
                 for name in args.configs}  # fmt: skip
    catalogue = feature_catalogue(base.features)

    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        Xt, yt, _ = bench.landmark_data(base, 5000, bench.TEST_SEED, tmp, [bench.LANDMARK_H])
        draws = [
            bench.landmark_data(base, 1000, s, tmp, base.task.landmarks_h) for s in bench.DRAW_SEEDS
        ]
        reference = bench.landmark_data(
            base, 30000, bench.REFERENCE_SEED, tmp, base.task.landmarks_h
        )
        print(f"{len(yt)} test rows at {bench.LANDMARK_H:g} h, {int(yt.sum())} events", flush=True)
        print("| pipeline | mean AUROC, 1,000 patients | reference, 30,000 | gap | slopes |")
        print("|---|---|---|---|---|")
        for name, model_cfg in pipelines.items():

            def measure(data, model_cfg=model_cfg):
                X, y, groups = data
                if model_cfg.type != "stack":  # the model's named feature set
                    X = X[feature_set_columns(list(X.columns), model_cfg.feature_set)]
                model = make_model(model_cfg, catalogue, base.seed).fit(X, y, groups=groups)
                p = model.predict_proba(Xt[X.columns])[:, 1]
                return M.auroc(yt, p), M.calibration_intercept_slope(yt, p)[1]

            print(bench.gap_row(name, measure, draws, reference), flush=True)


if __name__ == "__main__":
    main()
