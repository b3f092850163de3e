"""Short horizons beside the day-14 risk: at landmark L the cumulative incidence of grade >= 3
CRS by min(L + w, horizon_h) for each window w of ``task.windows_h`` (default 24 h and 72 h),
death before grade >= 3 competing.

Which model. One model per window, of the configured family (``model.type`` and its
parameters, the same in-fold calibration), beside the day-14 model that the rest of the
project trains and validates. Why: each is a plain calibrated binary classifier, so the
bundle format, the exact SHAP explanations (:mod:`crs_ml.modeling.explain`) and the
validation code work unchanged for every horizon, and each horizon's explanation is additive
in its own log-odds. A discrete-time hazard model over (patient, landmark, interval) rows
would share strength between horizons, but its cumulative incidence is a product of
per-interval terms, whose log-odds is not a sum of per-feature contributions: its SHAP
values would have to be approximated. Cost: each window adds ``cv.folds x
cv.horizon_repeats + 1`` fits (default 5 + 1 per window, against 5 x 5 + 1 for the day-14
model); ``task.windows_h: []`` trains none.

Monotone in the horizon. A cumulative incidence cannot fall with the horizon, but separately
fitted models can cross. Scoring takes the cumulative minimum from the longest horizon down:
risk by day 14 is the day-14 model's (never changed, the validated number), and a window's
risk above the next longer horizon's takes that horizon's value. Where it does, the window
also takes that horizon's explanation (base value and contributions), so base +
sum(contributions) = logit(risk) holds for every horizon and patient (:func:`monotone`).
The minimum, not the maximum, because the day-14 model is the one trained on the most events
and the one validated; the short windows have fewer events and are the noisier ones.

Training rows and censoring weights. For window w at landmark L: everyone at risk at L with
data (rules 1-3 and 5 of :mod:`crs_ml.features.landmarks`; rule 4 does not apply), with
``horizon_status``'s outcome by L + w: 1 for grade >= 3, 0 for a competing death (a
non-event, not censored) or event-free; a patient whose follow-up ended before L + w
without either is censored and gets weight 0, everyone else the inverse probability of
censoring weight of Blanche et al. (2013) (:func:`crs_ml.evaluation.censored.ipcw_weights`),
with the censoring distribution a reverse Kaplan-Meier per landmark fitted on the training
rows only (inside each CV fold), by site when ``task.censoring_by`` is ``site``, else one per
landmark (risk deciles need a model's risk, which training does not have before the fit).
Weights are scaled to mean 1 over the rows kept. Every family of this package takes them
(``fit(..., row_weights=...)``: xgboost, the additive and logistic models, the stack and its
members, the baselines' fitted maps); a family whose ``fit`` took none would leave the
censored out unweighted (training metric ``horizon_weighted`` 0).

The day-14 model. With ``task.training_weights: ipcw`` (the default) it is trained on the same
kind of rows with the same weights (:func:`horizon_data` with ``day14=True``, column
:data:`DAY14`; :func:`training_weights`, one home for the weights): everyone at risk at L
with data, the censored before day 14 left out, the others weighted. With ``none`` it keeps the
complete-case rows of rule 4, unweighted (:mod:`crs_ml.modeling.train`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from crs_ml.evaluation import metrics as M
from crs_ml.evaluation.censored import (
    censored_metrics,
    censoring_strata,
    landmark_weights,
    outcome_counts,
)
from crs_ml.features.builder import build_features
from crs_ml.features.landmarks import horizon_label, horizon_status
from crs_ml.modeling.explain import Explanation

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]
#: a window is trained only with at least this many events and non-events
MIN_HORIZON_EVENTS = 5


@dataclass(frozen=True)
class Horizon:
    """One short horizon: ``window_h`` hours after the landmark (capped at horizon_h)."""

    window_h: float
    label: str  #: "next 24 h" (as in horizon_status)
    column: str  #: the scores table's risk column, "risk_24h"
    folder: str  #: its bundle inside the model folder, "horizon_24h"

    @property
    def suffix(self) -> str:
        """The ending of this horizon's columns in the scores table, e.g. 24h."""
        return self.column.removeprefix("risk_")

    @property
    def tag(self) -> str:
        """The part of this horizon's training metric names, e.g. next24h."""
        return self.label.replace(" ", "")

    @classmethod
    def of(cls, window_h: float, horizon_h: float) -> Horizon:
        w = float(window_h)
        return cls(w, horizon_label(w, horizon_h), f"risk_{w:g}h", f"horizon_{w:g}h")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def horizons_of(windows_h, horizon_h: float) -> list[Horizon]:
    """The configured windows, shortest first."""
    return [Horizon.of(w, horizon_h) for w in sorted({float(w) for w in windows_h or []})]


