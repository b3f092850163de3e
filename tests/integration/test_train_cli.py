"""train -> compare -> tune against the session's temporary SQLite MLflow store."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from crs_ml.cli import main

FAST = [
    "--set",
    "cv.folds=2",
    "--set",
    "cv.repeats=2",
    "--set",
    "cv.bootstrap=50",
    "--set",
    "task.landmarks_h=[12, 24, 48]",
    "--set",
    "cv.report_landmarks_h=[24]",
]
SMALL_TREES = ["--set", "model.n_estimators=40", "--set", "model.max_depth=2"]
#: the xgboost pipeline (the default before issue 15), which SMALL_TREES shrinks
XGBOOST = "configs/xgboost.yaml"


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_cohort")
    main(["simulate", "--n-patients", "400", "--seed", "21", "--out", str(out)])
    return out


def _train(cohort_dir, tmp_path, experiment, *extra):
    out = tmp_path / f"train_{len(list(tmp_path.iterdir()))}.json"
    main(
        [
            "train",
            "--data",
            str(cohort_dir),
            "--experiment",
            experiment,
            *FAST,
            *extra,
            "--json",
            str(out),
        ]
    )
    return json.loads(out.read_text())


def _compare(tmp_path, experiment, n_boot):
    out = tmp_path / "board.json"
    main(["compare", "--experiment", experiment, "--landmark", "24", "--bootstrap", str(n_boot),
          "--json", str(out)])  # fmt: skip
    return json.loads(out.read_text())["runs"]


def test_train_logs_everything_and_registers(cohort_dir, tmp_path, capsys):
    res = _train(cohort_dir, tmp_path, "it-train", "--config", XGBOOST, *SMALL_TREES, "--alias",
                 "champion", "--run-name", "xgb")  # fmt: skip
    # the short horizons' oracle ratios from the folder's truth_horizons.csv, no Python needed
    printed = capsys.readouterr().out
    for tag, label in (("next24h", "24 h, next 24 h"), ("next72h", "24 h, next 72 h")):
        auroc, oracle = (
            res["metrics"][f"auroc_{tag}_L24"],
            res["metrics"][f"oracle_auroc_{tag}_L24"],
        )
        assert oracle > 0.5 and res["metrics"][f"oracle_ratio_{tag}_L24"] == auroc / oracle
        assert label in printed
    assert {"run_id", "model_uri", "metrics", "registered_version"} <= set(res)
    m = res["metrics"]
    assert 0.5 < m["auroc_L24"] <= 1 and m["auroc_lo_L24"] <= m["auroc_L24"] <= m["auroc_hi_L24"]
    assert {
        "brier_L24",
        "calibration_slope_L24",
        "calibration_intercept_L24",
        "auroc_L24_treated",
        "auroc_L24_untreated",
    } <= set(m)
    assert (
        0 < m["oracle_ratio_L24"] and m["oracle_auroc_L24"] > 0.5
    )  # the simulator's truth is there
    assert m["events_per_parameter"] > 0
    assert m["too_few_events_L24"] == 0.0 and m["too_few_events_L24_treated"] in (0.0, 1.0)

    run = mlflow.get_run(res["run_id"])
    assert run.data.tags["model_type"] == "xgboost" and run.data.tags["crs_ml.git_commit"]
    assert run.data.metrics["too_few_events_L24"] == 0.0  # the flag is logged with the slice
    assert run.data.params["overrides"].startswith("cv.folds=2")
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(res["run_id"])}
    assert {
        "config.yaml",
        "data_fingerprint.json",
        "attrition.csv",
        "feature_catalogue.csv",
        "oof_predictions.parquet",
        "shap_summary.png",
        "roc_L24.png",
        "pr_L24.png",
        "calibration_L24.png",
        "sample_size.json",
    } <= names

    oof = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=res["run_id"], artifact_path="oof_predictions.parquet", dst_path=str(tmp_path)
        )
    )
    assert list(oof.columns) == [
        "patient_key",
        "person_key",
        "landmark_h",
        "treated_before_L",
        "repeat",
        "y",
        "risk",
    ]
    patients = pd.read_csv(cohort_dir / "patients.csv", dtype=str)
    assert not set(oof["patient_key"]) & set(patients["patient_id"])  # salted keys, not ids

    champion = mlflow.pyfunc.load_model("models:/crs-severity@champion")
    assert champion.metadata.run_id == res["run_id"]
    assert champion.metadata.get_input_schema() is not None


def test_same_config_and_seed_give_identical_metrics(cohort_dir):
    from crs_ml.config import load_config
    from crs_ml.ingest.load import load_cohort
    from crs_ml.modeling.train import train_model

    cfg = load_config(XGBOOST, [o for o in FAST + SMALL_TREES if o != "--set"])
    cohort = load_cohort(cohort_dir, cfg.data)
    a = train_model(cohort, cfg).metrics
    b = train_model(cohort, cfg).metrics
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]) or (np.isnan(a[k]) and np.isnan(b[k])) for k in a)
    cfg2 = load_config(XGBOOST, [o for o in FAST + SMALL_TREES if o != "--set"] + ["seed=5"])
    assert train_model(cohort, cfg2).metrics["auroc_L24"] != a["auroc_L24"]


def test_compare_leaderboard_with_paired_test(cohort_dir, tmp_path):
    exp = "it-compare"
    _train(cohort_dir, tmp_path, exp, "--config", XGBOOST, *SMALL_TREES, "--run-name", "xgb")
    _train(cohort_dir, tmp_path, exp, "--config", "configs/logistic.yaml", "--run-name", "logistic")
    _train(cohort_dir, tmp_path, exp, "--config", "configs/measix.yaml", "--run-name", "measix")
    runs = _compare(tmp_path, exp, n_boot=100)
    assert len(runs) == 3
    aurocs = [r["auroc"] for r in runs]
    assert aurocs == sorted(aurocs, reverse=True)
    assert runs[0]["diff_vs_best"] == 0.0
    from crs_ml.evaluation.metrics import auroc

    def averaged(run_id):
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="oof_predictions.parquet", dst_path=str(tmp_path / run_id)
        )
        oof = pd.read_parquet(path)
        oof = oof[oof["landmark_h"] == 24.0]
        return oof.groupby("patient_key").agg(y=("y", "first"), risk=("risk", "mean"))

    best = averaged(runs[0]["run_id"])
    for r in runs[1:]:
        assert r["paired_rows"] == len(best) > 0
        assert r["diff_lo"] <= r["diff_vs_best"] <= r["diff_hi"]
        other = averaged(r["run_id"]).loc[best.index]
        expected = auroc(best["y"], other["risk"]) - auroc(best["y"], best["risk"])
        assert r["diff_vs_best"] == pytest.approx(expected, abs=1e-12)


def test_compare_pairs_only_runs_on_the_same_data(tmp_path, capsys):
    # two simulated cohorts whose ids both run S1-000000, ... but hold different patients
    # (no files: the digest has to come from the tables' content); two runs on each
    from crs_ml.config import load_config
    from crs_ml.ingest.load import load_frames
    from crs_ml.modeling.train import train_model
    from crs_ml.simulate import simulate_cohort
    from crs_ml.tracking.runs import log_training_run

    exp = "it-compare-digest"
    fast = [o for o in FAST if o != "--set"] + [f"mlflow.experiment={exp}"]
    trees = [o for o in SMALL_TREES if o != "--set"]
    cohorts = {n: load_frames(simulate_cohort(n, seed=1)) for n in (240, 200)}
    assert set(cohorts[200].patients["patient_id"]) < set(cohorts[240].patients["patient_id"])
    digest = {}
    for n, cohort in cohorts.items():
        for config, extra in ((XGBOOST, trees), ("configs/measix.yaml", [])):
            res = train_model(cohort, load_config(config, fast + extra))
            digest[log_training_run(res, cohort, run_name=f"{n}-{config}").run_id] = n
    runs = _compare(tmp_path, exp, n_boot=50)
    assert len(runs) == 4 and runs[0]["diff_vs_best"] == 0.0
    best = digest[runs[0]["run_id"]]
    same = [r for r in runs[1:] if digest[r["run_id"]] == best]
    other = [r for r in runs[1:] if digest[r["run_id"]] != best]
    assert len(same) == 1 and len(other) == 2
    assert same[0]["paired_rows"] > 0 and 0 <= same[0]["p_value"] <= 1
    assert same[0]["not_paired"] == "" and same[0]["dataset"] == runs[0]["dataset"]
    for r in other:  # shared ids, different data: no difference, no p-value, and why
        assert r["dataset"] != runs[0]["dataset"]
        assert r["diff_vs_best"] is None and r["p_value"] is None and r["paired_rows"] == 0
        assert r["not_paired"] == "different data"
    assert capsys.readouterr().out.count("n/a (different data)") == 2


def test_optimism_validation(cohort_dir, tmp_path):
    res = _train(
        cohort_dir,
        tmp_path,
        "it-optimism",
        "--config",
        XGBOOST,
        *SMALL_TREES,
        "--validation",
        "optimism",
        "--set",
        "cv.bootstrap=100",
    )
    m = res["metrics"]
    assert m["optimism_bootstrap_samples"] == 20
    assert m["auroc_L24"] == pytest.approx(m["auroc_apparent_L24"] - m["auroc_optimism_L24"])
    assert m["auroc_optimism_all"] > 0  # the apparent performance of trees is optimistic


def test_tune_writes_config_and_compare_flags_selection_on_same_data(cohort_dir, tmp_path):
    exp = "it-tune"
    tuned = tmp_path / "tuned.yaml"
    main(
        [
            "tune",
            "--data",
            str(cohort_dir),
            "--trials",
            "2",
            "--outer-folds",
            "2",
            "--inner-folds",
            "2",
            "--experiment",
            exp,
            "--out",
            str(tuned),
            *FAST,
            "--config",
            XGBOOST,
            *SMALL_TREES,
        ]
    )
    cfg = yaml.safe_load(tuned.read_text())
    assert cfg["provenance"]["selected_on_dataset"]
    assert {"max_depth", "learning_rate"} <= set(cfg["model"]["params"])
    parent = mlflow.search_runs(experiment_names=[exp], filter_string="tags.run_type = 'tune'")
    assert len(parent) == 1 and parent["metrics.nested_auroc_all"].notna().all()
    trials = mlflow.search_runs(
        experiment_names=[exp], filter_string="tags.run_type = 'tune_trial'"
    )
    assert len(trials) == 2 * (2 + 1)  # trials x (outer folds + final study)
    # the tuned config against the starting one on the same inner folds, and the events
    prov = cfg["provenance"]
    tuned_auroc, start_auroc = prov["inner_auroc_tuned"], prov["inner_auroc_starting_config"]
    assert parent["metrics.inner_auroc_starting_config"].iloc[0] == pytest.approx(start_auroc)
    worse = [w for w in prov["warnings"] if "worse than the starting one" in w]
    assert len(worse) == (tuned_auroc < start_auroc)
    assert any("persons with an event" in w for w in prov["warnings"])  # 400 patients
    assert parent["tags.warnings"].iloc[0] == " | ".join(prov["warnings"])
    _train(cohort_dir, tmp_path, exp, "--config", str(tuned), "--run-name", "tuned")
    runs = _compare(tmp_path, exp, n_boot=50)
    assert [r["optimistic"] for r in runs] == [True]


def test_tune_refuses_the_default_stack_before_reading_data():
    """crs-ml tune searches xgboost hyperparameters: the default (a stack) is a clear error
    naming the config to use, before any data is read."""
    from crs_ml.config import load_config
    from crs_ml.errors import ConfigError
    from crs_ml.modeling.tune import tune

    with pytest.raises(ConfigError, match="model.type is 'stack'.*configs/xgboost.yaml"):
        tune(None, load_config(), trials=1)


def test_train_without_outcomes_is_a_clear_error(cohort_dir, tmp_path, capsys):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(cohort_dir, bare)
    (bare / "outcomes.csv").unlink()
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(bare), *FAST])
    assert exc.value.code == 2
    assert "crs-ml label" in capsys.readouterr().err


def _cli(args: list[str], cwd, env_extra: dict | None = None):
    """``crs-ml ARGS`` in a fresh process in ``cwd``, without MLFLOW_TRACKING_URI."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "crs_ml", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip


