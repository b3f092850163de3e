"""Size and opening time of the ward board (crs_ml.scoring.board) for a batch of admissions.

1. Trains the default xgboost configuration (light CV) on ``--train-patients`` simulated
   patients (temporary folder).
2. Scores ``--patients`` new simulated patients (another seed) as a batch run at
   ``--as-of-hours`` would see them (rows up to then), and times building the board (the
   trajectories: features and predictions at every landmark up to each patient's) and
   rendering it.
3. Opens the page in headless Chromium (Debian's package) ``--runs`` times with
   ``--dump-dom`` (parse, style, layout, run the sorting script, serialise), and a blank page
   as often, alternating; reported: the medians and their difference, the board's own cost.
   A page whose script did not run (no ``data-board="ready"``) fails the benchmark.

Targets (issue 17): 500 patients < 10 MB and open in < 2 s. Writes
benchmarks/results/board.json and prints a summary. Usage:
``python benchmarks/bench_board.py [--patients 500] [--as-of-hours 48] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1800"]  # fmt: skip


def open_seconds(chromium: str, page: Path, profile: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                           page.resolve().as_uri()], capture_output=True, text=True,
                          timeout=300, check=True)  # fmt: skip
    return time.perf_counter() - t0, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--train-patients", type=int, default=1000)
    ap.add_argument("--as-of-hours", type=float, default=48.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", type=Path, default=None, help="copy the board here")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")

    from crs_ml.config import config_from_dict
    from crs_ml.ingest.load import load_cohort
    from crs_ml.modeling.bundle import load_bundle
    from crs_ml.modeling.train import train_model
    from crs_ml.scoring.board import board
    from crs_ml.scoring.score import score
    from crs_ml.simulate import simulate_cohort, write_cohort

    with tempfile.TemporaryDirectory(prefix="crs_ml_bench_board_") as tmp:
        root = Path(tmp)
        write_cohort(simulate_cohort(args.train_patients, 1), root / "train")
        cfg = config_from_dict({}, ["cv.folds=2", "cv.repeats=1", "cv.bootstrap=0"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = train_model(load_cohort(root / "train"), cfg)
        bundle = load_bundle(result.save(root / "bundle"))

        tables = simulate_cohort(args.patients, 7)
        h = args.as_of_hours
        obs = tables["observations"]
        ev = tables["events"].copy()
        ev = ev[pd.to_numeric(ev["hours"]) <= h].copy()
        end = pd.to_numeric(ev["end_hours"])
        ev["end_hours"] = end.where(end <= h)
        new = {"patients": tables["patients"],
               "observations": obs[pd.to_numeric(obs["hours"]) <= h], "events": ev}  # fmt: skip
        write_cohort(new, root / "new")
        cohort = load_cohort(root / "new")
        scores = score(bundle, cohort, as_of_hours=h)
        page = root / "board.html"
        t0 = time.perf_counter()
        board(scores, cohort, bundle, page, model_name="models:/crs-severity@champion")
        build_s = time.perf_counter() - t0
        size = page.stat().st_size

        if args.keep is not None:
            shutil.copy(page, args.keep)
        blank = root / "blank.html"
        blank.write_text("<!DOCTYPE html><html><body></body></html>")
        opened, empty = [], []
        for k in range(args.runs + 1):  # the first pair warms the disk cache, not counted
            dt_b, _ = open_seconds(chromium, blank, root / f"profile-b{k}")
            dt_p, dom = open_seconds(chromium, page, root / f"profile-p{k}")
            if 'data-board="ready"' not in dom:
                raise SystemExit("the board's script did not run in Chromium")
            if k:
                opened.append(dt_p)
                empty.append(dt_b)
    out = {
        "patients": args.patients,
        "as_of_hours": h,
        "status": scores["status"].value_counts().to_dict(),
        "page_bytes": size,
        "page_mb": round(size / 1e6, 2),
        "build_s": round(build_s, 2),
        "open_s_median": round(statistics.median(opened), 3),
        "blank_s_median": round(statistics.median(empty), 3),
        "board_cost_s": round(statistics.median(opened) - statistics.median(empty), 3),
        "runs": args.runs,
        "chromium": subprocess.run(
            [chromium, "--version"], capture_output=True, text=True
        ).stdout.strip(),  # fmt: skip
        "machine": f"{platform.machine()}, {platform.system()}",
    }
    folder = Path(__file__).parent / "results"
    folder.mkdir(exist_ok=True)
    (folder / "board.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
