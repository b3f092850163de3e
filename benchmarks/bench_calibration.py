"""Why is the stack's calibration slope above 1.2 in some robustness cells? (issue 15).

For one world and training size of benchmarks/bench_robustness.py (the same training draw:
its seeds, its cohort building, configs/stack.yaml), fits the stack once and reports:

1. ``oof``: on the training rows, the calibration slope and intercept of the blend (after its
   Platt map) and of each member's inner out-of-fold log-odds, per landmark: the map is one
   Platt map pooled over the landmarks 6-96 h, so a slope that depends on the landmark shows
   here;
2. ``test``: at 24 h on independent test cohorts of several seeds (the robustness bench's
   seed 7000 first) and one large cohort, the slope of the stack, of each member and of the
   simulator's true risk (the oracle: its slope differs from 1 by the test set's sampling
   alone);
3. ``landmark_map``: the test slope at 24 h when the blend's Platt map also depends on the
   landmark (``a + b m + c t + d m t``, ``t = ln(landmark_h / 24)``, fit on the same inner
   out-of-fold blend margins): what a landmark-dependent map would change.

Writes benchmarks/results/calibration_<world>_<n>.json unless ``--out``. Cost: one stack fit
(about 1 CPU minute at 1,000 patients, 3 at 3,000) and building the test cohorts. Usage:
``python benchmarks/bench_calibration.py --world cytokines_strong --n 1000``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TEST_SEEDS = (7000, 7001, 7002, 7003, 7004)


def slope_intercept(y, eta) -> dict:
    from scipy.special import expit

    from crs_ml.evaluation import metrics as M

    p = np.clip(expit(eta), 1e-9, 1 - 1e-9)
    intercept, slope = M.calibration_intercept_slope(y, p)
    return {"slope": round(float(slope), 3), "intercept": round(float(intercept), 3)}


def landmark_platt(margin, landmark_h, y) -> np.ndarray:
    """(a, b, c, d) of ``logit P = a + b m + c t + d m t``, ``t = ln(landmark_h / 24)``."""
    from sklearn.linear_model import LogisticRegression

    t = np.log(landmark_h / 24.0)
    lr = LogisticRegression(C=np.inf, max_iter=1000).fit(
        np.column_stack([margin, t, margin * t]), y
    )
    b, c, d = lr.coef_.ravel()
    return np.array([lr.intercept_[0], b, c, d])


def main() -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_robustness as R

    from crs_ml.config import load_config
    from crs_ml.features.catalogue import feature_catalogue
    from crs_ml.modeling.estimators import make_model
    from crs_ml.modeling.train import oracle_risk
    from crs_ml.simulate.params import default_params

    fns = R._world_fns()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", default="cytokines_strong", choices=list(fns))
    ap.add_argument("--n", type=int, default=1000, choices=R.SIZES)
    ap.add_argument("--draw", type=int, default=0)
    ap.add_argument("--seed-base", type=int, default=100_000)
    ap.add_argument("--test-n", type=int, default=2000)
    ap.add_argument("--large-test-n", type=int, default=10_000)
    ap.add_argument("--config", default=str(ROOT / "configs" / "stack.yaml"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    cfg = load_config(args.config)
    catalogue = feature_catalogue(cfg.features)
    params = fns[args.world](default_params()).validate()
    # the robustness bench's seed of this world, size and draw
    seed = args.seed_base + 1000 * list(fns).index(args.world)
    seed += 100 * R.SIZES.index(args.n) + args.draw
    tests = [(s, args.test_n) for s in TEST_SEEDS] + [(TEST_SEEDS[-1] + 96, args.large_test_n)]
    with tempfile.TemporaryDirectory() as t:
        X, y, meta, _ = R.landmark_set(params, args.n, seed, Path(t), cfg, cfg.task.landmarks_h)
        cohorts = [(s, n, R.landmark_set(params, n, s, Path(t), cfg, [R.LANDMARK_H]))
                   for s, n in tests]  # fmt: skip
    groups = meta["person_id"].astype(str).to_numpy()
    stack = make_model(cfg.model, catalogue, cfg.seed).fit(X, y, groups=groups)
    names = [m[0] for m in stack.members_]
    landmark = meta["landmark_h"].to_numpy(dtype=np.float64)
    oof = stack.inner_margins_
    blend = stack.platt_intercept_ + oof @ stack.coef_
    out: dict = {
        "world": args.world, "n": args.n, "draw": args.draw, "seed": seed,
        "platt": {"slope": stack.platt_slope_, "intercept": stack.platt_intercept_},
        "weights": dict(zip(names, stack.weights_.round(3).tolist(), strict=True)),
        "oof": {}, "test": [], "landmark_map": {},
    }  # fmt: skip
    for h in sorted(set(landmark)):
        rows = landmark == h
        out["oof"][f"{h:g}"] = {
            "events": int(y[rows].sum()),
            "blend": slope_intercept(y[rows], blend[rows]),
            **{n: slope_intercept(y[rows], oof[rows, j]) for j, n in enumerate(names)},
        }
    theta = landmark_platt(oof @ stack.weights_, landmark, y)
    out["landmark_map"]["coefficients_a_b_c_d"] = theta.round(4).tolist()
    for s, n, (Xt, yt, mt, truth) in cohorts:
        frame = Xt[X.columns]
        members = stack.member_logits(frame)
        oracle = np.clip(oracle_risk(mt, truth), 1e-9, 1 - 1e-9)
        margin = stack.blend_margin(frame)
        t = np.log(mt["landmark_h"].to_numpy(dtype=np.float64) / 24.0)
        mapped = theta[0] + theta[1] * margin + theta[2] * t + theta[3] * margin * t
        row = {
            "test_seed": s, "test_n": n, "events": int(yt.sum()),
            "oracle": slope_intercept(yt, np.log(oracle) - np.log1p(-oracle)),
            "stack": slope_intercept(yt, stack.decision_function(frame)),
            "stack_landmark_map": slope_intercept(yt, mapped),
            **{m: slope_intercept(yt, v) for m, v in members.items()},
        }  # fmt: skip
        out["test"].append(row)
        print(f"test seed {s} n={n}: " + ", ".join(
            f"{k} {v['slope']:.2f}" for k, v in row.items() if isinstance(v, dict)
        ), flush=True)  # fmt: skip
    for h, cell in out["oof"].items():
        print(f"oof {h:>3} h: " + ", ".join(f"{k} {v['slope']:.2f}" for k, v in cell.items()
                                            if isinstance(v, dict)))  # fmt: skip
    path = Path(args.out or ROOT / "benchmarks" / "results" / f"calibration_{args.world}_{args.n}")
    path.with_suffix(".json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
