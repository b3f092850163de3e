"""Baseline risk models: penalised logistic regression, m-EASIX and the early-fever rule.

Same interface as :class:`crs_ml.modeling.estimators.XGBRiskModel` (``fit(X, y, groups=None,
row_weights=None)``, ``predict_proba``, ``predict``; ``groups`` is accepted for a uniform call
and unused, since none of these makes an inner split). ``row_weights`` are importance weights
(e.g. censoring weights), one > 0 per row: each model weights what it fits (the logistic
regression and its scaling, m-EASIX's logistic map, the fever rule's two outcome rates);
imputation medians stay unweighted. Everything is fitted on the training rows only
(imputation medians, scaling, rates), so they can sit inside cross-validation folds.
Also importable from :mod:`crs_ml.modeling.estimators`.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from crs_ml.errors import InputError
from crs_ml.modeling.base import BinaryRiskClassifier
from crs_ml.modeling.inner_splits import check_row_weights, encode_binary_target

#: m-EASIX values are floored here before the log (0 would give -inf)
MEASIX_FLOOR = 1e-3


@contextmanager
def _quiet_empty_columns():
    """Silence the imputer's note on all-NaN training columns (dropped by design)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping features without any observed")
        yield


class _BinaryClassifier(BinaryRiskClassifier):
    def predict(self, X) -> np.ndarray:
        positive = self.predict_proba(X)[:, 1] > 0.5
        return self.classes_[positive.astype(np.int64)]


class LogisticRiskModel(_BinaryClassifier):
    """Logistic regression on all features: median imputation + missing indicators, scaled.

    Pipeline fitted in-fold: ``SimpleImputer(strategy='median', add_indicator=True)`` ->
    ``StandardScaler`` -> ``LogisticRegression``. A column that is all-NaN in the training
    rows is dropped by the imputer (its missing indicator is constant and scales to 0), so
    it cannot crash the fit; at prediction time its values are ignored.
    ``penalty``: 'l2' (default), 'l1' (liblinear) or 'none' (C ignored, unpenalised).
    ``get_feature_names_out()`` names the columns the coefficients ``coef_`` belong to.
    """

    def __init__(self, C=1.0, penalty="l2", class_weight=None, max_iter=2000, random_state=0):
        self.C = C
        self.penalty = penalty
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X, y, groups=None, row_weights=None):
        """``row_weights``: importance weights of the scaling and the logistic fit."""
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        options = {
            "l2": {"C": self.C, "l1_ratio": 0.0, "solver": "lbfgs"},
            "l1": {"C": self.C, "l1_ratio": 1.0, "solver": "liblinear"},
            "none": {"C": np.inf, "l1_ratio": 0.0, "solver": "lbfgs"},
        }
        if self.penalty not in options:
            raise ValueError(f"penalty must be one of {sorted(options)}, not {self.penalty!r}")
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        y01 = encode_binary_target(self, y)
        w = check_row_weights(row_weights, X.shape[0])
        self.pipeline_ = Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", add_indicator=True)),
                ("scale", StandardScaler()),
                (
                    "logistic",
                    LogisticRegression(
                        class_weight=self.class_weight,
                        max_iter=self.max_iter,
                        random_state=self.random_state,
                        **options[self.penalty],
                    ),
                ),
            ]
        )
        weights = {} if w is None else {"scale__sample_weight": w, "logistic__sample_weight": w}
        with _quiet_empty_columns():
            # the weighted variance of a constant column can round below 0 (its scale is 1)
            warnings.filterwarnings("ignore", "invalid value encountered in sqrt", RuntimeWarning)
            self.pipeline_.fit(X, y01, **weights)
        logistic = self.pipeline_[-1]
        self.coef_ = logistic.coef_.ravel().copy()
        self.intercept_ = float(logistic.intercept_[0])
        self.n_iter_ = int(np.max(logistic.n_iter_))
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the design columns (imputed features, then missing indicators)."""
        check_is_fitted(self, "pipeline_")
        if input_features is None:
            input_features = getattr(
                self, "feature_names_in_", np.array([f"x{i}" for i in range(self.n_features_in_)])
            )
        return self.pipeline_[:-1].get_feature_names_out(input_features)

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of the event."""
        check_is_fitted(self, "pipeline_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        with _quiet_empty_columns():
            return self.pipeline_.decision_function(X)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64)
        with _quiet_empty_columns():
            return self.pipeline_.predict_proba(X)


