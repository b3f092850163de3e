"""Four `crs-ml train` processes started together against one fresh SQLite store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    out = tmp_path_factory.mktemp("concurrent")
    write_cohort(simulate_cohort(200, seed=51), out)
    return out


def test_four_concurrent_trainings_all_recorded(cohort_dir, tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"  # does not exist yet
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    args = [
        # the xgboost pipeline (the default before issue 15), which the 15 trees shrink
        "--config",
        str(Path(__file__).resolve().parents[2] / "configs" / "xgboost.yaml"),
        "--set",
        "cv.folds=2",
        "--set",
        "cv.repeats=1",
        "--set",
        "cv.bootstrap=0",
        "--set",
        "model.n_estimators=15",
        "--set",
        "task.landmarks_h=[24]",
        "--set",
        "cv.report_landmarks_h=[24]",
        "--set",
        "task.windows_h=[]",  # no short-horizon models: not what this tests
        "--experiment",
        "concurrent",
    ]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "crs_ml",
                "train",
                "--data",
                str(cohort_dir),
                *args,
                "--set",
                f"seed={i}",
                "--run-name",
                f"worker{i}",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(4)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["concurrent"])
        assert len(runs) == 4
        assert set(runs["tags.mlflow.runName"]) == {f"worker{i}" for i in range(4)}
        assert (runs["status"] == "FINISHED").all()
        assert runs["metrics.auroc_L24"].notna().all()
        models = mlflow.search_logged_models(experiment_ids=list(runs["experiment_id"].unique()))
        assert set(models["source_run_id"]) == set(runs["run_id"])
    finally:
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
