"""Stacked risk model (super learner): a non-negative blend, in log-odds, of candidate models.

``fit(X, y, groups)``:

1. the training persons are split into ``inner_folds`` folds (by person, stratified on
   whether a person has an event); each member is fit on the other folds and gives its
   calibrated log-odds on the held-out one (its out-of-fold margin); every fitting step of a
   member (its own early stopping, calibration, penalty search) runs inside these inner
   training folds;
2. the blend is a logistic regression of the outcome on the members' out-of-fold log-odds
   with non-negative coefficients ``c_m >= 0`` (bounded L-BFGS): written as convex weights
   ``w_m = c_m / sum(c)`` (``weights_``) and a Platt map ``slope * blend + intercept`` with
   ``slope = sum(c)`` (``platt_slope_``, ``platt_intercept_``); non-negativity keeps every
   member's drivers pointing the way the member says. Optionally (``blend_rules``) the
   blending rule itself is chosen (``blend_rule_``) among these free weights, equal weights,
   free weights shrunk toward equal ones and each member alone (each with its Platt map) by
   held-out log-loss across the same inner folds (``rule_log_loss_``); the default is the
   free weights alone, which did at least as well as every such choice on development draws
   (README, "Model families");
   With few events (fewer persons with an event in the training rows than
   ``few_events_below``), no weights are fit: the blend gives equal weights to the
   ``few_events_members`` (the others get weight 0) and fits only its Platt map
   (``blend_rule_`` ``few_events:<members>``). On development draws with 7-36 persons with an
   event, free weights over-fit the inner folds' margins and equal weights over the two
   additive members did better in every world and size tried (README, "Model families");
   the xgboost member's own early-stopping and Platt split then holds under 10 events;
3. each member is refit on all training rows (``members_``).

``fit(..., row_weights=...)`` (importance weights, e.g. censoring weights) passes the weights
to every member's fit in steps 1 and 3 and weights the blend's log-loss in step 2.

The risk is ``expit(platt_intercept_ + platt_slope_ * sum_m w_m * logit_m(X))``. Each member's
exact SHAP decomposition (TreeSHAP for xgboost, the additive terms, linear SHAP for the
logistic model) is linear in its log-odds, so the blend's SHAP is the weighted sum of the
members' contributions: ``base = intercept + slope * sum_m w_m base_m`` and
``base + sum(contributions) = logit(risk)``, per feature in the members' clinical names.

A member reads only the columns of its feature set (``members`` entries are
``(name, estimator, columns)``; ``columns`` None = all); its contributions to the other
features are 0. Member performance on the inner folds (``inner_metrics_``) is kept for the
run log. The fitted state is written without pickle (:func:`save_stack`,
:func:`load_stack`): JSON for the blend and additive members, xgboost's own format for
boosters, skops for a logistic member.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted, validate_data

from crs_ml.modeling.additive import AdditiveRiskModel, known_frame
from crs_ml.modeling.base import LogOddsRiskClassifier
from crs_ml.modeling.inner_splits import (
    check_row_weights,
    encode_binary_target,
    group_codes,
    inner_group_folds,
    weighted_log_loss,
)

_EPS = 1e-12


def member_booster(estimator, rows: int):
    """The member's booster, or for fewer than ``SMALL_INPUT_ROWS`` rows a one-thread copy
    (cached): as for the day-14 booster (:func:`crs_ml.modeling.explain.tree_shap`),
    starting OpenMP threads for one patient costs more than the work, tens of ms on a busy
    machine. The values do not depend on the thread count."""
    from crs_ml.modeling.explain import SMALL_INPUT_ROWS
    from crs_ml.modeling.treeshap import booster_with_threads

    booster = estimator.booster_
    return booster if rows >= SMALL_INPUT_ROWS else booster_with_threads(booster, 1)


def member_logit(estimator, X: pd.DataFrame) -> np.ndarray:
    """Calibrated log-odds of a fitted member (float64)."""
    if hasattr(estimator, "booster_"):  # XGBRiskModel (X holds exactly its columns)
        from crs_ml.modeling.estimators import booster_margin

        booster = member_booster(estimator, len(X))
        margin = booster_margin(booster, X.to_numpy(dtype=np.float64, na_value=np.nan))
        return estimator.platt_slope_ * margin + estimator.platt_intercept_
    if hasattr(estimator, "decision_function"):  # additive, logistic
        return np.asarray(estimator.decision_function(X), dtype=np.float64)
    p = np.clip(estimator.predict_proba(X)[:, 1], _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def member_explanation(estimator, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(contributions (rows, columns of X), base (rows,)) of a fitted member in its own
    calibrated log-odds: exact TreeSHAP x Platt slope (xgboost), the additive terms, or
    linear SHAP (logistic)."""
    if hasattr(estimator, "explain_logit"):
        return estimator.explain_logit(X)
    if hasattr(estimator, "booster_"):
        from crs_ml.modeling.explain import SMALL_INPUT_ROWS
        from crs_ml.modeling.treeshap import pred_contribs

        matrix = np.ascontiguousarray(X.to_numpy(dtype=np.float64), dtype=np.float32)
        threads = 1 if len(X) < SMALL_INPUT_ROWS else None
        raw = pred_contribs(estimator.booster_, matrix, threads, feature_names=X.columns)
        slope, intercept = estimator.platt_slope_, estimator.platt_intercept_
        return raw[:, :-1] * slope, raw[:, -1] * slope + intercept
    if type(estimator).__name__ == "LogisticRiskModel":
        from crs_ml.modeling.explain import logistic_shap

        ex = logistic_shap(estimator, X, [str(c) for c in X.columns])
        return ex.contributions, ex.base_value
    raise TypeError(f"no exact SHAP for a {type(estimator).__name__} stack member")


