"""Speed of the simulator and its calibration against the targets of docs/domain.md.

Speed: ``simulate`` of 10,000 patients (clean and messy style, the core 12 variables and with
``markers="all"``) and ``write_cohort`` of the result, median wall time over ``--repeats``
(target: under 30 s for 10,000 patients on the 2-core reference machine), observation rows and
the size of observations.csv -> benchmarks/results/simulate.json.

Calibration: one clean cohort of >= 20,000 realised patients; every row of the targets
table (product any-grade and grade >= 3 rates, realised and latent; median onset; Spearman
IL-6/CRP; m-EASIX AUROC; oracle AUROC at 24 h; share of grade >= 3 by 24 h) plus the
calibration of the true risk at every landmark -> benchmarks/results/simulator_calibration
.{json,md}. Definitions: crs_ml.simulate.targets.

Usage: ``python benchmarks/bench_simulate.py [--patients 10000] [--calibration-patients
20000] [--repeats 3] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from crs_ml.simulate.simulator import simulate, write_cohort
from crs_ml.simulate.targets import calibration_table, markdown_table

RESULTS = Path(__file__).parent / "results"
TARGET_SECONDS = 30.0


def time_style(n: int, seed: int, style: str, repeats: int, markers: str = "core") -> dict:
    sim_s, write_s, rows, mb = [], [], 0, 0.0
    for r in range(repeats):
        t0 = time.perf_counter()
        res = simulate(n, seed + r, style=style, markers=markers)
        t1 = time.perf_counter()
        with tempfile.TemporaryDirectory() as d:
            paths = write_cohort(res.tables, d)
            t2 = time.perf_counter()
            mb = paths["observations"].stat().st_size / 1e6
        sim_s.append(t1 - t0)
        write_s.append(t2 - t1)
        rows = len(res.tables["observations"])
    total = [a + b for a, b in zip(sim_s, write_s, strict=True)]
    return {
        "simulate_seconds_median": statistics.median(sim_s),
        "write_seconds_median": statistics.median(write_s),
        "total_seconds_median": statistics.median(total),
        "simulate_seconds": sim_s,
        "write_seconds": write_s,
        "observation_rows": rows,
        "rows_per_patient": rows / n,
        "observations_csv_mb": mb,
        "ok": statistics.median(total) < TARGET_SECONDS,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--calibration-patients", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }

    simulate(200, args.seed)  # warm-up (imports)
    speed = {
        "n_patients": args.patients,
        "target_seconds": TARGET_SECONDS,
        "clean": time_style(args.patients, args.seed, "clean", args.repeats),
        "messy": time_style(args.patients, args.seed, "messy", args.repeats),
        "clean_markers_all": time_style(args.patients, args.seed, "clean", args.repeats, "all"),
        "messy_markers_all": time_style(args.patients, args.seed, "messy", args.repeats, "all"),
        **machine,
    }
    (RESULTS / "simulate.json").write_text(json.dumps(speed, indent=2) + "\n")
    print(json.dumps(speed, indent=2))

    t0 = time.perf_counter()
    res = simulate(args.calibration_patients, args.seed + 1000)
    sim_s = time.perf_counter() - t0
    table = calibration_table(res)
    payload = {
        "n_patients": args.calibration_patients,
        "seed": args.seed + 1000,
        "simulate_seconds": sim_s,
        "all_ok": bool(table["ok"].all()),
        "rows": table.to_dict(orient="records"),
        **machine,
    }
    (RESULTS / "simulator_calibration.json").write_text(json.dumps(payload, indent=2) + "\n")
    md = (
        f"# Simulator calibration ({args.calibration_patients:,} realised patients, seed "
        f"{args.seed + 1000})\n\n"
        "`achieved` is measured on the realised cohort; `latent` is the simulator's exact "
        "latent value (mean P(any CRS) / P(grade >= 3) by the horizon, latent median onset). "
        "`ok`: both within [lower, upper]. Product grade >= 3 targets: axi-cel 15% and "
        "tisa-cel 20% (ASTCT-comparable choices, table 13% / 22%), upper figures of ranges "
        "otherwise.\n\n" + markdown_table(table)
    )
    (RESULTS / "simulator_calibration.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