# --------------------------------------------------------------------------- data
#: the :class:`HorizonData` key of the day-14 outcome (the scores table's risk column)
DAY14 = "risk"


@dataclass
class HorizonData:
    """Rows at risk at each landmark (rules 1-3 and 5) with each window's outcome."""

    X: pd.DataFrame
    meta: pd.DataFrame  #: patient_id, person_id, landmark_h, time_h, cause, site
    y: dict[str, np.ndarray]  #: per horizon column: 1 grade >= 3 by its end, else 0
    censored: dict[str, np.ndarray]  #: per horizon column: follow-up ended before its end
    end_h: dict[str, np.ndarray]  #: per horizon column: its end (hours since infusion)


def horizon_data(cohort, horizons: list[Horizon], landmarks_h, horizon_h: float, features,
                 columns: list[str] | None = None, day14: bool = False) -> HorizonData:  # fmt: skip
    """The training rows of the windows (module docstring), features ``columns`` (None: all);
    ``day14``: also the outcome by ``horizon_h`` (key :data:`DAY14`) on the same rows."""
    windows = [h.window_h for h in horizons]
    keys = [(h.label, h.column) for h in horizons]
    if day14:
        keys.append((horizon_label(None, horizon_h), DAY14))
    if not keys:
        raise ValueError("horizon_data needs a window or day14=True")
    hs = horizon_status(cohort, landmarks_h, windows, horizon_h)
    hs = hs[hs["status"] == "included"]
    first = hs[hs["horizon"] == keys[0][0]].reset_index(drop=True)
    X = build_features(cohort, first[["patient_id", "landmark_h"]], features)
    X = X if columns is None else X[columns]
    meta = first[["patient_id", "person_id", "landmark_h", "time_h", "cause", "site"]].copy()
    y, censored, end = {}, {}, {}
    for label, column in keys:
        rows = hs[hs["horizon"] == label].reset_index(drop=True)
        outcome = rows["outcome"].to_numpy(dtype=object)
        y[column] = (outcome == "event").astype(np.int64)
        censored[column] = outcome == "censored"
        end[column] = rows["horizon_end_h"].to_numpy(dtype=np.float64)
    return HorizonData(X, meta.reset_index(drop=True), y, censored, end)


def training_weights(meta: pd.DataFrame, end_h: np.ndarray, censoring_by: str) -> np.ndarray:
    """IPCW per row (0 for the censored), one reverse Kaplan-Meier per landmark fitted on
    these rows (by site with ``censoring_by='site'``), scaled to mean 1 over the rows kept
    (:func:`crs_ml.evaluation.censored.landmark_weights`)."""
    return landmark_weights(meta, end_h, censoring_by)


def takes_weights(model) -> bool:
    return "row_weights" in inspect.signature(model.fit).parameters


def fit_horizon(make: Callable[[], Any], X: pd.DataFrame, y: np.ndarray, weights: np.ndarray,
                persons: np.ndarray):  # fmt: skip
    """One window's model on the rows with weight > 0 (weighted when the family can)."""
    keep = weights > 0
    model = make()
    kwargs = {"row_weights": weights[keep]} if takes_weights(model) else {}
    return model.fit(X.loc[keep], y[keep], groups=persons[keep], **kwargs)