def fit_blend(M: np.ndarray, y: np.ndarray, weights=None) -> tuple[np.ndarray, float]:
    """Non-negative logistic regression of y on the columns of M: (coefficients, intercept);
    ``weights`` (one > 0 per row, or None) weight each row's log-loss."""
    m = M.shape[1]
    w, total = (1.0, len(y)) if weights is None else (weights, float(np.sum(weights)))
    mean = y.mean() if weights is None else np.average(y, weights=weights)
    prevalence = float(np.clip(mean, 1e-6, 1 - 1e-6))

    def loss(theta):
        eta = theta[0] + M @ theta[1:]
        p = expit(eta)
        # log(1 + e^eta) - y * eta, stable
        value = np.sum(w * (np.logaddexp(0.0, eta) - y * eta)) / total
        grad_eta = w * (p - y) / total
        return value, np.concatenate([[grad_eta.sum()], M.T @ grad_eta])

    start = np.concatenate([[np.log(prevalence / (1 - prevalence))], np.full(m, 1.0 / m)])
    res = minimize(
        loss, start, jac=True, method="L-BFGS-B",
        bounds=[(None, None)] + [(0.0, None)] * m, options={"maxiter": 1000, "gtol": 1e-10},
    )  # fmt: skip
    return np.maximum(res.x[1:], 0.0), float(res.x[0])


#: the blending-rule families a stack may choose among (``blend_rules``)
RULE_FAMILIES = ("equal", "nnls", "single", "shrunk")
#: the shares of the free weights in the ``shrunk`` rules (the rest is equal weights)
SHRINK_SHARES = (0.25, 0.5, 0.75)


def expand_rules(families, names: list[str]) -> list[str]:
    """The candidate rules of the ``families`` (in order): ``equal``; ``nnls``; ``single`` =
    ``only:<member>`` for each member; ``shrunk`` = ``shrunk:<share>`` for each of
    :data:`SHRINK_SHARES`."""
    rules: list[str] = []
    for family in families:
        if family not in RULE_FAMILIES:
            raise ValueError(
                f"blend_rules: unknown rule family {family!r}; valid: {', '.join(RULE_FAMILIES)}"
            )
        if family == "single":
            rules += [f"only:{n}" for n in names]
        elif family == "shrunk":
            rules += [f"shrunk:{a:g}" for a in SHRINK_SHARES]
        else:
            rules.append(family)
    return rules


def fit_rule(rule: str, M: np.ndarray, y: np.ndarray, names: list[str], row_weights=None):
    """(coefficients >= 0, intercept) of a blending rule on the member log-odds ``M``:
    ``nnls`` (non-negative logistic regression on all members), ``equal`` (equal weights,
    then a Platt map), ``only:<member>`` (that member alone, with a Platt map) or
    ``shrunk:<a>`` (convex weights ``a * nnls weights + (1 - a) * equal weights``, then a
    Platt map); ``row_weights``: each row's weight in the log-loss (None: equal)."""
    if rule == "nnls":
        return fit_blend(M, y, row_weights)
    if rule == "equal":
        return fit_equal_subset(M, y, names, names, row_weights)
    if rule.startswith("only:"):
        return fit_equal_subset(M, y, names, [rule.split(":", 1)[1]], row_weights)
    equal = equal_share(names, names)
    share = float(rule.split(":", 1)[1])  # shrunk:<share>
    coef, _ = fit_blend(M, y, row_weights)
    free = coef / coef.sum() if coef.sum() > 0 else equal
    return _platt_of(M, y, share * free + (1.0 - share) * equal, row_weights)


