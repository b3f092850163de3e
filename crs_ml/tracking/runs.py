"""MLflow runs: training (and registering the model), tuning, validation, site recalibration.

What goes in (README, "Training and comparing models"): the resolved config, a data fingerprint
(counts, rates, file hashes, per-feature aggregates), every metric, the attrition table, the
feature catalogue, the sample-size report, ROC / PR / calibration / SHAP-summary figures,
out-of-fold predictions keyed by salted hashes, and the model as a pyfunc with a signature
and a synthetic input example. What never goes in: a patient identifier or a raw row.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crs_ml.config import config_to_yaml
from crs_ml.errors import ConfigError
from crs_ml.evaluation.validate import model_settings
from crs_ml.fingerprints import data_fingerprint, dataset_digest, feature_fingerprint, salted_keys
from crs_ml.modeling.bundle import load_bundle
from crs_ml.modeling.explain import explain
from crs_ml.modeling.train import TrainResult
from crs_ml.modeling.tune import TuneResult, tune, tuned_config_yaml
from crs_ml.reporting import figures as plots
from crs_ml.reporting.report import LOGGED_FILES
from crs_ml.tracking import store as tracking
from crs_ml.tracking.pyfunc import log_pyfunc_model


@dataclass
class RunInfo:
    run_id: str
    experiment_id: str
    model_uri: str
    tracking_uri: str
    registered_version: str | None = None


def git_commit() -> str:
    """The commit of the crs_ml checkout, or 'unknown' outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        commit = out.stdout.strip()
        if out.returncode != 0 or not commit:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flat_params(cfg) -> dict[str, str]:
    """Config as MLflow params (values cut to MLflow's 6,000-character limit)."""
    out: dict[str, str] = {
        "seed": str(cfg.seed),
        "model.type": cfg.model.type,
        "model.monotone": str(cfg.model.monotone),
        "model.calibration": cfg.model.calibration,
        "task.horizon_h": f"{cfg.task.horizon_h:g}",
        "task.landmarks_h": ",".join(f"{h:g}" for h in cfg.task.landmarks_h),
        "task.training_weights": cfg.task.training_weights,
        "features.groups": ",".join(cfg.features.groups),
        "features.variables": ",".join(cfg.features.variables or ["all"]),
        "cv.validation": cfg.cv.validation,
        "cv.folds": str(cfg.cv.folds),
        "cv.repeats": str(cfg.cv.repeats),
        "cv.bootstrap": str(cfg.cv.bootstrap),
        "overrides": ";".join(cfg.overrides) or "-",
    }
    for key, value in sorted(cfg.model.params.items()):
        out[f"model.{key}"] = str(value)
    if cfg.model.feature_set != "all":
        out["model.feature_set"] = cfg.model.feature_set
    for name, member in cfg.model.members.items():  # a stack's candidates
        out[f"model.member.{name}"] = f"{member.type} ({member.feature_set} features)"
        for key, value in sorted(member.params.items()):
            out[f"model.member.{name}.{key}"] = str(value)
    return {k: v[:6000] for k, v in out.items()}


def oof_table(result: TrainResult) -> pd.DataFrame:
    """Out-of-fold risks keyed by salted person and patient hashes (no identifiers)."""
    meta = result.meta
    repeats = result.oof.shape[0]
    n = len(meta)
    return pd.DataFrame(
        {
            "patient_key": np.tile(salted_keys(meta["patient_id"]), repeats),
            "person_key": np.tile(salted_keys(meta["person_id"]), repeats),
            "landmark_h": np.tile(meta["landmark_h"].to_numpy(dtype=float), repeats),
            "treated_before_L": np.tile(meta["treated_before_L"].to_numpy(dtype=bool), repeats),
            "repeat": np.repeat(np.arange(repeats), n),
            "y": np.tile(result.y, repeats),
            "risk": result.oof.ravel(),
        }
    )


