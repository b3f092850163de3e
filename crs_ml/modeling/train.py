"""Fit and internally validate one model configuration.

Repeated k-fold by person, stratified at person level (a person counts as positive when any
of their landmark rows is), gives out-of-fold risks; everything that is fit (imputers,
calibrators, early stopping) is fit inside the training fold by the model itself. Metrics
are computed per landmark, over all stacked landmarks, and for treated / untreated patients
at L; then the model is refit on all data. ``validation="optimism"`` replaces the CV with
Harrell's optimism-corrected bootstrap.

Censoring (``task.training_weights``). With ``ipcw`` (the default) the day-14 model's training
rows at landmark L are everyone at risk at L with data (:class:`CensoredRows`): the censored
before day 14 are left out and the others carry inverse probability of censoring weights, a
reverse Kaplan-Meier per landmark (by site with ``task.censoring_by: site``) fitted on the
training rows only: on each CV training fold for the out-of-fold risks, on each bootstrap
sample for the optimism bootstrap, on all rows for the final model
(:func:`crs_ml.modeling.horizons.training_weights`). Persons lost to follow-up at every
landmark (never in the complete-case rows) are dealt to CV folds by person as the others. The
metrics above are computed on the complete-case rows in both settings, so runs with ``ipcw``
and ``none`` compare on the same rows and folds; ``none`` trains on those rows unweighted.

Day-14 IPCW metrics (:func:`day14_ipcw_metrics`, CV only). Per report landmark, the
time-dependent AUROC and Brier score by day 14 with inverse probability of censoring weights
(Blanche et al. 2013; :mod:`crs_ml.evaluation.censored`, death a non-event) on everyone at
risk at L with data: the complete-case rows plus the rows :class:`CensoredRows` adds (the
censored before day 14 and those lost after an event), named ``{metric}_ipcw_L24`` (auroc,
brier with person-bootstrap ``_lo`` / ``_hi``, n, events, competing, censored, and the oracle
ratio with the simulator's per-horizon truth). Their out-of-fold risks come from the CV's own
fold models, in both settings: a row outside the complete cases is scored by the model of the
fold its person is dealt to (:meth:`CensoredRows.folds`), which never trained on that person;
with ``none`` those rows train nothing, so the same estimator is scored on the same rows by
both settings. The censoring weights are fitted once per landmark on those rows (pooled over
the CV repeats as the complete-case metrics pool them; within deciles of the pooled risk, by
site or one, ``task.censoring_by``). With nobody censored they equal ``auroc_L24`` and
``brier_L24``. Optimism-bootstrap runs do not report them.

Short horizons (``task.windows_h``, :mod:`crs_ml.modeling.horizons`): one model per window of
the same family, on everyone at risk at L with censoring weights, cross-validated on folds by
person (``cv.horizon_repeats`` repeats) and refit on all rows; per report landmark their IPCW
AUROC and Brier score (and the oracle ratio when the simulator's per-horizon truth is given)
join the metrics as ``{metric}_next24h_L24``.

Intervals are person-level bootstrap percentiles of the pooled out-of-fold predictions:
they condition on the fitted models and ignore training variability (Bates, Hastie &
Tibshirani 2024), so they are somewhat too narrow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crs_ml.config import Config
from crs_ml.errors import InputError
from crs_ml.evaluation import metrics as M
from crs_ml.evaluation.performance import performance
from crs_ml.features.builder import feature_catalogue
from crs_ml.features.catalogue import select_feature_variables
from crs_ml.features.grading import LABEL_DEFINITION, label_definition
from crs_ml.features.landmarks import build_landmark_dataset, horizon_label
from crs_ml.modeling.bundle import save_bundle
from crs_ml.modeling.estimators import feature_set_columns, make_model
from crs_ml.modeling.horizons import (
    DAY14,
    Horizon,
    HorizonData,
    capped_risks,
    fit_horizon,
    horizon_data,
    horizon_metrics,
    horizons_of,
    landmark_ipcw_metrics,
    oracle_risk,
    takes_weights,
    trainable,
    training_weights,
)

Progress = Callable[[str, int, int], None]
log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Everything a training run produces (the model is refit on all data)."""

    config: Config
    model: Any
    X: pd.DataFrame
    y: np.ndarray
    meta: pd.DataFrame
    catalogue: pd.DataFrame
    attrition: pd.DataFrame
    metrics: dict[str, float]
    oof: np.ndarray | None  # (repeats, n_rows) out-of-fold risk, None for optimism runs
    sample_size: dict[str, Any] = field(default_factory=dict)
    #: catalogue variables left out of the features: no value in the training cohort
    dropped_variables: list[str] = field(default_factory=list)
    #: the short horizons trained (shortest first), their models refit on all rows and the
    #: training inputs (missingness, medians) of each
    horizons: list[Horizon] = field(default_factory=list)
    horizon_models: dict[str, Any] = field(default_factory=dict)
    horizon_inputs: dict[str, dict] = field(default_factory=dict)
    #: everyone at risk at each landmark with data (patient_id, person_id, landmark_h, time_h,
    #: cause, site) and their day-14 out-of-fold risks (repeats, n): the rows of the IPCW
    #: training metrics (:func:`day14_ipcw_metrics`); None for optimism runs
    at_risk_meta: pd.DataFrame | None = None
    at_risk_oof: np.ndarray | None = None

    def save(self, out_dir, fingerprint: dict | None = None, extra: dict | None = None):
        """The refit model as a bundle folder (:func:`crs_ml.modeling.bundle.save_bundle`) with its
        type, feature names, catalogue, resolved config and the training missingness and
        medians per feature (used at scoring, :mod:`crs_ml.modeling.completeness`), and one
        bundle folder per short horizon inside it; returns the folder."""
        from pathlib import Path

        from crs_ml.modeling.completeness import training_inputs

        hashed = []
        for h in self.horizons:
            save_bundle(
                self.horizon_models[h.column],
                Path(out_dir) / h.folder,
                model_type=self.config.model.type,
                feature_names=list(self.X.columns),
                catalogue=self.catalogue,
                config=self.config.model_dump(mode="json"),
                extra={"training_inputs": self.horizon_inputs[h.column], "horizon": h.to_dict()},
            )
            hashed.append(f"{h.folder}/bundle.json")
        horizons = {"horizons": [h.to_dict() for h in self.horizons]} if self.horizons else {}
        return save_bundle(
            self.model,
            out_dir,
            model_type=self.config.model.type,
            feature_names=list(self.X.columns),
            catalogue=self.catalogue,
            config=self.config.model_dump(mode="json"),
            fingerprint=fingerprint,
            extra={"training_inputs": training_inputs(self.X), **horizons, **(extra or {})},
            extra_files=hashed,
        )