class _NamedColumnModel(_BinaryClassifier):
    """A baseline that reads features by name: X a DataFrame, or an ndarray with
    ``feature_names`` giving its column names."""

    def _columns(self, X, wanted: tuple[str, ...], *, fitting: bool) -> dict[str, np.ndarray]:
        if isinstance(X, pd.DataFrame):
            names = [str(c) for c in X.columns]
            values = X
        else:
            if self.feature_names is None:
                raise InputError(
                    f"{type(self).__name__} reads columns by name: pass a DataFrame or set "
                    f"feature_names (it needs {' or '.join(wanted)})"
                )
            values = check_array(X, ensure_all_finite="allow-nan", dtype=np.float64)
            names = [str(c) for c in self.feature_names]
            if values.shape[1] != len(names):
                raise InputError(
                    f"X has {values.shape[1]} columns but feature_names lists {len(names)}"
                )
        if fitting:
            self.n_features_in_ = len(names)
            if isinstance(X, pd.DataFrame):
                self.feature_names_in_ = np.asarray(names, dtype=object)
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        present = [w for w in wanted if w in names]
        if not present:
            raise InputError(
                f"{type(self).__name__} needs column {' or '.join(repr(w) for w in wanted)}",
                column=wanted[0],
            )
        out = {}
        for w in present:
            col = values[w] if isinstance(values, pd.DataFrame) else values[:, names.index(w)]
            try:
                out[w] = np.asarray(col, dtype=np.float64)
            except (TypeError, ValueError):
                raise InputError("values must be numeric", column=w) from None
        return out


class MEasixModel(_NamedColumnModel):
    """Published m-EASIX baseline (Pennisi et al., Blood Adv 2021): logistic regression on
    log(m-EASIX).

    Uses ``measix_landmark``, falling back to ``measix_baseline`` where it is missing;
    values are floored at 1e-3 before the log, and still-missing rows get the training
    median of the log value (0 if none was observed). The logistic fit is unpenalised.
    """

    def __init__(self, feature_names=None):
        self.feature_names = feature_names

    def _log_measix(self, X, fitting: bool) -> np.ndarray:
        cols = self._columns(X, ("measix_landmark", "measix_baseline"), fitting=fitting)
        value = cols.get("measix_landmark")
        fallback = cols.get("measix_baseline")
        if value is None:
            value = fallback
        elif fallback is not None:
            value = np.where(np.isnan(value), fallback, value)
        with np.errstate(invalid="ignore"):
            return np.log(np.maximum(value, MEASIX_FLOOR))

    def fit(self, X, y, groups=None, row_weights=None):
        """``row_weights``: importance weights of the logistic map (the median is unweighted)."""
        from sklearn.linear_model import LogisticRegression

        x = self._log_measix(X, fitting=True)
        y = np.asarray(y)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"X has {x.shape[0]} rows but y has {y.shape[0]}")
        y01 = encode_binary_target(self, y)
        w = check_row_weights(row_weights, x.shape[0])
        observed = x[~np.isnan(x)]
        self.impute_value_ = float(np.median(observed)) if observed.size else 0.0
        self.n_imputed_ = int(x.size - observed.size)
        x = np.where(np.isnan(x), self.impute_value_, x)
        self.logistic_ = LogisticRegression(C=np.inf, max_iter=1000).fit(
            x[:, None], y01, sample_weight=w
        )
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "logistic_")
        x = self._log_measix(X, fitting=False)
        x = np.where(np.isnan(x), self.impute_value_, x)
        return self.logistic_.predict_proba(x[:, None])


class FeverRuleModel(_NamedColumnModel):
    """Early-fever rule (after Hay et al., Blood 2017): positive when
    ``temperature_max_early >= threshold_c`` (missing = negative).

    ``predict_proba`` is the observed outcome rate among the training rows on the same side
    of the rule (``rate_positive_`` / ``rate_negative_``; the overall rate for a side with no
    training rows), so Brier and calibration are meaningful. Its AUROC equals that of the
    binary rule whenever rate_positive_ > rate_negative_ (the rule points the right way).
    """

    def __init__(self, threshold_c=38.9, feature_names=None):
        self.threshold_c = threshold_c
        self.feature_names = feature_names

    def rule(self, X, fitting: bool = False) -> np.ndarray:
        """The binary rule (True = positive) for each row."""
        temp = self._columns(X, ("temperature_max_early",), fitting=fitting)
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(temp["temperature_max_early"], nan=-np.inf) >= self.threshold_c

    def fit(self, X, y, groups=None, row_weights=None):
        """``row_weights``: the outcome rates are weighted means (the rule itself is fixed)."""
        positive = self.rule(X, fitting=True)
        y = np.asarray(y)
        if y.shape[0] != positive.shape[0]:
            raise ValueError(f"X has {positive.shape[0]} rows but y has {y.shape[0]}")
        y01 = encode_binary_target(self, y)
        w = check_row_weights(row_weights, y01.shape[0])

        def rate(m):
            return float(y01[m].mean() if w is None else np.average(y01[m], weights=w[m]))

        overall = rate(np.ones(y01.shape[0], dtype=bool))
        self.n_positive_ = int(positive.sum())
        self.n_negative_ = int((~positive).sum())
        self.rate_positive_ = rate(positive) if self.n_positive_ else overall
        self.rate_negative_ = rate(~positive) if self.n_negative_ else overall
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "rate_positive_")
        p = np.where(self.rule(X), self.rate_positive_, self.rate_negative_)
        return np.column_stack([1.0 - p, p])
