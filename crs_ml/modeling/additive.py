"""Penalised additive logistic model: one smooth term per feature, exact SHAP, JSON state.

Each feature becomes one additive term, built on the training rows only:

* **log scale** for the features named in ``log_features`` (positive, right-skewed lab
  levels; :func:`log_scale_features` derives them from the feature catalogue): ``ln(max(x,
  floor))`` with ``floor`` half the smallest positive training value;
* **natural-spline-like smooth** for features with at least ``min_distinct_for_spline``
  distinct training values: cubic B-splines (the basis of scikit-learn's ``SplineTransformer``,
  evaluated for all terms at once by :func:`spline_basis`) on
  ``spline_knots`` knots at training quantiles, continued linearly beyond the boundary knots
  (so extrapolation stays linear, as for natural splines); other features enter linearly;
* **missing indicator** when the feature is missing in some training rows (missing values
  take the training median of the transformed value, so the indicator carries the effect of
  being missing).

The design columns are standardised on the training rows and fit by L2-penalised logistic
regression; the penalty ``C`` is chosen from ``C_grid`` by mean held-out log-loss on
``inner_folds`` folds by person (``groups``), inside ``fit``, so an outer validation fold never
influences it. ``fit(..., row_weights=...)`` takes importance weights (censoring weights for
the training rows: :mod:`crs_ml.modeling.horizons`) for the standardisation, the fit and the
penalty search.

Exact SHAP: the log-odds are ``intercept + sum_k beta_k z_k`` with every standardised design
column ``z_k`` of training mean 0, so the contribution of a feature is the sum of
``beta_k z_k`` over its own columns (its term minus the term's training mean) and the base
value is the intercept: ``base + sum(contributions) = logit(risk)`` exactly
(:meth:`AdditiveRiskModel.explain_logit`).

The fitted state is plain numbers (knots, medians, floors, means, scales, coefficients):
:meth:`AdditiveRiskModel.to_state` / :meth:`AdditiveRiskModel.from_state` write and read it
as JSON, so a model folder holds no pickle.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted, validate_data

from crs_ml.modeling.base import LogOddsRiskClassifier
from crs_ml.modeling.inner_splits import (
    check_row_weights,
    encode_binary_target,
    group_codes,
    inner_group_folds,
    weighted_log_loss,
)

#: the penalties tried on the inner folds (inverse L2 strength on standardised columns)
DEFAULT_C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3)
#: units of a feature catalogue row that are not a lab level (no log scale)
NOT_A_LEVEL = ("log ratio", "count", "h", "0/1", "level", "grade", "years")


def known_frame(estimator, X) -> np.ndarray:
    """``X`` as a float matrix for a fitted estimator: a DataFrame with exactly the fitted
    feature names in order is converted directly (scoring one patient: sklearn's full input
    validation costs more than the model); anything else goes through ``validate_data``."""
    names = getattr(estimator, "feature_names_in_", None)
    if isinstance(X, pd.DataFrame) and names is not None and len(X.columns) == len(names):
        if all(a == b for a, b in zip(X.columns, names, strict=True)):
            try:
                return X.to_numpy(dtype=np.float64, na_value=np.nan)
            except (TypeError, ValueError):
                pass  # non-numeric: let validate_data raise its usual error
    return validate_data(estimator, X, reset=False, ensure_all_finite="allow-nan",
                         dtype=np.float64)  # fmt: skip


def log_scale_features(catalogue: pd.DataFrame) -> list[str]:
    """Features on the log scale: the level summaries of lab variables and the EASIX scores.

    Declared by the catalogues, not by a list here: a feature is a lab level when it
    summarises a variable of kind ``lab`` in the variable catalogue (its name starts with
    the variable's name) and its catalogue unit is that variable's canonical unit (baseline,
    last, max/min, pre-tocilizumab values; not change, slope, count or hours); the
    ``scores`` group (m-EASIX, EASIX) is a product of lab levels. All are positive and
    right-skewed."""
    from crs_ml.variables import VARIABLES

    if catalogue is None or catalogue.empty:
        return []
    labs = {
        name: {str(v.unit), str(v.display_unit)}
        for name, v in VARIABLES.items()
        if v.kind == "lab" and v.plausible[0] >= 0
    }
    out = []
    for row in catalogue.itertuples(index=False):
        name, unit = str(row.name), str(row.unit)
        if str(getattr(row, "group", "")) == "scores":
            out.append(name)
            continue
        if unit in NOT_A_LEVEL or "per h" in unit:
            continue
        owner = max((v for v in labs if name.startswith(v + "_")), key=len, default=None)
        if owner is not None and unit in labs[owner]:
            out.append(name)
    return out


def spline_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Cubic B-spline basis of each column of ``x`` (rows, terms) on its own breakpoints
    ``knots`` (terms, K, strictly increasing), continued linearly beyond the boundary knots:
    (rows, terms, K + 1) values.

    The basis of scikit-learn's ``SplineTransformer(knots=..., degree=3,
    extrapolation="linear", include_bias=False)`` (equal to it to rounding; a test checks),
    evaluated for all terms at once (de Boor's triangle, :func:`_de_boor`) instead of one
    transformer per term, which costs milliseconds per call when scoring one patient."""
    x = np.asarray(x, dtype=np.float64)
    b = np.asarray(knots, dtype=np.float64)
    d0 = (b[:, 1] - b[:, 0])[:, None]
    d1 = (b[:, -1] - b[:, -2])[:, None]
    first, last = b[:, :1], b[:, -1:]
    t = np.concatenate(
        [first - 3 * d0, first - 2 * d0, first - d0, b, last + d1, last + 2 * d1, last + 3 * d1],
        axis=1,
    )
    lo, hi = b[:, 0], b[:, -1]
    inside = np.clip(x, lo, hi)
    basis3 = _de_boor(inside, t, b)[0]
    at_lo = _de_boor(np.broadcast_to(lo, (1, len(lo))), t, b, degree2=True)[1]
    at_hi = _de_boor(np.broadcast_to(hi, (1, len(hi))), t, b, degree2=True)[1]
    slope_lo, slope_hi = _derivative(at_lo, t)[0], _derivative(at_hi, t)[0]
    beyond = (x - inside)[..., None]
    slope = np.where((x < lo)[..., None], slope_lo, np.where((x > hi)[..., None], slope_hi, 0.0))
    return (basis3 + beyond * slope)[..., :-1]


def _de_boor(x: np.ndarray, t: np.ndarray, b: np.ndarray, degree2: bool = False):
    """(degree-3 basis (rows, terms, K + 2), degree-2 basis (rows, terms, K + 3) or None) at
    ``x`` (rows, terms) within the breakpoints ``b`` (terms, K) of the knot vectors ``t``
    (terms, K + 6); the right end belongs to the last interval. Only the functions that are
    not 0 at a point are computed (de Boor's triangle, as in Piegl & Tiller's algorithm
    A2.2), then put in place: building every function at every point (the Cox-de Boor
    recursion) cost about 5 times as much. ``degree2``: also the degree-2 basis (for the
    derivative at the boundary knots)."""
    rows, terms = x.shape
    n_knots = b.shape[1]
    # the knot interval [t_i, t_i+1) holding x, i in 3 .. K + 1 (the right end: the last one)
    inner = (x[..., None] >= b[None, :, 1:]).sum(axis=2)
    i = 3 + np.minimum(inner, n_knots - 2)
    term = np.arange(terms)[None, :]
    left = [None] + [x - t[term, i + 1 - j] for j in (1, 2, 3)]
    right = [None] + [t[term, i + j] - x for j in (1, 2, 3)]
    n = [np.ones_like(x)]
    second = None
    for j in (1, 2, 3):
        saved = np.zeros_like(x)
        for r in range(j):
            temp = n[r] / (right[r + 1] + left[j - r])
            n[r] = saved + right[r + 1] * temp
            saved = left[j - r] * temp
        n.append(saved)
        if j == 2 and degree2:
            second = list(n)
    row = np.arange(rows)[:, None]
    out = np.zeros((rows, terms, n_knots + 2))
    for r in range(4):
        out[row, term, i - 3 + r] = n[r]
    if second is None:
        return out, None
    out2 = np.zeros((rows, terms, n_knots + 3))
    for r in range(3):
        out2[row, term, i - 2 + r] = second[r]
    return out, out2


def _derivative(basis2: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Derivative of the degree-3 basis from the degree-2 basis values at the same points."""
    m = basis2.shape[2] - 1
    left = 3.0 / (t[None, :, 3 : 3 + m] - t[None, :, :m])
    right = 3.0 / (t[None, :, 4 : 4 + m] - t[None, :, 1 : 1 + m])
    return basis2[..., :-1] * left - basis2[..., 1:] * right


class AdditiveRiskModel(LogOddsRiskClassifier):
    """Penalised additive logistic regression (see the module docstring).

    Parameters: ``log_features`` names of the features to log-transform (names as in
    ``feature_names_in_``, or ``x0, x1, ...`` for ndarray input; names not in the data are
    ignored, so one list serves any feature set); ``spline_knots`` knots per smooth term
    (0 or < 3: all terms linear); ``min_distinct_for_spline``; ``C_grid`` and
    ``inner_folds`` for the penalty search (one value in ``C_grid``: no search);
    ``max_iter``; ``random_state`` seeds the inner folds.

    Fitted: ``terms_`` (one dict per feature with a term), ``coef_``, ``intercept_``,
    ``C_``, ``n_iter_``, ``inner_log_loss_`` (mean held-out log-loss per C), ``design_mean_``,
    ``design_scale_``; ``get_feature_names_out()`` names the design columns.
    """

    def __init__(
        self,
        log_features=None,
        spline_knots=4,
        min_distinct_for_spline=10,
        C_grid=DEFAULT_C_GRID,
        inner_folds=4,
        max_iter=1000,
        random_state=0,
    ):
        self.log_features = log_features
        self.spline_knots = spline_knots
        self.min_distinct_for_spline = min_distinct_for_spline
        self.C_grid = C_grid
        self.inner_folds = inner_folds
        self.max_iter = max_iter
        self.random_state = random_state

    # ------------------------------------------------------------------ terms
    def _fit_terms(self, X: np.ndarray) -> None:
        logs = set(self.log_features or ())
        knots_wanted = int(self.spline_knots or 0)
        self.terms_ = []
        for j, name in enumerate(self._names()):
            col = X[:, j]
            observed = col[~np.isnan(col)]
            if observed.size == 0:
                continue  # never measured in training: no term (contribution 0)
            floor = None
            if name in logs and (observed > 0).any():
                floor = float(0.5 * observed[observed > 0].min())
                observed = np.log(np.maximum(observed, floor))
            distinct = np.unique(observed)
            indicator = bool(observed.size < col.size)
            if distinct.size < 2 and not indicator:
                continue  # constant in training
            knots = None
            if knots_wanted >= 3 and distinct.size >= int(self.min_distinct_for_spline):
                q = np.quantile(observed, np.linspace(0.0, 1.0, knots_wanted))
                q = np.unique(q)
                if q.size >= 3:
                    knots = [float(v) for v in q]
            self.terms_.append(
                {
                    "feature": name,
                    "index": j,
                    "log_floor": floor,
                    "median": float(np.median(observed)),
                    "indicator": indicator,
                    "knots": knots,
                }
            )

    def _design(self, X: np.ndarray, labels: bool = False):
        """Raw (unscaled) design matrix and the term that owns each column (all terms at
        once): the linear terms, then the spline bases grouped by their number of knots,
        then the missing indicators. ``labels=True`` returns the column names instead."""
        terms = self.terms_
        n = X.shape[0]
        if not terms:
            return [] if labels else (np.zeros((n, 0)), np.zeros(0, dtype=np.int64))
        index = np.array([t["index"] for t in terms], dtype=np.int64)
        values = X[:, index]
        missing = np.isnan(values)
        floors = np.array([np.nan if t["log_floor"] is None else t["log_floor"] for t in terms])
        logged = ~np.isnan(floors)
        with np.errstate(invalid="ignore", divide="ignore"):
            values[:, logged] = np.log(np.maximum(values[:, logged], floors[logged]))
        values = np.where(missing, np.array([t["median"] for t in terms]), values)
        blocks, owners, names = [], [], []
        linear = [i for i, t in enumerate(terms) if t["knots"] is None]
        blocks.append(values[:, linear])
        owners += linear
        names += [terms[i]["feature"] + ("_log" if logged[i] else "") for i in linear]
        sizes = sorted({len(t["knots"]) for t in terms if t["knots"] is not None})
        for size in sizes:
            group = [i for i, t in enumerate(terms) if t["knots"] is not None
                     and len(t["knots"]) == size]  # fmt: skip
            knots = np.array([terms[i]["knots"] for i in group], dtype=np.float64)
            basis = spline_basis(values[:, group], knots)  # (n, group, size + 1)
            blocks.append(basis.reshape(n, -1))
            owners += [i for i in group for _ in range(basis.shape[2])]
            names += [f"{terms[i]['feature']}_spline{j}" for i in group
                      for j in range(basis.shape[2])]  # fmt: skip
        flagged = [i for i, t in enumerate(terms) if t["indicator"]]
        blocks.append(missing[:, flagged].astype(np.float64))
        owners += flagged
        names += [f"missingindicator_{terms[i]['feature']}" for i in flagged]
        if labels:
            return names
        return np.column_stack(blocks), np.asarray(owners, dtype=np.int64)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, groups=None, row_weights=None):
        """``row_weights`` (optional, one per row, > 0): importance weights (e.g. censoring
        weights), as :meth:`crs_ml.modeling.estimators.XGBRiskModel.fit`: the standardisation
        (weighted mean and SD of the design columns), the penalised fit and the inner penalty
        search (weighted fits, weighted held-out log-loss) use them; the terms' basis (log
        floors, medians, knots) is built on the training rows unweighted."""
        from sklearn.linear_model import LogisticRegression

        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        y01 = encode_binary_target(self, y)
        codes = group_codes(groups, X.shape[0])
        w = check_row_weights(row_weights, X.shape[0])
        self._fit_terms(X)
        raw, owners = self._design(X)
        if w is None:
            mean = raw.mean(axis=0)
            scale = raw.std(axis=0)
        else:
            mean = np.average(raw, axis=0, weights=w)
            scale = np.sqrt(np.average((raw - mean) ** 2, axis=0, weights=w))
        keep = scale > 1e-12
        self.design_mean_ = mean
        self.design_scale_ = np.where(keep, scale, 1.0)
        Z = (raw - self.design_mean_) / self.design_scale_
        Z[:, ~keep] = 0.0
        self.design_owner_ = owners
        grid = [float(c) for c in (self.C_grid if np.ndim(self.C_grid) else [self.C_grid])]
        if not grid or min(grid) <= 0:
            raise ValueError(f"C_grid must list positive penalties, got {self.C_grid!r}")
        self.inner_log_loss_ = {}
        best = grid[len(grid) // 2]
        folds = None
        if len(grid) > 1 and int(self.inner_folds or 0) >= 2:
            folds = inner_group_folds(y01, codes, int(self.inner_folds), self.random_state)
            if folds is None:
                warnings.warn(
                    "AdditiveRiskModel: too few persons with events for inner folds; "
                    f"penalty C={best:g} without a search",
                    UserWarning,
                    stacklevel=2,
                )
        if folds is not None:
            losses = np.zeros(len(grid))
            for train, valid in folds:
                lr = LogisticRegression(max_iter=self.max_iter, warm_start=True)
                w_train = None if w is None else w[train]
                w_valid = None if w is None else w[valid]
                for c in sorted(grid):
                    lr.set_params(C=c).fit(Z[train], y01[train], sample_weight=w_train)
                    p = lr.predict_proba(Z[valid])[:, 1]
                    losses[grid.index(c)] += weighted_log_loss(y01[valid], p, w_valid) / len(folds)
            self.inner_log_loss_ = {f"{c:g}": float(v) for c, v in zip(grid, losses, strict=True)}
            best = grid[int(np.argmin(losses))]
        self.C_ = float(best)
        lr = LogisticRegression(C=self.C_, max_iter=self.max_iter).fit(Z, y01, sample_weight=w)
        self.coef_ = lr.coef_.ravel().astype(np.float64)
        self.coef_[~keep] = 0.0
        self.intercept_ = float(lr.intercept_[0])
        self.n_iter_ = int(np.max(lr.n_iter_))
        return self

    # ------------------------------------------------------------------ predict
    def _check_X(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        return known_frame(self, X)

    def _z(self, X: np.ndarray) -> np.ndarray:
        raw, _ = self._design(X)
        return (raw - self.design_mean_) / self.design_scale_

    def explain_logit(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(contributions (rows, features), base value (rows,)) in log-odds, exact:
        ``base + contributions.sum(1) == decision_function(X)``."""
        X = self._check_X(X)
        phi = self._z(X) * self.coef_
        contrib = np.zeros((X.shape[0], self.n_features_in_))
        cols = np.array([t["index"] for t in self.terms_], dtype=np.int64)
        if phi.shape[1]:  # sum each feature's design columns (a 0/1 matrix product)
            owner = np.zeros((phi.shape[1], self.n_features_in_))
            owner[np.arange(phi.shape[1]), cols[self.design_owner_]] = 1.0
            contrib = phi @ owner
        return contrib, np.full(X.shape[0], self.intercept_)

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of the event (the sum of the terms and the intercept)."""
        contrib, base = self.explain_logit(X)
        return base + contrib.sum(axis=1)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the design columns (spline bases, linear terms, missing indicators)."""
        check_is_fitted(self, "coef_")
        return np.asarray(self._design(np.zeros((1, self.n_features_in_)), labels=True),
                          dtype=object)  # fmt: skip

    # ------------------------------------------------------------------ JSON state
    def to_state(self) -> dict:
        """The fitted model as JSON-ready numbers and names (parameters included)."""
        check_is_fitted(self, "coef_")
        params = self.get_params(deep=False)
        params["C_grid"] = [float(c) for c in np.ravel(params["C_grid"])]
        params["log_features"] = list(params["log_features"] or [])
        return {
            "params": params,
            "feature_names": self._names(),
            "has_feature_names": hasattr(self, "feature_names_in_"),
            "classes": np.asarray(self.classes_).tolist(),
            "terms": self.terms_,
            "design_mean": self.design_mean_.tolist(),
            "design_scale": self.design_scale_.tolist(),
            "design_owner": self.design_owner_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
            "C": self.C_,
            "n_iter": self.n_iter_,
            "inner_log_loss": self.inner_log_loss_,
        }

    @classmethod
    def from_state(cls, state: dict) -> AdditiveRiskModel:
        """The fitted model :meth:`to_state` describes."""
        model = cls(**state["params"])
        names = list(state["feature_names"])
        model.n_features_in_ = len(names)
        if state.get("has_feature_names", True):
            model.feature_names_in_ = np.asarray(names, dtype=object)
        model.classes_ = np.asarray(state["classes"])
        model.terms_ = [dict(t) for t in state["terms"]]
        model.design_mean_ = np.asarray(state["design_mean"], dtype=np.float64)
        model.design_scale_ = np.asarray(state["design_scale"], dtype=np.float64)
        model.design_owner_ = np.asarray(state["design_owner"], dtype=np.int64)
        model.coef_ = np.asarray(state["coef"], dtype=np.float64)
        model.intercept_ = float(state["intercept"])
        model.C_ = float(state["C"])
        model.n_iter_ = int(state.get("n_iter", 0))
        model.inner_log_loss_ = dict(state.get("inner_log_loss", {}))
        return model
