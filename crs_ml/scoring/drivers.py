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
from itertools import islice

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


@lru_cache(maxsize=1)
def _hundredths() -> np.ndarray:
    """``f"{k / 100:+.2f}"`` for k = -9999 .. 9999 (k = 0 is never looked up); built on first
    use (10 ms), not at import."""
    return np.array([f"{k / 100:+.2f}" for k in range(-9999, 10000)], dtype=object)


#: below this many values Python formats them all (numpy's fixed cost is more)
SMALL_HUNDREDTHS = 256


def signed_hundredths(x: np.ndarray) -> list[str]:
    """``[f"{v:+.2f}" for v in x]``, the same texts, mostly looked up: a value whose hundredths
    ``x * 100`` are clearly on one side of a rounding boundary (more than 1e-6 from a half)
    and round to at most 9,999 in size (``|x|`` below about 99.995) has the text of its nearest
    hundredth; the rest (a half or near it, larger values, NaN, +-inf and those that round to
    0, whose sign Python keeps: ``-0.00``) are formatted by Python, as are all of a few
    values."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if len(x) < SMALL_HUNDREDTHS:
        return [f"{v:+.2f}" for v in x.tolist()]
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = x * 100
        k = np.rint(scaled)
        clear = (np.abs(scaled - k) < 0.5 - 1e-6) & (np.abs(k) <= 9999) & (k != 0)
    out = _hundredths()[np.where(clear, k, 1).astype(np.int64) + 9999]
    other = np.flatnonzero(~clear)
    if len(other):
        out[other] = [f"{v:+.2f}" for v in x[other].tolist()]
    return out.tolist()


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
            "pretoci_max": (f"{display} max before any tocilizumab", "number", unit),
            "pretoci_last": (f"{display} latest before any tocilizumab", "number", unit),
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
    code, suffix = _kind_code(kind, unit)
    return _format_cells(np.full(v.shape, code, dtype=np.int8),
                         np.full(v.shape, suffix, dtype=object), v)  # fmt: skip


#: how a value is written, by feature kind (:func:`_kind_code`)
_PLAIN, _SIGNED, _FLAG, _FOLD, _OXYGEN, _VASO, _SINCE = range(7)


def _kind_code(kind: str, unit: str) -> tuple[int, str]:
    """(how a value of this kind is written, the text after a measured value: " <unit>")."""
    code = {"flag": _FLAG, "fold": _FOLD, "oxygen": _OXYGEN, "vaso": _VASO, "signed": _SIGNED,
            "since": _SINCE}.get(kind, _PLAIN)  # fmt: skip
    return code, (f" {unit}" if unit and code in (_PLAIN, _SIGNED, _SINCE) else "")


def _format_cells(code: np.ndarray, suffix: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Values as shown in drivers, each with its own kind (``code``, :func:`_kind_code`) and
    unit text (``suffix``): the whole column formatted at once, not one call per kind."""
    out = np.full(v.shape, "not measured", dtype=object)
    out[code == _SINCE] = "never"
    f = np.flatnonzero(np.isfinite(v))
    if len(f) == 0:
        return out
    x, kind = v[f], code[f]
    fold = kind == _FOLD
    text = format_numbers(np.where(fold, np.exp(np.where(fold, x, 0.0)), x))
    cell = text + suffix[f]
    signed = np.flatnonzero((kind == _SIGNED) & (x > 0))
    cell[signed] = "+" + cell[signed]
    fold = np.flatnonzero(fold)
    cell[fold] = "x" + text[fold]
    flag = np.flatnonzero(kind == _FLAG)
    cell[flag] = np.where(x[flag] >= 0.5, "yes", "no")
    for level_code, names in ((_OXYGEN, OXYGEN_LEVELS), (_VASO, VASOPRESSOR_LEVELS)):
        at = np.flatnonzero(kind == level_code)
        if len(at):
            level = np.round(x[at]).tolist()
            cell[at] = [names.get(int(lv), t) for lv, t in zip(level, text[at], strict=True)]
    out[f] = cell
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
    #: the distinct ``groups`` in sorted order, and each feature's position among them
    group_names: np.ndarray = None  # type: ignore[assignment]
    group_codes: np.ndarray = None  # type: ignore[assignment]
    #: how each feature's value is written (:func:`_kind_code`) and the text after it (unit)
    kind_codes: np.ndarray = None  # type: ignore[assignment]
    unit_texts: np.ndarray = None  # type: ignore[assignment]
    #: (features, keys) column positions: where every key is 0 the features say nothing
    #: (:func:`_absent_rules`)
    absent_rules: tuple[tuple[np.ndarray, np.ndarray], ...] = ()

    def __post_init__(self) -> None:
        uniq, codes = np.unique(np.asarray(self.groups, dtype=object), return_inverse=True)
        object.__setattr__(self, "group_names", uniq.astype(object))
        object.__setattr__(self, "group_codes", codes.ravel().astype(np.int64))
        kinds = [_kind_code(kind, unit) for _, kind, unit in self.specs]
        object.__setattr__(self, "kind_codes", np.array([k for k, _ in kinds], dtype=np.int8))
        object.__setattr__(self, "unit_texts", np.array([u for _, u in kinds] or [""],
                                                        dtype=object)[: len(kinds)])  # fmt: skip

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
            absent_rules=_absent_rules(tuple(names)),
        )