def _figures(result: TrainResult, folder: Path, bundle) -> list[Path]:
    paths: list[Path] = []
    lm = result.meta["landmark_h"].to_numpy(dtype=float)
    if result.oof is not None:
        risk = result.oof.mean(axis=0)
        for h in result.config.cv.report_landmarks_h[:1] or [float(lm[0])]:
            mask = lm == h
            if mask.sum() == 0 or len(np.unique(result.y[mask])) < 2:
                continue
            yy, pp = result.y[mask], risk[mask]
            tag = f"L{h:g}"
            for name, fig in (
                (
                    f"roc_{tag}.png",
                    plots.roc_figure(yy, {"model (out-of-fold)": pp}, f"ROC at {h:g} h"),
                ),
                (
                    f"pr_{tag}.png",
                    plots.pr_figure(
                        yy, {"model (out-of-fold)": pp}, f"Precision-recall at {h:g} h"
                    ),
                ),
                (
                    f"calibration_{tag}.png",
                    plots.calibration_figure(yy, pp, title=f"Calibration at {h:g} h (out-of-fold)"),
                ),
            ):
                plots.save(fig, folder / name)
                paths.append(folder / name)
    rng = np.random.default_rng(result.config.seed)
    rows = rng.choice(len(result.X), size=min(2000, len(result.X)), replace=False)
    Xs = result.X.iloc[np.sort(rows)]
    explanation = explain(bundle, Xs)  # exact SHAP in calibrated log-odds (xgboost, stack, ...)
    if explanation.supported:
        contrib = explanation.contributions
        labels = dict(
            zip(
                result.catalogue["name"],
                result.catalogue.get("label", result.catalogue["name"]),
                strict=False,
            )
        )
        fig = plots.shap_summary_figure(
            contrib, Xs[bundle.feature_names], labels, title="SHAP summary (training data)"
        )
        plots.save(fig, folder / "shap_summary.png")
        paths.append(folder / "shap_summary.png")
    return paths


def log_training_run(
    result: TrainResult,
    cohort,
    *,
    register: bool = False,
    alias: str | None = None,
    run_name: str | None = None,
) -> RunInfo:
    """Log ``result`` to the configured store; register it as ``crs-severity`` if asked."""
    import mlflow

    cfg = result.config
    uri, experiment_id = tracking.setup_tracking(cfg.mlflow.tracking_uri, cfg.mlflow.experiment)
    fingerprint = data_fingerprint(cohort, result.y, result.meta)
    digest = dataset_digest(fingerprint)
    tags = {
        "crs_ml.version": metadata.version("crs_ml"),
        "crs_ml.git_commit": git_commit(),
        "model_type": cfg.model.type,
        "validation": cfg.cv.validation,
        "dataset_digest": digest,
        "label_definition": ",".join(fingerprint["label_definition"]) or "unknown",
        "features.dropped_variables": ",".join(result.dropped_variables) or "-",
    }
    selected = cfg.provenance.get("selected_on_dataset")
    if selected:
        tags["selected_on_dataset"] = str(selected)
        tags["selected_on_same_data"] = str(selected == digest).lower()
    with tempfile.TemporaryDirectory(prefix="crs_ml_run_") as tmp:
        folder = Path(tmp)
        bundle_dir = result.save(
            folder / "bundle",
            fingerprint={**fingerprint, "features": feature_fingerprint(result.X)},
            extra={"metrics": result.metrics, "dataset_digest": digest},
        )
        bundle = load_bundle(bundle_dir)
        art = folder / "artifacts"
        art.mkdir()
        (art / "config.yaml").write_text(config_to_yaml(cfg))
        (art / "data_fingerprint.json").write_text(json.dumps(fingerprint, indent=1))
        (art / "metrics.json").write_text(json.dumps(result.metrics, indent=1, default=float))
        (art / "sample_size.json").write_text(
            json.dumps(result.sample_size, indent=1, default=float)
        )
        result.attrition.to_csv(art / "attrition.csv", index=False)
        result.catalogue.to_csv(art / "feature_catalogue.csv", index=False)
        if result.oof is not None:
            oof_table(result).to_parquet(art / "oof_predictions.parquet", index=False)
        _figures(result, art, bundle)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            mlflow.set_tags(tags)
            mlflow.log_params(flat_params(cfg))
            mlflow.log_metrics(
                {k: float(v) for k, v in result.metrics.items() if v is not None and np.isfinite(v)}
            )
            mlflow.log_artifacts(str(art))
            info = log_pyfunc_model(bundle_dir)
            model_uri = info.model_uri
            run_id = run.info.run_id
    version = None
    if register:
        version = register_model(model_uri, cfg.mlflow.registered_model, alias)
    return RunInfo(
        run_id=run_id,
        experiment_id=experiment_id,
        model_uri=model_uri,
        tracking_uri=tracking.shown_uri(uri),
        registered_version=version,
    )


