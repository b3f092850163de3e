"""Comparisons and summaries for external validation: baselines, subgroups, counts.

Baselines are scored on the same landmark rows as the model (higher = riskier) and compared
by a paired person-level bootstrap of the AUROC difference. Subgroups (product, site, sex,
age band) are evaluated where they hold at least ``min_events`` events; the others are listed
with their counts, so a reader sees what could not be assessed. The cohort summary and the
sample-size block hold aggregates only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from crs_ml.evaluation import metrics as M
from crs_ml.evaluation.performance import VALIDATION_MIN_EVENTS, performance

AGE_BANDS = ("<40", "40-64", ">=65")


def baseline_scores(X: pd.DataFrame, high_fever_c: float = 38.9) -> dict[str, dict]:
    """Published baselines as scores on the rows of ``X`` (higher = riskier).

    m-EASIX: measix_landmark, else measix_baseline; a row with neither gets the median of
    the observed values (rank-neutral). Fever rule: temperature_max_early >= high_fever_c
    (missing = negative), a 0/1 score. Max early temperature: the continuous value, missing
    = below every observed value. Baselines whose columns are absent are left out. Each
    entry: score (array), definition (text), missing (bool array: the score was imputed).
    """
    out: dict[str, dict] = {}
    if "measix_landmark" in X or "measix_baseline" in X:
        nan = pd.Series(np.nan, index=X.index)
        v = X.get("measix_landmark", nan).fillna(X.get("measix_baseline", nan))
        v = v.to_numpy(dtype=float)
        missing = ~np.isfinite(v)
        fill = float(np.median(v[~missing])) if (~missing).any() else 0.0
        out["m-EASIX"] = {
            "score": np.where(missing, fill, v),
            "definition": "LDH x CRP [mg/dL] / platelets at L (measix_landmark; fallback "
            "measix_baseline; missing = median)",
            "missing": missing,
        }
    if "temperature_max_early" in X:
        t = X["temperature_max_early"].to_numpy(dtype=float)
        missing = ~np.isfinite(t)
        out["fever rule"] = {
            "score": np.where(missing, 0.0, t >= high_fever_c).astype(float),
            "definition": f"temperature_max_early >= {high_fever_c:g} degC in [0, min(36, L)] h "
            "(missing = negative)",
            "missing": missing,
        }
        low = float(np.nanmin(t)) - 1.0 if (~missing).any() else 0.0
        out["max early temperature"] = {
            "score": np.where(missing, low, t),
            "definition": "temperature_max_early, continuous (missing = lowest)",
            "missing": missing,
        }
    return out


def compare_baselines(y, p, baselines: dict[str, dict], groups, n_boot: int, seed: int) -> dict:
    """AUROC and AUPRC (with CIs) of each baseline and the paired AUROC difference vs the model
    (no intervals for a slice with too few events, :func:`crs_ml.evaluation.metrics.too_few_events`)."""
    out = {}
    for k, (name, base) in enumerate(baselines.items()):
        s = base["score"]
        entry: dict[str, Any] = {
            "definition": base["definition"],
            "n_missing": int(np.sum(base.get("missing", 0))),
            "auroc": M.auroc(y, s),
            "auprc": M.auprc(y, s),
        }
        if n_boot > 0 and not M.too_few_events(np.sum(y), len(y)):
            ci = M.bootstrap_ci(
                {"auroc": M.auroc, "auprc": M.auprc}, y, s, groups, n_boot, seed + 101 + k
            )
            entry["auroc_ci"] = list(ci["auroc"][1:])
            entry["auprc_ci"] = list(ci["auprc"][1:])
            diff, lo, hi, pval = M.paired_bootstrap_diff(y, p, s, groups, M.auroc, n_boot, seed)
            entry["auroc_diff_model_minus_baseline"] = {
                "diff": diff,
                "ci": [lo, hi],
                "p_value": pval,
            }
        out[name] = entry
    return out


# --------------------------------------------------------------------------- subgroups
def age_band(age_years) -> np.ndarray:
    """'<40', '40-64', '>=65' or 'unknown'."""
    age = np.asarray(age_years, dtype=float)
    band = np.select([age < 40, age < 65, age >= 65], list(AGE_BANDS), default="unknown")
    return band.astype(object)


def subgroup_attributes(cohort, meta: pd.DataFrame) -> pd.DataFrame:
    """product, site, sex and age band of each landmark row (from the patients table)."""
    pts = cohort.patients.drop_duplicates("patient_id")
    pts = pts.set_index(pts["patient_id"].astype(object))
    pid = meta["patient_id"].astype(object)

    def attr(col: str) -> np.ndarray:
        v = pid.map(pts[col]) if col in pts else pd.Series(np.nan, index=pid.index)
        return v.astype(object).where(v.notna(), "unknown").astype(str).to_numpy(dtype=object)

    return pd.DataFrame(
        {
            "product": attr("product"),
            "site": attr("site"),
            "sex": attr("sex"),
            "age_band": age_band(pid.map(pts["age_years"]).to_numpy(dtype=float)),
        }
    )


def subgroup_metrics(
    y, p, groups, attributes: pd.DataFrame, n_boot: int, seed: int, min_events: int = 10
) -> dict:
    """AUROC and calibration per level of each attribute with >= ``min_events`` events."""

    y = np.asarray(y, dtype=int)
    rows, skipped = [], []
    for variable in attributes.columns:
        levels = attributes[variable].to_numpy(dtype=object)
        unique = sorted(set(levels), key=str)
        for level in unique:
            mask = levels == level
            n, events = int(mask.sum()), int(y[mask].sum())
            head = {"variable": variable, "level": str(level), "n": n, "n_events": events}
            if len(unique) == 1:
                skipped.append({**head, "reason": "only level (same as overall)"})
                continue
            if events < min_events or events == n:
                skipped.append({**head, "reason": f"fewer than {min_events} events"})
                continue
            perf = performance(y[mask], p[mask], groups[mask], n_boot, seed)
            rows.append(
                {
                    **head,
                    **{
                        k: perf[k]
                        for k in ("auroc", "auroc_ci", "mean_risk", "event_rate", "too_few_events")
                    },
                    **{
                        k: perf[k]
                        for k in perf
                        if k.startswith("calibration_") or k in ("brier", "brier_ci")
                    },
                }
            )
    return {"min_events": min_events, "rows": rows, "skipped": skipped}


def cohort_summary(cohort, y, meta: pd.DataFrame, stacked: np.ndarray) -> dict[str, Any]:
    """Counts of the validation cohort (aggregates only)."""
    pts = cohort.patients
    label = []
    if cohort.outcomes is not None and "label_definition" in cohort.outcomes:
        label = sorted(set(cohort.outcomes["label_definition"].dropna().astype(str)) - {""})
    per_patient = pd.Series(y[stacked]).groupby(meta["patient_id"].astype(str)[stacked].to_numpy())
    return {
        "n_patients": int(len(pts)),
        "n_persons": int(pts["person_id"].nunique()),
        "n_landmark_rows": int(stacked.sum()),
        "n_event_patients": int(per_patient.max().sum()) if stacked.any() else 0,
        "products": _counts(pts.get("product")),
        "sites": _counts(pts.get("site")),
        "label_definition": label,
    }


def _counts(col) -> dict[str, int]:
    if col is None:
        return {}
    values = col.astype(object).where(col.notna(), "unknown")
    return {str(k): int(v) for k, v in values.value_counts().items()}


def sample_size(per_landmark: dict, bundle) -> dict[str, Any]:
    """Events against ~100 for validation (Collins 2016); the training cohort against Riley
    et al. (BMJ 2020), from the bundle's development metrics when it carries them."""
    trained = bundle.manifest.get("metrics") or {}
    riley = trained.get("riley_min_n")
    n_train = (bundle.manifest.get("fingerprint") or {}).get("n_patients")
    meets = bool(n_train >= riley) if riley is not None and n_train is not None else None
    return {
        "validation_min_events": VALIDATION_MIN_EVENTS,
        "events_per_landmark": {k: v["overall"]["n_events"] for k, v in per_landmark.items()},
        "development_n_patients": n_train,
        "development_riley_min_n": riley,
        "development_meets_riley": meets,
        "development_events_per_parameter": trained.get("events_per_parameter"),
    }
