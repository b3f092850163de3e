"""Risk models behind one scikit-learn interface: xgboost + Platt, and the baselines.

Every model is a binary classifier (``classes_`` has two labels; the second is the event)
with ``fit(X, y, groups=None, row_weights=None)``, ``predict_proba`` and ``predict``
(``row_weights``: importance weights, one > 0 per row, e.g. censoring weights). ``X`` is a float
DataFrame with the feature names of the brief, or an ndarray; NaN means missing.
``groups`` are person ids, used for any split made inside ``fit`` (rows of one person never
sit on both sides); ``None`` makes every row its own group.

* :class:`XGBRiskModel` - gradient-boosted trees with early stopping and Platt calibration
  on the margin, both on a person-level inner validation split of the training data.
* :class:`~crs_ml.modeling.baselines.LogisticRiskModel`, :class:`~crs_ml.modeling.baselines.MEasixModel`,
  :class:`~crs_ml.modeling.baselines.FeverRuleModel` - see :mod:`crs_ml.modeling.baselines`.
* :func:`make_model` - build one from a :class:`crs_ml.config.ModelConfig`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from crs_ml.errors import ConfigError
from crs_ml.modeling.base import BinaryRiskClassifier
from crs_ml.modeling.inner_splits import (  # noqa: F401 - re-exported for the baselines
    check_row_weights,
    encode_binary_target,
    group_codes,
    inner_group_folds,
    inner_group_split,
)


class _IdentityScore(ClassifierMixin, BaseEstimator):
    """decision_function = the first column: Platt on precomputed out-of-fold margins."""

    def fit(self, X=None, y=None):
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X):
        return np.asarray(X, dtype=np.float64)[:, 0]

    def predict(self, X):
        return self.classes_[(self.decision_function(X) > 0).astype(np.int64)]


class _MarginClassifier(ClassifierMixin, BaseEstimator):
    """A fitted booster seen through sklearn: decision_function = raw margin (log-odds)."""

    def __init__(self, booster=None):
        self.booster = booster

    def fit(self, X=None, y=None):
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X):
        return booster_margin(self.booster, X)

    def predict(self, X):
        return self.classes_[(self.decision_function(X) > 0).astype(np.int64)]


def booster_margin(booster, X: np.ndarray) -> np.ndarray:
    """Raw margin of all trees of ``booster`` (float64), NaN = missing."""
    n_trees = booster.num_boosted_rounds()
    margin = booster.inplace_predict(
        np.asarray(X, dtype=np.float64), predict_type="margin", iteration_range=(0, n_trees)
    )
    return np.asarray(margin, dtype=np.float64).reshape(-1)


class XGBRiskModel(BinaryRiskClassifier):
    """xgboost risk model: early stopping and Platt calibration on a person-level inner split.

    ``fit`` splits the training rows by person (``groups``) into inner-train and
    inner-validation (``inner_valid_fraction`` of persons, stratified by whether the person
    has an event, seeded), fits ``xgboost.XGBClassifier(tree_method='hist')`` on inner-train
    with early stopping on inner-validation, keeps the trees up to the best iteration
    (``booster_``), and fits Platt scaling on the inner-validation MARGIN with
    ``CalibratedClassifierCV(FrozenEstimator(...), method='sigmoid')``. The calibrated risk is
    ``expit(platt_slope_ * margin + platt_intercept_)``, so TreeSHAP values of the margin
    times ``platt_slope_`` add up to the calibrated log-odds.

    ``monotone_constraints``: {feature name: +1 | -1} (names as in ``feature_names_in_``,
    or ``x0, x1, ...`` for ndarray input); an unknown name raises ConfigError.
    ``inner_folds=K`` (K >= 2) cross-fits instead of one split: K inner boosters, each
    early-stopped on its held-out persons, give out-of-fold margins for every training row;
    Platt is fit on all of them, and the final booster is trained on every row with the mean
    best number of trees. It costs K + 1 fits and uses all the data for trees and calibration.
    ``calibration='none'``: slope 1, intercept 0. When the data are too small for an inner
    split with both classes on both sides, the booster is fitted on all rows without early
    stopping or calibration and a warning says so (``calibration_fitted_`` is False).
    """

    def __init__(
        self,
        n_estimators=400,
        max_depth=3,
        learning_rate=0.05,
        subsample=0.8,
        colsample_bytree=0.8,
        min_child_weight=1.0,
        reg_lambda=1.0,
        monotone_constraints=None,
        early_stopping_rounds=30,
        inner_valid_fraction=0.25,
        inner_folds=0,
        calibration="platt",
        n_jobs=2,
        random_state=0,
    ):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.monotone_constraints = monotone_constraints
        self.early_stopping_rounds = early_stopping_rounds
        self.inner_valid_fraction = inner_valid_fraction
        self.inner_folds = inner_folds
        self.calibration = calibration
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _monotone_tuple(self) -> tuple[int, ...] | None:
        if not self.monotone_constraints:
            return None
        names = self._names()
        constraints = dict(self.monotone_constraints)
        unknown = sorted(str(k) for k in constraints if k not in names)
        if unknown:
            raise ConfigError(
                f"monotone_constraints name feature(s) not in the data: {', '.join(unknown)}"
            )
        bad = {k: v for k, v in constraints.items() if v not in (-1, 0, 1)}
        if bad:
            raise ConfigError(f"monotone_constraints values must be -1, 0 or +1, got {bad}")
        return tuple(int(constraints.get(n, 0)) for n in names)

    def fit(self, X, y, groups=None, row_weights=None):
        """``row_weights`` (optional, one per row, > 0): importance weights (e.g. censoring
        weights) of the trees' loss, early stopping and the Platt fit. Not scikit-learn's
        ``sample_weight``: that means frequency weights (weight 2 = the row twice), which
        inner splits by person cannot honour, and the estimator checks test for it."""
        from sklearn.frozen import FrozenEstimator

        if self.calibration not in ("platt", "none"):
            raise ConfigError(f"calibration must be 'platt' or 'none', not {self.calibration!r}")
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        y01 = encode_binary_target(self, y)
        codes = group_codes(groups, X.shape[0])
        monotone = self._monotone_tuple()
        w = check_row_weights(row_weights, X.shape[0])
        if self.inner_folds and int(self.inner_folds) >= 2:
            folds = inner_group_folds(y01, codes, int(self.inner_folds), self.random_state)
            if folds is not None:
                return self._fit_crossfitted(X, y01, folds, monotone, w)
            warnings.warn(
                f"XGBRiskModel: too few persons with events for {self.inner_folds} inner "
                "folds; using one inner split instead",
                UserWarning,
                stacklevel=2,
            )
        split = inner_group_split(y01, codes, self.inner_valid_fraction, self.random_state)
        if split is None:
            warnings.warn(
                "XGBRiskModel: too few persons for an inner validation split with both "
                "outcome classes; fitted on all rows without early stopping or calibration",
                UserWarning,
                stacklevel=2,
            )
            train = valid = np.arange(X.shape[0])
        else:
            train, valid = split
        stop = self.early_stopping_rounds if split is not None else None
        clf = self._classifier(self.n_estimators, stop, monotone)
        eval_set = [(X[valid], y01[valid])] if stop else None
        clf.fit(X[train], y01[train], eval_set=eval_set, verbose=False,
                **_weights(w, train, [valid] if stop else None))  # fmt: skip
        best = int(clf.best_iteration) if stop else int(self.n_estimators) - 1
        self.best_iteration_ = best
        self._set_booster(clf.get_booster()[: best + 1])
        self.inner_train_index_ = train
        self.inner_valid_index_ = valid if split is not None else np.array([], dtype=np.int64)
        self.calibration_fitted_ = split is not None and self.calibration == "platt"
        self.platt_slope_, self.platt_intercept_ = 1.0, 0.0
        if self.calibration_fitted_:
            wrapper = _MarginClassifier(self.booster_).fit()
            self._platt(FrozenEstimator(wrapper), X[valid], y01[valid],
                        None if w is None else w[valid])  # fmt: skip
        return self

    def _classifier(self, n_estimators, stop, monotone):
        import xgboost as xgb

        return xgb.XGBClassifier(
            n_estimators=n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            min_child_weight=self.min_child_weight,
            reg_lambda=self.reg_lambda,
            monotone_constraints=monotone,
            early_stopping_rounds=stop,
            tree_method="hist",
            objective="binary:logistic",
            eval_metric="logloss",
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        )

    def _set_booster(self, booster) -> None:
        self.booster_ = booster
        try:  # named trees for SHAP and model dumps; xgboost rejects names with [ ] <
            self.booster_.feature_names = self._names()
        except ValueError:
            self.booster_.feature_names = None

    def _platt(self, frozen, X_cal: np.ndarray, y_cal: np.ndarray, w_cal=None) -> None:
        """Platt scaling of the margin seen by ``frozen`` (sklearn's sigmoid calibration)."""
        from sklearn.calibration import CalibratedClassifierCV

        calibrated = CalibratedClassifierCV(
            frozen, method="sigmoid", cv=[(np.arange(len(y_cal)),) * 2]
        )
        with warnings.catch_warnings():  # the frozen margin takes no weights; Platt does
            warnings.filterwarnings("ignore", message=".*sample_weight.*")
            calibrated.fit(X_cal, y_cal, **({} if w_cal is None else {"sample_weight": w_cal}))
        sigmoid = calibrated.calibrated_classifiers_[0].calibrators[0]
        # sklearn: p = 1 / (1 + exp(a * f + b))  ->  p = expit(-a * f - b)
        self.platt_slope_ = float(-sigmoid.a_)
        self.platt_intercept_ = float(-sigmoid.b_)
        if self.platt_slope_ < 0:
            warnings.warn(
                f"XGBRiskModel: Platt slope {self.platt_slope_:.3g} < 0 on the calibration "
                "data (the booster ranks it backwards)",
                UserWarning,
                stacklevel=2,
            )

    def _fit_crossfitted(self, X, y01, folds, monotone, w=None):
        """Cross-fitting: each inner fold early-stops a booster trained on the others and
        gives out-of-fold margins; Platt is fit on all out-of-fold margins; the final booster
        is trained on all rows with the mean best number of trees."""
        from sklearn.frozen import FrozenEstimator

        oof = np.full(X.shape[0], np.nan)
        bests = []
        for train, valid in folds:
            stop = self.early_stopping_rounds or None
            clf = self._classifier(self.n_estimators, stop, monotone)
            eval_set = [(X[valid], y01[valid])] if stop else None
            clf.fit(X[train], y01[train], eval_set=eval_set, verbose=False,
                    **_weights(w, train, [valid] if stop else None))  # fmt: skip
            best = int(clf.best_iteration) if stop else int(self.n_estimators) - 1
            bests.append(best)
            oof[valid] = booster_margin(clf.get_booster()[: best + 1], X[valid])
        n_trees = max(1, int(round(float(np.mean(bests)))) + 1)
        final = self._classifier(n_trees, None, monotone)
        final.fit(X, y01, verbose=False, **_weights(w, np.arange(X.shape[0]), None))
        self.best_iteration_ = n_trees - 1
        self._set_booster(final.get_booster())
        self.inner_train_index_ = np.arange(X.shape[0])
        self.inner_valid_index_ = np.arange(X.shape[0])
        self.inner_best_iterations_ = np.array(bests)
        self.calibration_fitted_ = self.calibration == "platt"
        self.platt_slope_, self.platt_intercept_ = 1.0, 0.0
        if self.calibration_fitted_:
            self._platt(FrozenEstimator(_IdentityScore().fit()), oof[:, None], y01, w)
        return self

    def _check_X(self, X) -> np.ndarray:
        check_is_fitted(self, "booster_")
        return validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)

    def predict_margin(self, X) -> np.ndarray:
        """Raw booster margin (log-odds before calibration), trees up to best_iteration_."""
        X = self._check_X(X)
        return booster_margin(self.booster_, X)

    def calibrated_logit(self, X) -> np.ndarray:
        """Calibrated log-odds: platt_slope_ * margin + platt_intercept_."""
        margin = self.predict_margin(X)
        return self.platt_slope_ * margin + self.platt_intercept_

    def predict_proba(self, X) -> np.ndarray:
        p = expit(self.calibrated_logit(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        positive = self.predict_proba(X)[:, 1] > 0.5
        return self.classes_[positive.astype(np.int64)]


def _weights(w, train, valid) -> dict:
    """xgboost's fit keywords for row weights (none without weights)."""
    if w is None:
        return {}
    out = {"sample_weight": w[train]}
    if valid is not None:
        out["sample_weight_eval_set"] = [w[v] for v in valid]
    return out


def monotone_from_catalogue(catalogue: pd.DataFrame) -> dict[str, int]:
    """{feature: +1 | -1} from the catalogue's ``name`` and ``monotone`` columns (0s dropped)."""
    missing = [c for c in ("name", "monotone") if c not in catalogue.columns]
    if missing:
        raise ConfigError(f"feature catalogue lacks column(s) {missing} needed for monotone")
    sign = pd.to_numeric(catalogue["monotone"], errors="coerce").fillna(0).astype(int)
    keep = sign != 0
    return dict(zip(catalogue["name"][keep].astype(str), sign[keep].tolist(), strict=True))


def select_columns(names: list[str], patterns) -> list[str]:
    """The ``names`` (in their order) that match any of the shell-style ``patterns``
    (None: all names); patterns matching nothing are skipped."""
    from fnmatch import fnmatchcase

    if patterns is None:
        return list(names)
    pats = [str(p) for p in patterns]
    return [n for n in names if any(fnmatchcase(str(n), p) for p in pats)]


def feature_set_columns(names: list[str], feature_set: str) -> list[str]:
    """The ``names`` a named feature set (:data:`crs_ml.config.FEATURE_SETS`) keeps."""
    from crs_ml.config import FEATURE_SETS

    if feature_set not in FEATURE_SETS:
        raise ConfigError(f"unknown feature set '{feature_set}'; known: {', '.join(FEATURE_SETS)}")
    return select_columns(names, FEATURE_SETS[feature_set])


def make_model(model_cfg, catalogue: pd.DataFrame | None, seed: int):
    """Build the estimator a :class:`crs_ml.config.ModelConfig` describes.

    ``params`` go to the estimator unchanged (an unknown name is a ConfigError listing the
    valid ones); ``random_state`` defaults to ``seed``. For ``xgboost``: ``calibration`` comes
    from ``model_cfg.calibration`` and, when ``model_cfg.monotone`` is true, the monotone
    constraints from the catalogue's ``monotone`` column (the non-zero entries). For
    ``additive``: the log-scale features from the catalogue (:func:`log_scale_features`)
    unless ``params.log_features`` names them. For ``stack``: one model per entry of
    ``model_cfg.members``, each reading the columns of its ``feature_set``.
    """
    from crs_ml.config import FEATURE_SETS
    from crs_ml.modeling.additive import AdditiveRiskModel, log_scale_features
    from crs_ml.modeling.baselines import FeverRuleModel, LogisticRiskModel, MEasixModel
    from crs_ml.modeling.stack import StackedRiskModel

    registry = {
        "xgboost": XGBRiskModel,
        "logistic": LogisticRiskModel,
        "measix": MEasixModel,
        "fever_rule": FeverRuleModel,
        "additive": AdditiveRiskModel,
        "stack": StackedRiskModel,
    }
    if model_cfg.type not in registry:
        raise ConfigError(
            f"model.type '{model_cfg.type}' is unknown; valid: {', '.join(sorted(registry))}"
        )
    cls = registry[model_cfg.type]
    valid = sorted(cls().get_params(deep=False))
    reserved = {"calibration": "model.calibration"} if cls is XGBRiskModel else {}
    params = dict(model_cfg.params)
    for name in params:
        if name not in valid or name in reserved:
            hint = f" (set {reserved[name]} instead)" if name in reserved else ""
            raise ConfigError(
                f"model.params.{name}: not a parameter of model type '{model_cfg.type}'"
                f"{hint}; valid: {', '.join(p for p in valid if p not in reserved)}"
            )
    kwargs = {"random_state": seed} if "random_state" in valid else {}
    if cls is AdditiveRiskModel and "log_features" not in params:
        kwargs["log_features"] = log_scale_features(catalogue)
    if cls is StackedRiskModel:
        if "members" in params:
            raise ConfigError("a stack's members are model.members, not model.params.members")
        kwargs["members"] = [
            (
                name,
                make_model(member, catalogue, seed),
                None if member.feature_set == "all" else list(FEATURE_SETS[member.feature_set]),
            )
            for name, member in model_cfg.members.items()
        ]
    if cls is XGBRiskModel:
        kwargs["calibration"] = model_cfg.calibration
        if model_cfg.monotone:
            if "monotone_constraints" in params:
                raise ConfigError(
                    "model.monotone: true takes the constraints from the feature catalogue; "
                    "do not also set model.params.monotone_constraints"
                )
            if catalogue is None:
                raise ConfigError("model.monotone: true needs the feature catalogue")
            kwargs["monotone_constraints"] = monotone_from_catalogue(catalogue)
    kwargs.update(params)
    return cls(**kwargs)


_BASELINES = ("LogisticRiskModel", "MEasixModel", "FeverRuleModel")


def __getattr__(name: str):
    # the baselines live in crs_ml.modeling.baselines (which imports the helpers above); re-exported
    # lazily so ``from crs_ml.modeling.estimators import LogisticRiskModel`` works without an import cycle
    if name in _BASELINES:
        from crs_ml.modeling import baselines

        return getattr(baselines, name)
    raise AttributeError(f"module 'crs_ml.modeling.estimators' has no attribute {name!r}")
