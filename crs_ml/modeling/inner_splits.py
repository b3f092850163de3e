"""Row and person bookkeeping inside a model's ``fit``: targets, person codes, inner splits.

Rows of one person (``groups``) never sit on both sides of an inner split, so early stopping
and calibration are always measured on persons the trees did not see.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.multiclass import check_classification_targets

from crs_ml.errors import InputError


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


def inner_group_folds(
    y: np.ndarray, codes: np.ndarray, n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """``n_folds`` (train, valid) row splits by group, stratified at group level.

    Groups with and without an event are shuffled separately (seeded) and dealt round-robin
    to the folds. Returns None when some fold would lack an outcome class on either side.
    """
    n_groups = int(codes.max()) + 1
    has_event = np.bincount(codes, weights=y, minlength=n_groups) > 0
    rng = np.random.default_rng(seed)
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    start = 0
    for stratum in (has_event, ~has_event):
        members = rng.permutation(np.flatnonzero(stratum))
        fold_of_group[members] = (np.arange(members.size) + start) % n_folds
        start += members.size
    fold = fold_of_group[codes]
    out = []
    for k in range(n_folds):
        valid = np.flatnonzero(fold == k)
        train = np.flatnonzero(fold != k)
        if np.unique(y[valid]).size < 2 or np.unique(y[train]).size < 2:
            return None
        out.append((train, valid))
    return out


def check_row_weights(row_weights, n_rows: int) -> np.ndarray | None:
    """``row_weights`` as float64 (None stays None): importance weights, one finite value > 0
    per row, e.g. censoring weights. Not scikit-learn's ``sample_weight`` of frequencies: a
    model's inner splits stay by person whatever the weights."""
    if row_weights is None:
        return None
    w = np.asarray(row_weights, dtype=np.float64)
    if w.shape != (n_rows,) or not (np.isfinite(w) & (w > 0)).all():
        raise ValueError(f"row_weights must be one finite value > 0 per row ({n_rows})")
    return w


def weighted_log_loss(y01: np.ndarray, p: np.ndarray, w: np.ndarray | None) -> float:
    """Mean log-loss of risks ``p`` (clipped to [1e-12, 1 - 1e-12]), weighted by ``w``
    (None: unweighted)."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    loss = -(y01 * np.log(p) + (1 - y01) * np.log1p(-p))
    return float(np.mean(loss) if w is None else np.sum(w * loss) / np.sum(w))
