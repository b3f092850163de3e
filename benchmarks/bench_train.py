"""Predictive quality of the xgboost pipeline vs sample size, baselines and the oracle.

Trains the xgboost pipeline (configs/xgboost.yaml, the default until issue 15, whose numbers
the README shows; all landmarks stacked) on simulated cohorts and measures it at the 24 h landmark on an independent simulated test
set (disjoint ids, its own seed):

* five draws of 1,000 training patients (seeds 101-105) vs one reference fit on 30,000;
* the learning curve at 300 / 1,000 / 3,000 / 30,000 training patients;
* m-EASIX and the early-fever rule fit on the same training data, with the paired
  person-bootstrap AUROC difference on the test set;
* the oracle AUROC (simulator's true risk) on the same test rows: the ceiling.

Writes benchmarks/results/train.json, train.md and learning_curve.png.
Usage: python benchmarks/bench_train.py [--test-n 5000] [--reference-n 30000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEST_SEED = 1000
DRAW_SEEDS = [101, 102, 103, 104, 105]
CURVE = {300: 201, 1000: 101, 3000: 203}
REFERENCE_SEED = 300
LANDMARK_H = 24.0


def cohort(n: int, seed: int, tmp: Path):
    from crs_ml.ingest.load import load_cohort
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    folder = tmp / f"sim_{n}_{seed}"
    write_cohort(simulate_cohort(n, seed=seed), folder)
    return load_cohort(folder)


def landmark_data(cfg, n: int, seed: int, tmp: Path, landmarks):
    """(X, y, person ids) of a simulated cohort of ``n`` patients at ``landmarks``."""
    from crs_ml.features.landmarks import build_landmark_dataset

    X, y, meta = build_landmark_dataset(
        cohort(n, seed, tmp), landmarks, cfg.task.horizon_h, cfg.features
    )
    return X, np.asarray(y), meta["person_id"].astype(str).to_numpy()


def gap_row(label: str, measure, draws: list, reference) -> str:
    """Markdown row: mean AUROC over the ``draws``, the ``reference`` AUROC, the gap and the
    draws' calibration slopes; ``measure(data) -> (auroc, calibration slope)``."""
    small = [measure(d) for d in draws]
    ref, _ = measure(reference)
    mean = float(np.mean([a for a, _ in small]))
    slopes = " / ".join(f"{s:.2f}" for _, s in small)
    return f"| {label} | {mean:.3f} | {ref:.3f} | {ref - mean:.3f} | {slopes} |"


def fit(cfg, data, model_type: str, params: dict | None = None):
    """A model of ``model_type`` fit on ``data`` = (X, y, person ids) of :func:`landmark_data`."""
    from crs_ml.features.catalogue import feature_catalogue
    from crs_ml.modeling.estimators import make_model

    X, y, groups = data
    model_cfg = cfg.model.model_copy(
        update={"type": model_type, "params": params if params is not None else cfg.model.params}
    )
    model = make_model(model_cfg, feature_catalogue(cfg.features), cfg.seed)
    return model.fit(X, y, groups=groups)


