"""Speed of scoring: batch throughput end to end, and single-patient latency (issue 13).

1. Trains ``--config`` (default configs/default.yaml, the stack since issue 15;
   configs/xgboost.yaml the previous default) with light CV (2 folds, 1 repeat, no
   bootstrap) on ``--train-patients`` simulated patients and saves the bundle (temporary
   folder).
   ``--latency-only`` measures step 7 alone (any model type).
2. Simulates ``--patients`` new patients (another seed) and keeps what a batch run at
   ``--as-of-hours`` since infusion would see: rows with hours <= as-of (a support still
   running at that time has no end yet). Written as Parquet (or CSV with ``--input csv``).
3. The work stage by stage on the whole cohort, timed per stage: load + validate +
   normalise, features + predict + TreeSHAP + drivers, the atomic Parquet write; and the
   scored patients' feature matrix at their landmark (building it timed for reference).
4. In turn, ``--runs`` times: end to end as ``crs-ml score`` does it
   (``crs_ml.scoring.batch.score_to_file``: chunked load + validate + normalise of the chunk
   after next in a reader thread, statuses + features of the next chunk in a worker thread,
   while the current one gets TreeSHAP, drivers and its write; checked to give the
   stage-by-stage table), then the floor, bare
   ``booster.predict(DMatrix(X), pred_contribs=True)`` on that matrix (the faster of two).
   For a stack the booster is its xgboost member's (issue 15: a blend costs more than one
   booster; the ratio is the stack's end to end against bare TreeSHAP of that member).
   In the same turns, for reference: crs_ml's own TreeSHAP of the same boosters on the same
   matrix (lookup tables, :mod:`crs_ml.modeling.treeshap`); the ratio stays against
   xgboost's bare ``pred_contribs``.
   Reported: medians, and the ratio of the two rates pair by pair (median and range), so a
   machine whose speed drifts compares like with like. CPU time is the process's, all
   threads (``time.process_time``).
5. The pipeline's settings, paired the same way: TreeSHAP on all cores but one (the default,
   leaving one to the workers) against all cores, and without the workers (read ahead 0).
6. Against the engine of the recorded commit ``--baseline-commit`` (default 13cc9bc, the
   pandas loader and feature builder): its ``crs_ml`` package is extracted with
   ``git archive`` into a temporary folder, and the same command, ``python -m crs_ml score``,
   runs with that folder, then with this tree, first on ``PYTHONPATH``, ``--runs`` times in
   turn on the same input and model (wall time of the whole command, imports included).
   ``--baseline-commit ''`` skips it (also skipped, with a message, outside a git checkout).
7. Single-patient latency after load, p50 / p95 over ``--latency-n`` different patients
   after warm-up: the Python function ``score(model, cohort)`` on one-patient cohorts, with
   the p50 of each of its stages (statuses, features, TreeSHAP + drivers, scores table); and
   an MLflow pyfunc model saved from the bundle, loaded once, ``predict`` on the one-table
   records of one patient, with the p50 of its stages (records to cohort, scoring, output
   conversion, MLflow's own input handling). Reported for the model of step 1 (its type
   named) and, with ``--latency-configs A.yaml B.yaml``, for a model of each of those
   configurations trained the same way (e.g. configs/xgboost.yaml and configs/stack.yaml).
   ``--latency-only`` runs step 7 alone, on ``--latency-cohort`` simulated patients.
8. How the ratio depends on the model's size: step 4 again with the default configuration
   trained on ``--larger-train-patients`` (default 3,000, a multi-site registry's size;
   early stopping keeps more trees with more data). 0 skips it.

The default configuration trains a model per short horizon too (``task.windows_h``, issue
18), and scoring explains each: the bare floor then runs ``pred_contribs`` of every booster on
the same matrix (for a stack, each window's xgboost member). ``--no-windows`` trains the day-14 model alone (as issue 13 was framed).

Targets (issue 13): end-to-end rate >= 0.5 x the bare rate (default model, step 4), >= 2x
the recorded pandas engine (step 6); single-patient p50 of the Python function < 10 ms and
of the pyfunc < 20 ms. Writes benchmarks/results/score.json and score.md (a table to paste)
and prints the table; data and models go to a temporary folder that is deleted afterwards.
On a shared machine the numbers are indicative: re-run on a quiet one. Usage:
``python benchmarks/bench_score.py [--patients 100000] [--as-of-hours 48] [--input parquet]
[--runs 3] [--baseline-commit 13cc9bc] [--config configs/xgboost.yaml] [--latency-only
--latency-configs configs/xgboost.yaml configs/stack.yaml --no-windows]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
BASELINE_COMMIT = "13cc9bc"


def _stage(name: str, t0: float) -> float:
    dt = time.perf_counter() - t0
    print(f"  {name:<34} {dt:8.2f} s", flush=True)
    return dt


def train_bundle(folder: Path, n: int, seed: int, windows: bool = True, config=None):
    from crs_ml.config import load_config
    from crs_ml.ingest.load import load_cohort
    from crs_ml.modeling.bundle import load_bundle
    from crs_ml.modeling.train import train_model
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    write_cohort(simulate_cohort(n, seed), folder / "train")
    cohort = load_cohort(folder / "train")
    sets = ["cv.folds=2", "cv.repeats=1", "cv.bootstrap=0"]
    cfg = load_config(config, sets if windows else [*sets, "task.windows_h=[]"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_model(cohort, cfg)
    path = result.save(folder / "bundle")
    return load_bundle(path), path


def admissions(n: int, seed: int, as_of_h: float) -> dict[str, pd.DataFrame]:
    """Simulated patients, observations and events as a batch run at ``as_of_h`` hours since
    infusion would see them (rows up to then; a support still running has no end yet)."""
    from crs_ml.simulate.simulator import simulate_cohort

    tables = simulate_cohort(n, seed)
    obs = tables["observations"]
    obs = obs[pd.to_numeric(obs["hours"]) <= as_of_h]
    ev = tables["events"]
    ev = ev[pd.to_numeric(ev["hours"]) <= as_of_h].copy()
    end = pd.to_numeric(ev["end_hours"])
    ev["end_hours"] = end.where(end <= as_of_h)
    return {"patients": tables["patients"], "observations": obs, "events": ev}


def batch_input(folder: Path, n: int, seed: int, as_of_h: float, kind: str) -> dict:
    tables = admissions(n, seed, as_of_h)
    obs = tables["observations"]
    ev = tables["events"]
    folder.mkdir(parents=True)
    for name, table in tables.items():
        table = table.reset_index(drop=True)
        if kind == "csv":
            table.to_csv(folder / f"{name}.csv", index=False)
        else:
            table.astype({c: str for c in table.columns if table[c].dtype == object}).to_parquet(
                folder / f"{name}.parquet", index=False
            )
    return {"patients": len(tables["patients"]), "observations": len(obs), "events": len(ev)}


def end_to_end(bundle, data: Path, out: Path, as_of_h: float, **settings) -> tuple[float, float]:
    """(wall s, CPU s) of what ``crs-ml score`` runs: chunked load and features (next chunk
    in the worker threads), predict, TreeSHAP, drivers, appended to the atomic Parquet output.
    ``settings``: score_to_file's shap_threads / read_ahead_chunks (default: the command's)."""
    from crs_ml.cli.scoring import _data_options
    from crs_ml.scoring.batch import score_to_file

    t0, cpu0 = time.perf_counter(), time.process_time()
    result = score_to_file(bundle, data, out, options=_data_options(bundle, None),
                           as_of_hours=as_of_h, chunk_size=5000, **settings)  # fmt: skip
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert result.n_patients == len(pd.read_parquet(out, columns=["patient_id"]))
    return wall, cpu


def stages(bundle, data: Path, out: Path, as_of_h: float) -> tuple[dict, tuple]:
    """The same work one stage after the other on the whole cohort, timed per stage."""
    from crs_ml.cli.scoring import _data_options
    from crs_ml.files import atomic_write
    from crs_ml.ingest.load import load_cohort
    from crs_ml.scoring.score import score

    times = {}
    cpu0 = time.process_time()
    t_all = t0 = time.perf_counter()
    cohort = load_cohort(data, _data_options(bundle, None))
    times["load_s"] = _stage("load + validate + normalise", t0)
    t0 = time.perf_counter()
    scores = score(bundle, cohort, as_of_hours=as_of_h, chunk_size=5000)
    times["score_s"] = _stage("features + predict + SHAP + drivers", t0)
    t0 = time.perf_counter()
    atomic_write(scores, out, "parquet")
    times["write_s"] = _stage("write scores (Parquet, atomic)", t0)
    times["total_s"] = time.perf_counter() - t_all
    times["cpu_s"] = time.process_time() - cpu0
    print(f"  {'... CPU time, all threads':<34} {times['cpu_s']:8.2f} s", flush=True)
    return times, (scores, cohort)


def feature_matrix(bundle, cohort, scores) -> tuple[np.ndarray, float]:
    """The scored patients' feature matrix at their landmark, and the seconds to build it."""
    from crs_ml.config import FeatureConfig
    from crs_ml.features.builder import build_features

    scored = scores[scores["status"] == "scored"]
    points = scored[["patient_id", "landmark_h"]].reset_index(drop=True)
    cfg = FeatureConfig.model_validate(bundle.manifest["config"]["features"])
    t0 = time.perf_counter()
    X = build_features(cohort, points, cfg)
    features_s = _stage("(features alone, for reference)", t0)
    return X[bundle.feature_names].to_numpy(dtype=np.float64), features_s


