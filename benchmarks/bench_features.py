"""Speed of landmark features against a bare pandas groupby over the same visible rows.

Builds a cohort of 100,000 patients and >= 6,000,000 observations directly with numpy
(realistic mix of vitals every few hours, daily labs, pre-infusion baselines, a few optional
labs, events for a fifth of the patients), then times, at landmark 24 h for every patient:

* ``build_features`` (all feature groups; includes the leakage guard and the ASTCT state);
* the floor: ``obs[obs.hours <= 24].groupby(["patient_id", "variable"]).value.agg(max, min,
  last, count)`` (its own filter included).

Writes the median times and their ratio to benchmarks/results/features.json (target: ratio
<= 3). Usage: ``python benchmarks/bench_features.py [--patients 100000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crs_ml.cohort import EVENT_COLUMNS, OBSERVATION_COLUMNS, PRODUCTS, Cohort
from crs_ml.config import FeatureConfig
from crs_ml.features.builder import build_features

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
    vis = obs[obs["hours"] <= landmark_h]
    return vis.groupby(["patient_id", "variable"], sort=False)["value"].agg(
        ["max", "min", "last", "count"]
    )


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
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "features.json"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    cohort = make_cohort(args.patients, args.obs_per_patient, args.seed)
    gen_s = time.perf_counter() - t0
    points = pd.DataFrame(
        {"patient_id": cohort.patients["patient_id"], "landmark_h": args.landmark}
    )
    config = FeatureConfig()
    X = build_features(cohort, points, config)  # warm-up (imports, caches)
    floor = bare_groupby(cohort.observations, args.landmark)
    times = _time_interleaved(
        {
            "build_features": lambda: build_features(cohort, points, config),
            "bare_groupby": lambda: bare_groupby(cohort.observations, args.landmark),
        },
        args.repeats,
    )
    med = {k: {m: statistics.median(v[m]) for m in v} for k, v in times.items()}
    result = {
        "benchmark": "features",
        "n_patients": args.patients,
        "n_observations": int(len(cohort.observations)),
        "n_events": int(len(cohort.events)),
        "n_visible_observations": int((cohort.observations["hours"] <= args.landmark).sum()),
        "landmark_h": args.landmark,
        "n_features": int(X.shape[1]),
        "repeats": args.repeats,
        "build_features_s": round(med["build_features"]["wall"], 3),
        "bare_groupby_s": round(med["bare_groupby"]["wall"], 3),
        "ratio": round(med["build_features"]["wall"] / med["bare_groupby"]["wall"], 2),
        "target_ratio": 3.0,
        "build_features_cpu_s": round(med["build_features"]["cpu"], 3),
        "bare_groupby_cpu_s": round(med["bare_groupby"]["cpu"], 3),
        "ratio_cpu": round(med["build_features"]["cpu"] / med["bare_groupby"]["cpu"], 2),
        "all_build_features_s": [round(t, 3) for t in times["build_features"]["wall"]],
        "all_bare_groupby_s": [round(t, 3) for t in times["bare_groupby"]["wall"]],
        "bare_groupby_groups": int(len(floor)),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "generate_s": round(gen_s, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