def check_alias(alias: str | None) -> None:
    """Refuse an alias MLflow would refuse after the model is registered: letters, digits,
    '_' and '-' only, and not 'latest' or 'v<number>' (MLflow's names of versions)."""
    if alias is None:
        return
    if (not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", alias) or alias.lower() == "latest"
            or re.fullmatch(r"[vV]\d+", alias)):  # fmt: skip
        raise ConfigError(
            f"alias '{alias}' is not allowed: use letters, digits, '_' and '-' (not 'latest' "
            "or 'v' and a number, which name versions), e.g. champion"
        )


def register_model(model_uri: str, name: str, alias: str | None = None) -> str:
    """Register ``model_uri`` under ``name``; point ``alias`` (e.g. champion) at it."""
    import mlflow
    from mlflow import MlflowClient

    check_alias(alias)
    mv = tracking.retry(mlflow.register_model, model_uri, name)
    if alias:
        tracking.retry(MlflowClient().set_registered_model_alias, name, alias, mv.version)
    return str(mv.version)


# --------------------------------------------------------------------------- validation
def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The headline numbers as MLflow metrics, prefixed ``val_`` (training runs' names are
    kept apart, so ``crs-ml compare`` never mistakes a validation for a training run)."""
    out: dict[str, float] = {}

    def put(name: str, value) -> None:
        try:
            v = float(value)
        except (TypeError, ValueError):
            return
        if np.isfinite(v):
            out[f"val_{name}"] = v

    for key, entry in metrics["landmarks"].items():
        for part in ("overall", "untreated", "treated"):
            block = entry[part]
            tag = f"L{key}" if part == "overall" else f"L{key}_{part}"
            put(f"n_{tag}", block["n"])
            put(f"events_{tag}", block["n_events"])
            for m in (
                "auroc",
                "auprc",
                "brier",
                "calibration_intercept",
                "calibration_slope",
                "observed_expected",
            ):
                put(f"{m}_{tag}", block.get(m))
                lo, hi = block.get(f"{m}_ci", [None, None])
                put(f"{m}_lo_{tag}", lo)
                put(f"{m}_hi_{tag}", hi)
    for m in ("auroc", "auprc", "brier", "calibration_intercept", "calibration_slope"):
        put(f"{m}_all", metrics["all_landmarks"][m])
    alerts = metrics["alerts"]
    put("lead_time_median_h", alerts["lead_time_h"]["median"])
    put("alerts_per_patient_day", alerts["alerts_per_patient_day"])
    put("number_needed_to_evaluate", alerts["number_needed_to_evaluate"])
    put("drift_n_flagged", metrics["drift"]["n_flagged"])
    return out


def log_validation_run(
    paths: dict[str, Path],
    metrics: dict[str, Any],
    model_info: dict[str, Any],
    experiment: str,
    tracking_uri: str | None = None,
    run_name: str | None = None,
) -> str:
    """Log the report files as an MLflow evaluation run; returns its run id.

    Tags: run_type=validation, model_uri, model_name / model_version (registered models),
    model_run_id (the training run, when known), dataset_digest, label_definition. When the
    model is a registered version, that version gets the tag ``last_validation_run``.
    """
    import mlflow
    from mlflow import MlflowClient

    tracking.setup_tracking(tracking_uri, experiment)
    tags = {
        "run_type": "validation",
        "model_uri": str(model_info.get("uri")),
        "dataset_digest": str(metrics["cohort"].get("dataset_digest", "unknown")),
        "label_definition": ",".join(metrics["cohort"].get("label_definition", [])) or "unknown",
    }
    for key in ("model_name", "model_version", "model_run_id"):
        if model_info.get(key):
            tags[key] = str(model_info[key])
    with mlflow.start_run(run_name=run_name or "validation") as run:
        mlflow.set_tags(tags)
        mlflow.log_params(
            {
                "bootstrap": metrics["settings"]["bootstrap"],
                "seed": metrics["settings"]["seed"],
                "report_landmarks_h": ",".join(
                    f"{h:g}" for h in metrics["settings"]["report_landmarks_h"]
                ),
            }
        )
        mlflow.log_metrics(flat_metrics(metrics))
        mlflow.set_tag("verdict_level", metrics.get("verdict", {}).get("level", "unknown"))
        for key in LOGGED_FILES:  # never predictions.parquet: it holds patient ids
            if key in paths:
                mlflow.log_artifact(str(paths[key]))
        run_id = run.info.run_id
    if model_info.get("model_name") and model_info.get("model_version"):
        tracking.retry(
            MlflowClient().set_model_version_tag,
            model_info["model_name"],
            str(model_info["model_version"]),
            "last_validation_run",
            run_id,
        )
    return run_id


# --------------------------------------------------------------------------- recalibration
def register_recalibrated(
    bundle_dir: Path, out: Path, summary: dict, bundle, info: dict
) -> dict[str, Any]:
    """Log a recalibrated bundle (:func:`crs_ml.modeling.bundle.write_recalibrated_bundle`) as a
    pyfunc in a new run, with ``recalibration.json`` / ``.html`` from ``out``, and register it
    as a new version of the source model's name; returns name, version, run id and URI."""
    import mlflow
    from mlflow import MlflowClient

    s = model_settings(bundle)
    tracking.setup_tracking(None, s["experiment"])
    with mlflow.start_run(run_name="recalibration") as run:
        tags = {"run_type": "recalibration", "source_model_uri": info["uri"]}
        tags["recalibration_method"] = summary["method"]
        for key in ("model_name", "model_version", "model_run_id"):
            if info.get(key):
                tags[f"source_{key}"] = str(info[key])
        tags["warnings"] = " | ".join(summary.get("warnings", [])) or "none"
        mlflow.set_tags(tags)
        mlflow.log_params(
            {"holdout": summary["holdout"]["share"], "seed": summary["holdout"]["seed"]}
        )
        for key, ev in summary["evaluation"].items():
            for when in ("before", "after"):
                for m in ("calibration_intercept", "calibration_slope", "auroc", "brier"):
                    v = ev[when].get(m)
                    if v is not None and v == v:
                        mlflow.log_metric(f"holdout_{m}_{key}_{when}", float(v))
        mlflow.log_artifact(str(out / "recalibration.json"))
        mlflow.log_artifact(str(out / "recalibration.html"))
        model_uri = log_pyfunc_model(bundle_dir).model_uri
        run_id = run.info.run_id
    name = info.get("model_name") or s["registered_model"]
    version = register_model(model_uri, name)
    client = MlflowClient()
    for key, value in (
        ("recalibrated_from", info["uri"]),
        ("recalibration_method", summary["method"]),
        ("recalibration_run", run_id),
        ("recalibration_warnings", " | ".join(summary.get("warnings", [])) or "none"),
    ):
        tracking.retry(client.set_model_version_tag, name, version, key, str(value))
    return {"name": name, "version": version, "run_id": run_id, "model_uri": model_uri}


