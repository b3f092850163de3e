"""Score new patients: calibrated risk of grade >= 3 CRS with exact SHAP explanations.

:func:`score` returns DESIGN.md's scores table: one row per patient of ``cohort.patients``, in
that order, always. Per patient:

1. hours since infusion at the as-of time: ``as_of`` (absolute; needs the infusion time) minus
   the infusion time, or ``as_of_hours`` (relative cohorts), or, with neither, the hours of
   the patient's latest observation or event;
2. the landmark L = the largest model landmark <= those hours; only data with hours <= L
   enter the features (:func:`crs_ml.features.build_features` enforces it);
3. status: ``too_early`` before the first landmark; ``not_at_risk`` when grade >= 3 CRS was
   already reached by L (graded from the data visible at L with :mod:`crs_ml.label`, or from
   the outcomes when the cohort has them) or the patient died by L; ``error`` when the
   patient cannot be scored (no infusion time for an absolute as-of, no data at or before L,
   a failure while scoring), with the reason in ``message``; otherwise ``scored``;
4. for scored patients: risk, risk band (the bundle's scoring config), base value and one
   SHAP column per model feature (:mod:`crs_ml.explain`; base_value + sum(shap_*) =
   logit(risk)), and the top drivers (:mod:`crs_ml.drivers`).

A patient some of whose input rows were rejected at load is still scored; its message counts
those rows. Work is done in chunks of ``chunk_size`` patients (features, prediction and SHAP
per chunk) so memory stays bounded, with ``progress(stage, done, total)`` after each chunk.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crs_ml.artifact import Bundle
from crs_ml.cohort import Cohort
from crs_ml.errors import CrsMlError, InputError, ModelError

DEFAULT_MODEL_URI = "models:/crs-severity@champion"
STATUSES = ("scored", "not_at_risk", "too_early", "error")
FIXED_COLUMNS = [
    "patient_id",
    "as_of",
    "hours_since_infusion",
    "landmark_h",
    "status",
    "risk",
    "risk_band",
    "top_drivers",
    "base_value",
]
Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- the model
def _load_folder(folder: Path) -> Bundle:
    from crs_ml.artifact import MANIFEST, load_bundle

    if (folder / MANIFEST).is_file():
        return load_bundle(folder)
    mlmodel = folder / "MLmodel"
    if mlmodel.is_file():
        import yaml

        spec = yaml.safe_load(mlmodel.read_text()) or {}
        artifacts = spec.get("flavors", {}).get("python_function", {}).get("artifacts", {})
        rel = artifacts.get("bundle", {}).get("path")
        if rel and (folder / rel / MANIFEST).is_file():
            return load_bundle(folder / rel)
        found = sorted(folder.glob(f"artifacts/**/{MANIFEST}"))
        if found:
            return load_bundle(found[0].parent)
        raise ModelError(f"{folder} is an MLflow model but not a crs_ml one (no model bundle)")
    raise ModelError(
        f"{folder} is neither a crs_ml model bundle ({MANIFEST}) nor an MLflow model folder "
        "(MLmodel); export one with `crs-ml export`"
    )


def download_model(uri: str, dst: str | Path) -> Path:
    """Download an MLflow model URI (models:/, runs:/, ...) into ``dst``; returns its folder."""
    import mlflow

    from crs_ml.tracking import resolve_tracking_uri, sqlite_path

    if not mlflow.is_tracking_uri_set():
        store = resolve_tracking_uri(None)
        db = sqlite_path(store)
        if db is not None and not db.is_file():
            raise ModelError(
                f"no MLflow tracking store at {db} to resolve '{uri}': set MLFLOW_TRACKING_URI, "
                "or pass an exported model folder (crs-ml export)"
            )
        mlflow.set_tracking_uri(store)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst))
    except Exception as exc:  # mlflow raises its own types for unknown names and aliases
        raise ModelError(
            f"cannot fetch model '{uri}' from the tracking store {mlflow.get_tracking_uri()}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    return Path(local)


def resolve_model(model: Any) -> Bundle:
    """A :class:`Bundle` from a Bundle, a loaded pyfunc model, a bundle folder, an exported
    MLflow model folder, or an MLflow model URI (``models:/crs-severity@champion``,
    ``runs:/<id>/model``)."""
    if isinstance(model, Bundle):
        return model
    if hasattr(model, "unwrap_python_model"):
        inner = model.unwrap_python_model()
        if isinstance(getattr(inner, "bundle", None), Bundle):
            return inner.bundle
    text = str(model)
    path = Path(text).expanduser()
    if path.exists():
        return _load_folder(path)
    if ":/" in text:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="crs_ml_model_") as tmp:
            return _load_folder(download_model(text, tmp))
    raise ModelError(f"model '{text}' is neither an existing folder nor an MLflow model URI")


def _model_settings(bundle: Bundle):
    from crs_ml.config import FeatureConfig, ScoringConfig, TaskConfig

    cfg = bundle.manifest.get("config", {})
    task = TaskConfig.model_validate(cfg.get("task", {}))
    features = FeatureConfig.model_validate(cfg.get("features", {}))
    scoring = ScoringConfig.model_validate(cfg.get("scoring", {}))
    return np.asarray(task.landmarks_h, dtype=np.float64), features, scoring


# --------------------------------------------------------------------------- timing
def _codes(pid: pd.Index, ids: pd.Series) -> np.ndarray:
    """Position in ``pid`` of each id (-1 when absent); factorised first, which is ~10x
    faster than a lookup per row on millions of rows."""
    if len(ids) == 0:
        return np.empty(0, dtype=np.int64)
    codes, uniques = pd.factorize(ids)
    where = pid.get_indexer(pd.Index(np.asarray(uniques, dtype=object), dtype=object))
    return np.where(codes >= 0, where[np.maximum(codes, 0)], -1).astype(np.int64)


def _latest_hours(tables, n: int) -> np.ndarray:
    latest = np.full(n, -np.inf)
    for table, code in tables:
        ok = code >= 0
        np.maximum.at(latest, code[ok], table["hours"].to_numpy(dtype=np.float64)[ok])
    latest[np.isinf(latest)] = np.nan
    return latest


def _as_of_hours(cohort: Cohort, tables, as_of, as_of_hours):
    """(hours since infusion, as-of timestamps, reason when hours are unknown) per patient."""
    n = len(cohort.patients)
    infusion = pd.to_datetime(cohort.patients["infusion_time"], utc=True).reset_index(drop=True)
    why = np.full(n, "", dtype=object)
    if as_of is not None and as_of_hours is not None:
        raise InputError("give either an as-of time or as-of hours, not both")
    if as_of is not None:
        try:
            ts = pd.Timestamp(as_of)
        except (TypeError, ValueError):
            raise InputError(f"as-of time '{as_of}' is not an ISO 8601 date-time") from None
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        hours = ((ts - infusion) / pd.Timedelta(hours=1)).to_numpy(dtype=np.float64)
        when = pd.Series(pd.DatetimeIndex([ts] * n))
        why[np.isnan(hours)] = (
            "no infusion_time: an absolute as-of time needs it (use as-of hours instead)"
        )
        return hours, when, why
    if as_of_hours is not None:
        h = float(as_of_hours)
        if not np.isfinite(h):
            raise InputError(f"as-of hours must be a finite number, got {as_of_hours}")
        hours = np.full(n, h)
    else:
        hours = _latest_hours(tables, n)
        why[np.isnan(hours)] = "no observations or events: nothing to score"
    when = infusion + pd.to_timedelta(hours, unit="h")
    return hours, when, why


def _not_at_risk(
    cohort: Cohort, pid: pd.Index, ev_code: np.ndarray, L: np.ndarray, cand: np.ndarray
) -> np.ndarray:
    """Reason text ('' when at risk) for each patient: grade >= 3 or death by L."""
    from crs_ml.label import grade_summary

    why = np.full(len(pid), "", dtype=object)
    if not cand.any():
        return why
    until = pd.Series(L[cand], index=pd.Index(pid[cand], dtype=object))
    from crs_ml.label import FEVER_C, HYPOTENSION_SBP_MMHG

    obs = cohort.observations
    # only what grading reads: fevers and low sbp after infusion (label._intervals)
    value = obs["value"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        maybe = (obs["hours"].to_numpy(dtype=np.float64) >= 0) & (
            (value >= FEVER_C) | (value < HYPOTENSION_SBP_MMHG)
        )
    rows = np.flatnonzero(maybe)
    variable = obs["variable"].iloc[rows]
    rows = rows[variable.isin(["temperature", "sbp"]).to_numpy(dtype=bool)]
    relevant = obs.iloc[rows]
    summary = grade_summary(relevant, cohort.events, "patient_id", until=until)
    g3 = pd.Series(pid, dtype=object).map(summary["grade3_hours"]).to_numpy(dtype=np.float64)
    ev = cohort.events
    death = np.full(len(pid), np.inf)
    dead = (ev["event"].to_numpy(dtype=object) == "death") & (ev_code >= 0)
    if dead.any():
        np.minimum.at(death, ev_code[dead], ev["hours"].to_numpy(dtype=np.float64)[dead])
    if cohort.outcomes is not None and len(cohort.outcomes):
        oc = cohort.outcomes.drop_duplicates("patient_id").set_index("patient_id")
        known = pd.Series(pid, dtype=object)
        og3 = known.map(oc["grade3_hours"]).to_numpy(dtype=np.float64)
        g3 = np.fmin(g3, np.where(og3 <= L, og3, np.nan))
        if "death_hours" in oc:
            death = np.fmin(death, known.map(oc["death_hours"]).to_numpy(dtype=np.float64))
    with np.errstate(invalid="ignore"):
        is_g3 = cand & (g3 <= L)
        is_dead = cand & ~is_g3 & (death <= L)
    why[is_g3] = [f"already grade >= 3 CRS at {h:g} h (by the {lm:g} h landmark)"
                  for h, lm in zip(g3[is_g3], L[is_g3], strict=True)]  # fmt: skip
    why[is_dead] = [f"died at {h:g} h" for h in death[is_dead]]
    return why


# --------------------------------------------------------------------------- scoring
def _partition(code: np.ndarray, chunk_of: np.ndarray, n_chunks: int):
    """Row positions of a table per chunk (rows of patients not being scored dropped)."""
    if len(code) == 0:
        return [np.empty(0, dtype=np.int64)] * n_chunks
    chunk = np.where(code >= 0, chunk_of[np.maximum(code, 0)], -1)
    order = np.argsort(chunk, kind="stable")
    bounds = np.searchsorted(chunk[order], np.arange(n_chunks + 1))
    return [order[bounds[k] : bounds[k + 1]] for k in range(n_chunks)]


def score(
    model,
    cohort: Cohort,
    as_of=None,
    as_of_hours: float | None = None,
    chunk_size: int = 5000,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The scores table of ``cohort`` (see the module docstring); one row per patient."""
    from crs_ml.drivers import top_drivers
    from crs_ml.explain import explain
    from crs_ml.features import build_features

    bundle = resolve_model(model)
    landmarks, feature_cfg, scoring = _model_settings(bundle)
    names = bundle.feature_names
    patients = cohort.patients.reset_index(drop=True)
    n = len(patients)
    pid_values = patients["patient_id"].astype(object).to_numpy()
    pid = pd.Index(pid_values, dtype=object)
    obs_code = _codes(pid, cohort.observations["patient_id"])
    ev_code = _codes(pid, cohort.events["patient_id"])
    tables = [(cohort.observations, obs_code), (cohort.events, ev_code)]
    hours, when, why = _as_of_hours(cohort, tables, as_of, as_of_hours)

    status = np.full(n, "scored", dtype=object)
    message = why.copy()
    status[why != ""] = "error"
    idx = np.searchsorted(landmarks, np.nan_to_num(hours, nan=-np.inf), side="right") - 1
    L = np.where((idx >= 0) & ~np.isnan(hours), landmarks[np.maximum(idx, 0)], np.nan)
    early = (status == "scored") & np.isnan(L)
    status[early] = "too_early"
    message[early] = [f"{h:g} h since infusion: before the first landmark ({landmarks[0]:g} h)"
                      for h in hours[early]]  # fmt: skip
    late = (status == "scored") & (hours > landmarks[-1])
    message[late] = f"scored at the last landmark ({landmarks[-1]:g} h)"

    at_risk = _not_at_risk(cohort, pid, ev_code, L, status == "scored")
    status[at_risk != ""] = "not_at_risk"
    message[at_risk != ""] = at_risk[at_risk != ""]

    cand = status == "scored"
    obs_hours = cohort.observations["hours"].to_numpy(dtype=np.float64)
    seen = (obs_code >= 0) & (obs_hours <= L[np.maximum(obs_code, 0)])
    n_visible = np.bincount(obs_code[seen], minlength=n)
    no_data = cand & (n_visible == 0)
    status[no_data] = "error"
    message[no_data] = [f"no observation at or before the {lm:g} h landmark: nothing to score"
                        for lm in L[no_data]]  # fmt: skip

    risk = np.full(n, np.nan)
    base = np.full(n, np.nan)
    shap = np.full((n, len(names)), np.nan)
    drivers = np.full(n, "", dtype=object)
    todo = np.flatnonzero(status == "scored")
    chunk_size = max(int(chunk_size), 1)
    n_chunks = max(-(-len(todo) // chunk_size), 1)
    chunk_of = np.full(n, -1, dtype=np.int64)
    chunk_of[todo] = np.arange(len(todo)) // chunk_size
    obs_parts = _partition(obs_code, chunk_of, n_chunks)
    ev_parts = _partition(ev_code, chunk_of, n_chunks)
    note = ""
    if progress:
        progress("scoring", 0, len(todo))
    for k in range(n_chunks):
        rows = todo[k * chunk_size : (k + 1) * chunk_size]
        if len(rows) == 0:
            continue
        sub = Cohort(
            patients=patients.iloc[rows].reset_index(drop=True),
            observations=cohort.observations.iloc[obs_parts[k]].reset_index(drop=True),
            events=cohort.events.iloc[ev_parts[k]].reset_index(drop=True),
        )
        points = pd.DataFrame({"patient_id": pid_values[rows], "landmark_h": L[rows]})
        try:
            X = build_features(sub, points, feature_cfg)
            ex = explain(bundle, X)
        except CrsMlError as exc:
            status[rows] = "error"
            message[rows] = f"could not be scored: {exc}"
            continue
        risk[rows] = ex.risk
        base[rows] = ex.base_value
        shap[rows] = ex.contributions
        note = ex.note
        drivers[rows] = top_drivers(
            X, ex.contributions, names, L[rows], scoring.top_drivers, bundle.catalogue
        )
        if progress:
            progress("scoring", min(len(todo), (k + 1) * chunk_size), len(todo))
    scored = status == "scored"
    band = np.full(n, None, dtype=object)
    band[scored] = np.select(
        [risk[scored] < scoring.low_below, risk[scored] >= scoring.high_from],
        ["low", "high"],
        "intermediate",
    )
    if note:
        message[scored] = [f"{m}; {note}" if m else note for m in message[scored]]
    message = _with_rejected(message, cohort, pid)
    out = pd.DataFrame(
        {
            "patient_id": pd.Series(pid_values, dtype=object),
            "as_of": when.reset_index(drop=True).astype("datetime64[ns, UTC]"),
            "hours_since_infusion": hours,
            "landmark_h": L,
            "status": pd.Series(status, dtype=object),
            "risk": risk,
            "risk_band": pd.Series(band, dtype=object),
            "top_drivers": pd.Series(drivers, dtype=object),
            "base_value": base,
        }
    )
    shap_frame = pd.DataFrame(shap, columns=[f"shap_{c}" for c in names])
    msg = pd.DataFrame({"message": pd.Series(message, dtype=object)})
    return pd.concat([out, shap_frame, msg], axis=1)


def _with_rejected(message: np.ndarray, cohort: Cohort, pid: pd.Index) -> np.ndarray:
    rejected = cohort.rejected
    if rejected is None or len(rejected) == 0 or "patient_id" not in rejected:
        return message
    counts = rejected["patient_id"].astype(object).value_counts()
    k = pd.Series(pid.to_numpy(), dtype=object).map(counts).fillna(0).to_numpy(dtype=np.int64)
    out = message.copy()
    for i in np.flatnonzero(k):
        text = f"{k[i]} input row{'s' if k[i] > 1 else ''} rejected (see errors file)"
        out[i] = f"{out[i]}; {text}" if out[i] else text
    return out


def status_counts(scores: pd.DataFrame) -> dict[str, int]:
    """Patients per status (every status listed, zeros included)."""
    counts = scores["status"].value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def score_records(model, records: pd.DataFrame, as_of_hours=None, strict: bool = True):
    """Score DESIGN.md's one-table MLflow input (see :mod:`crs_ml.records`)."""
    from crs_ml.records import records_to_cohort

    return score(model, records_to_cohort(records, strict=strict), as_of_hours=as_of_hours)


class _CallableModule(types.ModuleType):
    """Lets ``crs_ml.score(model, cohort, ...)`` call :func:`score` (the issue's spelling);
    ``from crs_ml.score import score`` works as well."""

    def __call__(self, *args, **kwargs) -> pd.DataFrame:
        return score(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
