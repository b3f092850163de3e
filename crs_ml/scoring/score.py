"""Score new patients: calibrated risk of grade >= 3 CRS with exact SHAP explanations.

:func:`score` returns the scores table (README, "Scoring new admissions"): one row per patient of ``cohort.patients``, in
that order, always. Per patient:

1. hours since infusion at the as-of time: ``as_of`` (absolute; needs the infusion time) minus
   the infusion time, or ``as_of_hours`` (relative cohorts), or, with neither, the hours of
   the patient's latest observation or event;
2. the landmark L = the largest model landmark <= those hours; only data with hours <= L
   enter the features (:func:`crs_ml.features.builder.build_features` enforces it);
3. status: ``too_early`` before the first landmark; ``not_at_risk`` when grade >= 3 CRS was
   already reached by L (graded from the data visible at L with :mod:`crs_ml.features.grading`, or from
   the outcomes when the cohort has them) or the patient died by L; ``error`` when the
   patient cannot be scored (no infusion time for an absolute as-of, no data at or before L,
   a failure while scoring), with the reason in ``message``; otherwise ``scored``;
4. for scored patients: risk, risk band (the bundle's scoring config), base value and one
   SHAP column per model feature (:mod:`crs_ml.modeling.explain`; base_value + sum(shap_*) =
   logit(risk)), and the top drivers (:mod:`crs_ml.scoring.drivers`);
5. for a model with short horizons (:mod:`crs_ml.modeling.horizons`), after ``message``, per
   horizon (e.g. 24h, 72h): ``risk_24h`` (risk of grade >= 3 CRS in the next 24 h), then
   ``top_drivers_24h``, ``base_value_24h`` and ``shap24h_<feature>`` (base_value_24h +
   sum(shap24h_*) = logit(risk_24h); no "shap_" in the name, so the day-14 columns stay
   those that hold it); risk_24h <= risk_72h <= risk for every patient.

A patient some of whose input rows were rejected at load is still scored; its message counts
those rows. Work is done in chunks of ``chunk_size`` patients (features, prediction and SHAP
per chunk) so memory stays bounded, with ``progress(stage, done, total)`` after each chunk.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crs_ml.cohort import Cohort, implausible
from crs_ml.config import FeatureConfig, ScoringConfig, TaskConfig, stored_features
from crs_ml.errors import CrsMlError, ModelError
from crs_ml.features.builder import build_features
from crs_ml.ingest.records import records_to_cohort
from crs_ml.modeling.bundle import Bundle, load_model_folder
from crs_ml.modeling.completeness import (
    Completeness,
    completeness,
    key_input_columns,
)
from crs_ml.modeling.explain import explain
from crs_ml.modeling.horizons import capped_explanations
from crs_ml.scoring.drivers import FeatureTexts, not_measured, top_drivers
from crs_ml.scoring.statuses import Statuses, statuses
from crs_ml.variables import VARIABLES

STATUSES = ("scored", "not_at_risk", "too_early", "error")
FIXED_COLUMNS = [
    "patient_id",
    "as_of",
    "hours_since_infusion",
    "landmark_h",
    "status",
    "risk",
    "risk_band",
    "completeness",
    "completeness_band",
    "missing_inputs",
    *key_input_columns(),
    "top_drivers",
    "base_value",
]
Progress = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- the model
def as_bundle(model: Any) -> Bundle:
    """The :class:`Bundle` of a Bundle, of a loaded crs_ml pyfunc model, or of a bundle / exported
    model folder. MLflow URIs are resolved by :func:`crs_ml.tracking.models.resolve_model`
    (``crs_ml.score(uri, cohort)`` does it for you)."""
    if isinstance(model, Bundle):
        return model
    if hasattr(model, "unwrap_python_model"):
        inner = model.unwrap_python_model()
        if isinstance(getattr(inner, "bundle", None), Bundle):
            return inner.bundle
    path = Path(str(model)).expanduser()
    if path.exists():
        return load_model_folder(path)
    raise ModelError(
        f"model '{model}' is not a model bundle, a loaded model or an existing folder; resolve an "
        "MLflow URI with crs_ml.tracking.resolve_model (or call crs_ml.score)"
    )


def scoring_settings(bundle: Bundle):
    """(landmarks_h, FeatureConfig, ScoringConfig) of a model, from its stored config."""
    cfg = bundle.manifest.get("config", {})
    task = TaskConfig.model_validate(cfg.get("task", {}))
    features = stored_features(cfg)
    scoring = ScoringConfig.model_validate(cfg.get("scoring", {}))
    return np.asarray(task.landmarks_h, dtype=np.float64), features, scoring


@dataclass(frozen=True, eq=False)
class ModelTexts:
    """What scoring needs of a model that never changes between calls: its settings, feature
    names, catalogue and driver texts. Worked out once per loaded model (:func:`model_texts`),
    so one-patient calls do not rebuild them (README, "Speed")."""

    manifest: dict  #: the manifest these were read from (a replaced manifest is re-read)
    landmarks_h: np.ndarray
    features: FeatureConfig
    settings: ScoringConfig
    names: list[str]
    catalogue: pd.DataFrame
    texts: FeatureTexts
    shap_columns: list[str]


#: the attribute of a Bundle that holds its ModelTexts
_TEXTS_ATTRIBUTE = "_scoring_texts"


def model_texts(bundle: Bundle) -> ModelTexts:
    """The :class:`ModelTexts` of ``bundle``, built on first use and kept with it."""
    held = bundle.__dict__.get(_TEXTS_ATTRIBUTE)
    if held is not None and held.manifest is bundle.manifest:
        return held
    landmarks, features, settings = scoring_settings(bundle)
    names = bundle.feature_names
    catalogue = bundle.catalogue
    texts = FeatureTexts.of(names, catalogue)
    held = ModelTexts(bundle.manifest, landmarks, features, settings, names, catalogue, texts,
                      [f"shap_{c}" for c in names])  # fmt: skip
    bundle.__dict__[_TEXTS_ATTRIBUTE] = held
    return held


# --------------------------------------------------------------------------- scoring
def _partition(code: np.ndarray, chunk_of: np.ndarray, n_chunks: int):
    """Row positions of a table per chunk (rows of patients not being scored dropped)."""
    if len(code) == 0:
        return [np.empty(0, dtype=np.int64)] * n_chunks
    chunk = np.where(code >= 0, chunk_of[np.maximum(code, 0)], -1)
    order = np.argsort(chunk, kind="stable")
    bounds = np.searchsorted(chunk[order], np.arange(n_chunks + 1))
    return [order[bounds[k] : bounds[k + 1]] for k in range(n_chunks)]


@dataclass
class Scoring:
    """A cohort on its way to the scores table: statuses decided, the patients to score in
    chunks, and the result arrays that :func:`explain_chunk` fills."""

    bundle: Bundle
    cohort: Cohort
    st: Statuses
    chunks: list  #: row positions (into the patients) of each chunk to score
    obs_parts: list
    ev_parts: list
    risk: np.ndarray
    base: np.ndarray
    shap: np.ndarray
    drivers: np.ndarray
    features: Any  #: the model's FeatureConfig
    settings: Any  #: the model's ScoringConfig (risk bands, number of drivers)
    model: ModelTexts | None = None
    note: str = ""
    complete: Completeness | None = None  #: key inputs measured by L, per patient
    #: share of sum |SHAP| from inputs not measured or imputed, per patient
    absent_share: np.ndarray | None = None
    imputed: np.ndarray | None = None  #: inputs imputed with the training median (text)
    #: per short horizon column (risk_24h): {"risk", "base", "shap", "drivers"} arrays
    horizons: dict | None = None


def begin(model, cohort: Cohort, as_of=None, as_of_hours=None, chunk_size=5000) -> Scoring:
    """Decide every patient's status and split the patients to score into chunks."""
    bundle = as_bundle(model)
    texts = model_texts(bundle)
    landmarks, features, settings = texts.landmarks_h, texts.features, texts.settings
    if not isinstance(cohort.patients.index, pd.RangeIndex) or cohort.patients.index.start:
        cohort = dataclasses.replace(cohort, patients=cohort.patients.reset_index(drop=True))
    st = statuses(cohort, landmarks, as_of, as_of_hours, features.grading)
    n = len(st.pid_values)
    todo = np.flatnonzero(st.status == "scored")
    chunk_size = max(int(chunk_size), 1)
    n_chunks = max(-(-len(todo) // chunk_size), 1)
    chunk_of = np.full(n, -1, dtype=np.int64)
    chunk_of[todo] = np.arange(len(todo)) // chunk_size
    chunks = [todo[k * chunk_size : (k + 1) * chunk_size] for k in range(n_chunks)]
    return Scoring(bundle, cohort, st, chunks, _partition(st.obs_code, chunk_of, n_chunks),
                   _partition(st.ev_code, chunk_of, n_chunks), np.full(n, np.nan),
                   np.full(n, np.nan), np.full((n, len(texts.names)), np.nan),
                   np.full(n, "", dtype=object), features, settings, texts,
                   complete=completeness(cohort.observations, st.obs_code, st.landmark_h),
                   absent_share=np.full(n, np.nan),
                   imputed=np.full(n, "", dtype=object),
                   horizons=_horizon_arrays(bundle, n, len(texts.names)))  # fmt: skip


def _horizon_arrays(bundle: Bundle, n: int, n_features: int) -> dict:
    return {h.column: {"risk": np.full(n, np.nan), "base": np.full(n, np.nan),
                       "shap": np.full((n, n_features), np.nan),
                       "drivers": np.full(n, "", dtype=object)}
            for h, _ in bundle.horizons}  # fmt: skip


def chunk_features(s: Scoring, k: int):
    """The feature matrix of chunk ``k`` (None when empty), or the error that stopped it."""
    rows = s.chunks[k]
    if len(rows) == 0:
        return None
    c = s.cohort
    # one chunk (a batch run's, one patient's): the whole cohort, whose rows of patients not
    # scored the guard leaves out (no point of theirs), instead of a copy of the rest
    sub = c if len(s.chunks) == 1 else Cohort(
        patients=_take(c.patients, rows),
        observations=_take(c.observations, s.obs_parts[k]),
        events=_take(c.events, s.ev_parts[k]),
    )  # fmt: skip
    points = pd.DataFrame(
        {"patient_id": s.st.pid_values[rows], "landmark_h": s.st.landmark_h[rows]}
    )
    try:
        return build_features(sub, points, s.features)
    except CrsMlError as exc:
        return exc


def _take(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """The rows at ``positions``, renumbered; the frame itself when that is all of it in
    order (no copy)."""
    if (len(positions) == len(frame) and isinstance(frame.index, pd.RangeIndex)
            and frame.index.start == 0 and frame.index.step == 1
            and np.array_equal(positions, np.arange(len(frame)))):  # fmt: skip
        return frame
    return frame.iloc[positions].reset_index(drop=True)


def explain_chunk(s: Scoring, k: int, X, threads: int | None = None) -> None:
    """Risk, SHAP and drivers of chunk ``k`` from its features (or its error) into ``s``;
    ``threads`` for TreeSHAP (None: all cores). Features never missing in training are set
    to their training median where missing first (:mod:`crs_ml.modeling.completeness`)."""
    rows = s.chunks[k]
    if X is None:
        return
    try:
        if isinstance(X, CrsMlError):
            raise X
        model = s.model or model_texts(s.bundle)
        names = model.names
        raw = X
        X, imputed = s.bundle.fill_untrained_missing(X)
        ex = explain(s.bundle, X, threads)
        short = _explain_horizons(s.bundle, raw, (X, ex, imputed), threads)
    except CrsMlError as exc:
        s.st.status[rows] = "error"
        s.st.message[rows] = f"could not be scored: {exc}"
        return
    s.risk[rows] = ex.risk
    s.base[rows] = ex.base_value
    s.shap[rows] = ex.contributions
    s.note = ex.note
    values = X.to_numpy(dtype=np.float64, na_value=np.nan)  # the model's columns, in order
    s.drivers[rows] = top_drivers(X, ex.contributions, names, s.st.landmark_h[rows],
                                  s.settings.top_drivers, model.catalogue, imputed,
                                  texts=model.texts, values=values)  # fmt: skip
    s.absent_share[rows], s.imputed[rows] = _absence(X, ex.contributions, model, imputed, values)
    for column, (Xh, ex_h, imputed_h) in short.items():
        out = s.horizons[column]
        out["risk"][rows], out["base"][rows], out["shap"][rows] = (
            ex_h.risk, ex_h.base_value, ex_h.contributions)  # fmt: skip
        out["drivers"][rows] = top_drivers(Xh, ex_h.contributions, names, s.st.landmark_h[rows],
                                           s.settings.top_drivers, model.catalogue, imputed_h,
                                           texts=model.texts)  # fmt: skip


def _explain_horizons(bundle: Bundle, X, longest, threads) -> dict:
    """{risk column: (inputs, explanation, imputed mask)} of each short horizon's model on the
    raw features ``X``, capped from above by the longer horizons (day 14: ``longest``, its
    (inputs, explanation, imputed mask)) with their explanations
    (:func:`crs_ml.modeling.horizons.capped_explanations`). A capped row's inputs and mask
    are those of the horizon whose explanation it took, so its driver texts quote the values
    (training medians of filled inputs included) its SHAP values were computed on."""
    if not bundle.horizons:
        return {}
    parts = []
    for h, hb in reversed(bundle.horizons):  # longest first
        Xh, imputed = hb.fill_untrained_missing(X)
        parts.append((h, Xh, explain(hb, Xh, threads), imputed))
    capped, sources = capped_explanations(longest[1], [ex for _, _, ex, _ in parts])
    inputs = [(longest[0], longest[2]), *((Xh, imp) for _, Xh, _, imp in parts)]
    out = {}
    for i, ((h, Xh, _, imputed), ex, src) in enumerate(zip(parts, capped, sources, strict=True)):
        taken = np.flatnonzero(src != i + 1)
        if taken.size:
            Xh, imputed = Xh.copy(), np.array(imputed, copy=True)
            for k in np.unique(src[taken]):
                at = np.flatnonzero(src == k)
                X_k, imputed_k = inputs[int(k)]
                Xh.iloc[at] = X_k[Xh.columns].iloc[at].to_numpy()
                imputed[at] = np.asarray(imputed_k)[at]
        out[h.column] = (Xh, ex, imputed)
    return out


def scores_table(s: Scoring) -> pd.DataFrame:
    """the scores table (README, "Scoring new admissions") once every chunk is explained."""
    text, numbers, number_names, when, order = _scores_blocks(s)
    # three blocks (text, numbers, the as-of time) put in the table's column order by
    # position: one frame per block, not one column at a time (docs/speed.md)
    blocks = pd.concat(
        [
            pd.DataFrame(text.T, columns=_TEXT_COLUMNS, dtype=object, copy=False),
            pd.DataFrame(numbers.T, columns=number_names, copy=False),
            pd.DataFrame({"as_of": when}),
        ],
        axis=1,
    )
    names = [*_TEXT_COLUMNS, *number_names, "as_of"]
    table = blocks.iloc[:, _positions(tuple(names), tuple(order))]
    horizons = _horizon_columns(s, (s.model or model_texts(s.bundle)).names)
    if not horizons:
        return table
    return pd.concat([table, pd.DataFrame(horizons, copy=False)], axis=1)


def scores_columns(s: Scoring) -> dict[str, Any]:
    """The columns of :func:`scores_table`, in its order, as 1-D arrays (text: object arrays;
    ``as_of``: a pandas Series of UTC timestamps), without building the frame: what a file
    writer converts to Arrow directly (:meth:`crs_ml.files.AtomicTable.write`)."""
    text, numbers, number_names, when, order = _scores_blocks(s)
    held = {**dict(zip(_TEXT_COLUMNS, text, strict=True)),
            **dict(zip(number_names, numbers, strict=True)), "as_of": when}  # fmt: skip
    columns = {name: held[name] for name in order}
    columns.update(_horizon_columns(s, (s.model or model_texts(s.bundle)).names))
    return columns


def _no_finite_risk(s: Scoring) -> None:
    """A scored patient whose risk or explanation is not finite (an input value so extreme
    that the model's arithmetic overflows) gets status error, no risk and no drivers."""
    scored = s.st.status == "scored"
    ok = np.isfinite(s.risk) & np.isfinite(s.base) & np.isfinite(s.shap).all(axis=1)
    for a in (s.horizons or {}).values():
        ok &= np.isfinite(a["risk"]) & np.isfinite(a["base"]) & np.isfinite(a["shap"]).all(axis=1)
    bad = scored & ~ok
    if not bad.any():
        return
    s.st.status[bad] = "error"
    s.st.message[bad] = ("the model gave no finite risk: an input value is extreme (check its "
                         "unit; crs-ml check lists values outside the plausible range)")  # fmt: skip
    s.risk[bad], s.base[bad], s.shap[bad], s.drivers[bad] = np.nan, np.nan, np.nan, ""
    for a in (s.horizons or {}).values():
        a["risk"][bad], a["base"][bad], a["shap"][bad], a["drivers"][bad] = (
            np.nan, np.nan, np.nan, "")  # fmt: skip


def _scores_blocks(s: Scoring):
    """(text, numbers, number column names, as-of times, column order) of the scores table:
    text and numbers one row per column (each column contiguous)."""
    _no_finite_risk(s)
    st, scoring = s.st, s.settings
    model = s.model or model_texts(s.bundle)
    status, message, risk = st.status, st.message.copy(), s.risk
    scored = status == "scored"
    band = np.full(len(status), None, dtype=object)
    band[scored] = np.select(
        [risk[scored] < scoring.low_below, risk[scored] >= scoring.high_from],
        ["low", "high"],
        "intermediate",
    )
    if s.note:
        message[scored] = [f"{m}; {s.note}" if m else s.note for m in message[scored]]
    # only a scored patient's completeness is shown
    c = s.complete
    share = np.where(scored, c.share, np.nan)
    complete_band = np.where(scored, c.band, None)
    missing = np.where(scored, c.missing, None)
    message = _with_completeness(message, scored, share, complete_band, missing,
                                 s.absent_share, s.imputed)  # fmt: skip
    message = _with_rejected(message, s.cohort, st.pid)
    message = _with_implausible(message, s.cohort, st, scored)
    n = len(status)
    text = np.empty((len(_TEXT_COLUMNS), n), dtype=object)  # object, not pandas' str
    for j, values in enumerate((st.pid_values, status, band, complete_band, missing, s.drivers,
                                message)):  # fmt: skip
        text[j] = values
    n_ages = c.hours_since.shape[1]
    numbers = np.empty((4 + n_ages + 1 + s.shap.shape[1], n), dtype=np.float64)
    numbers[0], numbers[1], numbers[2], numbers[3] = st.hours, st.landmark_h, risk, share
    k = 4 + n_ages
    numbers[4:k] = np.where(scored, c.hours_since.T, np.nan)
    numbers[k], numbers[k + 1 :] = s.base, s.shap.T
    number_names = ["hours_since_infusion", "landmark_h", "risk", "completeness",
                    *key_input_columns(), "base_value", *model.shap_columns]  # fmt: skip
    when = pd.Series(_utc(st.when), copy=False)
    return text, numbers, number_names, when, [*FIXED_COLUMNS, *model.shap_columns, "message"]


def _utc(when: pd.Series):
    """The as-of times as a UTC datetime array (no conversion when they are one already)."""
    return (
        when if when.dtype == "datetime64[ns, UTC]" else when.astype("datetime64[ns, UTC]")
    ).array


_TEXT_COLUMNS = ["patient_id", "status", "risk_band", "completeness_band", "missing_inputs",
                 "top_drivers", "message"]  # fmt: skip


@functools.lru_cache(maxsize=16)
def _positions(names: tuple[str, ...], order: tuple[str, ...]) -> np.ndarray:
    """Position in ``names`` of each name of ``order`` (cached: the same per model)."""
    where = {n: i for i, n in enumerate(names)}
    out = np.fromiter((where[n] for n in order), dtype=np.intp, count=len(order))
    out.flags.writeable = False
    return out


def horizon_column_names(horizons, names: list[str]) -> list[str]:
    """The scores table's columns of the short horizons (after ``message``), in order."""
    sfx = [h.suffix for h in horizons]
    return [*(f"risk_{x}" for x in sfx), *(f"top_drivers_{x}" for x in sfx),
            *(f"base_value_{x}" for x in sfx),
            *(f"shap{x}_{f}" for x in sfx for f in names)]  # fmt: skip


def _horizon_columns(s: Scoring, names: list[str]) -> dict:
    hs = [h for h, _ in s.bundle.horizons]
    if not hs or not s.horizons:
        return {}
    arrays = [s.horizons[h.column] for h in hs]
    out = {}
    for h, a in zip(hs, arrays, strict=True):
        out[f"risk_{h.suffix}"] = a["risk"]
    for h, a in zip(hs, arrays, strict=True):
        out[f"top_drivers_{h.suffix}"] = pd.Series(a["drivers"], dtype=object)
    for h, a in zip(hs, arrays, strict=True):
        out[f"base_value_{h.suffix}"] = a["base"]
    for h, a in zip(hs, arrays, strict=True):
        out.update(zip((f"shap{h.suffix}_{f}" for f in names), a["shap"].T, strict=True))
    return out


def score(
    model,
    cohort: Cohort,
    as_of=None,
    as_of_hours: float | None = None,
    chunk_size: int = 5000,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The scores table of ``cohort`` (see the module docstring); one row per patient."""
    s = begin(model, cohort, as_of, as_of_hours, chunk_size)
    total = sum(len(rows) for rows in s.chunks)
    if progress:
        progress("scoring", 0, total)
    done = 0
    for k, rows in enumerate(s.chunks):
        if len(rows) == 0:
            continue
        explain_chunk(s, k, chunk_features(s, k))
        done += len(rows)
        if progress:
            progress("scoring", done, total)
    return scores_table(s)


def _absence(X, contributions, model: ModelTexts, imputed,
             values=None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per row: the share of sum |SHAP| from inputs not measured or imputed, and the names
    of the imputed inputs (comma-separated). ``values``: ``X`` as a float matrix, if held."""
    absent = not_measured(X, model.names, texts=model.texts, values=values) | imputed
    size = np.nan_to_num(np.abs(contributions), nan=0.0)
    total = size.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, (size * absent).sum(axis=1) / total, np.nan)
    # named with their part (``Heart rate baseline``), as the drivers' imputed line names
    # them: a patient's heart rate may be measured while its baseline was imputed
    codes, uniq = model.texts.group_codes, model.texts.group_names
    text = np.full(len(X), "", dtype=object)
    for i in np.flatnonzero(imputed.any(axis=1)):  # inputs by |SHAP|, largest first
        weight = np.bincount(codes[imputed[i]], weights=size[i, imputed[i]], minlength=len(uniq))
        used = np.bincount(codes[imputed[i]], minlength=len(uniq)) > 0
        order = [g for g in np.argsort(-weight, kind="stable") if used[g]]
        text[i] = ", ".join(uniq[order])
    return share, text


def _with_completeness(message, scored, share, band, missing, absent_share,
                       imputed) -> np.ndarray:  # fmt: skip
    """Messages of scored patients that rest on sparse or absent data, or on imputed inputs,
    say so (thresholds in :mod:`crs_ml.modeling.completeness`)."""
    from crs_ml.modeling.completeness import KEY_INPUTS, MOSTLY_ABSENT_SHARE

    out = message.copy()
    k = len(KEY_INPUTS)

    def add(i: int, text: str) -> None:
        out[i] = f"{out[i]}; {text}" if out[i] else text

    with np.errstate(invalid="ignore"):
        noted = scored & ((absent_share > MOSTLY_ABSENT_SHARE) | (band == "sparse")
                          | (imputed != ""))  # fmt: skip
    for i in np.flatnonzero(noted):  # a Python loop over the few patients with a note only
        notes = []
        if absent_share[i] > MOSTLY_ABSENT_SHARE:
            notes.append(f"score rests mostly on absent data: {absent_share[i]:.0%} of its "
                         "explanation comes from inputs not measured or imputed")  # fmt: skip
        if band[i] == "sparse":
            notes.append(f"sparse data: {round(share[i] * k)} of {k} key inputs measured "
                         f"(not measured: {missing[i]})")  # fmt: skip
        if imputed[i]:
            notes.append(f"imputed with the training median (never missing in training): "
                         f"{imputed[i]}")  # fmt: skip
        for text in notes:
            add(i, text)
    return out


def _with_rejected(message: np.ndarray, cohort: Cohort, pid: pd.Index) -> np.ndarray:
    rejected = cohort.rejected
    if rejected is None or len(rejected) == 0 or "patient_id" not in rejected:
        return message
    counts = rejected["patient_id"].astype(object).value_counts()
    k = pd.Series(pid.to_numpy(), dtype=object).map(counts).fillna(0).to_numpy(dtype=np.int64)
    out = message.copy()
    for i in np.flatnonzero(k):
        text = (f"{k[i]} input row{'s' if k[i] > 1 else ''} rejected (listed in the errors "
                "file of crs-ml score, or by crs-ml check)")  # fmt: skip
        out[i] = f"{out[i]}; {text}" if out[i] else text
    return out


def _with_implausible(message: np.ndarray, cohort: Cohort, st: Statuses,
                      scored: np.ndarray) -> np.ndarray:  # fmt: skip
    """A scored patient's values outside the catalogue's plausible range up to L, which no
    feature reads, named in the message (the first three: variable, value, unit, hours; then
    how many more)."""
    obs = cohort.observations
    flag = np.flatnonzero(implausible(obs))
    if not flag.size:
        return message
    code = st.obs_code[flag]
    patient = np.maximum(code, 0)
    seen = (code >= 0) & scored[patient]
    seen &= obs["hours"].to_numpy(dtype=np.float64)[flag] <= st.landmark_h[patient]
    if not seen.any():
        return message
    flag, code = flag[seen], code[seen]
    count = np.bincount(code, minlength=len(message))
    shown = pd.Series(code).groupby(code).cumcount().to_numpy() < 3  # each patient's first 3
    rows = obs.iloc[flag[shown]]
    out = message.copy()
    texts: dict[int, list[str]] = {}
    for i, v, x, h in zip(code[shown], rows["variable"], rows["value"], rows["hours"],
                          strict=True):  # fmt: skip
        var = VARIABLES.get(v)
        unit = f" {var.unit}" if var is not None and var.unit else ""
        texts.setdefault(int(i), []).append(f"{v} {x:g}{unit} at {h:g} h")
    for i, items in texts.items():
        more = f" and {count[i] - len(items)} more" if count[i] > len(items) else ""
        text = (f"values outside the plausible range not used (check the unit): "
                f"{', '.join(items)}{more}")  # fmt: skip
        out[i] = f"{out[i]}; {text}" if out[i] else text
    return out


def status_counts(scores: pd.DataFrame) -> dict[str, int]:
    """Patients per status (every status listed, zeros included)."""
    counts = scores["status"].value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def score_records(model, records: pd.DataFrame, as_of_hours=None, strict: bool = True):
    """Score the one-table MLflow model input (see :mod:`crs_ml.ingest.records`)."""
    return score(model, records_to_cohort(records, strict=strict), as_of_hours=as_of_hours)
