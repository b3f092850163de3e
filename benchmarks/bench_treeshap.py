"""Speed of TreeSHAP alone: crs_ml's lookup tables against xgboost's ``pred_contribs``.

On ``--rows`` x 139 float32 rows (standard normal, ``--missing`` of them NaN) a booster of
``--trees`` trees of ``--depth`` (binary logistic, eta 0.1, trained on the first 5,000 rows)
is explained, ``--runs`` times in turn:

- xgboost ``booster.predict(DMatrix(X), pred_contribs=True)`` (DMatrix included), on 1 thread
  and on all cores (the reference of issue 13's ratio: unchanged);
- :func:`crs_ml.modeling.treeshap.pred_contribs` (tables built beforehand, the build timed
  once on its own, with the probe check of first use; the tables run in the calling thread);
- for scale, xgboost's margin prediction (``output_margin=True``) on all cores.

Reported: median wall and CPU seconds (``time.process_time``, all threads) of each, and the
pair-by-pair ratio of xgboost's CPU time to the tables' (one thread each). Also checked: the
two agree to 1e-5. Writes benchmarks/results/treeshap.json and .md. On a shared machine the
numbers are indicative; CPU seconds suffer less from other load than wall seconds. Usage:
``python benchmarks/bench_treeshap.py [--rows 100000] [--trees 214] [--depth 2] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def timed(fn) -> tuple[float, float, object]:
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - t0, time.process_time() - c0, value


def main() -> None:
    import xgboost as xgb

    from crs_ml.modeling.treeshap import ShallowTreeShap, pred_contribs, shallow_plan

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=139)
    ap.add_argument("--missing", type=float, default=0.3)
    ap.add_argument("--trees", type=int, default=214)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "treeshap.json"))
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, args.features)).astype(np.float32)
    X[rng.random(X.shape) < args.missing] = np.nan
    z = np.nan_to_num(X)
    y = (z[:, 0] + z[:, 1] * z[:, 2] + rng.normal(size=len(X)) > 1).astype(int)
    cores = os.cpu_count() or 1
    params = {"max_depth": args.depth, "eta": 0.1, "objective": "binary:logistic",
              "nthread": cores}  # fmt: skip
    train = min(5000, len(X))
    booster = xgb.train(params, xgb.DMatrix(X[:train], y[:train]), args.trees)
    build_s, build_cpu, _ = timed(lambda: ShallowTreeShap.from_booster(booster))
    plan_s, plan_cpu, plan = timed(lambda: shallow_plan(booster))
    if not isinstance(plan, ShallowTreeShap):
        raise SystemExit(f"the booster takes xgboost's path: {plan}")
    copies = {}
    for threads in (1, cores):
        copies[threads] = booster.copy()
        copies[threads].set_param({"nthread": threads})

    def xgb_shap(threads):
        dm = xgb.DMatrix(X, missing=np.nan, nthread=threads)
        return copies[threads].predict(dm, pred_contribs=True, validate_features=False)

    def margin():
        dm = xgb.DMatrix(X, missing=np.nan, nthread=cores)
        return copies[cores].predict(dm, output_margin=True, validate_features=False)

    variants = {
        "xgboost_pred_contribs_1_thread": lambda: xgb_shap(1),
        "tables_1_thread": lambda: pred_contribs(booster, X),
        f"xgboost_pred_contribs_{cores}_threads": lambda: xgb_shap(cores),
        f"xgboost_margin_{cores}_threads": margin,
    }
    times = {k: [] for k in variants}
    worst = 0.0
    for run in range(args.runs):
        values = {}
        for name, fn in variants.items():
            wall, cpu, values[name] = timed(fn)
            times[name].append((wall, cpu))
            print(f"  run {run + 1} {name:<34} {wall:7.2f} s, {cpu:6.2f} CPU-s", flush=True)
        worst = max(worst, float(np.max(np.abs(values["tables_1_thread"]
                                                - values["xgboost_pred_contribs_1_thread"]))))  # fmt: skip
    assert worst < 1e-5, worst
    cpu_ratio = [x[1] / t[1] for x, t in zip(times["xgboost_pred_contribs_1_thread"],
                                            times["tables_1_thread"], strict=True)]  # fmt: skip
    result = {
        "benchmark": "treeshap",
        "rows": args.rows,
        "features": args.features,
        "missing": args.missing,
        "trees": args.trees,
        "depth": args.depth,
        "runs": args.runs,
        "table_build_s": build_s,
        "table_build_cpu_s": build_cpu,
        "first_use_with_probe_check_s": plan_s,
        "max_abs_difference": worst,
        "median": {
            k: {
                "wall_s": float(np.median([w for w, _ in v])),
                "cpu_s": float(np.median([c for _, c in v])),
            }
            for k, v in times.items()
        },  # fmt: skip
        "xgboost_cpu_over_tables_cpu_1_thread": float(np.median(cpu_ratio)),
        "xgboost_cpu_over_tables_cpu_min_max": [float(min(cpu_ratio)), float(max(cpu_ratio))],
        "machine": {
            "python": platform.python_version(),
            "cpus": cores,
            "load_avg_1m": os.getloadavg()[0],
        },  # fmt: skip
    }
    rows = [
        f"TreeSHAP alone: {args.rows:,} x {args.features} float32 rows ({args.missing:.0%} NaN), "
        f"{args.trees} trees of depth {args.depth}; median of {args.runs} runs in turn; "
        f"{cores} cores, load {result['machine']['load_avg_1m']:.1f} at the end.",
        "",
        "| method | wall s | CPU s |",
        "|---|---|---|",
        *(
            f"| {k.replace('_', ' ')} | {v['wall_s']:.2f} | {v['cpu_s']:.2f} |"
            for k, v in result["median"].items()
        ),  # fmt: skip
        f"| tables: build once per booster (first use, with the probe check) | {build_s:.3f} "
        f"({plan_s:.3f}) | {build_cpu:.3f} |",
        "",
        f"xgboost's CPU time over the tables' (1 thread each, pair by pair): "
        f"**{result['xgboost_cpu_over_tables_cpu_1_thread']:.1f}x** "
        f"({min(cpu_ratio):.1f}-{max(cpu_ratio):.1f}); largest |difference| {worst:.1e}.",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text("\n".join(rows) + "\n")
    print("\n" + "\n".join(rows) + f"\n-> {out}, {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