def trainable(y: np.ndarray, weights: np.ndarray) -> bool:
    used = weights > 0
    events = int(y[used].sum())
    return events >= MIN_HORIZON_EVENTS and int(used.sum()) - events >= MIN_HORIZON_EVENTS


# --------------------------------------------------------------------------- monotone
def monotone(longest: Explanation, shorter: list[Explanation]) -> list[Explanation]:
    """``shorter`` (longest first, e.g. [72 h, 24 h]) capped from above by the horizon
    before each (``longest`` for the first): where a window's log-odds exceeds it, the
    window takes its base value and contributions (module docstring). Returns new objects."""
    return capped_explanations(longest, shorter)[0]


def capped_explanations(
    longest: Explanation, shorter: list[Explanation]
) -> tuple[list[Explanation], list[np.ndarray]]:
    """:func:`monotone`, and per window the source of each row's explanation: 0 for
    ``longest``, i for ``shorter[i - 1]`` (its own when not capped), so a caller can take
    the inputs that explanation was computed on (the driver texts quote them)."""
    upper, out, sources = longest, [], []
    upper_src = np.zeros(len(longest.logit), dtype=np.int64)
    for i, ex in enumerate(shorter, start=1):
        over = ex.logit > upper.logit  # NaN compares False: kept
        src = np.where(over, upper_src, i)
        sources.append(src)
        contrib, base = ex.contributions.copy(), ex.base_value.copy()
        contrib[over] = upper.contributions[over]
        base[over] = upper.base_value[over]
        logit = np.where(over, upper.logit, ex.logit)
        capped = Explanation(contrib, base, logit, ex.supported and upper.supported, ex.note)
        out.append(capped)
        # the next window's bound: this one where it has a risk, else the bound it had (a
        # NaN window must not lift the cap of the shorter ones)
        keep = ~np.isfinite(logit)
        upper_src = np.where(keep, upper_src, src)
        upper = Explanation(
            np.where(keep[:, None], upper.contributions, contrib),
            np.where(keep, upper.base_value, base),
            np.where(keep, upper.logit, logit),
            capped.supported,
            ex.note,
        )
    return out, sources


def capped_risks(longest: np.ndarray, shorter: list[np.ndarray]) -> list[np.ndarray]:
    """Risks only: each of ``shorter`` (longest first) at most the lowest finite risk of the
    longer horizons (as :func:`monotone`); NaN everywhere above leaves the value as it is."""
    upper, out = np.asarray(longest, dtype=np.float64), []
    for r in shorter:
        r = np.asarray(r, dtype=np.float64)
        capped = np.where(r > upper, upper, r)
        out.append(capped)
        upper = np.where(np.isfinite(capped), capped, upper)
    return out


