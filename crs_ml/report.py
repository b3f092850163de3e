"""The validation report: figures, the model card, output files and the MLflow evaluation run.

:func:`write_report` writes, into the output folder, ``metrics.json`` (everything
:func:`crs_ml.validate.validate_cohort` computed, plus where the model came from),
``report.html`` (one self-contained page: figures are base64 PNG data URIs, CSS is inline,
no script, font or image is fetched from the network), ``attrition.csv`` and ``drift.csv``.
:func:`log_validation_run` logs the same files to MLflow as an evaluation run (tags only,
aggregates only: no patient identifier, no row) and links it to the registered model
version. The HTML itself is rendered by :mod:`crs_ml.report_html`.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crs_ml.validate import ValidationResult
from crs_ml.verdict import limitations as verdict_limitations
from crs_ml.verdict import validation_verdict

#: files of the output folder logged to MLflow; predictions.parquet (patient ids) never is
LOGGED_FILES = ("metrics", "report", "attrition", "drift")
#: the intended-use sentence every product surface repeats (model card, ward board)
DECISION_SUPPORT = (
    "Decision support for clinicians monitoring CAR-T patients; not a replacement for "
    "clinical assessment and not validated for other therapies."
)


# --------------------------------------------------------------------------- figures
def data_uri(fig) -> str:
    """A matplotlib figure as a base64 PNG data URI (figure closed afterwards)."""
    from crs_ml.plots import _plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def decision_curve_figure(net_benefit: list[dict], title: str = "Decision curve"):
    """Net benefit of the model against treat-all and treat-none (Vickers & Elkin 2006)."""
    from crs_ml.plots import _plt

    plt = _plt()
    nb = pd.DataFrame(net_benefit)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    ax.plot(nb["threshold"], nb["net_benefit_model"], lw=1.8, marker="o", ms=3, label="model")
    ax.plot(nb["threshold"], nb["net_benefit_treat_all"], lw=1.2, c="grey", label="treat all")
    ax.axhline(0, lw=1.2, ls="--", c="black", label="treat none")
    model = nb["net_benefit_model"].to_numpy(dtype=float)
    top = max(float(np.nanmax(nb[["net_benefit_model", "net_benefit_treat_all"]])), 0.01)
    bottom = min(float(np.nanmin(model)), 0.0)  # treat-all may run far below: clipped
    pad = 0.08 * (top - bottom)
    ax.set(xlabel="threshold probability", ylabel="net benefit", title=title)
    ax.set(xlim=(float(nb["threshold"].min()) - 0.01, float(nb["threshold"].max()) + 0.01))
    ax.set(ylim=(bottom - pad, top + pad))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def calibration_figure(y, p, n_bins: int = 10, title: str = "Calibration"):
    """Deciles of predicted risk (observed rate, Wilson 95% CI) and a spline-smoothed curve."""
    from crs_ml import metrics as M
    from crs_ml.plots import _plt

    plt = _plt()
    bins = M.calibration_curve_binned(y, p, n_bins=n_bins)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    top = float(max(bins["mean_predicted"].max(), bins["ci_hi"].max(), 0.05)) * 1.05
    ax.plot([0, top], [0, top], ls="--", c="grey", lw=1, label="ideal")
    yerr = np.clip([bins["observed"] - bins["ci_lo"], bins["ci_hi"] - bins["observed"]], 0, None)
    ax.errorbar(
        bins["mean_predicted"], bins["observed"], yerr=yerr, fmt="o", ms=4, capsize=2,
        label="deciles of risk (95% CI)",
    )  # fmt: skip
    try:
        grid, smooth = M.calibration_curve_smooth(y, p)
        ax.plot(grid, smooth, lw=1.8, label="smoothed (spline)")
    except Exception:  # a smoother can fail on tiny data; the bins still stand
        pass
    ax.set(xlabel="predicted risk", ylabel="observed rate", title=title)
    ax.set(xlim=(0, top), ylim=(0, top))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def shap_contributions(bundle, X: pd.DataFrame, seed: int = 0, max_rows: int = 2000):
    """SHAP contributions in calibrated log-odds on up to ``max_rows`` rows, and those rows
    (:func:`crs_ml.explain.explain`: TreeSHAP scaled by the Platt slope for xgboost, exact
    linear SHAP for the baselines); None when the model type has no explanation."""
    from crs_ml.explain import explain

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
    """Data URIs: roc_/pr_/calibration_/decision_<L> per reported landmark, and shap."""
    from crs_ml import plots

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
        "Death before grade >= 3 counts as no event (competing risk); patients whose "
        "follow-up ended before the horizon without an event are excluded at that landmark.",
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
    from crs_ml.files import atomic_write, write_json
    from crs_ml.report_html import render_report

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

    from crs_ml import tracking

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
        for key in LOGGED_FILES:
            if key in paths:
                mlflow.log_artifact(str(paths[key]))
        run_id = run.info.run_id
    if model_info.get("model_name") and model_info.get("model_version"):
        tracking._retry(
            MlflowClient().set_model_version_tag,
            model_info["model_name"],
            str(model_info["model_version"]),
            "last_validation_run",
            run_id,
        )
    return run_id