# --------------------------------------------------------------------------- censored rows
@dataclass
class CensoredRows:
    """The day-14 model's training rows with ``task.training_weights: ipcw``: everyone at risk
    at L with data and the outcome by day 14 (:func:`crs_ml.modeling.horizons.horizon_data`
    with ``day14=True``). :meth:`fit` fits a model on any subset of them with the censoring
    weights refit on that subset only (the censored left out, the others weighted)."""

    data: HorizonData
    censoring_by: str

    @property
    def persons(self) -> np.ndarray:
        return self.data.meta["person_id"].astype(str).to_numpy()

    def weights(self, rows: np.ndarray) -> np.ndarray:
        """Training weights of ``rows`` (positions; repeats allowed), G fitted on them only."""
        meta = self.data.meta.iloc[rows].reset_index(drop=True)
        return training_weights(meta, self.data.end_h[DAY14][rows], self.censoring_by)

    def fit(self, make: Callable[[], Any], rows: np.ndarray | None = None):
        """A model from ``make`` fit on ``rows`` (None: all) with their censoring weights."""
        rows = np.arange(len(self.data.meta)) if rows is None else np.asarray(rows)
        X = self.data.X.iloc[rows].reset_index(drop=True)
        return fit_horizon(make, X, self.data.y[DAY14][rows], self.weights(rows),
                           self.persons[rows])  # fmt: skip

    def folds(self, fold_ids: np.ndarray, persons: np.ndarray, folds: int, seed: int):
        """CV fold of each row, shape like ``fold_ids`` (repeats, n rows here): a person of the
        complete-case rows (``persons``, folds ``fold_ids``) keeps their fold; the others (lost
        to follow-up) are dealt to folds by :func:`person_folds` among themselves."""
        mine = self.persons
        known = np.isin(mine, persons)
        out = np.zeros((fold_ids.shape[0], len(mine)), dtype=np.int16)
        if (~known).any() and len(np.unique(mine[~known])) >= 2:
            out[:, ~known] = person_folds(mine[~known], self.data.y[DAY14][~known], folds,
                                          fold_ids.shape[0], seed)  # fmt: skip
        for r in range(fold_ids.shape[0]):
            fold_of = pd.Series(fold_ids[r], index=persons)
            fold_of = fold_of[~fold_of.index.duplicated()]
            out[r, known] = fold_of.reindex(mine[known]).to_numpy()
        return out

    def outside(self, meta: pd.DataFrame) -> np.ndarray:
        """Mask of these rows whose (patient, landmark) is not among ``meta``'s rows (the
        complete-case rows): the censored before day 14 and those lost after an event."""
        mine = pd.MultiIndex.from_arrays([self.data.meta["patient_id"].astype(str),
                                          self.data.meta["landmark_h"].astype(float)])  # fmt: skip
        cc = pd.MultiIndex.from_arrays([meta["patient_id"].astype(str),
                                        meta["landmark_h"].astype(float)])  # fmt: skip
        return ~mine.isin(cc)

    def bootstrap_rows(self, drawn: np.ndarray, persons: np.ndarray) -> np.ndarray:
        """Rows (positions, repeated) of a person bootstrap sample of the complete-case rows
        (``drawn`` = the persons of the sampled rows, ``persons`` = all): each sampled person's
        rows as often as drawn; the persons not in the complete-case rows once."""
        times = pd.Series(drawn).value_counts() / pd.Series(persons).value_counts()
        mine = pd.Series(self.persons)
        reps = mine.map(times.round()).to_numpy()
        reps = np.where(mine.isin(persons), np.nan_to_num(reps), 1).astype(np.int64)
        return np.repeat(np.arange(len(mine)), reps)

    def summary(self) -> dict[str, float]:
        """Counts for the run log: rows at risk, censored before day 14 (weight 0) and used."""
        censored = self.data.censored[DAY14]
        return {
            "day14_rows_at_risk": float(len(censored)),
            "day14_censored_rows": float(censored.sum()),
            "day14_weighted_rows": float((~censored).sum()),
        }


