"""Risk models behind one scikit-learn interface: xgboost + Platt, and the baselines.

Every model is a binary classifier (``classes_`` has two labels; the second is the event)
with ``fit(X, y, groups=None)``, ``predict_proba`` and ``predict``. ``X`` is a float
DataFrame with the feature names of the brief, or an ndarray; NaN means missing.
``groups`` are person ids, used for any split made inside ``fit`` (rows of one person never
sit on both sides); ``None`` makes every row its own group.

* :class:`XGBRiskModel` - gradient-boosted trees with early stopping and Platt calibration
  on the margin, both on a person-level inner validation split of the training data.
* :class:`~crs_ml.baselines.LogisticRiskModel`, :class:`~crs_ml.baselines.MEasixModel`,
  :class:`~crs_ml.baselines.FeverRuleModel` - see :mod:`crs_ml.baselines`.
* :func:`make_model` - build one from a :class:`crs_ml.config.ModelConfig`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from crs_ml.errors import ConfigError, InputError


def encode_binary_target(estimator: BaseEstimator, y) -> np.ndarray:
    """Set ``estimator.classes_`` and return y as 0/1 (1 = ``classes_[1]``, the event)."""
    check_classification_targets(y)
    classes = np.unique(y)
    if classes.size < 2:
        raise ValueError(
            f"{type(estimator).__name__} needs both outcome classes; only one class "
            f"({classes[0]!r}) is present in y"
        )
    if classes.size > 2:
        raise ValueError(
            f"Only binary classification is supported. {type(estimator).__name__} predicts a "
            f"binary outcome; y has {classes.size} classes"
        )
    estimator.classes_ = classes
    return (np.asarray(y) == classes[1]).astype(np.int64)


def group_codes(groups, n_rows: int) -> np.ndarray:
    """Integer codes of person ids (``None``: one group per row)."""
    if groups is None:
        return np.arange(n_rows)
    groups = np.asarray(groups)
    if groups.shape != (n_rows,):
        raise InputError(f"groups must have one person id per row ({n_rows}), got {groups.shape}")
    codes = pd.factorize(groups)[0]
    if (codes < 0).any():
        raise InputError("groups (person ids) contain missing values")
    return codes


def inner_group_split(
    y: np.ndarray, codes: np.ndarray, valid_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Split rows into (inner_train, inner_valid) by group, stratified at group level.

    Groups with at least one event and groups without are shuffled separately (seeded) and
    ``valid_fraction`` of each (at least one, never all) goes to validation. Returns None
    when no split leaves both outcome classes on both sides.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"inner_valid_fraction must be in (0, 1), got {valid_fraction}")
    n_groups = int(codes.max()) + 1
    has_event = np.bincount(codes, weights=y, minlength=n_groups) > 0
    rng = np.random.default_rng(seed)
    chosen = []
    for stratum in (has_event, ~has_event):
        members = np.flatnonzero(stratum)
        if members.size >= 2:
            k = int(min(members.size - 1, max(1, round(valid_fraction * members.size))))
            chosen.append(rng.permutation(members)[:k])
    if not chosen:
        return None
    in_valid = np.isin(codes, np.concatenate(chosen))
    train, valid = np.flatnonzero(~in_valid), np.flatnonzero(in_valid)
    if np.unique(y[train]).size < 2 or np.unique(y[valid]).size < 2:
        return None
    return train, valid


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


class XGBRiskModel(ClassifierMixin, BaseEstimator):
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
        self.calibration = calibration
        self.n_jobs = n_jobs
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.classifier_tags.multi_class = False
        return tags

    def _names(self) -> list[str]:
        if hasattr(self, "feature_names_in_"):
            return [str(c) for c in self.feature_names_in_]
        return [f"x{i}" for i in range(self.n_features_in_)]

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

    def fit(self, X, y, groups=None):
        import xgboost as xgb
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.frozen import FrozenEstimator

        if self.calibration not in ("platt", "none"):
            raise ConfigError(f"calibration must be 'platt' or 'none', not {self.calibration!r}")
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        y01 = encode_binary_target(self, y)
        codes = group_codes(groups, X.shape[0])
        monotone = self._monotone_tuple()
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
        clf = xgb.XGBClassifier(
            n_estimators=self.n_estimators,
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
        eval_set = [(X[valid], y01[valid])] if stop else None
        clf.fit(X[train], y01[train], eval_set=eval_set, verbose=False)
        best = int(clf.best_iteration) if stop else int(self.n_estimators) - 1
        self.best_iteration_ = best
        self.booster_ = clf.get_booster()[: best + 1]
        try:  # named trees for SHAP and model dumps; xgboost rejects names with [ ] <
            self.booster_.feature_names = self._names()
        except ValueError:
            self.booster_.feature_names = None
        self.inner_train_index_ = train
        self.inner_valid_index_ = valid if split is not None else np.array([], dtype=np.int64)
        self.calibration_fitted_ = split is not None and self.calibration == "platt"
        self.platt_slope_, self.platt_intercept_ = 1.0, 0.0
        if self.calibration_fitted_:
            wrapper = _MarginClassifier(self.booster_).fit()
            calibrated = CalibratedClassifierCV(
                FrozenEstimator(wrapper), method="sigmoid", cv=[(np.arange(valid.size),) * 2]
            )
            calibrated.fit(X[valid], y01[valid])
            sigmoid = calibrated.calibrated_classifiers_[0].calibrators[0]
            # sklearn: p = 1 / (1 + exp(a * f + b))  ->  p = expit(-a * f - b)
            self.platt_slope_ = float(-sigmoid.a_)
            self.platt_intercept_ = float(-sigmoid.b_)
            if self.platt_slope_ < 0:
                warnings.warn(
                    f"XGBRiskModel: Platt slope {self.platt_slope_:.3g} < 0 on the inner "
                    "validation part (the booster ranks it backwards)",
                    UserWarning,
                    stacklevel=2,
                )
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


def monotone_from_catalogue(catalogue: pd.DataFrame) -> dict[str, int]:
    """{feature: +1 | -1} from the catalogue's ``name`` and ``monotone`` columns (0s dropped)."""
    missing = [c for c in ("name", "monotone") if c not in catalogue.columns]
    if missing:
        raise ConfigError(f"feature catalogue lacks column(s) {missing} needed for monotone")
    sign = pd.to_numeric(catalogue["monotone"], errors="coerce").fillna(0).astype(int)
    keep = sign != 0
    return dict(zip(catalogue["name"][keep].astype(str), sign[keep].tolist(), strict=True))


def make_model(model_cfg, catalogue: pd.DataFrame | None, seed: int):
    """Build the estimator a :class:`crs_ml.config.ModelConfig` describes.

    ``params`` go to the estimator unchanged (an unknown name is a ConfigError listing the
    valid ones); ``random_state`` defaults to ``seed``. For ``xgboost``: ``calibration`` comes
    from ``model_cfg.calibration`` and, when ``model_cfg.monotone`` is true, the monotone
    constraints from the catalogue's ``monotone`` column (the non-zero entries).
    """
    from crs_ml.baselines import FeverRuleModel, LogisticRiskModel, MEasixModel

    registry = {
        "xgboost": XGBRiskModel,
        "logistic": LogisticRiskModel,
        "measix": MEasixModel,
        "fever_rule": FeverRuleModel,
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
    # the baselines live in crs_ml.baselines (which imports the helpers above); re-exported
    # lazily so ``from crs_ml.models import LogisticRiskModel`` works without an import cycle
    if name in _BASELINES:
        from crs_ml import baselines

        return getattr(baselines, name)
    raise AttributeError(f"module 'crs_ml.models' has no attribute {name!r}")