def evaluate(models: dict, test_set) -> dict:
    from crs_ml.evaluation import metrics as M

    X, y, meta, oracle = test_set
    out = {
        "n_test_rows": int(len(y)),
        "n_test_events": int(y.sum()),
        "oracle_auroc": M.auroc(y, oracle),
    }
    persons = meta["person_id"].astype(str).to_numpy()
    risks = {name: m.predict_proba(X)[:, 1] for name, m in models.items()}
    for name, p in risks.items():
        intercept, slope = M.calibration_intercept_slope(y, p)
        out[name] = {
            "auroc": M.auroc(y, p),
            "auprc": M.auprc(y, p),
            "brier": M.brier(y, p),
            "calibration_slope": slope,
            "calibration_intercept": intercept,
        }
    for base in ("measix", "fever_rule"):
        if base in risks:
            d, lo, hi, pval = M.paired_bootstrap_diff(
                y, risks["xgboost"], risks[base], persons, metric=M.auroc, n_boot=1000, seed=0
            )
            out[f"xgboost_minus_{base}"] = {"diff": d, "lo": lo, "hi": hi, "p": pval}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--test-n", type=int, default=5000)
    ap.add_argument("--reference-n", type=int, default=30000)
    ap.add_argument(
        "--curve",
        nargs="+",
        default=None,
        metavar="CONFIG",
        help="only the learning curve of these configs (same test set and seeds), "
        "written to learning_curve.json / .md / .png",
    )
    ap.add_argument("--curve-sizes", nargs="+", type=int, default=[300, 1000, 3000, 30000])
    ap.add_argument(
        "--curve-limit",
        nargs="+",
        default=[],
        metavar="CONFIG=N",
        help="fit this config only up to N training patients (slow models)",
    )
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.curve:
        return learning_curves(args)
    from crs_ml.config import load_config
    from crs_ml.features.landmarks import build_landmark_dataset
    from crs_ml.modeling.train import oracle_risk

    cfg = load_config(ROOT / "configs" / "xgboost.yaml")
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        test = cohort(args.test_n, TEST_SEED, tmp)
        Xt, yt, mt = build_landmark_dataset(test, [LANDMARK_H], cfg.task.horizon_h, cfg.features)
        oracle = oracle_risk(mt, test.truth)
        test_set = (Xt, np.asarray(yt), mt, oracle)
        print(
            f"test set: {len(yt)} rows at {LANDMARK_H:g} h, {int(np.sum(yt))} events, oracle AUROC {evaluate({}, test_set)['oracle_auroc']:.3f}",
            flush=True,
        )

        def run(n, seed, baselines=True):
            train = landmark_data(cfg, n, seed, tmp, cfg.task.landmarks_h)  # built once
            models = {"xgboost": fit(cfg, train, "xgboost")}
            if baselines:
                models["measix"] = fit(cfg, train, "measix", {})
                models["fever_rule"] = fit(cfg, train, "fever_rule", {})
            res = evaluate(models, test_set)
            print(
                f"n={n} seed={seed}: xgboost AUROC {res['xgboost']['auroc']:.3f} slope {res['xgboost']['calibration_slope']:.2f}",
                flush=True,
            )
            return res

        draws = [run(1000, s) for s in DRAW_SEEDS]
        reference = run(args.reference_n, REFERENCE_SEED, baselines=False)
        curve = {n: run(n, s, baselines=False) for n, s in CURVE.items() if n != 1000}
    curve[1000] = draws[0]
    curve[args.reference_n] = reference
    mean_auroc = float(np.mean([d["xgboost"]["auroc"] for d in draws]))
    summary = {
        "landmark_h": LANDMARK_H,
        "test": {
            "n_patients": args.test_n,
            "seed": TEST_SEED,
            "rows": test_set[1].size,
            "events": int(test_set[1].sum()),
        },
        "oracle_auroc": draws[0]["oracle_auroc"],
        "draws_1000": [{"seed": s, **d} for s, d in zip(DRAW_SEEDS, draws, strict=True)],
        "mean_auroc_1000": mean_auroc,
        "reference_auroc": reference["xgboost"]["auroc"],
        "gap_to_reference": reference["xgboost"]["auroc"] - mean_auroc,
        "mean_calibration_slope_1000": float(
            np.mean([d["xgboost"]["calibration_slope"] for d in draws])
        ),
        "learning_curve": {str(n): curve[n]["xgboost"] for n in sorted(curve)},
        "seconds": time.perf_counter() - started,
    }
    checks = {
        "within_0.02_of_reference": abs(summary["gap_to_reference"]) <= 0.02,
        "calibration_slope_0.8_1.2": all(
            0.8 <= d["xgboost"]["calibration_slope"] <= 1.2 for d in draws
        ),
        "beats_measix_ci_excludes_0": all(d["xgboost_minus_measix"]["lo"] > 0 for d in draws),
        "beats_fever_rule_ci_excludes_0": all(
            d["xgboost_minus_fever_rule"]["lo"] > 0 for d in draws
        ),
    }
    summary["checks"] = checks
    (RESULTS / "train.json").write_text(json.dumps(summary, indent=2, default=float))
    lines = [
        f"At the {LANDMARK_H:g} h landmark, independent test set of {args.test_n:,} simulated patients (seed {TEST_SEED}); oracle AUROC {summary['oracle_auroc']:.3f}.",
        "",
        "| training draw (1,000 patients) | xgboost AUROC | cal. slope | m-EASIX AUROC | fever rule AUROC | xgboost - m-EASIX (95% CI) | xgboost - fever rule (95% CI) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s, d in zip(DRAW_SEEDS, draws, strict=True):
        a, b = d["xgboost_minus_measix"], d["xgboost_minus_fever_rule"]
        lines.append(
            f"| seed {s} | {d['xgboost']['auroc']:.3f} | {d['xgboost']['calibration_slope']:.2f} | {d['measix']['auroc']:.3f} | {d['fever_rule']['auroc']:.3f} | {a['diff']:+.3f} ({a['lo']:+.3f} to {a['hi']:+.3f}) | {b['diff']:+.3f} ({b['lo']:+.3f} to {b['hi']:+.3f}) |"
        )
    lines += [
        f"| **mean of five** | **{mean_auroc:.3f}** | {summary['mean_calibration_slope_1000']:.2f} | | | | |",
        f"| reference: {args.reference_n:,} patients (seed {REFERENCE_SEED}) | {summary['reference_auroc']:.3f} | {reference['xgboost']['calibration_slope']:.2f} | | | | |",
        "",
        "| training patients | AUROC | AUPRC | Brier | cal. slope |",
        "|---|---|---|---|---|",
    ]
    for n in sorted(curve):
        r = curve[n]["xgboost"]
        lines.append(
            f"| {n:,} | {r['auroc']:.3f} | {r['auprc']:.3f} | {r['brier']:.4f} | {r['calibration_slope']:.2f} |"
        )
    lines += ["", "Checks: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items())]
    (RESULTS / "train.md").write_text("\n".join(lines) + "\n")
    _plot(curve, summary["oracle_auroc"])
    print("\n".join(lines))


def learning_curves(args) -> None:
    """The learning curve of each ``--curve`` config on the test set and seeds of the main
    run (300: 201, 1,000: 101, 3,000: 203, 30,000: 300), one line per config in the plot.
    Each config trains on its own landmark grid (``task.landmarks_h``) of the same patients;
    the test rows are the 24 h landmark of the test cohort."""
    from crs_ml.config import load_config
    from crs_ml.features.catalogue import feature_catalogue
    from crs_ml.features.landmarks import build_landmark_dataset
    from crs_ml.modeling.estimators import make_model
    from crs_ml.modeling.train import oracle_risk

    seeds = {**CURVE, args.reference_n: REFERENCE_SEED}
    configs = {Path(c).stem: load_config(c) for c in args.curve}
    limits = {k: int(v) for k, v in (item.split("=", 1) for item in args.curve_limit)}
    first = next(iter(configs.values()))
    if any((c.task.horizon_h, c.features) != (first.task.horizon_h, first.features)
           for c in configs.values()):  # fmt: skip
        raise SystemExit(
            "--curve: the configs must share task.horizon_h and features (one test set)"
        )
    out: dict = {"test": {"n_patients": args.test_n, "seed": TEST_SEED}, "curves": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        test = cohort(args.test_n, TEST_SEED, tmp)
        Xt, yt, mt = build_landmark_dataset(test, [LANDMARK_H], first.task.horizon_h,
                                            first.features)  # fmt: skip
        test_set = (Xt, np.asarray(yt), mt, oracle_risk(mt, test.truth))
        out["oracle_auroc"] = evaluate({}, test_set)["oracle_auroc"]
        for n in args.curve_sizes:
            rows: dict = {}  # training rows per landmark grid: each config trains on its own
            for name, cfg in configs.items():
                if n > limits.get(name, n):
                    continue
                grid = (tuple(cfg.task.landmarks_h), cfg.task.horizon_h,
                        cfg.features.model_dump_json())  # fmt: skip
                if grid not in rows:
                    rows[grid] = landmark_data(cfg, n, seeds[n], tmp, cfg.task.landmarks_h)
                began = time.process_time()
                X, y, groups = rows[grid]
                model = make_model(cfg.model, feature_catalogue(cfg.features), cfg.seed)
                model.fit(X, y, groups=groups)
                res = evaluate({name: model}, test_set)[name]
                res["fit_cpu_seconds"] = time.process_time() - began
                out["curves"].setdefault(name, {})[str(n)] = res
                print(f"{name} n={n}: AUROC {res['auroc']:.3f} slope "
                      f"{res['calibration_slope']:.2f} [{res['fit_cpu_seconds']:.0f} CPU s fit]",
                      flush=True)  # fmt: skip
                (RESULTS / "learning_curve.json").write_text(json.dumps(out, indent=1))
    out["seconds"] = time.perf_counter() - started
    (RESULTS / "learning_curve.json").write_text(json.dumps(out, indent=1))
    lines = [
        f"Learning curve at {LANDMARK_H:g} h, test {args.test_n:,} patients (seed {TEST_SEED}); "
        f"oracle AUROC {out['oracle_auroc']:.3f}. Cells: AUROC (calibration slope).",
        "",
        "| training patients | " + " | ".join(configs) + " |",
        "|---|" + "---|" * len(configs),
    ]
    for n in args.curve_sizes:
        cells = [out["curves"].get(c, {}).get(str(n)) for c in configs]
        lines.append(f"| {n:,} | " + " | ".join(
            f"{r['auroc']:.3f} ({r['calibration_slope']:.2f})" if r else "not run" for r in cells
        ) + " |")  # fmt: skip
    (RESULTS / "learning_curve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot_curves(out["curves"], out["oracle_auroc"])


def _plot_curves(curves: dict, oracle: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=110)
    for name, curve in curves.items():
        ns = sorted(int(n) for n in curve)
        ax.plot(ns, [curve[str(n)]["auroc"] for n in ns], "o-", label=name)
    ax.axhline(oracle, ls="--", c="grey", label=f"oracle (true risk) {oracle:.3f}")
    ax.set(xscale="log", xlabel="training patients", ylabel=f"test AUROC at {LANDMARK_H:g} h",
           title="Learning curve")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "learning_curve.png")


def _plot(curve: dict, oracle: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(curve)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=110)
    ax.plot(ns, [curve[n]["xgboost"]["auroc"] for n in ns], "o-", label="xgboost (default)")
    ax.axhline(oracle, ls="--", c="grey", label=f"oracle (true risk) {oracle:.3f}")
    ax.set(
        xscale="log",
        xlabel="training patients",
        ylabel=f"test AUROC at {LANDMARK_H:g} h",
        title="Learning curve",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "learning_curve.png")


if __name__ == "__main__":
    main()