def choose_rule(M: np.ndarray, y: np.ndarray, folds, names: list[str], families=None,
                weights=None):  # fmt: skip
    """The blending rule with the lowest held-out log-loss when each rule is fit on the other
    inner folds' out-of-fold log-odds (the same person folds); ties go to the earlier rule
    of ``families`` (default: the free weights alone). ``weights`` (one > 0 per row, or
    None) weight the fits and the held-out log-loss. Returns (rule, {rule: mean held-out
    log-loss})."""
    rules = expand_rules(families or ("nnls",), names)
    losses = {}
    for rule in rules:
        total = 0.0
        for train, valid in folds:
            w_train = None if weights is None else weights[train]
            coef, b = fit_rule(rule, M[train], y[train].astype(np.float64), names, w_train)
            eta = b + M[valid] @ coef
            loss = np.logaddexp(0.0, eta) - y[valid] * eta
            total += float(np.sum(loss if weights is None else weights[valid] * loss))
        losses[rule] = total / (len(y) if weights is None else float(np.sum(weights)))
    best = min(rules, key=lambda r: (round(losses[r], 12), rules.index(r)))
    return best, losses


def blend_from_margins(M: np.ndarray, y: np.ndarray, folds, names: list[str], families=None,
                       weights=None, few_events=None):  # fmt: skip
    """The blend fit on the members' out-of-fold log-odds ``M`` (rows, members) with the
    inner ``folds`` they came from, the rule chosen among the ``families``
    (:func:`choose_rule`), rows weighted by ``weights`` (None: equal): (rule, {rule: held-out
    log-loss}, coefficients >= 0, intercept). The risk is ``expit(intercept + M @
    coefficients)``. ``few_events``: None, or the members given equal weights instead
    (:func:`equal_weight_members`), then only a Platt map is fit (rule ``few_events:...``)."""
    if few_events is not None:
        coef, intercept = fit_equal_subset(M, y, names, few_events, weights)
        return "few_events:" + ",".join(few_events), {}, coef, intercept
    rule, losses = choose_rule(M, y, folds, names, families, weights)
    coef, intercept = fit_rule(rule, M, y.astype(np.float64), names, weights)
    return rule, losses, coef, intercept


def equal_weight_members(event_persons: int, below: int, members, names: list[str]):
    """The members the blend gives equal weights to when the training rows hold fewer than
    ``below`` persons with an event (``members``; None: all ``names``), or None when there
    are enough events for fitted weights (``below`` 0: never)."""
    if int(below or 0) <= 0 or event_persons >= int(below):
        return None
    return list(names) if not members else [n for n in names if n in set(members)]


def equal_share(names: list[str], members) -> np.ndarray:
    """Convex weights over ``names``: equal over ``members``, 0 for the others."""
    share = np.isin(np.asarray(names), list(members)).astype(np.float64)
    return share / share.sum()


def _platt_of(M: np.ndarray, y: np.ndarray, share: np.ndarray, weights=None):
    """(coefficients, intercept) of the fixed convex weights ``share`` with a Platt map of
    their blend fit on ``y`` (rows weighted by ``weights``)."""
    coef, intercept = fit_blend((M @ share)[:, None], np.asarray(y, dtype=np.float64), weights)
    return coef[0] * share, intercept


def fit_equal_subset(M: np.ndarray, y: np.ndarray, names: list[str], members: list[str],
                     weights=None) -> tuple[np.ndarray, float]:  # fmt: skip
    """(coefficients, intercept): equal weights over ``members`` (0 for the other columns of
    ``M``), then a Platt map of that blend fit on ``y`` (rows weighted by ``weights``)."""
    return _platt_of(M, y, equal_share(names, members), weights)


