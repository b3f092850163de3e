"""Speed of landmark features against a bare polars group_by over the same visible rows.

Builds a cohort of 100,000 patients and >= 6,000,000 observations directly with numpy
(realistic mix of vitals every few hours, daily labs, pre-infusion baselines, a few optional
labs, events for a fifth of the patients), then times, at landmark 24 h for every patient,
alternately (a busy machine slows all alike):

* ``build_features`` (polars engine; all feature groups; includes the leakage guard, the ASTCT
  state and the pandas frames in and out);
* the floor (issue 13): a bare polars ``group_by(patient_id, variable).agg(max, min, last,
  count)`` over the same visible rows, read from the same pandas cohort through Arrow (its
  conversion and filter included); the same group_by on a polars frame already in memory is
  reported too (``bare_polars_inmemory_s``);
* today's pandas/numpy builder, frozen as the parity oracle under tests/oracle/ (the figure
  the rewrite replaces), and the old floor (a bare pandas groupby).

Also times the single-patient call (one patient's cohort, 24 h), which is on the latency path
of ``crs_ml.score``: p50 over ``--single-calls`` calls, polars engine and oracle.

Writes the medians and ratios to benchmarks/results/features.json (targets: ratio <= 1.5 to
the polars floor). Timings on a shared machine are indicative; re-run on a quiet one.
Usage: ``python benchmarks/bench_features.py [--patients 100000] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from crs_ml.cohort import EVENT_COLUMNS, OBSERVATION_COLUMNS, PRODUCTS, Cohort
from crs_ml.config import FeatureConfig
from crs_ml.features.builder import build_features
from crs_ml.variables import CORE_VARIABLES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from oracle.builder import build_features as pandas_build_features  # noqa: E402

VITALS = ["temperature", "sbp", "dbp", "heart_rate", "resp_rate", "spo2"]
LABS = ["il6", "crp", "ferritin", "ldh", "platelets", "creatinine"]
OTHER = ["d_dimer", "fibrinogen", "wbc", "anc", "alt", "ast", "bilirubin", "inr"]
MEANS = {
    "temperature": (37.3, 0.8),
    "sbp": (115, 18),
    "dbp": (70, 10),
    "heart_rate": (90, 15),
    "resp_rate": (18, 4),
    "spo2": (96, 2.5),
    "il6": (40, 80),
    "crp": (40, 50),
    "ferritin": (900, 800),
    "ldh": (300, 150),
    "platelets": (120, 60),
    "creatinine": (0.9, 0.3),
}


def make_cohort(n_patients: int, obs_per_patient: int, seed: int) -> Cohort:
    rng = np.random.default_rng(seed)
    n = n_patients * obs_per_patient
    pid = np.repeat(np.arange(n_patients), obs_per_patient)
    kind = rng.choice(3, size=n, p=[0.70, 0.25, 0.05])
    names = np.array(VITALS + LABS + OTHER, dtype=object)
    var = np.where(
        kind == 0,
        rng.integers(0, 6, n),
        np.where(kind == 1, 6 + rng.integers(0, 6, n), 12 + rng.integers(0, 8, n)),
    )
    # 8% before infusion, the rest denser early (as on a CAR-T ward), up to day 14
    pre = rng.random(n) < 0.08
    hours = np.where(pre, -rng.uniform(0, 72, n), np.minimum(rng.exponential(90.0, n), 336.0))
    hours = np.round(hours * 4) / 4  # result times on a quarter-hour grid: ties happen
    mean = np.array([MEANS.get(v, (50, 20))[0] for v in names])
    sd = np.array([MEANS.get(v, (50, 20))[1] for v in names])
    value = np.abs(rng.normal(mean[var], sd[var]))
    value[rng.random(n) < 0.003] = np.nan  # non-numeric results
    order = np.lexsort((var, hours, pid))
    pid, var, hours, value = pid[order], var[order], hours[order], value[order]
    ids = np.array([f"P{i:07d}" for i in range(n_patients)], dtype=object)
    obs = pd.DataFrame(
        {
            "patient_id": pd.Series(ids[pid], dtype="str"),
            "hours": hours,
            "variable": pd.Series(names[var], dtype="str"),
            "value": value,
            "censored": np.zeros(n, dtype=np.int8),
            "out_of_range": np.zeros(n, dtype=bool),
            "source_row": np.arange(1, n + 1, dtype=np.int64),
        }
    )[OBSERVATION_COLUMNS]
    # events: a fifth of the patients get treatments and supports
    treated = rng.choice(n_patients, size=n_patients // 5, replace=False)
    ev_names = np.array(
        [
            "antipyretic",
            "tocilizumab",
            "corticosteroid",
            "oxygen_low_flow",
            "oxygen_high_flow",
            "vasopressor",
            "vasopressin",
            "positive_pressure",
            "icu_admission",
        ],
        dtype=object,
    )
    k = 3
    e_pid = np.repeat(np.sort(treated), k)
    e_kind = rng.choice(
        len(ev_names), size=len(e_pid), p=[0.3, 0.2, 0.1, 0.15, 0.08, 0.09, 0.03, 0.02, 0.03]
    )
    e_start = np.round(rng.exponential(40.0, len(e_pid)), 1)
    cont = np.isin(e_kind, [3, 4, 5, 6, 7])
    e_end = np.where(cont, e_start + rng.exponential(20.0, len(e_pid)), np.nan)
    e_order = np.lexsort((e_kind, e_start, e_pid))
    events = pd.DataFrame(
        {
            "patient_id": pd.Series(ids[e_pid[e_order]], dtype="str"),
            "hours": e_start[e_order],
            "end_hours": e_end[e_order],
            "event": pd.Series(ev_names[e_kind[e_order]], dtype="str"),
            "detail": pd.Series([None] * len(e_pid), dtype="str"),
            "source_row": np.arange(1, len(e_pid) + 1, dtype=np.int64),
        }
    )[EVENT_COLUMNS]
    patients = pd.DataFrame(
        {
            "patient_id": pd.Series(ids, dtype="str"),
            "person_id": pd.Series(ids, dtype="str"),
            "infusion_time": pd.Series(
                pd.NaT, index=range(n_patients), dtype="datetime64[ns, UTC]"
            ),
            "product": pd.Series(
                rng.choice(np.array(PRODUCTS, dtype=object), n_patients), dtype="str"
            ),
            "age_years": rng.uniform(20, 85, n_patients).round(),
            "sex": pd.Series(
                rng.choice(np.array(["F", "M"], dtype=object), n_patients), dtype="str"
            ),
            "disease": pd.Series(
                rng.choice(
                    np.array(["LBCL", "MM", "B-ALL", "MCL", "FL"], dtype=object), n_patients
                ),
                dtype="str",
            ),
            "site": "bench",
        }
    )
    return Cohort(patients=patients, observations=obs, events=events)


def bare_groupby(obs: pd.DataFrame, landmark_h: float) -> pd.DataFrame:
    """The old floor: a bare pandas groupby over the visible rows."""
    vis = obs[obs["hours"] <= landmark_h]
    return vis.groupby(["patient_id", "variable"], sort=False)["value"].agg(
        ["max", "min", "last", "count"]
    )


def _polars_floor(frame: pl.DataFrame | pl.LazyFrame, landmark_h: float) -> pl.DataFrame:
    v = pl.col("value")
    return (
        frame.lazy()
        .filter(pl.col("hours") <= landmark_h)
        .group_by("patient_id", "variable")
        .agg(v.max().alias("max"), v.min().alias("min"), v.last().alias("last"),
             v.count().alias("count"))
        .collect()
    )  # fmt: skip


def bare_polars(obs: pd.DataFrame, landmark_h: float) -> pl.DataFrame:
    """The floor: bare polars group_by over the visible rows of the same pandas cohort."""
    cols = ["patient_id", "hours", "variable", "value"]
    return _polars_floor(pl.from_pandas(obs[cols], nan_to_null=False), landmark_h)


def single_patient_p50(cohort: Cohort, fn, calls: int, landmark_h: float, config) -> float:
    """Median seconds of ``fn`` on one patient's cohort (a different patient each call)."""
    ids = cohort.patients["patient_id"].to_numpy()[:calls]
    times = []
    for pid in ids:
        one = cohort.subset([pid])
        pts = pd.DataFrame({"patient_id": [pid], "landmark_h": [landmark_h]})
        t0 = time.perf_counter()
        fn(one, pts, config)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_interleaved(fns: dict, repeats: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds of each function, run alternately so that a busy machine slows
    both alike (the machine is shared)."""
    out = {name: {"wall": [], "cpu": []} for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            out[name]["wall"].append(time.perf_counter() - w0)
            out[name]["cpu"].append(time.process_time() - c0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--obs-per-patient", type=int, default=60)
    ap.add_argument("--landmark", type=float, default=24.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--single-calls", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all-variables", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "features.json"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    cohort = make_cohort(args.patients, args.obs_per_patient, args.seed)
    gen_s = time.perf_counter() - t0
    points = pd.DataFrame(
        {"patient_id": cohort.patients["patient_id"], "landmark_h": args.landmark}
    )
    # the 12 variables of the default model on the simulator (the oracle's 139 features);
    # --all-variables: every catalogue variable (the cohort has 8 more)
    config = FeatureConfig(variables=None if args.all_variables else list(CORE_VARIABLES))
    obs, lm = cohort.observations, args.landmark
    X = build_features(cohort, points, config)  # warm-up (imports, caches)
    floor = bare_polars(obs, lm)
    in_memory = pl.from_pandas(obs[["patient_id", "hours", "variable", "value"]])
    times = _time_interleaved(
        {
            "build_features": lambda: build_features(cohort, points, config),
            "bare_polars": lambda: bare_polars(obs, lm),
            "bare_polars_inmemory": lambda: _polars_floor(in_memory, lm),
            "pandas_build_features": lambda: pandas_build_features(cohort, points, config),
            "bare_pandas_groupby": lambda: bare_groupby(obs, lm),
        },
        args.repeats,
    )
    med = {k: {m: statistics.median(v[m]) for m in v} for k, v in times.items()}
    single = single_patient_p50(cohort, build_features, args.single_calls, lm, config)
    single_old = single_patient_p50(cohort, pandas_build_features, args.single_calls, lm, config)
    wall = {k: v["wall"] for k, v in med.items()}
    result = {
        "benchmark": "features",
        "n_patients": args.patients,
        "n_observations": int(len(obs)),
        "n_events": int(len(cohort.events)),
        "n_visible_observations": int((obs["hours"] <= lm).sum()),
        "landmark_h": lm,
        "n_features": int(X.shape[1]),
        "repeats": args.repeats,
        "build_features_s": round(wall["build_features"], 3),
        "bare_polars_s": round(wall["bare_polars"], 3),
        "ratio": round(wall["build_features"] / wall["bare_polars"], 2),
        "target_ratio": 1.5,
        "bare_polars_inmemory_s": round(wall["bare_polars_inmemory"], 3),
        "ratio_to_inmemory_floor": round(wall["build_features"] / wall["bare_polars_inmemory"], 2),
        "pandas_build_features_s": round(wall["pandas_build_features"], 3),
        "speedup_vs_pandas": round(wall["pandas_build_features"] / wall["build_features"], 2),
        "bare_pandas_groupby_s": round(wall["bare_pandas_groupby"], 3),
        "build_features_cpu_s": round(med["build_features"]["cpu"], 3),
        "pandas_build_features_cpu_s": round(med["pandas_build_features"]["cpu"], 3),
        "single_patient_p50_ms": round(single * 1000, 2),
        "single_patient_p50_pandas_ms": round(single_old * 1000, 2),
        "single_patient_calls": args.single_calls,
        "all_s": {k: [round(t, 3) for t in v["wall"]] for k, v in times.items()},
        "bare_polars_groups": int(len(floor)),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "generate_s": round(gen_s, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "polars": pl.__version__,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
