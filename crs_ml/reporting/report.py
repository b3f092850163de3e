"""The validation report: figures, the model card, output files and the MLflow evaluation run.

:func:`write_report` writes, into the output folder, ``metrics.json`` (everything
:func:`crs_ml.evaluation.validate.validate_cohort` computed, plus where the model came from),
``report.html`` (one self-contained page: figures are base64 PNG data URIs, CSS is inline,
no script, font or image is fetched from the network), ``attrition.csv`` and ``drift.csv``.
:func:`log_validation_run` logs the same files to MLflow as an evaluation run (tags only,
aggregates only: no patient identifier, no row) and links it to the registered model
version. The HTML itself is rendered by :mod:`crs_ml.reporting.html`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crs_ml.evaluation.validate import ValidationResult
from crs_ml.evaluation.verdict import limitations as verdict_limitations
from crs_ml.evaluation.verdict import validation_verdict
from crs_ml.files import atomic_write, write_json
from crs_ml.modeling.bundle import DECISION_SUPPORT
from crs_ml.modeling.explain import explain
from crs_ml.reporting import figures as plots
from crs_ml.reporting.figures import calibration_figure, data_uri, decision_curve_figure
from crs_ml.reporting.html import render_report

#: files of the output folder logged to MLflow; predictions.parquet (patient ids) never is
LOGGED_FILES = ("metrics", "report", "attrition", "drift")


# --------------------------------------------------------------------------- figures
def shap_contributions(bundle, X: pd.DataFrame, seed: int = 0, max_rows: int = 2000):
    """SHAP contributions in calibrated log-odds on up to ``max_rows`` rows, and those rows
    (:func:`crs_ml.modeling.explain.explain`: TreeSHAP scaled by the Platt slope for xgboost, exact
    linear SHAP for the baselines); None when the model type has no explanation."""
    if len(X) == 0:
        return None
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(X), size=min(max_rows, len(X)), replace=False))
    Xs = X.iloc[rows][bundle.feature_names]
    explanation = explain(bundle, Xs)
    if not explanation.supported:
        return None
    return explanation.contributions, Xs


def report_figures(result: ValidationResult, bundle, seed: int = 0) -> dict[str, str]:
    """Data URIs: roc_/pr_/calibration_/decision_/incidence_<L> per reported landmark, and
    shap."""
    figs: dict[str, str] = {}
    lm = result.meta["landmark_h"].to_numpy(dtype=float)
    for key, entry in result.metrics["landmarks"].items():
        at = lm == float(key)
        y, p = result.y[at], result.risk[at]
        if len(np.unique(y)) < 2:
            continue
        risks = {"model": p, **{k: v["score"][at] for k, v in result.baselines.items()}}
        figs[f"roc_{key}"] = data_uri(plots.roc_figure(y, risks, f"ROC at {key} h"))
        figs[f"pr_{key}"] = data_uri(plots.pr_figure(y, risks, f"Precision-recall at {key} h"))
        figs[f"calibration_{key}"] = data_uri(
            calibration_figure(y, p, title=f"Calibration at {key} h")
        )
        nb = entry["overall"].get("net_benefit")
        if nb:
            figs[f"decision_{key}"] = data_uri(
                decision_curve_figure(nb, f"Decision curve at {key} h")
            )
    for key, entry in (result.metrics.get("censored") or {}).items():
        if entry.get("curves_by_band"):
            title = f"Observed incidence by risk band at {key} h"
            figs[f"incidence_{key}"] = data_uri(
                plots.incidence_by_band_figure(entry["curves_by_band"], title)
            )
    stacked = np.isin(lm, result.metrics["settings"]["model_landmarks_h"])
    shap = shap_contributions(bundle, result.X.loc[stacked], seed)
    if shap is not None:
        contrib, Xs = shap
        title = "SHAP summary (this cohort, all landmarks)"
        figs["shap"] = data_uri(plots.shap_summary_figure(contrib, Xs, None, title=title))
    return figs


# --------------------------------------------------------------------------- model card
def model_card(bundle, metrics: dict[str, Any]) -> dict[str, Any]:
    """A short TRIPOD+AI-style model card from the bundle manifest and the validation."""
    manifest = bundle.manifest
    fp = manifest.get("fingerprint") or {}
    settings = metrics["settings"]
    cohort = metrics["cohort"]
    dev = manifest.get("metrics") or {}
    trained_labels = fp.get("label_definition") or []
    train_products, train_sites = set(fp.get("products") or {}), set(fp.get("sites") or {})
    limits = [
        "The outcome is ASTCT grade >= 3 CRS as derivable from vitals and support events; "
        "hypotension or hypoxia from another cause (e.g. sepsis) cannot be told apart.",
        "Death before grade >= 3 counts as no event (competing risk); in the main tables "
        "patients whose follow-up ended before the horizon other than by death are excluded "
        "at that landmark, with or without an event (complete cases: unbiased when loss to "
        "follow-up is unrelated to risk); the censored-weighted section keeps them through "
        "inverse probability of censoring weights (censoring assumed independent of the "
        "outcome within the weighting strata).",
        "IL-6 rises after tocilizumab: risks of treated patients are reported separately.",
        "Intervals condition on the fitted model; they do not cover training variability.",
    ]
    new_products = sorted(set(cohort["products"]) - train_products - {"unknown"})
    if train_products and new_products:
        limits.append(f"Products not in the training data: {', '.join(new_products)}.")
    new_sites = sorted(set(cohort["sites"]) - train_sites - {"unknown"})
    if train_sites and new_sites:
        limits.append(f"Sites not in the training data: {', '.join(new_sites)}.")
    verdict = metrics.get("verdict") or validation_verdict(metrics)
    limits += verdict_limitations(verdict)  # the verdict's own words and numbers
    if metrics["drift"]["n_flagged"]:
        limits.append(
            f"{metrics['drift']['n_flagged']} feature(s) shifted against the training data "
            "(see the drift table)."
        )
    ss = metrics["sample_size"]
    if ss.get("development_meets_riley") is False:
        limits.append(
            f"The training cohort ({ss['development_n_patients']} patients) is below the Riley "
            f"minimum sample size ({ss['development_riley_min_n']:.0f})."
        )
    dev_keys = [
        (
            f"{h:g}",
            dev.get(f"auroc_L{h:g}"),
            dev.get(f"auroc_lo_L{h:g}"),
            dev.get(f"auroc_hi_L{h:g}"),
        )
        for h in settings["report_landmarks_h"]
    ]
    return {
        "intended_use": (
            "Early warning of severe cytokine release syndrome after CAR T-cell infusion: at a "
            "landmark L hours after infusion, the probability of ASTCT grade >= 3 CRS in "
            f"(L, {settings['horizon_h']:g}] hours, from labs, vitals and treatments recorded "
            f"up to L. {DECISION_SUPPORT}"
        ),
        "outcome": (
            f"ASTCT grade >= 3 CRS within {settings['horizon_h']:g} h of infusion, after the "
            "landmark; training label definition: "
            f"{', '.join(trained_labels) or 'not recorded'}; validation label definition: "
            f"{', '.join(cohort['label_definition']) or 'not recorded'}."
        ),
        "model": (
            f"{manifest.get('model_type')} on {len(manifest.get('feature_names', []))} "
            f"features; calibration {manifest.get('calibration', {}).get('method', '?')} "
            f"(slope {bundle.platt_slope:.3f}, intercept {bundle.platt_intercept:.3f}); "
            f"landmarks {', '.join(f'{h:g}' for h in settings['model_landmarks_h'])} h; risk "
            f"bands low < {settings['risk_bands']['low_below']:g} <= intermediate < "
            f"{settings['risk_bands']['high_from']:g} <= high."
        ),
        "training_data": {
            "patients": fp.get("n_patients"),
            "persons": fp.get("n_persons"),
            "landmark rows": fp.get("n_landmark_rows"),
            "event rate (rows)": fp.get("outcome_rate_rows"),
            "products": fp.get("products"),
            "sites": fp.get("sites"),
            "dataset digest": manifest.get("dataset_digest"),
        },
        "development_auroc": [d for d in dev_keys if d[1] is not None],
        "limitations": limits,
    }


# --------------------------------------------------------------------------- outputs
def write_report(
    result: ValidationResult, bundle, model_info: dict[str, Any], out_dir, seed: int = 0
) -> dict[str, Path]:
    """Write metrics.json, report.html, attrition.csv, drift.csv and predictions.parquet
    (one row per patient x reported landmark, with patient ids: stays local, see
    :data:`LOGGED_FILES`) into ``out_dir``."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.metrics["model"] = model_info
    card = model_card(bundle, result.metrics)
    result.metrics["model_card"] = card
    paths = {
        "metrics": out / "metrics.json",
        "report": out / "report.html",
        "attrition": out / "attrition.csv",
        "drift": out / "drift.csv",
        "predictions": out / "predictions.parquet",
    }
    write_json(paths["metrics"], result.metrics)
    paths["metrics"].chmod(0o644)  # the atomic temp file is created owner-only
    figures = report_figures(result, bundle, seed)
    paths["report"].write_text(render_report(result.metrics, card, figures), encoding="utf-8")
    result.attrition.to_csv(paths["attrition"], index=False)
    result.drift.to_csv(paths["drift"], index=False)
    atomic_write(result.predictions, paths["predictions"], "parquet")
    return paths