def xgboost_booster(bundle) -> tuple:
    """(booster, column indices of the model's matrix it reads, None = all) of an xgboost
    model, or of a stack's xgboost member (issue 15: the floor of a stack is bare TreeSHAP
    of that member)."""
    if bundle.booster is not None:
        return bundle.booster, None
    for _, est, cols in getattr(bundle.estimator, "members_", ()):
        if hasattr(est, "booster_"):
            names = bundle.feature_names
            idx = None if list(cols) == names else np.array([names.index(c) for c in cols])
            return est.booster_, idx
    raise SystemExit(f"a {bundle.model_type} model has no xgboost booster to compare with")


def boosters(bundle) -> list:
    """The boosters a scoring run explains, each as (booster, columns) of
    :func:`xgboost_booster`: the day-14 model's and each short horizon's
    (``task.windows_h``; issue 18), in that order."""
    horizons = [hb for _, hb in getattr(bundle, "horizons", ()) or ()]
    return [xgboost_booster(b) for b in (bundle, *horizons)]


def bare_shap(bundle, matrix: np.ndarray) -> tuple[float, float]:
    """(wall s, CPU s) of bare DMatrix + pred_contribs of every booster the model scores
    with (one per horizon) on the same matrix, the faster of two runs."""
    import xgboost as xgb

    runs = []
    for _ in range(2):
        t0, cpu0 = time.perf_counter(), time.process_time()
        dm = xgb.DMatrix(matrix, missing=np.nan, feature_names=bundle.feature_names)
        for booster, idx in boosters(bundle):
            if idx is None:
                booster.predict(dm, pred_contribs=True)
            else:  # a stack member reading some of the columns
                sub = xgb.DMatrix(matrix[:, idx], missing=np.nan)
                booster.predict(sub, pred_contribs=True, validate_features=False)
        runs.append((time.perf_counter() - t0, time.process_time() - cpu0))
    return min(runs)