# --------------------------------------------------------------------------- metrics
def landmark_ipcw_metrics(
    data: HorizonData,
    column: str,
    risk: np.ndarray,
    report_landmarks: list[float],
    censoring_by: str,
    tag: str,
    n_boot: int = 0,
    seed: int = 0,
    oracle: np.ndarray | None = None,
) -> dict[str, float]:
    """Per report landmark L, the IPCW AUROC and Brier score by the end of horizon ``column``
    (:func:`crs_ml.evaluation.censored.censored_metrics`, Blanche et al. 2013, death a
    non-event) on the rows of ``data`` at L, named ``{metric}_{tag}_L24``: n, events,
    competing, censored (the rows at L, :func:`~crs_ml.evaluation.censored.outcome_counts`),
    auroc, brier; with ``n_boot`` > 0 and enough events and non-events (as the complete-case
    slices) their person-bootstrap ``_lo`` / ``_hi``; with ``oracle`` (a risk per row, NaN
    where unknown) finite at L, the oracle's AUROC on the same rows and weights and the
    ratio.

    ``risk``: one risk per row (n,) or CV repeats (repeats, n), pooled as
    :func:`crs_ml.modeling.train.evaluate_predictions` pools them (every row once per
    repeat). G is one reverse Kaplan-Meier per landmark on the pooled rows (every row
    repeated equally often: the G of the rows taken once), within deciles of the pooled risk,
    by site or one overall (``censoring_by``), fitted once for the model's and the oracle's
    AUROC and refit in every bootstrap replicate. A landmark with a row without a risk is
    left out (logged)."""
    meta = data.meta
    risk = np.atleast_2d(np.asarray(risk, dtype=np.float64))
    repeats = risk.shape[0]
    lm = meta["landmark_h"].to_numpy(dtype=np.float64)
    time_h = meta["time_h"].to_numpy(dtype=np.float64)
    cause_all = meta["cause"].to_numpy()
    persons, sites = meta["person_id"].astype(str).to_numpy(), meta["site"].to_numpy()
    out: dict[str, float] = {}
    for L in report_landmarks:
        m = lm == float(L)
        if not m.any():
            continue
        name = f"{tag}_L{float(L):g}"
        p = risk[:, m].ravel()
        if not np.isfinite(p).all():  # a fold too small to train
            log.warning("IPCW metrics %s left out: rows without a risk", name)
            continue
        end = float(data.end_h[column][m][0])
        counts = outcome_counts(time_h[m], cause_all[m], end)
        for k in ("n", "events", "competing", "censored"):
            out[f"{k}_{name}"] = float(counts["n" if k == "n" else f"n_{k}"])
        few = M.too_few_events(counts["n_events"], counts["n"])
        time, cause = np.tile(time_h[m], repeats), np.tile(cause_all[m], repeats)
        strata = censoring_strata(censoring_by, np.tile(sites[m], repeats), p)
        known = oracle is not None and np.isfinite(oracle[m]).all()
        got = censored_metrics(time, cause, p, end, np.tile(persons[m], repeats), strata,
                               n_boot=0 if few else n_boot, seed=seed, metrics=("auroc", "brier"),
                               oracle=np.tile(oracle[m], repeats) if known else None)  # fmt: skip
        for k in ("auroc", "brier"):
            est, lo, hi = got[k]
            out[f"{k}_{name}"] = est
            if n_boot > 0 and not few:
                out[f"{k}_lo_{name}"], out[f"{k}_hi_{name}"] = lo, hi
        if known:
            out[f"oracle_auroc_{name}"] = got["oracle_auroc"]
            out[f"oracle_ratio_{name}"] = out[f"auroc_{name}"] / got["oracle_auroc"]
    return out


def oracle_risk(meta: pd.DataFrame, truth: pd.DataFrame | None) -> np.ndarray | None:
    """The simulator's true risk aligned to the landmark rows, or None without truth."""
    if truth is None or truth.empty:
        return None
    key = meta[["patient_id", "landmark_h"]].astype({"patient_id": str, "landmark_h": float})
    t = truth.astype({"patient_id": str, "landmark_h": float})
    merged = key.merge(t, on=["patient_id", "landmark_h"], how="left")
    return merged["true_risk"].to_numpy(dtype=float)


def horizon_metrics(
    h: Horizon,
    data: HorizonData,
    risk: np.ndarray,
    report_landmarks: list[float],
    censoring_by: str,
    truth: pd.DataFrame | None = None,
) -> dict[str, float]:
    """:func:`landmark_ipcw_metrics` of one window's risk (one vector, no intervals), names
    ``{metric}_next24h_L24``, with the simulator's per-horizon truth
    (:func:`crs_ml.simulate.simulator.horizon_truth`) the oracle's AUROC and ratio."""
    oracle = None
    if truth is not None and not truth.empty:
        own = truth[truth["horizon"] == h.label][["patient_id", "landmark_h", "true_risk"]]
        oracle = oracle_risk(data.meta, own)
    return landmark_ipcw_metrics(data, h.column, risk, report_landmarks, censoring_by, h.tag,
                                 oracle=oracle)  # fmt: skip
