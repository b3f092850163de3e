"""CPU seconds of the person-bootstrap intervals of the IPCW AUROC and Brier score at one
report landmark, as the day-14 IPCW training metrics compute them
(crs_ml.modeling.horizons.landmark_ipcw_metrics -> crs_ml.evaluation.censored.
censored_metrics): ``--patients`` rows at risk (synthetic: integer hours, tied times, grade
>= 3, death, censoring), ``--repeats`` CV repeats pooled, ``--boot`` replicates, G within
deciles of the pooled risk, by site (3) or one.

It prints the CPU seconds per stratification and every estimate and interval bound with all
digits (repr), so two checkouts can be compared for identical results:
``PYTHONPATH=<checkout> python benchmarks/bench_ipcw_bootstrap.py > out.txt`` for each and
diff the lines below the timings. Timings are indicative on a shared machine.
Usage: python benchmarks/bench_ipcw_bootstrap.py [--patients 1000] [--repeats 5] [--boot 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from crs_ml.evaluation.censored import censored_metrics, censoring_strata

HORIZON_H = 336.0


def pooled_rows(patients: int, repeats: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.round(24.0 + rng.exponential(150.0, patients))
    c = rng.choice([0, 1, 2], patients, p=[0.75, 0.2, 0.05])
    t[t >= HORIZON_H], c[t >= HORIZON_H] = HORIZON_H, 0
    persons = np.array([f"P{i // 2}" for i in range(patients)])  # two patients per person
    site = rng.choice(["A", "B", "C"], patients)
    risk = np.clip(rng.beta(1.0, 5.0, (repeats, patients)) + 0.2 * (c == 1), 0.0, 1.0)
    return [np.tile(a, repeats) for a in (t, c, persons, site)] + [risk.ravel()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--boot", type=int, default=1000)
    args = ap.parse_args()
    t, c, persons, site, risk = pooled_rows(args.patients, args.repeats)
    results = {}
    for by in ("risk_decile", "site", "none"):
        strata = censoring_strata(by, site, risk)
        start = time.process_time()
        got = censored_metrics(t, c, risk, HORIZON_H, persons, strata, n_boot=args.boot, seed=0,
                               metrics=("auroc", "brier"))  # fmt: skip
        cpu = time.process_time() - start
        print(f"{by:12s} {t.size} pooled rows, {args.boot} replicates: {cpu:.2f} CPU-s")
        results[by] = got
    for by, got in results.items():
        for k in ("auroc", "brier"):
            print(by, k, *(repr(v) for v in got[k]))


if __name__ == "__main__":
    main()