@pytest.mark.parametrize(
    ("override", "expected"),
    [("model.max_depth=abc", "model.params.max_depth must be a valid integer"),
     ("learning_rate=-1", "did you mean 'model.learning_rate'?")],
)  # fmt: skip
def test_a_bad_set_is_one_line_and_exit_2_before_any_data_is_read(tmp_path, override, expected):
    from pathlib import Path

    xgboost = Path(XGBOOST).resolve()  # the xgboost pipeline, whose hyperparameters these are
    done = _cli(["train", "--data", str(tmp_path / "no-such-cohort"), "--config", str(xgboost),
                 "--set", override], tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: --set {override}: ") and expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # no store, no output


@pytest.mark.parametrize("alias", ["v2", "latest", "bad alias"])
def test_an_alias_mlflow_refuses_is_an_error_before_training(tmp_path, alias):
    done = _cli(["train", "--data", str(tmp_path / "no-such-cohort"), "--alias", alias],
                tmp_path)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: alias '{alias}' is not allowed")
    assert "Traceback" not in done.stderr and list(tmp_path.iterdir()) == []


def test_compare_outside_the_project_creates_no_store(tmp_path):
    done = _cli(["compare", "--landmark", "24"], tmp_path)
    assert done.returncode == 2
    assert f"no MLflow tracking store at sqlite:///{tmp_path}/mlflow.db" in done.stderr
    assert list(tmp_path.iterdir()) == []
