"""What the cytokine panel is worth: the 24 h AUROC at the site that measures it, with and
without the panel features (README, "Prediction task and features").

Simulator with ``markers="all"`` (clean style): site A draws a daily cytokine panel
(IFN-gamma, IL-10, MCP-1, TNF-alpha, IL-1beta; crs_ml.simulate.params.MARKER_PANELS), the
other sites never do. For each of ``--draws`` training cohorts of ``--train-n`` patients
(seeds 2101, 2102, ...) the xgboost pipeline (configs/xgboost.yaml, the default until issue
15, whose numbers the README shows: its model family and
hyperparameters, all its landmarks stacked) is fit three times on the same patients:

* with: ``features.variables`` = every catalogue variable with a value in the training
  cohort (the default rule of ``crs-ml train``);
* without: the same list minus the cytokine panel variables;
* core: the same seed simulated with ``markers="core"`` (the 12 core variables; the core
  observations, events and outcomes of a seed are the same with either option).

All are measured at ``--landmark`` (24 h) on one independent test cohort of ``--test-n``
patients (seed 2000; simulated both ways): with vs without on site A's test rows, all vs
core on every test row; differences with a paired person-bootstrap 95% CI (``--boot``
replicates, conditional on the fitted models). The oracle AUROC (the simulator's true risk)
of the same rows is the ceiling. Over draws the mean difference is reported beside each
draw's; a draw-to-draw spread and the test-set bootstrap are both part of the uncertainty.

Timings are of a shared, loaded 2-core machine (indicative); re-run on a quiet machine.
Writes benchmarks/results/panel.json and panel.md.
Usage: python benchmarks/bench_panel.py [--draws 3] [--train-n 1500] [--test-n 3000]
       [--boot 500] [--landmark 24]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEST_SEED = 2000
DRAW_SEED0 = 2101
PANEL_SITE = "A"


def cohort(n: int, seed: int, markers: str):
    """A simulated cohort (clean style), loaded through the contract loader in memory."""
    from crs_ml.ingest.load import load_frames
    from crs_ml.simulate.simulator import simulate_cohort

    tables = simulate_cohort(n, seed=seed, markers=markers)
    return load_frames({k: v for k, v in tables.items() if v is not None})


def fit(cfg, train, features):
    """The default model fit on ``train`` with the feature variables of ``features``."""
    from crs_ml.features.catalogue import feature_catalogue
    from crs_ml.features.landmarks import build_landmark_dataset
    from crs_ml.modeling.estimators import make_model

    X, y, meta = build_landmark_dataset(train, cfg.task.landmarks_h, cfg.task.horizon_h, features)
    catalogue = feature_catalogue(features)
    catalogue = catalogue[catalogue["name"].isin(X.columns)].reset_index(drop=True)
    model = make_model(cfg.model, catalogue, cfg.seed)
    return model.fit(X, np.asarray(y), groups=meta["person_id"].astype(str).to_numpy())


def predict(cfg, model, test, features, landmark_h: float):
    """(risk, y, meta) of ``model`` on ``test`` at ``landmark_h``, rows keyed for pairing."""
    from crs_ml.features.landmarks import build_landmark_dataset

    X, y, meta = build_landmark_dataset(test, [landmark_h], cfg.task.horizon_h, features)
    return model.predict_proba(X)[:, 1], np.asarray(y), meta


def paired(y, p_a, p_b, persons, n_boot: int) -> dict:
    from crs_ml.evaluation import metrics as M

    d, lo, hi, pval = M.paired_bootstrap_diff(
        y, p_a, p_b, persons, metric=M.auroc, n_boot=n_boot, seed=0
    )
    return {"a": M.auroc(y, p_a), "b": M.auroc(y, p_b), "diff": d, "lo": lo, "hi": hi, "p": pval}


def same_rows(meta_a, meta_b) -> bool:
    cols = ["patient_id", "landmark_h"]
    return bool(meta_a[cols].astype(str).equals(meta_b[cols].astype(str)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--train-n", type=int, default=1500)
    ap.add_argument("--test-n", type=int, default=3000)
    ap.add_argument("--boot", type=int, default=500)
    ap.add_argument("--landmark", type=float, default=24.0)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from crs_ml.config import load_config
    from crs_ml.evaluation import metrics as M
    from crs_ml.features.catalogue import select_feature_variables
    from crs_ml.modeling.train import oracle_risk
    from crs_ml.simulate.params import MARKER_PANELS

    panel = set(MARKER_PANELS["cytokines"])
    cfg = load_config(ROOT / "configs" / "xgboost.yaml")
    lm = float(args.landmark)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    test_all = cohort(args.test_n, TEST_SEED, "all")
    test_core = cohort(args.test_n, TEST_SEED, "core")
    draws = []
    for i in range(args.draws):
        seed = DRAW_SEED0 + i
        t0 = time.perf_counter()
        train_all = cohort(args.train_n, seed, "all")
        train_core = cohort(args.train_n, seed, "core")
        with_panel, _ = select_feature_variables(train_all, cfg.features)
        without = with_panel.model_copy(
            update={"variables": [v for v in with_panel.variables if v not in panel]}
        )
        core, _ = select_feature_variables(train_core, cfg.features)
        p_with, y, meta = predict(cfg, fit(cfg, train_all, with_panel), test_all, with_panel, lm)
        p_wo, y_wo, meta_wo = predict(cfg, fit(cfg, train_all, without), test_all, without, lm)
        p_core, y_core, meta_core = predict(cfg, fit(cfg, train_core, core), test_core, core, lm)
        if not (same_rows(meta, meta_wo) and same_rows(meta, meta_core)):
            raise SystemExit("bench_panel: the test rows differ between the feature sets")
        if not (np.array_equal(y, y_wo) and np.array_equal(y, y_core)):
            raise SystemExit("bench_panel: the test labels differ between the feature sets")
        persons = meta["person_id"].astype(str).to_numpy()
        oracle = oracle_risk(meta, test_all.truth)
        at_a = (meta["site"] == PANEL_SITE).to_numpy()
        site_a = paired(y[at_a], p_with[at_a], p_wo[at_a], persons[at_a], args.boot)
        overall = paired(y, p_with, p_core, persons, args.boot)
        draw = {
            "seed": seed,
            "panel_variables_kept": sorted(panel & set(with_panel.variables)),
            "n_variables_with": len(with_panel.variables),
            "n_variables_core": len(core.variables),
            "site_a": {
                "rows": int(at_a.sum()),
                "events": int(y[at_a].sum()),
                "oracle_auroc": M.auroc(y[at_a], oracle[at_a]),
                "with_minus_without": site_a,
            },
            "overall": {
                "rows": int(y.size),
                "events": int(y.sum()),
                "oracle_auroc": M.auroc(y, oracle),
                "all_minus_core": overall,
            },
            "seconds": time.perf_counter() - t0,
        }
        draws.append(draw)
        print(
            f"seed {seed}: site {PANEL_SITE} AUROC with {site_a['a']:.3f} without "
            f"{site_a['b']:.3f}; overall all {overall['a']:.3f} core {overall['b']:.3f} "
            f"({draw['seconds']:.0f} s)",
            flush=True,
        )
    summary = {
        "landmark_h": lm,
        "train_n": args.train_n,
        "test": {"n_patients": args.test_n, "seed": TEST_SEED},
        "bootstrap": args.boot,
        "model": cfg.model.type,
        "training_landmarks_h": cfg.task.landmarks_h,
        "draws": draws,
        "mean_site_a_diff": float(
            np.mean([d["site_a"]["with_minus_without"]["diff"] for d in draws])
        ),
        "mean_overall_diff": float(
            np.mean([d["overall"]["all_minus_core"]["diff"] for d in draws])
        ),
        "seconds": time.perf_counter() - started,
        "machine": f"{platform.machine()}, shared and loaded (timings indicative)",
    }
    (RESULTS / "panel.json").write_text(json.dumps(summary, indent=2, default=float))
    md = table(summary)
    (RESULTS / "panel.md").write_text(md + "\n")
    print(md)


def _ci(r: dict) -> str:
    return f"{r['diff']:+.3f} ({r['lo']:+.3f} to {r['hi']:+.3f})"


def table(s: dict) -> str:
    """README-ready markdown of :func:`main`'s summary."""
    d0 = s["draws"][0]
    lines = [
        f"{s['model']} (configs/xgboost.yaml), trained on {s['train_n']:,} simulated patients "
        f'per draw with `markers="all"`; AUROC at {s["landmark_h"]:g} h on one independent '
        f"test cohort of {s['test']['n_patients']:,} (seed {s['test']['seed']}): site "
        f"{PANEL_SITE} has {d0['site_a']['rows']:,} test rows ({d0['site_a']['events']} events, "
        f"oracle AUROC {d0['site_a']['oracle_auroc']:.3f}), all sites {d0['overall']['rows']:,} "
        f"({d0['overall']['events']} events, oracle {d0['overall']['oracle_auroc']:.3f}). "
        f"Differences with a paired person-bootstrap 95% CI ({s['bootstrap']} replicates).",
        "",
        f"| training draw | site {PANEL_SITE}: with panel | without panel | with - without "
        "(95% CI) | all sites: markers all | markers core | all - core (95% CI) |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in s["draws"]:
        a, o = d["site_a"]["with_minus_without"], d["overall"]["all_minus_core"]
        lines.append(
            f"| seed {d['seed']} | {a['a']:.3f} | {a['b']:.3f} | {_ci(a)} | {o['a']:.3f} | "
            f"{o['b']:.3f} | {_ci(o)} |"
        )
    lines.append(
        f"| **mean of {len(s['draws'])}** | | | **{s['mean_site_a_diff']:+.3f}** | | | "
        f"**{s['mean_overall_diff']:+.3f}** |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