# --------------------------------------------------------------------------- tuning
@dataclass
class TuneRun:
    result: TuneResult
    config_yaml: str  #: the best configuration (tuned.yaml)
    run_id: str  #: the parent run; each trial is a nested run
    tracking_uri: str


def log_tune_run(
    cohort, cfg, trials: int, outer_folds: int = 3, inner_folds: int = 3, progress=None
) -> TuneRun:
    """Run :func:`crs_ml.modeling.tune.tune` inside an MLflow run: parameters, every trial as a
    nested run, the nested-CV metrics, the data digest and ``tuned.yaml``."""
    import mlflow

    uri, exp_id = tracking.setup_tracking(cfg.mlflow.tracking_uri, cfg.mlflow.experiment)
    with mlflow.start_run(experiment_id=exp_id, run_name="tune") as parent:
        mlflow.set_tags({"run_type": "tune", "validation": "nested_cv"})
        mlflow.log_params(
            {
                "trials": trials,
                "outer_folds": outer_folds,
                "inner_folds": inner_folds,
                "seed": cfg.seed,
            }
        )

        def log_trial(stage, number, params, score):
            with mlflow.start_run(
                experiment_id=exp_id, run_name=f"{stage}-trial{number}", nested=True
            ):
                mlflow.set_tag("run_type", "tune_trial")
                mlflow.log_params({k: v for k, v in params.items()})
                mlflow.log_metric("auroc_inner_cv", score)

        result = tune(
            cohort, cfg, trials, outer_folds, inner_folds, progress=progress, log_trial=log_trial
        )
        text = tuned_config_yaml(result, trials)
        mlflow.log_metrics({f"nested_{k}": v for k, v in result.outer_metrics.items() if v == v})
        mlflow.log_text(text, "tuned.yaml")
        mlflow.set_tag("dataset_digest", result.dataset_digest)
        mlflow.log_metrics(
            {
                "inner_auroc_tuned": result.best_inner_auroc,
                "inner_auroc_starting_config": result.default_inner_auroc,
            }
        )
        mlflow.set_tag("warnings", " | ".join(result.warnings) or "none")
    return TuneRun(result, text, parent.info.run_id, tracking.shown_uri(uri))