# --------------------------------------------------------------------------- splitting
def person_folds(
    persons: np.ndarray, y: np.ndarray, folds: int, repeats: int, seed: int
) -> np.ndarray:
    """Fold index per row, shape (repeats, n): all rows of a person share a fold.

    Persons are stratified by whether any of their rows is positive, so each fold gets its
    share of the (rare) events.
    """
    from sklearn.model_selection import StratifiedKFold

    persons = np.asarray(persons, dtype=object).astype(str)
    unique, inverse = np.unique(persons, return_inverse=True)
    person_pos = np.zeros(len(unique), dtype=int)
    np.maximum.at(person_pos, inverse, np.asarray(y, dtype=int))
    n_splits = min(folds, len(unique))
    if n_splits < 2:
        raise ValueError("cross-validation needs at least two persons")
    min_class = int(min(person_pos.sum(), len(person_pos) - person_pos.sum()))
    out = np.empty((repeats, len(persons)), dtype=np.int16)
    for r in range(repeats):
        rng_seed = int(np.random.SeedSequence([seed, r]).generate_state(1)[0])
        if min_class >= n_splits:
            splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=rng_seed)
            split = splitter.split(np.zeros(len(unique)), person_pos)
        else:  # too few events to stratify: plain shuffled folds
            from sklearn.model_selection import KFold

            split = KFold(n_splits=n_splits, shuffle=True, random_state=rng_seed).split(unique)
        person_fold = np.empty(len(unique), dtype=np.int16)
        for k, (_, test) in enumerate(split):
            person_fold[test] = k
        out[r] = person_fold[inverse]
    return out


