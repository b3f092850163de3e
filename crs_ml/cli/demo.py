"""``make demo``: the main job end to end on synthetic data, as a user would type it.

Every step is a ``crs-ml`` command run in a subprocess, printed before it runs, so the demo
doubles as a transcript of the workflow; it ends with the ward board of the admissions
(``data/demo_board.html``, its path printed). It writes only ``data/demo*``, ``mlflow.db`` and
``mlruns/`` in the working folder (all git-ignored).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

TRAIN_SEED = 1
N_TRAIN = int(os.environ.get("CRS_ML_DEMO_PATIENTS", "1000"))
#: the training sites (the default shares without C, the external cohort's site)
TRAIN_SITES = "A=0.35,B=0.25,D=0.15"
#: the demo keeps CV light so it finishes in a few minutes; the configs default to 5 x 5
DEMO_CV = ["--set", "cv.repeats=2", "--set", "cv.bootstrap=500"]


def step(title: str, args: list[str]) -> None:
    cmd = [sys.executable, "-m", "crs_ml", *args]
    print(f"\n=== {title}\n$ crs-ml {shlex.join(args)}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(cmd)
    if result.returncode != 0:
        print(
            f"demo step failed (exit {result.returncode}): crs-ml {shlex.join(args)}",
            file=sys.stderr,
        )
        sys.exit(result.returncode)
    print(f"({time.perf_counter() - started:.1f} s)", flush=True)


def omop_twin(root: Path, contract_scores: Path) -> None:
    """Steps 7b-7d: the admissions of step 6 as an OMOP CDM database (a DuckDB file, read
    in place, no server), checked and scored; its scores must equal the contract twin's."""
    import pandas as pd

    folder = root / "data" / "demo_omop"
    cdm, out = folder / "cdm.duckdb", root / "data" / "demo_omop_scores.parquet"
    started = time.perf_counter()
    step(
        "7b. The same admissions as an OMOP CDM v5.4 database (DuckDB file, no server)",
        ["simulate", "--n-patients", "300", "--seed", "3", "--format", "omop",
         "--omop-as", "duckdb", "--out", str(folder)],
    )  # fmt: skip
    step(
        "7c. Check it: the OMOP adapter maps its codes into the cohort",
        ["check", "--data", str(cdm)],
    )
    step(
        "7d. Score it with the champion at 36 h",
        ["score", "--data", str(cdm), "--as-of-hours", "36", "--out", str(out)],
    )
    a = pd.read_parquet(contract_scores).set_index("patient_id").sort_index()
    b = pd.read_parquet(out).set_index("patient_id").sort_index()
    same = a.index.equals(b.index) and a["status"].equals(b["status"])
    gap = float((a["risk"] - b["risk"]).abs().max()) if same else float("nan")
    print(f"OMOP twin vs contract twin: {len(b)} vs {len(a)} patients, same status: {same}, "
          f"largest risk difference: {gap:g}")  # fmt: skip
    print(pd.DataFrame({"risk (contract)": a["risk"], "risk (OMOP)": b["risk"]}).head(3))
    print(f"(OMOP steps: {time.perf_counter() - started:.1f} s)")
    if not same or gap > 1e-9:
        print("demo: the OMOP twin's scores differ from the contract twin's", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    root = Path.cwd()
    data = root / "data" / "demo"
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    print(f"crs_ml demo: tracking store {os.environ['MLFLOW_TRACKING_URI']}")
    step(
        "1. Simulate a training cohort",
        # sites A, B and D only: site C is the external cohort's, never seen in training
        [
            "simulate",
            "--n-patients",
            str(N_TRAIN),
            "--seed",
            str(TRAIN_SEED),
            "--sites",
            TRAIN_SITES,
            "--out",
            str(data),
        ],
    )
    step("2. Check it against the data contract", ["check", "--data", str(data)])
    step(
        "3. Train the default model (a stack of xgboost, additive and compact logistic models) "
        "and register it as champion",
        [
            "train",
            "--data",
            str(data),
            "--config",
            "configs/default.yaml",
            *DEMO_CV,
            "--run-name",
            "stack",
            "--alias",
            "champion",
        ],
    )
    for name in ("xgboost", "xgb_monotone", "logistic", "measix", "fever_rule"):
        step(
            f"4. Train {name}",
            [
                "train",
                "--data",
                str(data),
                "--config",
                f"configs/{name}.yaml",
                *DEMO_CV,
                # the comparison is at day 14: no short-horizon windows (the champion has them)
                "--set",
                "task.windows_h=[]",
                "--run-name",
                name,
            ],
        )
    step("5. Compare the runs at the 24 h landmark", ["compare", "--landmark", "24"])
    admissions = root / "data" / "demo_admissions"
    scores_out = str(root / "data" / "demo_scores.parquet")
    score_admissions = [
        "score",
        "--data",
        str(admissions),
        "--as-of-hours",
        "36",
        "--out",
        scores_out,
    ]
    step(
        "6. A fresh batch of admissions, 36 h after infusion (new seed, so new patients)",
        ["simulate", "--n-patients", "300", "--seed", "3", "--out", str(admissions)],
    )
    step(
        "7. Score them with the champion; the five highest-risk patients, their completeness and drivers",
        [*score_admissions, "--top", "5"],
    )
    omop_twin(root, Path(scores_out))
    external = root / "data" / "demo_external"
    step(
        "8. An external cohort: site C, never seen in training (tocilizumab late, LOINC codes, "
        "other units), another product mix, messy extract",
        [
            "simulate",
            "--n-patients",
            "800",
            "--seed",
            "4",
            "--style",
            "messy",
            "--sites",
            "C=1",
            "--products",
            "axi-cel=0.5,brexu-cel=0.2,cilta-cel=0.3",
            "--out",
            str(external),
        ],
    )
    step("9. Check the external cohort", ["check", "--data", str(external)])
    report = root / "data" / "demo_report"
    step(
        "10. Validate the champion on it: metrics.json + report.html",
        [
            "validate",
            "--data",
            str(external),
            "--out",
            str(report),
            "--landmarks",
            "24,48",
            "--bootstrap",
            "1000",
        ],
    )
    board = root / "data" / "demo_board.html"
    step(
        "11. The ward board of the admissions at 36 h: risk over time and why, per patient",
        [*score_admissions, "--board", str(board)],
    )
    print(
        f"\nDone. The validation report is {report / 'report.html'}; `make ui` opens the MLflow UI on the same store."
    )
    print(f"Ward board (open in a browser): {board}")


if __name__ == "__main__":
    main()