#: CRS-state kernels that grade the fever (:mod:`crs_ml.features.grading`): absent with the
#: temperature
_GRADED = ("astct_grade_so_far", "hours_since_crs_onset")


@lru_cache(maxsize=64)
def _declared_variables(version: int) -> dict[str, str]:
    """Feature name -> the variable or patient attribute it is declared from (every catalogue
    variable's features; ``version``: :func:`catalogue_version`, for the cache)."""
    from crs_ml.config import FeatureConfig
    from crs_ml.features.catalogue import feature_declarations

    # a grade needs a fever: without a temperature, no grade and no CRS onset to speak of
    return {f.name: "temperature" if f.aggregation in _GRADED else f.variable
            for f in feature_declarations(FeatureConfig())
            if f.variable or f.aggregation in _GRADED}  # fmt: skip


def _absent_rules(names: tuple[str, ...]) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Values that are numbers even when their input is absent, as (features, keys) pairs:
    a variable's features where its count of results (``<variable>_n``) is 0 (the fever
    features of a patient without a temperature: onset "L", censored, 0 febrile hours), and a
    patient attribute's one-hot columns (``product_*``, ``disease_*``, and what is derived
    from them) where every one of them is 0 (the attribute unknown)."""
    declared = _declared_variables(catalogue_version())
    at = {name: j for j, name in enumerate(names)}
    by_input: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        if name in declared:
            by_input.setdefault(declared[name], []).append(j)
    rules = []
    for source, cols in by_input.items():
        count = at.get(f"{source}_n")
        if count is not None:
            rules.append((np.asarray(cols), np.asarray([count])))
            continue
        onehot = [j for j in cols if names[j].startswith(f"{source}_")]
        if len(onehot) >= 2:
            rules.append((np.asarray(cols), np.asarray(onehot)))
    return tuple(rules)


def _values(X: pd.DataFrame, names: list[str]) -> np.ndarray:
    """``X[names]`` as floats (no column selection when X already has exactly those)."""
    frame = X if len(X.columns) == len(names) and list(X.columns) == list(names) else X[names]
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)


def not_measured(
    X: pd.DataFrame, names: list[str], catalogue=None, texts: FeatureTexts | None = None,
    values: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """(rows, features) mask of values that say nothing was measured: NaN (but not the
    ``never`` of the hours since a treatment), and a variable's count of results or its
    measured flag at 0. ``texts``: :meth:`FeatureTexts.of` ``(names, catalogue)``, if held;
    ``values``: ``X[names]`` as a float matrix, if held."""
    texts = texts or FeatureTexts.of(names, catalogue)
    values = _values(X, names) if values is None else values
    absent = (np.isnan(values) & texts.nan_is_absent[None, :]) | (
        (values == 0) & texts.zero_is_absent[None, :]
    )
    for cols, keys in texts.absent_rules:
        rows = np.flatnonzero((values[:, keys] == 0).all(axis=1))
        if len(rows):
            absent[np.ix_(rows, cols)] = True
    return absent


def _group_line(title: str, contributions: np.ndarray, mask: np.ndarray, texts: FeatureTexts,
                listed: int = 3) -> tuple[np.ndarray, list[str]]:  # fmt: skip
    """``"<title>: A, B, C and 2 more (+0.31 together)"`` over the features in ``mask`` (named
    by input, largest |sum| first, ties in name order) for the rows where they contribute:
    (those rows, their texts). Only those rows are worked on. ``contributions``: NaN as 0."""
    if not mask.any():
        return np.empty(0, dtype=np.int64), []
    c = np.where(mask, contributions, 0.0)
    nonzero = c != 0
    todo = np.flatnonzero(nonzero.any(axis=1))
    if len(todo) == 0:
        return todo, []
    # per input: the sum of its features' contributions and whether any contributes; only
    # the inputs some of whose features contribute in some row are worked on (a handful), each
    # with all its features in the same order, so each sum is the same as over every input
    c, nonzero = c[todo], nonzero[todo]
    total = c.sum(axis=1)
    any_group = np.zeros(len(texts.group_names), dtype=bool)
    any_group[texts.group_codes[nonzero.any(axis=0)]] = True
    columns = np.flatnonzero(any_group[texts.group_codes])
    order = columns[np.argsort(texts.group_codes[columns], kind="stable")]
    codes = texts.group_codes[order]
    starts = np.flatnonzero(np.r_[True, np.diff(codes) != 0])
    kept = codes[starts]  # the inputs worked on, in name order
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
    top = texts.group_names[kept[picks]].tolist()  # the picked inputs' names, row by row
    n_used = used.sum(axis=1).tolist()
    return todo, [
        f"{title}: {', '.join(t[:m])}{f' and {m - listed} more' if m > listed else ''}"
        f" ({s}{' together' if m > 1 else ''})"
        for t, m, s in zip(top, n_used, signed_hundredths(np.asarray(total)), strict=True)
    ]  # fmt: skip


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

    Only the presentation groups: the SHAP values themselves are untouched. Built for all rows
    at once: one formatting call for every listed cell of every slot (one f-string per listed
    driver), then each row's pieces joined.
    ``texts``: :meth:`FeatureTexts.of` ``(names, catalogue)`` when the caller holds it (scoring
    keeps one per model), ``values`` ``X[names]`` as a float matrix when it holds that."""
    rows = len(X)
    out = np.full(rows, "", dtype=object)
    if rows == 0 or n <= 0 or not np.isfinite(contributions).any():
        return out
    texts = texts or FeatureTexts.of(names, catalogue)
    values = _values(X, names) if values is None else values
    absent = not_measured(X, names, texts=texts, values=values)
    if imputed is None:
        imputed = np.zeros_like(absent)
    absent &= ~imputed
    known = np.where(np.isnan(contributions), 0.0, contributions)  # NaN contributes nothing
    out = _measured_drivers(values, known, absent | imputed, landmark_h, n, texts)
    for title, mask in (("not measured yet", absent), ("imputed (training median)", imputed)):
        at, lines = _group_line(title, known, mask, texts)
        if len(at):  # appended after "; " where the row has text already
            before = out[at].tolist()
            out[at] = [f"{b}; {t}" if b else t for b, t in zip(before, lines, strict=True)]
    return out