def tables_shap(bundle, matrix: np.ndarray) -> tuple[float, float]:
    """(wall s, CPU s) of crs_ml's TreeSHAP (:func:`crs_ml.modeling.treeshap.pred_contribs`,
    lookup tables for shallow trees) of the same boosters on the same matrix as
    :func:`bare_shap`, the faster of two runs (tables built before)."""
    from crs_ml.modeling.treeshap import pred_contribs

    runs = []
    for _ in range(2):
        t0, cpu0 = time.perf_counter(), time.process_time()
        for booster, idx in boosters(bundle):
            pred_contribs(booster, matrix if idx is None else matrix[:, idx])
        runs.append((time.perf_counter() - t0, time.process_time() - cpu0))
    return min(runs)


def paired(bundle, data: Path, out: Path, as_of_h: float, matrix, n_patients: int, runs: int):
    """End to end and bare TreeSHAP in turn, ``runs`` times; medians, and the ratio of the
    rates pair by pair (so a machine whose speed drifts compares like with like). Also, in
    the same turns, crs_ml's own TreeSHAP of the same boosters on the same matrix (the
    reference of the ratio stays xgboost's bare pred_contribs)."""
    e2e, bare, tables = [], [], []
    matrix32 = np.ascontiguousarray(matrix, dtype=np.float32)
    for _ in range(runs):
        e2e.append(end_to_end(bundle, data, out, as_of_h))
        bare.append(bare_shap(bundle, matrix))
        tables.append(tables_shap(bundle, matrix32))
    ratios = [(n_patients / e[0]) / (len(matrix) / b[0]) for e, b in zip(e2e, bare, strict=True)]
    med = {
        "end_to_end_s": float(np.median([e[0] for e in e2e])),
        "end_to_end_cpu_s": float(np.median([e[1] for e in e2e])),
        "bare_shap_s": float(np.median([b[0] for b in bare])),
        "bare_shap_cpu_s": float(np.median([b[1] for b in bare])),
        "ratio_end_to_end_to_bare": float(np.median(ratios)),
        "ratio_min_max": [float(min(ratios)), float(max(ratios))],
        "tables_shap_s": float(np.median([t[0] for t in tables])),
        "tables_shap_cpu_s": float(np.median([t[1] for t in tables])),
        "bare_over_tables_cpu": float(
            np.median([b[1] / t[1] for b, t in zip(bare, tables, strict=True)])
        ),
        "runs": runs,
    }
    for label, key in (("crs-ml score (chunked, overlapped)", "end_to_end"),
                       ("bare DMatrix + pred_contribs", "bare_shap"),
                       ("crs_ml TreeSHAP (lookup tables)", "tables_shap")):  # fmt: skip
        print(f"  {label:<34} {med[key + '_s']:8.2f} s, {med[key + '_cpu_s']:.2f} CPU-s (median)")
    print(f"  {'ratio of the rates, pair by pair':<34} {med['ratio_end_to_end_to_bare']:8.2f} "
          f"(median; {min(ratios):.2f}-{max(ratios):.2f})", flush=True)  # fmt: skip
    return med


#: the steps of a batch run timed by :func:`pipeline_stages`: (module, name, thread)
PIPELINE_STEPS = (
    ("crs_ml.ingest.stream", "_batches", "reader"),
    ("crs_ml.ingest.stream", "normalise", "reader"),
    ("crs_ml.scoring.batch", "begin", "worker"),
    ("crs_ml.scoring.batch", "chunk_features", "worker"),
    ("crs_ml.scoring.batch", "explain_chunk", "main"),
    ("crs_ml.scoring.batch", "scores_columns", "main"),
    ("crs_ml.files", "AtomicTable.write", "main"),
)


