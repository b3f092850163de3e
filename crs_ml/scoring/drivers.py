"""Human-readable top drivers of a score, e.g. ``IL-6 max to 24h = 1,240 pg/mL (+0.92)``.

A driver is one feature: its clinical label (variable display names and units from
:mod:`crs_ml.variables`, the feature's meaning from the feature catalogue), its value as the
model saw it, and its SHAP contribution in calibrated log-odds (signed, 2 decimals). The top
``n`` features by absolute contribution are listed, largest first, separated by ``"; "``;
features contributing exactly 0 are never listed. Only measured values are listed this way:
the contributions of inputs not measured yet are summed into one line (``not measured yet:
Ferritin, LDH (+0.31 together)``), and so are those of inputs imputed with the training
median (:mod:`crs_ml.modeling.completeness`), so that an absence never reads as a finding.

Numbers: thousands separators, integers as integers, otherwise 3 significant digits at most
1 decimal above 10 (``1,240``, ``38.9``, ``1.5``, ``0.123``). Lab changes (``*_change``,
a log ratio) are shown as the fold change ``last / baseline`` (``x3.2``), flags as yes/no,
support levels by name, a missing value as ``not measured`` (``never`` for the hours since a
treatment or since CRS onset).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from crs_ml.variables import VARIABLES, catalogue_version

OXYGEN_LEVELS = {0: "none", 1: "low flow", 2: "high flow", 3: "positive pressure"}
VASOPRESSOR_LEVELS = {0: "none", 1: "one", 2: "several at once"}
_UNIT_TEXT = {"degC": "°C", "years": "years", "h": "h"}
_SPECIAL: dict[str, tuple[str, str, str]] = {
    # name: (label, kind, unit); kind: number | signed | flag | count | fold | oxygen | vaso |
    # since (hours since an event; missing = never)
    "fever_onset_h": ("first fever (h after infusion; L if none)", "number", "h"),
    "fever_onset_censored": ("no fever yet", "flag", ""),
    "febrile_hours": ("hours febrile", "number", "h"),
    "temperature_max_early": ("max temperature early", "number", "°C"),
    "high_fever_early": ("high fever early", "flag", ""),
    "febrile_now": ("febrile now", "flag", ""),
    "oxygen_level": ("oxygen support so far", "oxygen", ""),
    "vasopressor_level": ("vasopressors so far", "vaso", ""),
    "astct_grade_so_far": ("ASTCT grade so far", "count", ""),
    "hours_since_crs_onset": ("hours since CRS onset", "since", "h"),
    "costim_cd28": ("CD28-costimulated product", "flag", ""),
    "age_years": ("age", "number", "years"),
    "sex_female": ("female", "flag", ""),
    "landmark_h": ("landmark (hours since infusion)", "number", "h"),
    "measix_baseline": ("m-EASIX baseline", "number", ""),
    "measix_landmark": ("m-EASIX latest", "number", ""),
    "easix_baseline": ("EASIX baseline", "number", ""),
    "easix_landmark": ("EASIX latest", "number", ""),
}


def format_numbers(values) -> np.ndarray:
    """:func:`format_number` over an array (object array of text), vectorised by class."""
    v = np.asarray(values, dtype=np.float64).ravel()
    out = np.full(v.shape, "not measured", dtype=object)
    finite = np.isfinite(v)
    ax = np.abs(np.where(finite, v, 0.0))
    whole = finite & ((ax >= 1e15) | ((v == np.round(v)) & (ax >= 1)))
    rest = finite & ~whole
    classes = (
        (whole | (rest & (ax >= 100)), lambda x: f"{x:,.0f}"),
        (rest & (ax >= 10) & (ax < 100), lambda x: f"{x:,.1f}".rstrip("0").rstrip(".")),
        (rest & (ax >= 1) & (ax < 10), lambda x: f"{x:.2f}".rstrip("0").rstrip(".")),
        (rest & (ax > 0) & (ax < 1), lambda x: f"{x:.3g}"),
    )
    for mask, fmt in classes:
        idx = np.flatnonzero(mask)
        if len(idx):
            out[idx] = [fmt(x) for x in v[idx].tolist()]
    out[finite & (v == 0)] = "0"
    return out


def format_number(x: float) -> str:
    """``1240.0`` -> ``1,240``; ``38.94`` -> ``38.9``; ``1.5`` -> ``1.5``; ``0.1234`` -> ``0.123``."""
    return format_numbers(np.array([np.nan if x is None else x], dtype=np.float64))[0]


@lru_cache(maxsize=4)
def _by_length(version: int) -> tuple[str, ...]:
    """Catalogue variable names, longest first (``crp_hs`` before ``crp``)."""
    return tuple(sorted(VARIABLES, key=len, reverse=True))


def _variable_spec(name: str) -> tuple[str, str, str] | None:
    return _variable_spec_of(name, catalogue_version())


@lru_cache(maxsize=4096)
def _variable_spec_of(name: str, version: int) -> tuple[str, str, str] | None:
    for var in _by_length(version):
        if not name.startswith(var + "_"):
            continue
        v = VARIABLES[var]
        display, unit = v.display, v.display_unit
        stat = name[len(var) + 1 :]
        lab = v.kind == "lab"
        specs = {
            "baseline": (f"{display} baseline", "number", unit),
            "last": (f"{display} latest", "number", unit),
            "max": (f"{display} max to {{L}}h", "number", unit),
            "min": (f"{display} min to {{L}}h", "number", unit),
            "change": (f"{display} vs baseline", "fold", "")
            if lab
            else (f"{display} change vs baseline", "signed", unit),
            "slope_24h": (f"{display} trend last 24h", "signed", f"{unit}/h"),
            "n": (f"{display} results to {{L}}h", "count", ""),
            "hours_since_last": (f"hours since last {display}", "number", "h"),
            "measured": (f"{display} measured", "flag", ""),
            "pretoci_max": (f"{display} max before tocilizumab", "number", unit),
            "pretoci_last": (f"{display} latest before tocilizumab", "number", unit),
        }
        return specs.get(stat)
    return None


def feature_spec(name: str, catalogue: pd.DataFrame | None = None) -> tuple[str, str, str]:
    """(label template with ``{L}`` for the landmark, kind, unit) of one feature."""
    if name in _SPECIAL:
        return _SPECIAL[name]
    spec = _variable_spec(name)
    if spec is not None:
        return spec
    for drug in ("tocilizumab", "corticosteroid", "antipyretic"):
        if name == f"{drug}_given":
            return (f"{drug} given", "flag", "")
        if name == f"hours_since_{drug}":
            return (f"hours since {drug}", "since", "h")
    if name.startswith("product_"):
        return (f"product {name[8:].replace('_', '-')}", "flag", "")
    if name.startswith("disease_"):
        return (f"disease {name[8:].replace('_', '-').upper()}", "flag", "")
    unit = ""
    if catalogue is not None and "unit" in catalogue and name in set(catalogue["name"]):
        unit = str(catalogue.loc[catalogue["name"] == name, "unit"].iloc[0])
        unit = _UNIT_TEXT.get(unit, unit)
        if unit in ("0/1", "count", "level", "grade"):
            unit = ""
    return (name.replace("_", " "), "number", unit)


def format_value(name: str, value: float, catalogue: pd.DataFrame | None = None) -> str:
    """The feature value as shown in a driver (with its unit)."""
    _, kind, unit = feature_spec(name, catalogue)
    return format_values(kind, unit, np.array([np.nan if value is None else value]))[0]


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


def input_name(name: str, catalogue: pd.DataFrame | None = None, part: bool = True) -> str:
    """The clinical input behind a feature, as named in the grouped lines of the drivers:
    the variable's display name (``IL-6`` for its latest, max ... features; ``IL-6 baseline``
    for its baseline and change, ``IL-6 trend`` for its 24 h slope), else the feature label."""
    for var in _by_length(catalogue_version()):
        if name.startswith(var + "_") and _variable_spec(name) is not None:
            stat = name[len(var) + 1 :]
            return VARIABLES[var].display + (_INPUT_PARTS.get(stat, "") if part else "")
    if name in _INPUT_NAMES:
        return _INPUT_NAMES[name]
    return feature_spec(name, catalogue)[0].replace(" to {L}h", "")


_INPUT_NAMES = {"age_years": "age", "sex_female": "sex", "costim_cd28": "product"}
#: the part of a variable a missing feature stands for (else the variable as a whole)
_INPUT_PARTS = {"baseline": " baseline", "change": " baseline", "slope_24h": " trend"}


@dataclass(frozen=True, eq=False)
class FeatureTexts:
    """What the drivers need of each model feature, worked out once per model
    (:meth:`of`) instead of on every call: label specs, which values mean "not measured",
    and the clinical input each feature belongs to (with and without its part)."""

    names: tuple[str, ...]
    specs: tuple[tuple[str, str, str], ...]  #: :func:`feature_spec` of each feature
    nan_is_absent: np.ndarray  #: NaN means not measured (not the ``never`` of ``since``)
    zero_is_absent: np.ndarray  #: a count of results or a measured flag
    groups: tuple[str, ...]  #: :func:`input_name` (with the part: ``IL-6 baseline``)
    inputs: tuple[str, ...]  #: :func:`input_name` without the part (``IL-6``)

    @classmethod
    def of(cls, names: list[str], catalogue: pd.DataFrame | None = None) -> FeatureTexts:
        specs = tuple(feature_spec(name, catalogue) for name in names)
        return cls(
            tuple(names),
            specs,
            np.array([spec[1] != "since" for spec in specs], dtype=bool),
            np.array(
                [_variable_spec(n) is not None and n.endswith(("_n", "_measured")) for n in names],
                dtype=bool,
            ),  # fmt: skip
            tuple(input_name(name, catalogue) for name in names),
            tuple(input_name(name, catalogue, part=False) for name in names),
        )


def _values(X: pd.DataFrame, names: list[str]) -> np.ndarray:
    """``X[names]`` as floats (no column selection when X already has exactly those)."""
    frame = X if len(X.columns) == len(names) and list(X.columns) == list(names) else X[names]
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)


def not_measured(
    X: pd.DataFrame, names: list[str], catalogue=None, texts: FeatureTexts | None = None
) -> np.ndarray:
    """(rows, features) mask of values that say nothing was measured: NaN (but not the
    ``never`` of the hours since a treatment), and a variable's count of results or its
    measured flag at 0. ``texts``: :meth:`FeatureTexts.of` ``(names, catalogue)``, if held."""
    texts = texts or FeatureTexts.of(names, catalogue)
    values = _values(X, names)
    return (np.isnan(values) & texts.nan_is_absent[None, :]) | (
        (values == 0) & texts.zero_is_absent[None, :]
    )


def _group_line(title: str, contributions: np.ndarray, mask: np.ndarray, groups: list[str],
                listed: int = 3) -> np.ndarray:  # fmt: skip
    """Per row ``"<title>: A, B, C and 2 more (+0.31 together)"`` over the features in
    ``mask`` (named by input, largest |sum| first), or "" when they contribute nothing."""
    rows = len(contributions)
    out = np.full(rows, "", dtype=object)
    c = np.where(mask, np.nan_to_num(contributions, nan=0.0), 0.0)
    if not c.any():
        return out
    uniq, which = np.unique(np.asarray(groups, dtype=object), return_inverse=True)
    onehot = np.zeros((len(groups), len(uniq)))
    onehot[np.arange(len(groups)), which] = 1.0
    by_group = c @ onehot
    used = (mask & (c != 0)) @ onehot > 0
    strength = np.where(used, np.abs(by_group), -1.0)
    order = np.argsort(-strength, axis=1, kind="stable")[:, :listed]
    n_used = used.sum(axis=1)
    for k in range(order.shape[1]):
        name = uniq[order[:, k]].astype(object)
        take = k < n_used
        out = np.where(take, np.where(out == "", name, out + ", " + name), out)
    more = n_used - listed
    out = np.where(more > 0, out + np.array([f" and {m} more" for m in more], dtype=object), out)
    total = c.sum(axis=1)
    rows_used = np.flatnonzero(n_used > 0)
    line = np.full(rows, "", dtype=object)
    line[rows_used] = [f"{title}: {o} ({t:+.2f}{' together' if m > 1 else ''})"
                       for o, t, m in zip(out[rows_used], total[rows_used].tolist(),
                                          n_used[rows_used].tolist(), strict=True)]  # fmt: skip
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
) -> np.ndarray:
    """One driver string per row: the top ``n`` measured features by |contribution|, largest
    first, then one line for the inputs not measured yet and one for those imputed with the
    training median (``imputed``: (rows, features) mask), each with their summed contribution.

    Only the presentation groups: the SHAP values themselves are untouched. Vectorised per
    driver slot and feature (no per-row Python loop). ``texts``: :meth:`FeatureTexts.of`
    ``(names, catalogue)`` when the caller holds it (scoring keeps one per model)."""
    rows = len(X)
    out = np.full(rows, "", dtype=object)
    if rows == 0 or n <= 0 or not np.isfinite(contributions).any():
        return out
    texts = texts or FeatureTexts.of(names, catalogue)
    absent = not_measured(X, names, texts=texts)
    if imputed is None:
        imputed = np.zeros_like(absent)
    absent &= ~imputed
    out = _measured_drivers(X, np.where(absent | imputed, 0.0, contributions), names,
                            landmark_h, n, texts.specs)  # fmt: skip
    groups = list(texts.groups)
    for title, mask in (("not measured yet", absent), ("imputed (training median)", imputed)):
        line = _group_line(title, contributions, mask, groups)
        out = np.where(line == "", out, np.where(out == "", line, out + "; " + line))
    return out


def _measured_drivers(X, contributions, names, landmark_h, n, specs) -> np.ndarray:
    """The top ``n`` features by |contribution| (zero contributions never listed)."""
    rows = len(X)
    out = np.full(rows, "", dtype=object)
    n = min(n, len(names))
    abs_c = np.nan_to_num(np.abs(contributions), nan=0.0)
    if n < len(names):
        top = np.argpartition(-abs_c, n - 1, axis=1)[:, :n]
    else:
        top = np.tile(np.arange(len(names)), (rows, 1))
    order = np.argsort(-np.take_along_axis(abs_c, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    row_index = np.arange(rows)[:, None]
    values = _values(X, names)[row_index, top]
    shap = contributions[row_index, top]
    uniq, which = np.unique(np.asarray(landmark_h, dtype=np.float64), return_inverse=True)
    which = which.ravel()
    lm_text = list(format_numbers(uniq))
    for k in range(n):
        piece = np.full(rows, "", dtype=object)
        feature = top[:, k]
        for j in np.unique(feature):
            sel = np.flatnonzero(feature == j)
            label, kind, unit = specs[j]
            if "{L}" in label:
                labels = np.array([label.replace("{L}", t) for t in lm_text], dtype=object)
                label = labels[which[sel]]
            piece[sel] = label + " = " + format_values(kind, unit, values[sel, k])
        s = shap[:, k]
        valid = np.isfinite(s) & (s != 0)
        piece = piece + np.array([f" ({x:+.2f})" for x in s.tolist()], dtype=object)
        out = np.where(valid, np.where(out == "", piece, out + "; " + piece), out)
    return out
