"""Short horizons (issue 18): per-horizon AUROC and oracle ratio of the trained model family,
and what the extra models cost in training.

Simulates ``--patients`` patients (seed ``--seed``), trains the given config (default
configs/default.yaml, bootstrap intervals off) with the simulator's true cumulative incidence
per horizon (crs_ml.simulate.simulator.horizon_truth), and reports for the 24 h and 72 h
windows at landmarks 24 h and 48 h: n at risk, events, censored, out-of-fold IPCW AUROC, the
oracle's IPCW AUROC on the same rows and weights, and their ratio; beside them the day-14
model's AUROC and oracle ratio (complete-case rows). CPU seconds of the day-14 model's CV and
refit against the short horizons' (from the progress stages). Timings are indicative on a
shared machine.

Usage: python benchmarks/bench_horizons.py [--patients 1000] [--seed 7] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import tempfile

    from crs_ml.config import load_config
    from crs_ml.ingest.load import load_cohort
    from crs_ml.modeling.train import train_model
    from crs_ml.simulate.simulator import horizon_truth, simulate_cohort, write_cohort

    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    cfg = load_config(ROOT / "configs" / "default.yaml", ["cv.bootstrap=0", *args.set])
    with tempfile.TemporaryDirectory() as tmp:
        write_cohort(simulate_cohort(args.patients, args.seed), Path(tmp) / "c")
        cohort = load_cohort(Path(tmp) / "c")
    truth = horizon_truth(args.patients, args.seed, cfg.task.landmarks_h, cfg.task.windows_h,
                          cfg.task.horizon_h)  # fmt: skip
    marks: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        marks.setdefault(stage, time.process_time())

    start = time.process_time()
    res = train_model(cohort, cfg, progress, horizon_truth=truth)
    end = time.process_time()
    m = res.metrics
    first_h = min((v for k, v in marks.items() if k.startswith("horizon")), default=end)
    print(f"{args.patients} simulated patients, seed {args.seed}, model {cfg.model.type}, "
          f"CV {cfg.cv.folds} folds x {cfg.cv.repeats} repeats (windows: x "
          f"{cfg.cv.horizon_repeats})")  # fmt: skip
    print(f"CPU s: day-14 model {first_h - start:.1f}, short horizons {end - first_h:.1f}")
    print("| landmark | horizon | n | events | censored | AUROC (IPCW) | oracle AUROC | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for L in ("L24", "L48"):
        for tag in ("next24h", "next72h"):
            k = f"{tag}_{L}"
            if f"auroc_{k}" not in m:
                continue
            print(f"| {L[1:]} h | {tag[4:]} | {m[f'n_{k}']:.0f} | {m[f'events_{k}']:.0f} | "
                  f"{m[f'censored_{k}']:.0f} | {m[f'auroc_{k}']:.3f} | "
                  f"{m.get(f'oracle_auroc_{k}', float('nan')):.3f} | "
                  f"{m.get(f'oracle_ratio_{k}', float('nan')):.3f} |")  # fmt: skip
        print(f"| {L[1:]} h | day 14 (complete case) | {m[f'n_{L}']:.0f} | "
              f"{m[f'events_{L}']:.0f} | - | {m[f'auroc_{L}']:.3f} | "
              f"{m.get(f'oracle_auroc_{L}', float('nan')):.3f} | "
              f"{m.get(f'oracle_ratio_{L}', float('nan')):.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
