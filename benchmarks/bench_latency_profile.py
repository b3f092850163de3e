"""Single-patient latency by stage, in CPU time, and paired against another tree (issue 13).

Stages of ``crs_ml.score`` on a one-patient cohort (statuses + completeness / features /
TreeSHAP + drivers / scores table) and of the pyfunc ``predict(records)`` (records to cohort /
scoring / output conversion), p50 of CPU time over ``--n`` different patients, for each model
of the fixture. CPU time (``time.process_time``: every thread of this process) is what a
shared machine distorts least; p50 of wall time is printed beside it.

The fixture (made once with ``--make-fixture``, in ``--fixture``): a 2,000-patient simulated
batch as of 48 h and a model of configs/xgboost.yaml and of configs/stack.yaml, each trained
on 1,000 simulated patients without short horizons (as ``bench_score.py --latency-only
--no-windows``).

``--against TREE`` runs this script with ``PYTHONPATH=TREE`` and with this tree in turn,
``--pairs`` times each (first the other tree, then this one, then the reverse: an even number
runs each tree first as often; with an odd number one tree runs second more often, and on a
host whose speed drifts that alone moved a copy of the same tree by 1.2-1.4x), and prints the
per-stage p50 of both (median over the pairs): an A/B that a busy machine distorts alike. The other tree must read this tree's models (a tree
with the same configuration settings, e.g. ``git archive COMMIT crs_ml | tar -x -C DIR``). ``--profile STAGE`` prints a cProfile of ``--n`` calls
of one stage (``features``, ``records``, ``statuses``, ``table``, ``score``, ``predict``).

Usage: ``python benchmarks/bench_latency_profile.py --fixture /tmp/fx [--make-fixture]
[--against /path/to/other/tree --pairs 4] [--profile features]``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("xgboost", "stack")
STAGES = ("statuses_completeness", "features", "treeshap_drivers", "scores_table",
          "records_to_cohort", "pyfunc_score", "to_output", "score", "predict")  # fmt: skip


def make_fixture(folder: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_score import batch_input, train_bundle

    folder.mkdir(parents=True, exist_ok=True)
    batch_input(folder / "batch", 2000, 202, 48.0, "parquet")
    for name in MODELS:
        train_bundle(folder / name, 1000, 101, windows=False,
                     config=str(ROOT / "configs" / f"{name}.yaml"))  # fmt: skip


def inputs(folder: Path, n: int, seed: int):
    """One-patient cohorts and their one-table records, ``n`` + 5 patients (5 to warm up)."""
    from crs_ml.cli.scoring import _data_options
    from crs_ml.ingest.load import load_cohort
    from crs_ml.ingest.records import cohort_to_records
    from crs_ml.modeling.bundle import load_bundle

    bundle = load_bundle(folder / MODELS[0] / "bundle")
    cohort = load_cohort(folder / "batch", _data_options(bundle, None))
    rng = np.random.default_rng(seed)
    ids = rng.choice(cohort.patients["patient_id"].to_numpy(dtype=object), n + 5, replace=False)
    small = cohort.subset(ids)
    records = cohort_to_records(small)
    groups = [g.reset_index(drop=True) for _, g in records.groupby("patient_id", sort=False)]
    return [small.subset([pid]) for pid in ids], groups


def _clock():
    return time.process_time(), time.perf_counter()


def measure(folder: Path, n: int, seed: int) -> dict:
    from crs_ml.ingest.records import records_to_cohort
    from crs_ml.modeling.bundle import load_bundle
    from crs_ml.scoring.score import begin, chunk_features, explain_chunk, score, scores_table
    from crs_ml.tracking.pyfunc import CrsSeverityModel, to_output

    one, groups = inputs(folder, n, seed)
    out = {}
    for name in MODELS:
        bundle = load_bundle(folder / name / "bundle")
        model = CrsSeverityModel()
        model.bundle = bundle
        for c, g in zip(one[:5], groups[:5], strict=True):  # warm up
            score(bundle, c)
            model.predict(None, g)
        cpu = {s: [] for s in STAGES}
        wall = {s: [] for s in STAGES}

        def add(stage, t0, cpu=cpu, wall=wall):
            c1, w1 = _clock()
            cpu[stage].append(c1 - t0[0])
            wall[stage].append(w1 - t0[1])
            return c1, w1

        for c, g in zip(one[5:], groups[5:], strict=True):
            t = t0 = _clock()
            s = begin(bundle, c)
            t = add("statuses_completeness", t)
            X = [chunk_features(s, k) for k in range(len(s.chunks))]
            t = add("features", t)
            for k, x in enumerate(X):
                explain_chunk(s, k, x)
            t = add("treeshap_drivers", t)
            scores_table(s)
            add("scores_table", t)
            add("score", t0)
            t = t0 = _clock()
            cohort = records_to_cohort(g)
            t = add("records_to_cohort", t)
            scores = score(bundle, cohort)
            t = add("pyfunc_score", t)
            to_output(scores)
            add("to_output", t)
            add("predict", t0)
        out[name] = {
            "cpu_p50_ms": {s: float(np.median(v) * 1000) for s, v in cpu.items()},
            "wall_p50_ms": {s: float(np.median(v) * 1000) for s, v in wall.items()},
        }
    return out


def profile(folder: Path, n: int, seed: int, stage: str, model_name: str, top: int) -> None:
    from crs_ml.ingest.records import records_to_cohort
    from crs_ml.modeling.bundle import load_bundle
    from crs_ml.scoring.score import begin, chunk_features, explain_chunk, score, scores_table
    from crs_ml.tracking.pyfunc import CrsSeverityModel

    one, groups = inputs(folder, n, seed)
    bundle = load_bundle(folder / model_name / "bundle")
    model = CrsSeverityModel()
    model.bundle = bundle
    for c, g in zip(one[:5], groups[:5], strict=True):
        model.predict(None, g)
        score(bundle, c)
    prepared = [begin(bundle, c) for c in one[5:]] if stage in ("features", "table") else None
    if stage == "table":
        for s in prepared:
            for k in range(len(s.chunks)):
                explain_chunk(s, k, chunk_features(s, k))
    calls = {
        "features": lambda i: [chunk_features(prepared[i], k)
                               for k in range(len(prepared[i].chunks))],
        "statuses": lambda i: begin(bundle, one[5 + i]),
        "table": lambda i: scores_table(prepared[i]),
        "records": lambda i: records_to_cohort(groups[5 + i]),
        "score": lambda i: score(bundle, one[5 + i]),
        "predict": lambda i: model.predict(None, groups[5 + i]),
    }  # fmt: skip
    pr = cProfile.Profile()
    pr.enable()
    for i in range(n):
        calls[stage](i)
    pr.disable()
    pstats.Stats(pr).sort_stats("cumulative").print_stats(top)
    pstats.Stats(pr).sort_stats("tottime").print_stats(top)


def paired(args) -> None:
    trees = {"other": Path(args.against).resolve(), "this": ROOT}
    if args.pairs % 2:
        print(f"note: {args.pairs} pairs (odd): one tree runs first more often than the other",
              file=sys.stderr)  # fmt: skip
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    for p in range(args.pairs):
        for key in ("other", "this") if p % 2 == 0 else ("this", "other"):
            env = {**os.environ, "PYTHONPATH": str(trees[key]), "MPLBACKEND": "Agg"}
            cmd = [sys.executable, str(Path(__file__).resolve()), "--fixture",
                   str(args.fixture), "--n", str(args.n), "--seed", str(args.seed), "--json"]  # fmt: skip
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            runs[key].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"pair {p + 1}: {key} done", file=sys.stderr, flush=True)
    print(f"CPU p50 ms per stage, median of {args.pairs} runs each; other = {trees['other']}")
    for name in MODELS:
        print(f"\n{name}:  {'stage':<24} {'other':>8} {'this':>8} {'ratio':>6}")
        for s in STAGES:
            a = float(np.median([r[name]["cpu_p50_ms"][s] for r in runs["other"]]))
            b = float(np.median([r[name]["cpu_p50_ms"][s] for r in runs["this"]]))
            print(f"    {s:<28} {a:8.2f} {b:8.2f} {b / a:6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixture", type=Path, required=True)
    ap.add_argument("--make-fixture", action="store_true")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--against", help="another crs_ml tree to pair with this one")
    ap.add_argument("--pairs", type=int, default=4, help="even: each tree first as often")
    ap.add_argument("--profile", choices=("features", "statuses", "table", "records", "score",
                                          "predict"))  # fmt: skip
    ap.add_argument("--model", choices=MODELS, default="xgboost")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--json", action="store_true", help="print the measures as one JSON line")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if args.make_fixture:
        make_fixture(args.fixture)
    if args.against:
        return paired(args)
    if args.profile:
        return profile(args.fixture, args.n, args.seed, args.profile, args.model, args.top)
    result = measure(args.fixture, args.n, args.seed)
    if args.json:
        print(json.dumps(result))
        return
    for name, r in result.items():
        print(f"{name}: {'stage':<24} {'CPU p50 ms':>10} {'wall p50 ms':>11}")
        for s in STAGES:
            print(f"    {s:<28} {r['cpu_p50_ms'][s]:10.2f} {r['wall_p50_ms'][s]:11.2f}")


if __name__ == "__main__":
    main()
