"""FROZEN ORACLE (tests only): the driver texts of the scores table as they were built before
the column-wise rewrite (per feature group and per row), kept unchanged except for its imports,
so parity tests can compare the package's driver strings with it byte for byte. Do not edit;
do not import from the package.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crs_ml.scoring.drivers import (
    OXYGEN_LEVELS,
    VASOPRESSOR_LEVELS,
    FeatureTexts,
    not_measured,
)


def format_numbers(values) -> np.ndarray:
    """:func:`format_number` over an array (object array of text), vectorised by class."""
    v = np.asarray(values, dtype=np.float64).ravel()
    out = np.full(v.shape, "not measured", dtype=object)
    finite = np.isfinite(v)
    ax = np.abs(np.where(finite, v, 0.0))
    whole = finite & ((ax >= 1e15) | ((v == np.round(v)) & (ax >= 1)))
    rest = finite & ~whole
    # one comprehension per class, each value formatted once (no function call per value)
    idx = np.flatnonzero(whole | (rest & (ax >= 100)))
    if len(idx):
        out[idx] = [f"{x:,.0f}" for x in v[idx].tolist()]
    idx = np.flatnonzero(rest & (ax >= 10) & (ax < 100))
    if len(idx):
        out[idx] = [f"{x:,.1f}".rstrip("0").rstrip(".") for x in v[idx].tolist()]
    idx = np.flatnonzero(rest & (ax >= 1) & (ax < 10))
    if len(idx):
        out[idx] = [f"{x:.2f}".rstrip("0").rstrip(".") for x in v[idx].tolist()]
    idx = np.flatnonzero(rest & (ax > 0) & (ax < 1))
    if len(idx):
        out[idx] = [f"{x:.3g}" for x in v[idx].tolist()]
    out[finite & (v == 0)] = "0"
    return out


def format_values(kind: str, unit: str, values) -> np.ndarray:
    """Values of one feature kind as shown in drivers (object array of text)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(v)
    out = np.full(v.shape, "never" if kind == "since" else "not measured", dtype=object)
    f = np.flatnonzero(finite)
    x = v[f]
    if kind == "flag":
        out[f] = np.where(x >= 0.5, "yes", "no")
    elif kind in ("oxygen", "vaso"):
        names = OXYGEN_LEVELS if kind == "oxygen" else VASOPRESSOR_LEVELS
        level = np.round(x)
        text = format_numbers(x)
        out[f] = [names.get(int(lv), t) for lv, t in zip(level.tolist(), text, strict=True)]
    elif kind == "fold":
        out[f] = "x" + format_numbers(np.exp(x))
    else:
        text = format_numbers(x)
        if kind == "signed":
            text = np.where(x > 0, "+" + text, text)
        out[f] = text + f" {unit}" if unit else text
    return out


def _group_line(title: str, contributions: np.ndarray, mask: np.ndarray, texts: FeatureTexts,
                listed: int = 3) -> np.ndarray:  # fmt: skip
    """Per row ``"<title>: A, B, C and 2 more (+0.31 together)"`` over the features in
    ``mask`` (named by input, largest |sum| first, ties in name order), or "" when they
    contribute nothing. Only the rows with such a contribution are worked on."""
    rows = len(contributions)
    line = np.full(rows, "", dtype=object)
    c = np.where(mask & ~np.isnan(contributions), contributions, 0.0)
    nonzero = c != 0
    todo = np.flatnonzero(nonzero.any(axis=1))
    if len(todo) == 0:
        return line
    # per input: the sum of its features' contributions and whether any contributes
    order = np.argsort(texts.group_codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(texts.group_codes[order]) != 0])
    c, nonzero = c[todo], nonzero[todo]
    by_group = np.add.reduceat(c[:, order], starts, axis=1)
    used = np.logical_or.reduceat(nonzero[:, order], starts, axis=1)
    strength = np.where(used, np.abs(by_group), -1.0)
    # the ``listed`` strongest, ties in name order (as a stable sort): the first maximum, then
    # the first maximum of the rest, ...
    picks = np.empty((len(todo), min(listed, strength.shape[1])), dtype=np.int64)
    at = np.arange(len(todo))
    for k in range(picks.shape[1]):
        picks[:, k] = strength.argmax(axis=1)
        strength[at, picks[:, k]] = -np.inf
    top = picks.tolist()
    n_used = used.sum(axis=1).tolist()
    total = c.sum(axis=1).tolist()
    names = texts.group_names.tolist()
    line[todo] = [
        f"{title}: {', '.join(names[g] for g in t[:m])}{f' and {m - listed} more' if m > listed else ''}"
        f" ({s:+.2f}{' together' if m > 1 else ''})"
        for t, m, s in zip(top, n_used, total, strict=True)
    ]  # fmt: skip
    return line