def _measured_drivers(values, contributions, unlisted, landmark_h, n,
                      texts: FeatureTexts) -> np.ndarray:  # fmt: skip
    """Per row, the top ``n`` features by |contribution| as ``"label = value (+0.12)"`` joined
    by ``"; "`` ("" for a row with none: zero contributions and the features in ``unlisted``
    are never listed). ``contributions``: NaN as 0. Built over all rows at once: the listed
    (row, slot) cells in row order, their values formatted in one call whatever their
    features' kinds (:func:`_format_cells`), labels looked up per (feature, landmark)."""
    rows, n_features = contributions.shape
    n = min(n, n_features)
    abs_c = np.abs(contributions)
    abs_c[unlisted] = 0.0
    top = _largest(abs_c, n)
    shap = np.take_along_axis(contributions, top, axis=1)
    listed = np.isfinite(shap) & (np.take_along_axis(abs_c, top, axis=1) != 0)
    row, slot = np.nonzero(listed)  # row by row, each row's slots in order
    out = np.full(rows, "", dtype=object)
    if len(row) == 0:
        return out
    feature = top[row, slot]
    uniq, which = np.unique(np.asarray(landmark_h, dtype=np.float64), return_inverse=True)
    lm_text = format_numbers(uniq).tolist()
    # "label = " of each (feature, landmark): the landmark goes into the "{L}" of a label
    prefix = np.array([[label.replace("{L}", t) + " = " for t in lm_text]
                       for label, _, _ in texts.specs], dtype=object).reshape(n_features, -1)  # fmt: skip
    cells = _format_cells(texts.kind_codes[feature], texts.unit_texts[feature],
                          values[row, feature])  # fmt: skip
    items = iter([f"{p}{c} ({x})" for p, c, x in zip(
        prefix[feature, which.ravel()[row]].tolist(), cells.tolist(),
        signed_hundredths(shap[row, slot]), strict=True)])  # fmt: skip
    counts = listed.sum(axis=1)
    has = np.flatnonzero(counts)
    out[has] = ["; ".join(islice(items, k)) for k in counts[has].tolist()]
    return out


def _largest(abs_c: np.ndarray, n: int) -> np.ndarray:
    """Per row, the columns of the ``n`` largest values, largest first: as ``argpartition``
    then a stable sort of those ``n`` (ties in that order), which is what rows with a tie among
    their ``n + 1`` largest non-zero values get; the others (all but a few) take ``n`` argmax
    passes, about 5x cheaper, to the same listed drivers (zeros are never listed)."""
    rows, n_features = abs_c.shape
    if n >= n_features:
        top = np.tile(np.arange(n_features), (rows, 1))
        order = np.argsort(-np.take_along_axis(abs_c, top, axis=1), axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1)
    work = abs_c.copy()
    at = np.arange(rows)
    picks = min(n + 1, n_features)
    top = np.empty((rows, picks), dtype=np.int64)
    size = np.empty((rows, picks), dtype=np.float64)
    for k in range(picks):
        top[:, k] = work.argmax(axis=1)
        size[:, k] = work[at, top[:, k]]
        work[at, top[:, k]] = -np.inf
    tied = np.flatnonzero(((size[:, :-1] == size[:, 1:]) & (size[:, 1:] > 0)).any(axis=1))
    top = top[:, :n]
    if len(tied):
        part = abs_c[tied]
        chosen = np.argpartition(-part, n - 1, axis=1)[:, :n]
        order = np.argsort(-np.take_along_axis(part, chosen, axis=1), axis=1, kind="stable")
        top[tied] = np.take_along_axis(chosen, order, axis=1)
    return top