class StackedRiskModel(LogOddsRiskClassifier):
    """Super learner over ``members`` (see the module docstring).

    ``members``: list of ``(name, estimator, columns)``; ``columns`` the feature names or
    shell-style patterns the member reads (None: all; :func:`select_columns`). ``inner_folds``: person folds for the out-of-fold margins;
    ``random_state`` seeds them. ``blend_rules``: the rule families the blend is chosen
    among by inner-fold log-loss (:func:`expand_rules`). ``few_events_below`` (0: off) and
    ``few_events_members`` (None: all): below that many persons with an event in the
    training rows, equal weights over those members and a Platt map instead
    (:func:`equal_weight_members`).
    X must be a DataFrame (members read columns by name).

    Fitted: ``members_`` (name, fitted estimator, columns), ``weights_`` (convex, >= 0, sum
    1), ``platt_slope_``, ``platt_intercept_``, ``coef_`` (= slope x weights), ``inner_metrics_``
    ({member or 'blend': {'auroc', 'log_loss'}} on the inner out-of-fold margins),
    ``inner_margins_`` (rows, members: the out-of-fold log-odds the blend was fit on) and
    ``inner_fold_`` (each row's inner fold; -1 without folds), ``event_persons_`` (persons with
    an event in the training rows): kept in memory so a benchmark
    can replay blending rules (:func:`blend_from_margins`), never written to a model folder.
    """

    def __init__(self, members=None, inner_folds=4, blend_rules=("nnls",), few_events_below=0,
                 few_events_members=None, random_state=0):  # fmt: skip
        self.members = members
        self.inner_folds = inner_folds
        self.blend_rules = blend_rules
        self.few_events_below = few_events_below
        self.few_events_members = few_events_members
        self.random_state = random_state

    def _frame(self, X) -> pd.DataFrame:
        return pd.DataFrame(np.asarray(X, dtype=np.float64), columns=self._names())

    def _member_columns(self, columns, frame: pd.DataFrame) -> list[str]:
        from crs_ml.modeling.estimators import select_columns

        cols = select_columns(list(frame.columns), columns)
        if not cols:
            raise ValueError(f"a stack member's columns {columns} match no feature of X")
        return cols

    def fit(self, X, y, groups=None, row_weights=None):
        """``row_weights`` (optional, one per row, > 0): importance weights (e.g. censoring
        weights), passed to every member's fit on the inner folds and in the final refit, and
        weighting the blend's log-loss (rule choice and fit) and the inner metrics."""
        from crs_ml.evaluation import metrics as M
        from crs_ml.evaluation.censored import weighted_auroc

        if not self.members or len(self.members) < 2:
            raise ValueError("StackedRiskModel needs at least two members")
        names = [m[0] for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"stack member names must be unique, got {names}")
        expand_rules(self.blend_rules, names)  # an unknown family fails before any fitting
        unknown = sorted(set(self.few_events_members or ()) - set(names))
        if unknown:
            raise ValueError(f"few_events_members: {unknown} are not members of the stack "
                             f"({', '.join(names)})")  # fmt: skip
        Xv, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        y01 = encode_binary_target(self, y)
        w = check_row_weights(row_weights, Xv.shape[0])
        frame = self._frame(Xv)
        codes = group_codes(groups, frame.shape[0])
        groups_arr = codes
        specs = [(n, est, self._member_columns(cols, frame)) for n, est, cols in self.members]
        self.event_persons_ = int(np.unique(codes[y01 == 1]).size)
        few = equal_weight_members(self.event_persons_, self.few_events_below,
                                   self.few_events_members, names)  # fmt: skip
        folds = inner_group_folds(y01, codes, int(self.inner_folds), self.random_state)
        oof = np.full((len(y01), len(specs)), np.nan)
        if folds is None:
            warnings.warn(
                "StackedRiskModel: too few persons with events for inner folds; equal "
                f"weights over {', '.join(few or names)} and no Platt map",
                UserWarning,
                stacklevel=2,
            )
        else:
            for train, valid in folds:
                kw = {} if w is None else {"row_weights": w[train]}
                for j, (_, est, cols) in enumerate(specs):
                    fitted = clone(est).fit(
                        frame.iloc[train][cols], y01[train], groups=groups_arr[train], **kw
                    )
                    oof[valid, j] = member_logit(fitted, frame.iloc[valid][cols])
        self.blend_rule_, self.rule_log_loss_ = "nnls", {}
        self.inner_fold_ = np.full(len(y01), -1, dtype=np.int64)
        if folds is not None:
            for k, (_, valid) in enumerate(folds):
                self.inner_fold_[valid] = k
            self.blend_rule_, self.rule_log_loss_, coef, intercept = blend_from_margins(
                oof, y01, folds, names, tuple(self.blend_rules), w, few
            )
        else:
            coef, intercept = equal_share(names, few or names), 0.0
        self.inner_margins_ = oof
        slope = float(coef.sum())
        self.weights_ = coef / slope if slope > 0 else np.full(len(specs), 1.0 / len(specs))
        self.platt_slope_ = slope
        self.platt_intercept_ = float(intercept)
        self.coef_ = self.platt_slope_ * self.weights_
        self.inner_metrics_ = {}
        if folds is not None:
            blend = self.platt_intercept_ + oof @ self.coef_
            for label, score in [*((n, oof[:, j]) for j, (n, _, _) in enumerate(specs)),
                                 ("blend", blend)]:  # fmt: skip
                p = np.clip(expit(score), _EPS, 1 - _EPS)
                auroc = M.auroc(y01, p) if w is None else weighted_auroc(y01, p, w)
                self.inner_metrics_[label] = {
                    "auroc": float(auroc),
                    "log_loss": weighted_log_loss(y01, p, w),
                }
        kw = {} if w is None else {"row_weights": w}
        self.members_ = [
            (n, clone(est).fit(frame[cols], y01, groups=groups_arr, **kw), cols)
            for n, est, cols in specs
        ]
        return self

    # ------------------------------------------------------------------ predict
    def _check(self, X) -> pd.DataFrame:
        check_is_fitted(self, "members_")
        return self._frame(known_frame(self, X))

    def member_logits(self, X) -> dict[str, np.ndarray]:
        """{member name: its calibrated log-odds} for the rows of X."""
        frame = self._check(X)
        return {n: member_logit(est, frame[cols]) for n, est, cols in self.members_}

    def blend_margin(self, X) -> np.ndarray:
        """The blend before its Platt map, ``sum_m w_m logit_m(X)``: the stack's margin, on
        which :meth:`decision_function` is ``platt_intercept_ + platt_slope_ * margin`` and
        which a site recalibration refits the map on (as the raw booster margin of xgboost)."""
        logits = self.member_logits(X)
        out = np.zeros(len(next(iter(logits.values()))))
        for (name, _, _), w in zip(self.members_, self.weights_, strict=True):
            out = out + w * logits[name]
        return out

    def set_platt_map(self, slope: float, intercept: float) -> StackedRiskModel:
        """Replace the Platt map of the blend (a site recalibration's): the members and the
        weights stay; ``coef_`` follows. Returns self."""
        check_is_fitted(self, "members_")
        self.platt_slope_ = float(slope)
        self.platt_intercept_ = float(intercept)
        self.coef_ = self.platt_slope_ * self.weights_
        return self

    def decision_function(self, X) -> np.ndarray:
        """Blended, Platt-calibrated log-odds."""
        logits = self.member_logits(X)
        out = np.full(len(next(iter(logits.values()))), self.platt_intercept_)
        for (name, _, _), c in zip(self.members_, self.coef_, strict=True):
            out = out + c * logits[name]
        return out

    def explain_logit(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(contributions (rows, features), base (rows,)): the weighted sum of the members'
        exact contributions; ``base + contributions.sum(1)`` is the blend's log-odds."""
        frame = self._check(X)
        contrib = np.zeros(frame.shape)
        base = np.full(frame.shape[0], self.platt_intercept_)
        position = {c: i for i, c in enumerate(frame.columns)}
        for (_, est, cols), c in zip(self.members_, self.coef_, strict=True):
            phi, b = member_explanation(est, frame[cols])
            idx = np.array([position[col] for col in cols], dtype=np.int64)
            contrib[:, idx] += c * phi
            base = base + c * b
        return contrib, base

    def summary(self) -> dict[str, float]:
        """Flat numbers for the run log: each member's weight and inner-fold AUROC and
        log-loss, the blend's, and the Platt map (no patient data)."""
        check_is_fitted(self, "members_")
        out = {
            "stack_platt_slope": self.platt_slope_,
            "stack_platt_intercept": self.platt_intercept_,
        }
        if hasattr(self, "event_persons_"):  # not kept in a model folder
            out["stack_event_persons"] = float(self.event_persons_)
        # 1: too few events for fitted weights, equal weights over the few-events members
        out["stack_few_events"] = float(self.blend_rule_.startswith("few_events:"))
        for rule, loss in self.rule_log_loss_.items():
            out[f"stack_rule_log_loss_{rule.replace(':', '_')}"] = float(loss)
        for (name, _, _), w in zip(self.members_, self.weights_, strict=True):
            out[f"stack_weight_{name}"] = float(w)
        for name, values in self.inner_metrics_.items():
            for key, v in values.items():
                out[f"stack_inner_{key}_{name}"] = float(v)
        return out


# --------------------------------------------------------------------------- files
STACK_FILE = "stack.json"


def save_stack(model: StackedRiskModel, folder: Path) -> list[str]:
    """Write a fitted stack into ``folder`` (no pickle); returns the file names written."""
    folder = Path(folder)
    files = [STACK_FILE]
    entries = []
    for name, est, cols in model.members_:
        entry: dict = {"name": name, "columns": list(cols), "type": type(est).__name__}
        if isinstance(est, AdditiveRiskModel):
            entry["state"] = est.to_state()
        elif hasattr(est, "booster_"):
            file = f"member_{name}.ubj"
            booster = est.booster_
            booster.save_model(str(folder / file))
            entry.update(
                file=file,
                platt_slope=float(est.platt_slope_),
                platt_intercept=float(est.platt_intercept_),
                feature_names=booster.feature_names,
            )
            files.append(file)
        elif type(est).__name__ == "LogisticRiskModel":
            import skops.io as sio

            file = f"member_{name}.skops"
            sio.dump(est, folder / file)
            entry["file"] = file
            files.append(file)
        else:
            raise TypeError(f"stack member {name}: cannot save a {type(est).__name__}")
        entries.append(entry)
    state = {
        "feature_names": [str(c) for c in model.feature_names_in_],
        "classes": np.asarray(model.classes_).tolist(),
        "params": {
            "inner_folds": model.inner_folds,
            "blend_rules": list(model.blend_rules),
            "few_events_below": model.few_events_below,
            "few_events_members": model.few_events_members,
            "random_state": model.random_state,
        },
        "weights": model.weights_.tolist(),
        "platt_slope": model.platt_slope_,
        "platt_intercept": model.platt_intercept_,
        "inner_metrics": model.inner_metrics_,
        "blend_rule": model.blend_rule_,
        "rule_log_loss": model.rule_log_loss_,
        "members": entries,
    }
    (folder / STACK_FILE).write_text(json.dumps(state, indent=1))
    return files


def load_stack(folder: Path, trusted_types=None) -> StackedRiskModel:
    """The fitted stack :func:`save_stack` wrote into ``folder``."""
    from crs_ml.modeling.estimators import XGBRiskModel

    folder = Path(folder)
    state = json.loads((folder / STACK_FILE).read_text())
    members = []
    for entry in state["members"]:
        cols = list(entry["columns"])
        if entry["type"] == "AdditiveRiskModel":
            est = AdditiveRiskModel.from_state(entry["state"])
        elif entry["type"] == "XGBRiskModel":
            import xgboost as xgb

            booster = xgb.Booster()
            booster.load_model(str(folder / entry["file"]))
            est = XGBRiskModel()
            est.booster_ = booster
            est.best_iteration_ = booster.num_boosted_rounds() - 1
            est.platt_slope_ = float(entry["platt_slope"])
            est.platt_intercept_ = float(entry["platt_intercept"])
            est.n_features_in_ = len(cols)
            est.feature_names_in_ = np.asarray(cols, dtype=object)
            est.classes_ = np.asarray(state["classes"])
        else:
            import skops.io as sio

            file = folder / entry["file"]
            listed = sio.get_untrusted_types(file=file)
            allowed = [t for t in listed if t.startswith(tuple(trusted_types or ()))]
            if len(allowed) != len(listed):
                raise TypeError(f"{file}: untrusted types {sorted(set(listed) - set(allowed))}")
            est = sio.load(file, trusted=allowed)
        members.append((entry["name"], est, cols))
    model = StackedRiskModel(members=members, **state["params"])
    model.feature_names_in_ = np.asarray(state["feature_names"], dtype=object)
    model.n_features_in_ = len(state["feature_names"])
    model.classes_ = np.asarray(state["classes"])
    model.members_ = members
    model.weights_ = np.asarray(state["weights"], dtype=np.float64)
    model.platt_slope_ = float(state["platt_slope"])
    model.platt_intercept_ = float(state["platt_intercept"])
    model.coef_ = model.platt_slope_ * model.weights_
    model.inner_metrics_ = state.get("inner_metrics", {})
    model.blend_rule_ = state.get("blend_rule", "nnls")
    model.rule_log_loss_ = state.get("rule_log_loss", {})
    return model