def top_drivers(
    X: pd.DataFrame,
    contributions: np.ndarray,
    names: list[str],
    landmark_h: np.ndarray,
    n: int = 3,
    catalogue: pd.DataFrame | None = None,
    imputed: np.ndarray | None = None,
    texts: FeatureTexts | None = None,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """One driver string per row: the top ``n`` measured features by |contribution|, largest
    first, then one line for the inputs not measured yet and one for those imputed with the
    training median (``imputed``: (rows, features) mask), each with their summed contribution.

    Only the presentation groups: the SHAP values themselves are untouched. Vectorised per
    driver slot and feature (no per-row Python loop). ``texts``: :meth:`FeatureTexts.of`
    ``(names, catalogue)`` when the caller holds it (scoring keeps one per model), ``values``
    ``X[names]`` as a float matrix when it holds that."""
    rows = len(X)
    out = np.full(rows, "", dtype=object)
    if rows == 0 or n <= 0 or not np.isfinite(contributions).any():
        return out
    texts = texts or FeatureTexts.of(names, catalogue)
    values = X[names].to_numpy(dtype=np.float64, na_value=np.nan) if values is None else values
    absent = not_measured(X, names, texts=texts, values=values)
    if imputed is None:
        imputed = np.zeros_like(absent)
    absent &= ~imputed
    out = _measured_drivers(values, np.where(absent | imputed, 0.0, contributions),
                            landmark_h, n, texts.specs)  # fmt: skip
    for title, mask in (("not measured yet", absent), ("imputed (training median)", imputed)):
        line = _group_line(title, contributions, mask, texts)
        has = np.flatnonzero(line != "")
        out[has] = [f"{o}; {t}" if o else t for o, t in zip(out[has], line[has], strict=True)]
    return out


def _measured_drivers(values, contributions, landmark_h, n, specs) -> np.ndarray:
    """The top ``n`` features by |contribution| (zero contributions never listed)."""
    rows, n_features = contributions.shape
    out = np.full(rows, "", dtype=object)
    n = min(n, n_features)
    abs_c = np.abs(contributions)
    abs_c[np.isnan(abs_c)] = 0.0
    if n < n_features:
        top = np.argpartition(-abs_c, n - 1, axis=1)[:, :n]
    else:
        top = np.tile(np.arange(n_features), (rows, 1))
    order = np.argsort(-np.take_along_axis(abs_c, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    row_index = np.arange(rows)[:, None]
    values = values[row_index, top]
    shap = contributions[row_index, top]
    uniq, which = np.unique(np.asarray(landmark_h, dtype=np.float64), return_inverse=True)
    which = which.ravel()
    lm_text = list(format_numbers(uniq))
    for k in range(n):
        s = shap[:, k]
        valid = np.flatnonzero(np.isfinite(s) & (s != 0))  # only listed slots are formatted
        if len(valid) == 0:
            continue
        feature = top[valid, k]
        piece = np.empty(len(valid), dtype=object)
        by_feature = np.argsort(feature, kind="stable")
        bounds = np.flatnonzero(np.r_[True, np.diff(feature[by_feature]) != 0, True])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            sel = by_feature[a:b]
            label, kind, unit = specs[feature[sel[0]]]
            if "{L}" in label:
                labels = np.array([label.replace("{L}", t) for t in lm_text], dtype=object)
                label = labels[which[valid[sel]]]
            piece[sel] = label + " = " + format_values(kind, unit, values[valid[sel], k])
        text = [f"{p} ({x:+.2f})" for p, x in zip(piece.tolist(), s[valid].tolist(), strict=True)]
        if k == 0:
            out[valid] = text
        else:
            out[valid] = [f"{o}; {t}" if o else t for o, t in zip(out[valid], text, strict=True)]
    return out