def pipeline_stages(bundle, data: Path, out: Path, as_of_h: float, read_ahead: int) -> dict:
    """One ``score_to_file`` run with its steps timed where they run: per step, the wall
    time and the CPU time of the calling thread (``time.thread_time``; native pools such as
    polars' are not in it), summed over the chunks. A step whose wall time exceeds its CPU
    time waited: for a native pool, for the other thread's hold on the GIL, or for a core.
    ``_batches`` (Parquet record batches read and typed) is a generator: its time is that
    of drawing the batches. The wrappers are removed afterwards."""
    import importlib

    acc: dict[str, list[float]] = {}
    undo = []

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                result = fn(*args, **kwargs)
                if name == "_batches":  # a generator: time each batch drawn
                    return _timed_generator(result, acc.setdefault(name, [0.0, 0.0]))
                return result
            finally:
                entry = acc.setdefault(name, [0.0, 0.0])
                entry[0] += time.perf_counter() - t0
                entry[1] += time.thread_time() - c0

        return wrapper

    for module, name, _ in PIPELINE_STEPS:
        owner = importlib.import_module(module)
        attr = name
        if "." in name:
            cls, attr = name.split(".")
            owner = getattr(owner, cls)
        undo.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, timed(name, getattr(owner, attr)))
    try:
        wall, cpu = end_to_end(bundle, data, out, as_of_h, read_ahead_chunks=read_ahead)
    finally:
        for owner, attr, fn in undo:
            setattr(owner, attr, fn)
    steps = {name: {"thread": thread, "wall_s": acc.get(name, [0, 0])[0],
                    "thread_cpu_s": acc.get(name, [0, 0])[1]}
             for _, name, thread in PIPELINE_STEPS}  # fmt: skip
    print(f"  read ahead {read_ahead}: {wall:.2f} s, {cpu:.2f} CPU-s (all threads)")
    for name, d in steps.items():
        print(f"    {d['thread']:<6} {name:<20} {d['wall_s']:6.2f} s wall "
              f"{d['thread_cpu_s']:6.2f} s thread CPU", flush=True)  # fmt: skip
    return {"read_ahead_chunks": read_ahead, "wall_s": wall, "cpu_s": cpu, "steps": steps}


def _timed_generator(items, entry: list[float]):
    it = iter(items)
    while True:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            item = next(it)
        except StopIteration:
            return
        finally:
            entry[0] += time.perf_counter() - t0
            entry[1] += time.thread_time() - c0
        yield item


def pipeline_settings(bundle, data: Path, out: Path, as_of_h: float, runs: int) -> dict:
    """The default pipeline against TreeSHAP on all cores and against no worker threads, in
    turn ``runs`` times; medians and the pair-by-pair ratio of wall times to the default."""
    from crs_ml.scoring.batch import default_shap_threads

    variants = {
        "default": {},
        "shap_on_all_cores": {"shap_threads": os.cpu_count() or 1},
        "no_worker_thread": {"read_ahead_chunks": 0},
    }
    walls = {k: [] for k in variants}
    for _ in range(runs):
        for name, settings in variants.items():
            walls[name].append(end_to_end(bundle, data, out, as_of_h, **settings)[0])
    out_ = {"default_shap_threads": default_shap_threads()}
    for name in variants:
        ratios = [w / d for w, d in zip(walls[name], walls["default"], strict=True)]
        out_[name] = {"wall_s": float(np.median(walls[name])),
                      "time_vs_default": float(np.median(ratios))}  # fmt: skip
        print(f"  {name.replace('_', ' '):<34} {out_[name]['wall_s']:8.2f} s "
              f"({out_[name]['time_vs_default']:.2f}x the default's time)", flush=True)  # fmt: skip
    return out_