def cross_validate(
    X: pd.DataFrame,
    y: np.ndarray,
    persons: np.ndarray,
    make: Callable[[], Any],
    folds: int,
    repeats: int,
    seed: int,
    progress: Progress | None = None,
    member_oof: dict[str, np.ndarray] | None = None,
    censored: CensoredRows | None = None,
    at_risk: CensoredRows | None = None,
    at_risk_oof: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-fold calibrated risk, shape (repeats, n_rows).

    ``member_oof``: a dict to fill, for a stack, with each member's out-of-fold risk (the
    member as refit inside the stack on the same outer training fold), so the members can be
    reported on exactly the blend's folds. ``censored``: train each fold on these rows of
    the training fold's persons, with censoring weights fitted on them (the rows scored are
    still X's). ``at_risk`` and ``at_risk_oof`` (repeats, its rows): the NaN entries of
    ``at_risk_oof`` get the risk of the fold model that left the row's person out, the rows
    dealt to folds by person as :meth:`CensoredRows.folds` deals them (a person of X keeps
    their fold), whichever rows the folds train on."""
    fold_ids = person_folds(persons, y, folds, repeats, seed)
    train_folds = None if censored is None else censored.folds(fold_ids, persons, folds, seed)
    score_folds = None
    if at_risk is not None:
        score_folds = (train_folds if at_risk is censored
                       else at_risk.folds(fold_ids, persons, folds, seed))  # fmt: skip
    oof = np.full(fold_ids.shape, np.nan)
    total = repeats * folds
    done = 0
    for r in range(repeats):
        ks = fold_ids[r] if score_folds is None else np.r_[fold_ids[r], score_folds[r]]
        for k in np.unique(ks):
            test = fold_ids[r] == k
            if censored is None:
                model = make()
                model.fit(X.loc[~test], y[~test], groups=persons[~test])
            else:
                model = censored.fit(make, np.flatnonzero(train_folds[r] != k))
            if test.any():
                oof[r, test] = model.predict_proba(X.loc[test])[:, 1]
            if score_folds is not None:
                new = (score_folds[r] == k) & np.isnan(at_risk_oof[r])
                if new.any():
                    at_risk_oof[r, new] = model.predict_proba(at_risk.data.X.loc[new])[:, 1]
            if member_oof is not None and test.any() and hasattr(model, "member_logits"):
                for name, logit in model.member_logits(X.loc[test]).items():
                    member_oof.setdefault(name, np.full(fold_ids.shape, np.nan))
                    member_oof[name][r, test] = 1.0 / (1.0 + np.exp(-logit))
            done += 1
            if progress:
                progress("cross-validation", done, total)
    return oof


# --------------------------------------------------------------------------- evaluation
def _slices(meta: pd.DataFrame, landmarks: list[float]) -> dict[str, np.ndarray]:
    """Row masks per reported slice: each landmark, treated/untreated at it, all stacked."""
    lm = meta["landmark_h"].to_numpy(dtype=float)
    treated = meta["treated_before_L"].to_numpy(dtype=bool)
    out: dict[str, np.ndarray] = {"all": np.ones(len(meta), dtype=bool)}
    for h in landmarks:
        at = lm == float(h)
        if not at.any():
            continue
        tag = f"L{float(h):g}"
        out[tag] = at
        out[f"{tag}_treated"] = at & treated
        out[f"{tag}_untreated"] = at & ~treated
    return out


def slice_metrics(
    y: np.ndarray,
    p: np.ndarray,
    groups: np.ndarray,
    n_boot: int,
    seed: int,
    oracle: np.ndarray | None = None,
    with_ci: bool = True,
    repeats: int = 1,
) -> dict[str, float]:
    """Discrimination and calibration of one slice (pooled rows; groups = persons).

    The same computation as the validation report
    (:func:`crs_ml.evaluation.performance.performance`), under the training run's metric names;
    intervals for AUROC and AUPRC. ``too_few_events`` (1.0 or 0.0, a metric MLflow can store)
    flags a slice with fewer than :data:`crs_ml.evaluation.metrics.MIN_SLICE_EVENTS` events or
    non-events among its ``len(y) / repeats`` rows (``repeats`` CV repeats pooled); such a slice
    gets no interval.
    """
    out: dict[str, float] = {"n": float(len(y)), "events": float(np.sum(y))}
    if len(y) == 0:
        return out
    both = 0 < np.sum(y) < len(y)
    few = M.too_few_events(np.sum(y) / repeats, len(y) / repeats)
    out["too_few_events"] = float(few)
    perf = performance(y, p, groups, n_boot=n_boot if with_ci and both else 0, seed=seed)
    out.update(auroc=perf["auroc"], auprc=perf["auprc"], brier=perf["brier"])
    if both:
        out["calibration_intercept"] = perf["calibration_intercept"]
        out["calibration_slope"] = perf["calibration_slope"]
        if with_ci and n_boot > 0 and not few:
            for name in ("auroc", "auprc"):
                out[f"{name}_lo"], out[f"{name}_hi"] = perf[f"{name}_ci"]
    if oracle is not None and np.isfinite(oracle).all() and both:
        out["oracle_auroc"] = M.auroc(y, oracle)
        out["oracle_ratio"] = out["auroc"] / out["oracle_auroc"]
    return out


def evaluate_predictions(
    y: np.ndarray,
    oof: np.ndarray,
    meta: pd.DataFrame,
    report_landmarks: list[float],
    n_boot: int,
    seed: int,
    truth: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Flat metric dict ``{metric}_{slice}`` from (repeats, n) out-of-fold risks.

    Rows of all repeats are pooled and bootstrapped together by person.
    """
    repeats = oof.shape[0]
    persons = meta["person_id"].astype(str).to_numpy()
    oracle = oracle_risk(meta, truth)
    out: dict[str, float] = {}
    for name, mask in _slices(meta, report_landmarks).items():
        yy = np.tile(y[mask], repeats)
        pp = oof[:, mask].ravel()
        gg = np.tile(persons[mask], repeats)
        orc = np.tile(oracle[mask], repeats) if oracle is not None else None
        ci = name != "all"  # the stacked slice is large; its CI adds little
        sliced = slice_metrics(yy, pp, gg, n_boot, seed, orc, with_ci=ci, repeats=repeats)
        for key, value in sliced.items():
            if key in ("n", "events"):
                value = value / repeats
            out[f"{key}_{name}"] = float(value)
    return out


#: the part of the day-14 censoring-weighted training metrics' names, e.g. auroc_ipcw_L24
IPCW_TAG = "ipcw"