def baseline_tree(commit: str, folder: Path) -> Path | None:
    """The ``crs_ml`` package of ``commit`` extracted into ``folder`` (None outside git)."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "crs_ml"],
                             capture_output=True)  # fmt: skip
    if archive.returncode != 0:
        print(f"  no baseline: git archive {commit} failed ({archive.stderr.decode()[:200]})")
        return None
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def command_time(pythonpath: Path, bundle_dir: Path, data: Path, out: Path, as_of_h: float):
    """Wall seconds of ``python -m crs_ml score`` with ``pythonpath`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR":
           "false"}  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "crs_ml",
        "score",
        "--model",
        str(bundle_dir),
        "--data",
        str(data),
        "--out",
        str(out),
        "--chunk-size",
        "5000",
        "--as-of-hours",
        f"{as_of_h:g}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=out.parent)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{pythonpath}: crs-ml score failed:\n{proc.stderr[-3000:]}")
    return wall


def bundle_for(old: Path, bundle_dir: Path, out: Path) -> Path:
    """A copy of the model folder that the recorded commit can read: its config keeps only the
    settings that commit knows (its strict config refuses later ones such as
    ``features.variables``; their defaults there are what this model was trained with: the 12
    variables of the simulator). Booster and hashed files are copied unchanged."""
    known = json.loads(subprocess.run(
        [sys.executable, "-c",
         "from crs_ml.config import Config; print(Config().model_dump_json())"],
        env={**os.environ, "PYTHONPATH": str(old)}, cwd=old, capture_output=True, text=True,
        check=True,
    ).stdout)  # fmt: skip

    def prune(value, reference):
        if isinstance(value, dict) and isinstance(reference, dict):
            return {k: prune(v, reference[k]) for k, v in value.items() if k in reference}
        return value

    shutil.copytree(bundle_dir, out)
    manifest = json.loads((out / "bundle.json").read_text())
    manifest["config"] = prune(manifest["config"], known)
    (out / "bundle.json").write_text(json.dumps(manifest, indent=1))
    return out


def against_baseline(commit: str, folder: Path, bundle_dir: Path, data: Path, as_of_h: float,
                     runs: int) -> dict:  # fmt: skip
    """This tree's ``crs-ml score`` against the recorded commit's, in turn ``runs`` times."""
    old = baseline_tree(commit, folder / "baseline")
    if old is None:
        return {}
    old_bundle = bundle_for(old, bundle_dir, folder / "old_bundle")
    new_t, old_t = [], []
    for _ in range(runs):
        old_t.append(command_time(old, old_bundle, data, folder / "old.parquet", as_of_h))
        new_t.append(command_time(ROOT, bundle_dir, data, folder / "new.parquet", as_of_h))
    a = pd.read_parquet(folder / "old.parquet")
    b = pd.read_parquet(folder / "new.parquet")
    assert list(a["patient_id"]) == list(b["patient_id"]) and a["status"].equals(b["status"])
    risk_diff = float(np.nanmax(np.abs(a["risk"].to_numpy() - b["risk"].to_numpy()), initial=0))
    speedups = [o / n for o, n in zip(old_t, new_t, strict=True)]
    res = {"commit": commit, "this_tree_s": float(np.median(new_t)),
           "baseline_s": float(np.median(old_t)), "speedup": float(np.median(speedups)),
           "speedup_min_max": [float(min(speedups)), float(max(speedups))],
           "max_abs_risk_difference": risk_diff, "runs": runs}  # fmt: skip
    print(f"  {'crs-ml score, this tree':<34} {res['this_tree_s']:8.2f} s (median)\n"
          f"  {'crs-ml score, ' + commit:<34} {res['baseline_s']:8.2f} s (median)\n"
          f"  {'speed-up, pair by pair':<34} {res['speedup']:8.2f}x "
          f"({min(speedups):.2f}-{max(speedups):.2f}); risks differ by at most "
          f"{risk_diff:.1e}", flush=True)  # fmt: skip
    return res


def score_stages(bundle, cohort) -> dict[str, float]:
    """Seconds of each stage of ``score(bundle, cohort)`` (one chunk), and the scores."""
    from crs_ml.scoring.score import begin, chunk_features, explain_chunk, scores_table

    t = [time.perf_counter()]
    s = begin(bundle, cohort)
    t.append(time.perf_counter())
    features = [chunk_features(s, k) for k in range(len(s.chunks))]
    t.append(time.perf_counter())
    for k, X in enumerate(features):
        explain_chunk(s, k, X)
    t.append(time.perf_counter())
    scores_table(s)
    t.append(time.perf_counter())
    names = ("statuses_completeness", "features", "treeshap_drivers", "scores_table")
    return {n: b - a for n, a, b in zip(names, t[:-1], t[1:], strict=True)}


def latency(bundle_dir: Path, folder: Path, cohort, n: int, seed: int) -> dict:
    import mlflow

    from crs_ml.ingest.records import cohort_to_records, records_to_cohort
    from crs_ml.scoring.score import score
    from crs_ml.tracking.pyfunc import MODEL_CODE, input_signature, pip_requirements, to_output

    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no input example: this model is never logged
        mlflow.pyfunc.save_model(
            path=str(folder / "pyfunc"), python_model=MODEL_CODE,
            artifacts={"bundle": str(bundle_dir)},
            signature=input_signature(manifest["feature_names"]),
            pip_requirements=pip_requirements(),
        )  # fmt: skip
    model = mlflow.pyfunc.load_model(str(folder / "pyfunc"))
    shutil.rmtree(folder / "pyfunc")  # the next model's goes to the same place
    rng = np.random.default_rng(seed)
    ids = rng.choice(cohort.patients["patient_id"].to_numpy(dtype=object), n + 5, replace=False)
    small = cohort.subset(ids)
    records = cohort_to_records(small)
    groups = [g.reset_index(drop=True) for _, g in records.groupby("patient_id", sort=False)]
    inner = model.unwrap_python_model().bundle
    one = [small.subset([pid]) for pid in ids]  # one-patient cohorts, as a caller holds them
    for c in one[:5]:
        score(inner, c)
    fn_t, fn_cpu, stage_t = [], [], []
    for c in one[5:]:
        t0, cpu0 = time.perf_counter(), time.process_time()
        score(inner, c)
        fn_t.append(time.perf_counter() - t0)
        fn_cpu.append(time.process_time() - cpu0)
        stage_t.append(score_stages(inner, c))
    for g in groups[:5]:
        model.predict(g)
    total, total_cpu, rec_t, score_t, out_t, own_t = [], [], [], [], [], []
    python_model = model.unwrap_python_model()
    for g in groups[5:]:
        t0, cpu0 = time.perf_counter(), time.process_time()
        model.predict(g)
        total.append(time.perf_counter() - t0)
        total_cpu.append(time.process_time() - cpu0)
        t0 = time.perf_counter()
        python_model.predict(None, g)  # without MLflow's input handling
        own_t.append(total[-1] - (time.perf_counter() - t0))
        t0 = time.perf_counter()
        c = records_to_cohort(g)
        t1 = time.perf_counter()
        scores = score(inner, c)
        t2 = time.perf_counter()
        to_output(scores)
        rec_t.append(t1 - t0)
        score_t.append(t2 - t1)
        out_t.append(time.perf_counter() - t2)

    def ms(values, q=50):
        return float(np.percentile(values, q) * 1000)

    return {
        "model_type": str(manifest["config"]["model"]["type"]),
        "boosters": 1 + len(manifest.get("horizons") or ()),
        "n": len(total),
        "rows_per_patient_median": float(np.median([len(g) for g in groups])),
        "python_function_p50_ms": ms(fn_t, 50),
        "python_function_p95_ms": ms(fn_t, 95),
        "python_function_stage_p50_ms": {k: ms([d[k] for d in stage_t]) for k in stage_t[0]},
        # CPU time (one thread works for one patient): less distorted on a busy machine
        "python_function_cpu_p50_ms": ms(fn_cpu),
        "p50_ms": ms(total, 50),
        "p95_ms": ms(total, 95),
        "cpu_p50_ms": ms(total_cpu),
        "records_to_cohort_p50_ms": ms(rec_t),
        "score_p50_ms": ms(score_t),
        "to_output_p50_ms": ms(out_t),
        "mlflow_input_handling_p50_ms": ms(own_t),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--train-patients", type=int, default=1000)
    ap.add_argument("--as-of-hours", type=float, default=48.0)
    ap.add_argument("--input", choices=("parquet", "csv"), default="parquet")
    ap.add_argument("--larger-train-patients", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3, help="end-to-end / bare pairs per model")
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-windows", action="store_true",
                    help="train without the short-horizon models (task.windows_h=[]): the "
                    "day-14 booster alone, as before issue 18")  # fmt: skip
    ap.add_argument(
        "--baseline-commit",
        default=BASELINE_COMMIT,
        help="recorded commit whose crs-ml score to compare with ('' skips it)",
    )
    ap.add_argument(
        "--settings-runs",
        type=int,
        default=2,
        help="runs of the pipeline-settings comparison (0 skips it)",
    )
    ap.add_argument("--config", default=str(Path(__file__).parents[1] / "configs" / "default.yaml"),
                    help="model configuration to train (default: the default, a stack)")  # fmt: skip
    ap.add_argument(
        "--latency-configs",
        nargs="*",
        default=[],
        help="also measure single-patient latency of a model of each of these "
        "configurations (e.g. configs/xgboost.yaml configs/stack.yaml)",
    )
    ap.add_argument(
        "--latency-only",
        action="store_true",
        help="single-patient latency alone (step 7), on --latency-cohort patients",
    )
    ap.add_argument("--latency-cohort", type=int, default=2000,
                    help="simulated patients the one-patient inputs are drawn from with "
                    "--latency-only")  # fmt: skip
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "score.json"))
    args = ap.parse_args()
    if args.latency_only:
        return latency_only(args)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    tmp = Path(tempfile.mkdtemp(prefix="crs_ml_bench_score_"))
    try:
        print(f"training {args.config} on {args.train_patients} patients", flush=True)
        t0 = time.perf_counter()
        bundle, bundle_dir = train_bundle(tmp, args.train_patients, args.seed + 101,
                                          windows=not args.no_windows, config=args.config)  # fmt: skip
        _stage("train", t0)
        print(f"simulating {args.patients} new patients, data up to {args.as_of_hours:g} h",
              flush=True)  # fmt: skip
        t0 = time.perf_counter()
        sizes = batch_input(tmp / "batch", args.patients, args.seed + 202, args.as_of_hours,
                            args.input)  # fmt: skip
        _stage("simulate + write input", t0)
        print("stage by stage on the whole cohort", flush=True)
        times, (scores, cohort) = stages(
            bundle, tmp / "batch", tmp / "scores_stages.parquet", args.as_of_hours
        )
        matrix, features_s = feature_matrix(bundle, cohort, scores)
        print(f"end to end (crs-ml score) and bare TreeSHAP, {args.runs} times in turn", flush=True)
        e2e = paired(bundle, tmp / "batch", tmp / "scores.parquet", args.as_of_hours, matrix,
                     sizes["patients"], args.runs)  # fmt: skip
        assert pd.read_parquet(tmp / "scores.parquet").equals(
            pd.read_parquet(tmp / "scores_stages.parquet")
        )
        settings = {}
        if args.settings_runs:
            print(f"pipeline settings, {args.settings_runs} times in turn", flush=True)
            settings = pipeline_settings(bundle, tmp / "batch", tmp / "scores_settings.parquet",
                                         args.as_of_hours, args.settings_runs)  # fmt: skip
        print("the pipeline's steps timed where they run (reader / worker / main thread)",
              flush=True)  # fmt: skip
        steps = [pipeline_stages(bundle, tmp / "batch", tmp / "scores_steps.parquet",
                                 args.as_of_hours, ahead) for ahead in (1, 0)]  # fmt: skip
        baseline = {}
        if args.baseline_commit and bundle.model_type != "xgboost":
            print(f"crs-ml score against commit {args.baseline_commit}: skipped, that engine reads "
                  f"only xgboost models (this one is a {bundle.model_type}; "
                  "--config configs/xgboost.yaml)", flush=True)  # fmt: skip
        elif args.baseline_commit:
            print(f"crs-ml score against commit {args.baseline_commit}, {args.runs} times in turn",
                  flush=True)  # fmt: skip
            baseline = against_baseline(args.baseline_commit, tmp / "vs", bundle_dir,
                                        tmp / "batch", args.as_of_hours, args.runs)  # fmt: skip
        print(f"single-patient latency over {args.latency_n} patients", flush=True)
        lat = latency(bundle_dir, tmp, cohort, args.latency_n, args.seed)
        more = more_latency(args, tmp, cohort)
        larger = {}
        if args.larger_train_patients:
            n = args.larger_train_patients
            print(f"the same model configuration trained on {n} patients", flush=True)
            big, _ = train_bundle(tmp / f"larger_{n}", n, args.seed + 103,
                                  windows=not args.no_windows, config=args.config)  # fmt: skip
            assert big.feature_names == bundle.feature_names  # the same matrix serves both
            larger = paired(big, tmp / "batch", tmp / "scores_larger.parquet", args.as_of_hours,
                            matrix, sizes["patients"], args.runs)  # fmt: skip
            trees = int(xgboost_booster(big)[0].num_boosted_rounds())
            larger = {"train_patients": n, "trees": trees,
                      **larger}  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    e2e_rate = sizes["patients"] / e2e["end_to_end_s"]
    bare_rate = len(matrix) / e2e["bare_shap_s"]
    result = {
        "benchmark": "score",
        "patients": sizes["patients"],
        "input_rows": sizes,
        "input_format": args.input,
        "as_of_hours": args.as_of_hours,
        "model_type": bundle.model_type,
        "config": Path(args.config).name,
        "trees": int(xgboost_booster(bundle)[0].num_boosted_rounds()),
        "boosters": len(boosters(bundle)),
        "features": len(bundle.feature_names),
        "status_counts": scores["status"].value_counts().to_dict(),
        "paired_runs": e2e,
        "end_to_end_patients_per_s": e2e_rate,
        "bare_pred_contribs_rows": len(matrix),
        "bare_pred_contribs_rows_per_s": bare_rate,
        "features_alone_s": features_s,
        "ratio_end_to_end_to_bare": e2e["ratio_end_to_end_to_bare"],
        "stages_sequential": times,
        "target_ratio": 0.5,
        "single_patient": lat,
        "single_patient_other_models": more,
        "larger_model": larger,
        "pipeline_settings": settings,
        "pipeline_steps": steps,
        "against_baseline": baseline,
        "target_speedup_vs_baseline": 2.0,
        "target_p50_ms": 10.0,
        "target_pyfunc_p50_ms": 20.0,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        },  # fmt: skip
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    table = summary_table(result)
    out.with_suffix(".md").write_text(table + "\n")
    print("\n" + table + f"\n-> {out}, {out.with_suffix('.md')}")


def more_latency(args, tmp: Path, cohort) -> list[dict]:
    """Single-patient latency of a model of each of ``--latency-configs``, trained as in step 1."""
    out = []
    for k, config in enumerate(args.latency_configs):
        print(f"single-patient latency, a model of {config}", flush=True)
        _, path = train_bundle(tmp / f"latency_{k}", args.train_patients, args.seed + 101,
                               windows=not args.no_windows, config=config)  # fmt: skip
        out.append({"config": config, **latency(path, tmp, cohort, args.latency_n, args.seed)})
    return out


def latency_only(args) -> None:
    """Step 7 alone: the model of step 1 and those of ``--latency-configs`` on one-patient
    inputs drawn from ``--latency-cohort`` simulated patients (as of ``--as-of-hours``)."""
    from crs_ml.cli.scoring import _data_options
    from crs_ml.ingest.load import load_cohort

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    tmp = Path(tempfile.mkdtemp(prefix="crs_ml_bench_latency_"))
    try:
        print(f"training {args.config or 'the default configuration'} on "
              f"{args.train_patients} patients", flush=True)  # fmt: skip
        bundle, bundle_dir = train_bundle(tmp, args.train_patients, args.seed + 101,
                                          windows=not args.no_windows,
                                          config=args.config)  # fmt: skip
        batch_input(tmp / "batch", args.latency_cohort, args.seed + 202, args.as_of_hours,
                    "parquet")  # fmt: skip
        cohort = load_cohort(tmp / "batch", _data_options(bundle, None))
        print(f"single-patient latency over {args.latency_n} patients", flush=True)
        lat = latency(bundle_dir, tmp, cohort, args.latency_n, args.seed)
        more = more_latency(args, tmp, cohort)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"benchmark": "score_latency", "as_of_hours": args.as_of_hours,
              "single_patient": lat, "single_patient_other_models": more,
              "target_p50_ms": 10.0, "target_pyfunc_p50_ms": 20.0,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "load_avg_1m": os.getloadavg()[0]}}  # fmt: skip
    out = Path(args.out)
    out = out.with_name(out.stem + "_latency.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    rows = [f"Single patient (as of {args.as_of_hours:g} h), after load; "
            f"{os.cpu_count()} cores, load {result['machine']['load_avg_1m']:.1f} at the end.",
            "", "| measure | value | target | met |", "|---|---|---|---|",
            *latency_rows(lat), *(r for m in more for r in latency_rows(m))]  # fmt: skip
    table = "\n".join(rows)
    out.with_suffix(".md").write_text(table + "\n")
    print("\n" + table + f"\n-> {out}, {out.with_suffix('.md')}")


def latency_rows(lat: dict) -> list[str]:
    """The single-patient rows of the summary table, naming the model measured."""
    yes = {True: "yes", False: "**no**"}
    st = lat["python_function_stage_p50_ms"]
    model = lat.get("model_type", "?")
    if lat.get("boosters", 1) > 1:
        model += f", {lat['boosters'] - 1} short horizons"
    if lat.get("config"):
        model += f", {lat['config']}"
    return [
        f"| single patient ({model}), `crs_ml.score` p50 (p95) | "
        f"**{lat['python_function_p50_ms']:.1f} ms** ({lat['python_function_p95_ms']:.1f}); CPU "
        f"time p50 {lat['python_function_cpu_p50_ms']:.1f} ms | < 10 ms | "
        f"{yes[lat['python_function_p50_ms'] < 10]} |",
        f"| ... statuses + completeness / features / TreeSHAP + drivers / scores table, p50 | "
        f"{st['statuses_completeness']:.1f} / {st['features']:.1f} / "
        f"{st['treeshap_drivers']:.1f} / {st['scores_table']:.1f} ms | | |",
        f"| single patient ({model}), pyfunc `predict(records)` p50 (p95) | "
        f"**{lat['p50_ms']:.1f} ms** ({lat['p95_ms']:.1f}); CPU time p50 "
        f"{lat['cpu_p50_ms']:.1f} ms | < 20 ms | {yes[lat['p50_ms'] < 20]} |",
        f"| ... records to cohort / scoring / output conversion / MLflow input handling, p50 | "
        f"{lat['records_to_cohort_p50_ms']:.1f} / {lat['score_p50_ms']:.1f} / "
        f"{lat['to_output_p50_ms']:.1f} / {lat['mlflow_input_handling_p50_ms']:.1f} ms | | |",
    ]


def summary_table(r: dict) -> str:
    """The results of one run as a Markdown table (what the README's speed section shows)."""
    e2e, lat = r["paired_runs"], r["single_patient"]
    yes = {True: "yes", False: "**no**"}
    rows = [
        f"One run: {r['patients']:,} patients ({r['input_format']}, as of {r['as_of_hours']:g} h, "
        f"{r['input_rows']['observations']:,} observation rows), "
        + (
            f"model `{r['config']}` (a stack: bare TreeSHAP is its xgboost member's; "
            if r.get("model_type") == "stack"
            else f"model `{r.get('config', 'default.yaml')}` ("
        )
        + f"{r['trees']} trees, {r['features']} features, "
        + (
            "the day-14 booster alone"
            if r.get("boosters", 1) == 1
            else f"{r['boosters']} boosters: day 14 and {r['boosters'] - 1} short horizons, all in "
            "the bare TreeSHAP too"
        )
        + f"); {r['machine']['cpus']} cores, load "
        f"{r['machine']['load_avg_1m']:.1f} at the end.",
        "",
        "| measure | value | target | met |",
        "|---|---|---|---|",
        f"| `crs-ml score` end to end / bare TreeSHAP, rate ratio (median of {e2e['runs']} "
        f"pairs; range) | **{e2e['ratio_end_to_end_to_bare']:.2f}x** "
        f"({e2e['ratio_min_max'][0]:.2f}-{e2e['ratio_min_max'][1]:.2f}); "
        f"{e2e['end_to_end_s']:.2f} s vs {e2e['bare_shap_s']:.2f} s | >= 0.5x | "
        f"{yes[e2e['ratio_end_to_end_to_bare'] >= 0.5]} |",
    ]
    if "tables_shap_s" in e2e:
        rows.append(
            f"| crs_ml's TreeSHAP (lookup tables) of the same boosters on the same matrix vs "
            f"bare `pred_contribs`, CPU time | {e2e['tables_shap_cpu_s']:.2f} vs "
            f"{e2e['bare_shap_cpu_s']:.2f} CPU-s ({e2e['bare_over_tables_cpu']:.1f}x less) | | |"
        )
    b = r.get("against_baseline") or {}
    if b:
        rows.append(
            f"| `crs-ml score` speed-up over the pandas engine (commit {b['commit']}, same "
            f"command, median of {b['runs']} pairs; range) | **{b['speedup']:.2f}x** "
            f"({b['speedup_min_max'][0]:.2f}-{b['speedup_min_max'][1]:.2f}); "
            f"{b['this_tree_s']:.1f} s vs {b['baseline_s']:.1f} s | >= 2x | "
            f"{yes[b['speedup'] >= 2]} |"
        )
    rows += latency_rows(lat)
    for other in r.get("single_patient_other_models") or []:
        rows += latency_rows(other)
    ps = r.get("pipeline_settings") or {}
    if ps:
        rows.append(
            f"| pipeline: TreeSHAP on all {r['machine']['cpus']} cores / no worker threads, time "
            f"vs the default ({ps['default_shap_threads']} TreeSHAP thread(s) + workers) | "
            f"{ps['shap_on_all_cores']['time_vs_default']:.2f}x / "
            f"{ps['no_worker_thread']['time_vs_default']:.2f}x | | |"
        )
    for run in r.get("pipeline_steps") or []:
        by = {"reader": [0.0, 0.0], "worker": [0.0, 0.0], "main": [0.0, 0.0]}
        for d in run["steps"].values():
            by[d["thread"]][0] += d["wall_s"]
            by[d["thread"]][1] += d["thread_cpu_s"]
        rows.append(
            f"| pipeline steps, read ahead {run['read_ahead_chunks']}: reader (read, normalise) / "
            f"worker (statuses, features) / main (SHAP + drivers, table, write), wall (thread "
            f"CPU) | {by['reader'][0]:.2f} ({by['reader'][1]:.2f}) / {by['worker'][0]:.2f} "
            f"({by['worker'][1]:.2f}) / {by['main'][0]:.2f} ({by['main'][1]:.2f}) s; run "
            f"{run['wall_s']:.2f} s, {run['cpu_s']:.2f} CPU-s | | |"
        )
    seq = r["stages_sequential"]
    rows.append(
        f"| stage by stage, whole cohort: load / features + SHAP + drivers / write (features "
        f"alone) | {seq['load_s']:.2f} / {seq['score_s']:.2f} / {seq['write_s']:.2f} s "
        f"({r['features_alone_s']:.2f} s) | | |"
    )
    big = r.get("larger_model") or {}
    if big:
        rows.append(
            f"| the same, model trained on {big['train_patients']:,} patients ({big['trees']} "
            f"trees): end to end / bare TreeSHAP | {big['ratio_end_to_end_to_bare']:.2f}x | | |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