def day14_ipcw_metrics(
    rows: CensoredRows,
    risk: np.ndarray,
    report_landmarks: list[float],
    censoring_by: str,
    n_boot: int,
    seed: int,
    truth: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Per report landmark, the day-14 time-dependent AUROC and Brier score with inverse
    probability of censoring weights (Blanche et al. 2013, death before grade >= 3 a
    non-event) on everyone at risk at L with data (``rows``: the complete-case rows and the
    censored or lost after an event), from their out-of-fold risks ``risk`` (repeats, n)
    pooled, with person-bootstrap ``_lo`` / ``_hi`` (``n_boot``) and, with the simulator's
    ``truth``, the oracle ratio: :func:`crs_ml.modeling.horizons.landmark_ipcw_metrics`
    (the windows' metrics too), names ``{metric}_ipcw_L24``. With nobody censored the
    weights are 1 and AUROC and Brier equal the complete-case ``auroc_L24`` and
    ``brier_L24``."""
    oracle = oracle_risk(rows.data.meta, truth)
    return landmark_ipcw_metrics(rows.data, DAY14, risk, report_landmarks, censoring_by,
                                 IPCW_TAG, n_boot, seed, oracle)  # fmt: skip


def day14_truth(horizon_truth: pd.DataFrame | None, horizon_h: float,
                truth: pd.DataFrame | None) -> pd.DataFrame | None:  # fmt: skip
    """The simulator's true day-14 risk of everyone at risk (rules 1-3): the ``horizon_h`` rows
    of its per-horizon truth when given, else ``truth`` (complete-case rows only, so the
    IPCW oracle ratio is left out where someone is censored)."""
    if horizon_truth is None or horizon_truth.empty:
        return truth
    by_h = horizon_truth[horizon_truth["horizon"] == horizon_label(None, horizon_h)]
    return by_h[["patient_id", "landmark_h", "true_risk"]] if not by_h.empty else truth


def at_risk_predictions(
    rows: CensoredRows, meta: pd.DataFrame, oof: np.ndarray, at_risk_oof: np.ndarray
) -> np.ndarray:
    """``at_risk_oof`` (filled by :func:`cross_validate` outside the complete-case rows) with
    the complete-case rows' out-of-fold risks ``oof`` put in at theirs."""
    cc = _aligned_oof(meta, oof, rows.data.meta)
    known = ~rows.outside(meta)
    out = at_risk_oof.copy()
    out[:, known] = cc[:, known]
    return out


def sample_size_report(
    y: np.ndarray, meta: pd.DataFrame, n_parameters: int, c_statistic: float | None
) -> dict[str, Any]:
    """Events per candidate parameter and the Riley (BMJ 2020) minimum sample size.

    Computed at the patient level (a patient counts as an event if any landmark row is),
    which is what the Riley criteria assume.
    """
    per_patient = pd.Series(y).groupby(meta["patient_id"].astype(str).to_numpy()).max()
    n, events = int(len(per_patient)), int(per_patient.sum())
    prevalence = events / n if n else float("nan")
    report: dict[str, Any] = {
        "n_patients": n,
        "n_events": events,
        "n_candidate_parameters": int(n_parameters),
        "events_per_parameter": M.events_per_parameter(events, n_parameters),
    }
    if 0 < events < n:
        riley = M.riley_min_sample_size(prevalence, n_parameters, c_statistic=c_statistic)
        report["riley"] = riley
        report["riley_min_n"] = riley.get("min_n")
        report["meets_riley"] = bool(n >= (riley.get("min_n") or np.inf))
    return report


# --------------------------------------------------------------------------- the run
def training_config(cohort, cfg: Config) -> tuple[Config, list[str]]:
    """``cfg`` with the feature variables decided on the training ``cohort`` (by default the
    catalogue variables that have a value in it) and the variables dropped; logged."""
    features, dropped = select_feature_variables(cohort, cfg.features)
    if dropped:
        log.info("features: no value in the training cohort, dropped: %s", ", ".join(dropped))
    return cfg.model_copy(update={"features": features}), dropped


def training_data(cohort, cfg: Config):
    """(X, y as int, meta, the catalogue of X's features, person id per row) of the
    configured landmark dataset; raises InputError unless both outcomes occur. The feature
    variables are decided on ``cohort`` (:func:`training_config`) when not given."""
    cfg, _ = training_config(cohort, cfg)
    X, y, meta = build_landmark_dataset(
        cohort,
        landmarks_h=cfg.task.landmarks_h,
        horizon_h=cfg.task.horizon_h,
        features=cfg.features,
    )
    y = np.asarray(y, dtype=int)
    if len(y) == 0 or y.sum() == 0 or y.sum() == len(y):
        raise InputError(
            f"the landmark dataset has {len(y)} rows and {int(y.sum())} events: "
            "training needs both outcomes",
            file=str(cohort.source) if cohort.source else None,
        )
    if cfg.model.type != "stack" and cfg.model.feature_set != "all":
        X = X[feature_set_columns(list(X.columns), cfg.model.feature_set)]
    catalogue = feature_catalogue(cfg.features)
    catalogue = catalogue[catalogue["name"].isin(X.columns)].reset_index(drop=True)
    return X, y, meta, catalogue, meta["person_id"].astype(str).to_numpy()


def warn_label_settings(cohort, cfg: Config) -> list[str]:
    """Outcome label definitions derived by this project's grading with other settings than
    the config's ``label`` section, with which the CRS-state features and scoring grade: a
    warning each (a definition the site charted by other rules is not compared)."""
    if cohort.outcomes is None or "label_definition" not in cohort.outcomes:
        return []
    ours = label_definition(cfg.label)
    family = LABEL_DEFINITION.split(":")[0].rsplit("-v", 1)[0]  # any version
    found = set(cohort.outcomes["label_definition"].dropna().astype(str))
    other = sorted(d for d in found if d.startswith(family) and d != ours)
    for d in other:
        log.warning("the outcomes were derived as '%s', but the CRS-state features and "
                    "scoring grade as '%s' (config section label): derive the outcomes with "
                    "the same settings (crs-ml label --config)", d, ours)  # fmt: skip
    return other


def train_model(
    cohort, cfg: Config, progress: Progress | None = None, horizon_truth: pd.DataFrame | None = None
) -> TrainResult:
    """Landmark dataset -> CV (or optimism bootstrap) -> metrics -> refit on all data; then
    the same for each short horizon (:func:`train_horizons`). ``horizon_truth``: the
    simulator's true risk per horizon (:func:`crs_ml.simulate.simulator.horizon_truth`) for
    the short horizons' oracle ratios; None takes the cohort's ``truth_horizons`` table (a
    folder written by ``crs-ml simulate``), if any."""
    cfg, dropped = training_config(cohort, cfg)
    warn_label_settings(cohort, cfg)
    X, y, meta, catalogue, persons = training_data(cohort, cfg)

    def make():
        return make_model(cfg.model, catalogue, cfg.seed)

    # the rows at risk with data, with each horizon's outcome: the windows' training rows,
    # and the day-14 model's with task.training_weights: ipcw
    # (and, with CV, the rows of the day-14 IPCW metrics in either setting)
    wanted = horizons_of(cfg.task.windows_h, cfg.task.horizon_h)
    ipcw = cfg.task.training_weights == "ipcw"
    cv = cfg.cv.validation == "cv"
    data = at_risk = None
    if wanted or ipcw or cv:
        data = horizon_data(cohort, wanted, cfg.task.landmarks_h, cfg.task.horizon_h,
                            cfg.features, list(X.columns), day14=ipcw or cv)  # fmt: skip
    if ipcw or cv:
        at_risk = CensoredRows(data, cfg.task.censoring_by)
    censored = at_risk if ipcw else None

    report_lms = [h for h in cfg.cv.report_landmarks_h if h in set(cfg.task.landmarks_h)]
    oof = at_risk_oof = None
    members: dict[str, np.ndarray] = {}
    if cv:
        # out-of-fold risks of everyone at risk: NaN where cross_validate fills them in
        fill = np.where(at_risk.outside(meta), np.nan, 0.0)
        at_risk_oof = np.tile(fill, (cfg.cv.repeats, 1))
        oof = cross_validate(
            X, y, persons, make, cfg.cv.folds, cfg.cv.repeats, cfg.seed, progress, members,
            censored, at_risk, at_risk_oof,
        )  # fmt: skip
        metrics = evaluate_predictions(
            y, oof, meta, report_lms, cfg.cv.bootstrap, cfg.seed, cohort.truth
        )
        at_risk_oof = at_risk_predictions(at_risk, meta, oof, at_risk_oof)
        metrics.update(day14_ipcw_metrics(
            at_risk, at_risk_oof, report_lms,
            cfg.task.censoring_by, cfg.cv.bootstrap, cfg.seed,
            day14_truth(horizon_truth if horizon_truth is not None else cohort.truth_horizons,
                        cfg.task.horizon_h, cohort.truth),
        ))  # fmt: skip
        # a stack's members on the blend's own outer folds (point estimates, no intervals)
        for name, member_oof in members.items():
            member_metrics = evaluate_predictions(
                y, member_oof, meta, report_lms, 0, cfg.seed, cohort.truth
            )
            metrics.update({f"member.{name}.{k}": v for k, v in member_metrics.items()})
    if progress:
        progress("final refit", 0, 1)
    model = make().fit(X, y, groups=persons) if censored is None else censored.fit(make)
    if progress:
        progress("final refit", 1, 1)
    if cfg.cv.validation == "optimism":  # the final model gives the apparent performance
        metrics = optimism_metrics(X, y, meta, make, cfg, model, progress, censored)
    if censored is not None:
        metrics.update(censored.summary())
    if hasattr(model, "summary"):  # a stack: weights and the members' inner-fold performance
        metrics.update(model.summary())
    c_stat = metrics.get("auroc_all")
    # Riley's R2 from the C-statistic needs C > 0.5; otherwise the conservative default
    usable_c = c_stat if c_stat is not None and np.isfinite(c_stat) and 0.5 < c_stat < 1 else None
    # candidate parameters: every feature for learned models, the one score for baselines
    n_params = 1 if cfg.model.type in ("measix", "fever_rule") else X.shape[1]
    sample = sample_size_report(y, meta, n_params, usable_c)
    metrics["events_per_parameter"] = float(sample["events_per_parameter"])
    if sample.get("riley_min_n") is not None:
        metrics["riley_min_n"] = float(sample["riley_min_n"])
    # the windows' out-of-fold risks are capped by the day-14 model's on every row at risk
    # (as scoring caps them), not only on the rows followed to day 14
    cap_meta, cap_oof = (data.meta, at_risk_oof) if at_risk_oof is not None else (meta, oof)
    horizons, models, inputs, horizon_scores = train_horizons(
        cohort, cfg, list(X.columns), make, cap_meta, cap_oof, progress,
        horizon_truth if horizon_truth is not None else cohort.truth_horizons, data,
    )  # fmt: skip
    metrics.update(horizon_scores)
    return TrainResult(
        config=cfg,
        model=model,
        X=X,
        y=y,
        meta=meta,
        catalogue=catalogue,
        attrition=meta.attrs.get("attrition", pd.DataFrame()),
        metrics=metrics,
        oof=oof,
        sample_size=sample,
        dropped_variables=dropped,
        horizons=horizons,
        horizon_models=models,
        horizon_inputs=inputs,
        at_risk_meta=data.meta if at_risk_oof is not None else None,
        at_risk_oof=at_risk_oof,
    )


def train_horizons(
    cohort,
    cfg: Config,
    columns: list[str],
    make: Callable[[], Any],
    meta: pd.DataFrame,
    oof: np.ndarray | None,
    progress: Progress | None = None,
    truth: pd.DataFrame | None = None,
    data: HorizonData | None = None,
):
    """(horizons, {column: model refit on all rows}, {column: training inputs}, metrics) of
    the short horizons (:mod:`crs_ml.modeling.horizons`). A window with fewer than
    ``MIN_HORIZON_EVENTS`` events or non-events is left out (logged; metric
    ``horizon_models`` counts those trained). With CV, out-of-fold risks are capped from
    above by the longer horizons' (the day-14 model's out-of-fold risk where the row is in its
    data: ``meta`` and ``oof`` are the rows at risk and their out-of-fold risks when training
    has them) as scoring caps them, then scored per report landmark."""
    from crs_ml.modeling.completeness import training_inputs

    wanted = horizons_of(cfg.task.windows_h, cfg.task.horizon_h)
    if not wanted:
        return [], {}, {}, {}
    if data is None:  # ``data``: the same rows, built once by the caller
        data = horizon_data(cohort, wanted, cfg.task.landmarks_h, cfg.task.horizon_h,
                            cfg.features, columns)  # fmt: skip
    persons = data.meta["person_id"].astype(str).to_numpy()
    weights = {h.column: training_weights(data.meta, data.end_h[h.column], cfg.task.censoring_by)
               for h in wanted}  # fmt: skip
    horizons = [h for h in wanted if trainable(data.y[h.column], weights[h.column])]
    for h in wanted:
        if h not in horizons:
            log.warning("horizon %s: too few events or non-events to train; left out", h.label)
    out: dict[str, float] = {"horizon_models": float(len(horizons))}
    if not horizons:
        return [], {}, {}, out
    out["horizon_weighted"] = float(takes_weights(make()))
    report_lms = [h for h in cfg.cv.report_landmarks_h if h in set(cfg.task.landmarks_h)]
    if cfg.cv.validation == "cv":
        oof_h = _horizon_oof(data, horizons, weights, persons, make, cfg, progress)
        day14 = _aligned_oof(meta, oof, data.meta)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for r in range(cfg.cv.horizon_repeats):
            longest = day14[r % len(day14)] if day14 is not None else np.full(len(persons), np.nan)
            capped = capped_risks(longest, [oof_h[h.column][r] for h in reversed(horizons)])
            for h, risk in zip(reversed(horizons), capped, strict=True):
                if not np.isfinite(risk).all():  # a fold too small to train: repeat left out
                    log.warning("horizon %s: CV repeat %d left out (a fold did not train)",
                                h.label, r + 1)  # fmt: skip
                    continue
                got = horizon_metrics(h, data, risk, report_lms, cfg.task.censoring_by, truth)
                for k, v in got.items():
                    sums[k] = sums.get(k, 0.0) + v
                    counts[k] = counts.get(k, 0) + 1
        # the mean over the repeats that trained (not over all repeats)
        out.update({k: sums[k] / counts[k] for k in sums})
    models, inputs = {}, {}
    for i, h in enumerate(horizons):
        if progress:
            progress("horizon refit", i, len(horizons))
        w = weights[h.column]
        models[h.column] = fit_horizon(make, data.X, data.y[h.column], w, persons)
        inputs[h.column] = training_inputs(data.X.loc[w > 0])
    if progress:
        progress("horizon refit", len(horizons), len(horizons))
    return horizons, models, inputs, out


def _horizon_oof(data: HorizonData, horizons, weights, persons, make, cfg: Config, progress):
    """Out-of-fold risk per horizon column, shape (cv.horizon_repeats, n): folds by person
    shared by all windows; the censoring weights refit on each training fold."""
    longest = horizons[-1].column
    folds = person_folds(persons, data.y[longest], cfg.cv.folds, cfg.cv.horizon_repeats,
                         cfg.seed)  # fmt: skip
    oof = {h.column: np.full(folds.shape, np.nan) for h in horizons}
    total, done = folds.shape[0] * len(np.unique(folds)) * len(horizons), 0
    for r in range(folds.shape[0]):
        for k in np.unique(folds[r]):
            test = folds[r] == k
            train_meta = data.meta.loc[~test]
            for h in horizons:
                w = training_weights(train_meta, data.end_h[h.column][~test],
                                     cfg.task.censoring_by)  # fmt: skip
                y = data.y[h.column][~test]
                if trainable(y, w):
                    model = fit_horizon(make, data.X.loc[~test], y, w, persons[~test])
                    oof[h.column][r, test] = model.predict_proba(data.X.loc[test])[:, 1]
                done += 1
                if progress:
                    progress("horizon cross-validation", done, total)
    return oof


def _aligned_oof(meta: pd.DataFrame, oof: np.ndarray | None, rows: pd.DataFrame):
    """The day-14 out-of-fold risks (repeats, n) at ``rows``' (patient, landmark); NaN for
    rows not in the day-14 data (censored before day 14). None without out-of-fold risks."""
    if oof is None:
        return None
    key = pd.MultiIndex.from_arrays([meta["patient_id"].astype(str), meta["landmark_h"]])
    at = key.get_indexer(pd.MultiIndex.from_arrays([rows["patient_id"].astype(str),
                                                    rows["landmark_h"]]))  # fmt: skip
    out = np.full((oof.shape[0], len(rows)), np.nan)
    found = at >= 0
    out[:, found] = oof[:, at[found]]
    return out


def optimism_metrics(
    X, y, meta, make, cfg: Config, model, progress: Progress | None,
    censored: CensoredRows | None = None,
) -> dict[str, float]:  # fmt: skip
    """Harrell's optimism-corrected bootstrap by person, per reported landmark and overall.

    ``model`` is the model fitted on all rows (its predictions give the apparent
    performance); each bootstrap sample of persons is fit once and scored on every slice.
    ``censored``: each sample is fit on the censored rows of its persons
    (:meth:`CensoredRows.bootstrap_rows`) with the weights refit on them.
    """
    persons = meta["person_id"].astype(str).to_numpy()
    lm = meta["landmark_h"].to_numpy(dtype=float)
    slices = {"all": np.ones(len(y), dtype=bool)}
    for h in cfg.cv.report_landmarks_h:
        if (lm == h).any():
            slices[f"L{float(h):g}"] = lm == h
    n_boot = max(cfg.cv.bootstrap // 5, 20)

    def fit_predict(train_idx: np.ndarray, eval_sets: list[np.ndarray]) -> list[np.ndarray]:
        if censored is None:
            fitted = make().fit(X.iloc[train_idx], y[train_idx], groups=persons[train_idx])
        else:
            fitted = censored.fit(make, censored.bootstrap_rows(persons[train_idx], persons))
        return [fitted.predict_proba(X.iloc[idx])[:, 1] for idx in eval_sets]

    res = M.optimism_corrected_bootstrap(
        fit_predict, y, persons, {"auroc": M.auroc, "auprc": M.auprc, "brier": M.brier},
        n_boot=n_boot, seed=cfg.seed, slices=slices,
        p_apparent=model.predict_proba(X)[:, 1],
        progress=(lambda done, total: progress("optimism bootstrap", done, total)) if progress else None,
    )  # fmt: skip
    out: dict[str, float] = {}
    for s, by_metric in res.items():
        mask = slices[s]
        out[f"too_few_events_{s}"] = float(M.too_few_events(y[mask].sum(), mask.sum()))
        for m, (apparent, optimism, corrected) in by_metric.items():
            out[f"{m}_{s}"] = corrected
            out[f"{m}_apparent_{s}"] = apparent
            out[f"{m}_optimism_{s}"] = optimism
    out["optimism_bootstrap_samples"] = float(n_boot)
    return out
