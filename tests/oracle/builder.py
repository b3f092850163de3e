"""FROZEN ORACLE (tests only): the pandas/numpy landmark feature builder as it was before the
polars rewrite, kept unchanged except for its imports, so parity tests can compare the package's
builder with it. Do not edit; do not import from the package.

Landmark features: one row per (patient, landmark L) point, from the data visible at L.

The leakage guard lives in ONE place, :func:`_visible`: it joins a table (observations or
events) to the points and keeps only rows with ``hours <= landmark_h`` (result time at or
before L); for events it also cuts ``end_hours`` to L, because at L a running support is only
known to be running up to now. Every feature below is computed from ``_visible``'s output
(plus the points and the time-invariant patient attributes); nothing else reads the raw
observations or events, so data after L cannot reach a feature at L.

The feature names, order, units and definitions are those of
:func:`crs_ml.features.catalogue.feature_catalogue`. Everything is vectorised: rows are sorted
once by (point, variable, hours, source_row) and summarised with ``numpy.ufunc.reduceat`` and
``numpy.bincount``; there is no per-patient Python loop. Outcomes are never read, so the same
code runs at training and at scoring time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crs_ml.cohort import Cohort
from crs_ml.config import FeatureConfig
from crs_ml.errors import InputError
from crs_ml.features.grading import FEVER_C, FEVER_WINDOW_H, HYPOTENSION_SBP_MMHG, grade_summary
from oracle.catalogue import (
    LAB_VARIABLES,
    PRETOCI,
    VARIABLES,
    feature_catalogue,  # noqa: F401 - re-exported: callers import it from here
    feature_names,
    static_features,
)

SLOPE_WINDOW_H = 24.0
_NV = len(VARIABLES)
_VI = {v: i for i, v in enumerate(VARIABLES)}


def _codes_in(values: pd.Series, reference, runs: bool = False) -> np.ndarray:
    """Position of each value in ``reference`` (-1 when absent or missing).

    Only distinct values are hashed (fast for Arrow-backed strings); with ``runs=True`` only
    the first value of each run of equal neighbours is looked up, which is much cheaper for a
    column sorted by that value (patient_id in a Cohort) and still right for any order."""
    n = len(values)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if isinstance(reference, pd.Index) and reference.dtype == object:
        ref = reference  # keeps its cached hash table across calls
    else:
        ref = pd.Index(np.asarray(reference, dtype=object), dtype=object)
    if runs:
        v = values.reset_index(drop=True)
        change = np.ones(n, dtype=bool)
        same = v.iloc[1:].reset_index(drop=True).eq(v.iloc[:-1].reset_index(drop=True))
        change[1:] = ~same.fillna(False).to_numpy(dtype=bool)
        first = np.flatnonzero(change)
        lookup = ref.get_indexer(pd.Index(np.asarray(v.iloc[first], dtype=object)))
        return np.repeat(lookup, np.diff(np.append(first, n))).astype(np.int64)
    codes, uniques = pd.factorize(values, sort=False)
    lookup = np.append(ref.get_indexer(pd.Index(np.asarray(uniques, dtype=object))), -1)
    return lookup[codes].astype(np.int64)  # code -1 (missing) picks the trailing -1


def _point_patients(points: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    """(code per point, distinct patient ids) of the points' patient_id column."""
    pid = points["patient_id"]
    if isinstance(pid.dtype, pd.CategoricalDtype):
        return pid.cat.codes.to_numpy().astype(np.int64), pid.cat.categories
    codes, uniques = pd.factorize(pid, sort=False)
    return codes, pd.Index(np.asarray(uniques, dtype=object), dtype=object)


def _visible(table: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """THE leakage guard: ``table`` rows joined to ``points``, keeping hours <= landmark_h.

    Returns the table's columns except patient_id, plus ``point`` (0-based position in
    ``points``, which names the patient) and ``landmark_h``; a patient with several points gets
    its rows once per point. ``end_hours`` (events) is cut to the landmark: at L a running
    support is only known to run up to L. Rows come in table order (repeated per point).
    """
    lm = points["landmark_h"].to_numpy(dtype="float64")
    hours = table["hours"].to_numpy(dtype="float64")
    pt_code, uniques = _point_patients(points)
    if len(lm) and len(hours):
        pre = np.flatnonzero(hours <= lm.max())
        code = _codes_in(table["patient_id"].iloc[pre], uniques, runs=True)
        if (code < 0).any():
            pre, code = pre[code >= 0], code[code >= 0]
    else:
        pre = code = np.empty(0, dtype=np.int64)
    n_per = np.bincount(pt_code[pt_code >= 0], minlength=len(uniques))
    by_patient = np.argsort(np.where(pt_code >= 0, pt_code, len(uniques)), kind="stable")
    first = np.cumsum(n_per) - n_per
    if len(n_per) and n_per.max() == 1:
        rows, point = pre, by_patient[first[code]]
    else:
        reps = n_per[code]
        rows = np.repeat(pre, reps)
        within = np.arange(len(rows)) - np.repeat(np.cumsum(reps) - reps, reps)
        point = by_patient[np.repeat(first[code], reps) + within]
    landmark = lm[point]
    keep = hours[rows] <= landmark
    if not keep.all():
        rows, point, landmark = rows[keep], point[keep], landmark[keep]
    out = table.drop(columns="patient_id").iloc[rows].reset_index(drop=True)
    out["point"] = point.astype(np.int64)
    out["landmark_h"] = landmark
    if "end_hours" in out:
        out["end_hours"] = np.minimum(out["end_hours"].to_numpy(dtype="float64"), landmark)
    return out


def _first_per_point(vis_ev: pd.DataFrame, n: int) -> dict[str, np.ndarray]:
    """Hours of the first visible event of each kind per point (NaN when none)."""
    code, names = pd.factorize(vis_ev["event"], sort=False)
    point, hours = vis_ev["point"].to_numpy(), vis_ev["hours"].to_numpy(dtype="float64")
    out = {}
    for k, name in enumerate(names):
        first = np.full(n, np.inf)
        np.minimum.at(first, point[code == k], hours[code == k])
        first[np.isinf(first)] = np.nan
        out[str(name)] = first
    return out


def _order(g: np.ndarray, hours: np.ndarray, src: np.ndarray, rows: np.ndarray):
    """Rows (positions in the full arrays) sorted by (g, hours, src), with sorted g and hours.

    ``g`` is given for ``rows`` only. Cohort tables come sorted by hours and source row within
    a patient, so a stable sort on g usually suffices; this is checked, and a full lexsort is
    used when it does not hold."""
    order = np.argsort(g, kind="stable")
    idx = rows[order]
    gs, hs = g[order], hours[idx]
    same = gs[1:] == gs[:-1]
    tie = np.flatnonzero(same & (hs[1:] == hs[:-1]))
    back = (same & (hs[1:] < hs[:-1])).any() or (src[idx[tie + 1]] < src[idx[tie]]).any()
    if back:
        order = np.lexsort((src[rows], hours[rows], g))
        idx = rows[order]
        gs, hs = g[order], hours[idx]
    return idx, gs, hs


class _Groups:
    """Visible numeric observations of the catalogue variables, sorted by (point, variable,
    hours, source_row); one group = one (point, variable). ``gid`` = point * 12 + variable."""

    def __init__(self, g, var, hours, value, landmark):
        self.g, self.var, self.hours, self.value, self.landmark = g, var, hours, value, landmark
        n = len(g)
        new = np.ones(n, dtype=bool)
        new[1:] = g[1:] != g[:-1]
        self.starts = np.flatnonzero(new)
        self.ends = np.append(self.starts[1:], n)[: len(self.starts)] - 1
        self.counts = self.ends - self.starts + 1
        self.group = np.repeat(np.arange(len(self.starts)), self.counts)
        self.gid = g[self.starts]
        self.same_as_prev = ~new  # the row continues the group of the previous row

    @classmethod
    def from_visible(cls, vis: pd.DataFrame) -> _Groups:
        var = _codes_in(vis["variable"], VARIABLES)
        value = vis["value"].to_numpy(dtype="float64")
        keep = np.flatnonzero((var >= 0) & ~np.isnan(value))
        g = vis["point"].to_numpy()[keep] * _NV + var[keep]
        hours = vis["hours"].to_numpy(dtype="float64")
        src = vis["source_row"].to_numpy(dtype="int64")
        idx, gs, hs = _order(g, hours, src, keep)
        landmark = vis["landmark_h"].to_numpy(dtype="float64")[idx]
        return cls(gs, var[idx], hs, value[idx], landmark)

    def subset(self, variables) -> _Groups:
        wanted = np.zeros(_NV, dtype=bool)
        wanted[[_VI[v] for v in variables]] = True
        rows = np.flatnonzero(wanted[self.var])
        return _Groups(
            self.g[rows], self.var[rows], self.hours[rows], self.value[rows], self.landmark[rows]
        )

    def scatter(self, n: int, values, fill=np.nan) -> np.ndarray:
        """Per-group values into a (12 variables x n points) grid (rows contiguous)."""
        if getattr(self, "_flat_n", None) != n:
            self._flat = (self.gid % _NV) * n + self.gid // _NV
            self._flat_n = n
        grid = np.full(_NV * n, fill, dtype="float64")
        grid[self._flat] = values
        return grid.reshape(_NV, n)

    def reduce(self, ufunc, values) -> np.ndarray:
        """ufunc over each group; +-inf (the fill of masked rows) becomes NaN."""
        if len(self.starts) == 0:
            return np.empty(0)
        out = ufunc.reduceat(values, self.starts)
        out[np.isinf(out)] = np.nan
        return out

    def prefix_last(self, mask) -> np.ndarray:
        """Value of the last row of each group among ``mask``, a prefix of each group."""
        k = np.bincount(self.group, mask, minlength=len(self.starts)).astype(np.int64)
        idx = np.maximum(self.starts + k - 1, 0)
        return np.where(k > 0, self.value[idx], np.nan)

    def slope(self, window_h: float) -> np.ndarray:
        """Least-squares slope per hour over hours in (L - window_h, L]; NaN unless the
        window holds at least two distinct times."""
        rows = np.flatnonzero(self.hours > self.landmark - window_h)  # a suffix of each group
        m, grp = len(self.starts), self.group[rows]
        h, v = self.hours[rows], self.value[rows]
        t = h - self.landmark[rows]
        new_time = np.ones(len(rows), dtype=bool)
        new_time[1:] = (grp[1:] != grp[:-1]) | (h[1:] != h[:-1])
        n_t = np.bincount(grp[new_time], minlength=m)
        n_w = np.bincount(grp, minlength=m)
        with np.errstate(invalid="ignore", divide="ignore"):
            tbar = np.bincount(grp, t, minlength=m) / n_w
            vbar = np.bincount(grp, v, minlength=m) / n_w
            dt = t - tbar[grp]
            sxx = np.bincount(grp, dt * dt, minlength=m)
            slope = np.bincount(grp, dt * (v - vbar[grp]), minlength=m) / sxx
        return np.where(n_t >= 2, slope, np.nan)


def _variable_features(s: _Groups, n: int, toci_first: np.ndarray) -> dict:
    """Per-variable and pre-tocilizumab features, as arrays of length n."""
    f: dict[str, np.ndarray] = {}
    last = s.scatter(n, s.value[s.ends])
    base = s.scatter(n, s.prefix_last(s.hours < 0))
    mx = s.scatter(n, s.reduce(np.maximum, s.value))
    mn = s.scatter(n, s.reduce(np.minimum, s.value))
    count = s.scatter(n, s.counts, 0.0)
    since = s.scatter(n, s.landmark[s.ends] - s.hours[s.ends])
    slope = s.scatter(n, s.slope(SLOPE_WINDOW_H))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where((last > 0) & (base > 0), np.log(last / base), np.nan)
    for v, i in _VI.items():
        f[f"{v}_baseline"], f[f"{v}_last"] = base[i], last[i]
        f[f"{v}_max"], f[f"{v}_min"] = mx[i], mn[i]
        f[f"{v}_change"] = ratio[i] if v in LAB_VARIABLES else last[i] - base[i]
        f[f"{v}_slope_24h"], f[f"{v}_n"] = slope[i], count[i]
        f[f"{v}_hours_since_last"] = since[i]
        f[f"{v}_measured"] = (count[i] > 0).astype("float64")

    # values with result time strictly before the first visible tocilizumab; all if none
    p = s.subset({v for v, _ in PRETOCI})
    tf = np.where(np.isnan(toci_first), np.inf, toci_first)
    pre = p.hours < tf[p.g // _NV]
    pre_last = p.scatter(n, p.prefix_last(pre))
    pre_max = p.scatter(n, p.reduce(np.maximum, np.where(pre, p.value, -np.inf)))
    for v, stat in PRETOCI:
        f[f"{v}_pretoci_{stat}"] = (pre_max if stat == "max" else pre_last)[_VI[v]]
    return f


def _fever_features(s: _Groups, n: int, lm: np.ndarray, cfg: FeatureConfig) -> dict:
    """Fever features from the temperature rows after infusion (hours >= 0)."""
    t = s.subset(["temperature"])
    ti = _VI["temperature"]
    post = t.hours >= 0
    febrile = post & (t.value >= FEVER_C)
    onset = t.scatter(n, t.reduce(np.minimum, np.where(febrile, t.hours, np.inf)))[ti]
    # each reading is carried forward to the next one (or to L); ties last 0 h
    nxt = np.append(t.hours[1:], np.nan)
    cont = np.append(t.same_as_prev[1:], False)
    dur = np.where(cont, np.minimum(nxt, t.landmark), t.landmark) - t.hours
    fsum = np.bincount(t.group, np.where(febrile, dur, 0.0), minlength=len(t.starts))
    early = post & (t.hours <= np.minimum(cfg.early_fever_window_h, t.landmark))
    tmax = t.scatter(n, t.reduce(np.maximum, np.where(early, t.value, -np.inf)))[ti]
    return {
        "fever_onset_h": np.where(np.isnan(onset), lm, onset),
        "fever_onset_censored": np.isnan(onset).astype("float64"),
        "febrile_hours": t.scatter(n, fsum, 0.0)[ti],
        "temperature_max_early": tmax,
        "high_fever_early": np.where(np.isnan(tmax), np.nan, tmax >= cfg.high_fever_c),
    }


def _crs_state(s: _Groups, vis_ev: pd.DataFrame, n: int, lm: np.ndarray) -> dict:
    """CRS state at L: label.py's ASTCT grading run on the visible rows only (the fevers and
    low sbp values it needs, and the visible events with end_hours cut to L)."""
    rows = np.flatnonzero((s.var == _VI["temperature"]) | (s.var == _VI["sbp"]))
    rows = rows[s.hours[rows] >= 0]
    value, is_temp = s.value[rows], s.var[rows] == _VI["temperature"]
    rows = rows[np.where(is_temp, value >= FEVER_C, value < HYPOTENSION_SBP_MMHG)]
    obs = pd.DataFrame(
        {
            "point": s.g[rows] // _NV,
            "hours": s.hours[rows],
            "variable": np.where(s.var[rows] == _VI["temperature"], "temperature", "sbp"),
            "value": s.value[rows],
        }
    )
    st = grade_summary(obs, vis_ev, key="point", until=pd.Series(lm), fever_window_h=FEVER_WINDOW_H)
    st = st.reindex(np.arange(n))
    return {
        "oxygen_level": st["oxygen_level"].fillna(0).to_numpy("float64"),
        "vasopressor_level": np.minimum(st["vasopressors"].fillna(0).to_numpy("float64"), 2),
        "astct_grade_so_far": st["max_grade"].fillna(0).to_numpy("float64"),
        "hours_since_crs_onset": lm - st["crs_onset_hours"].to_numpy("float64"),
    }


def _static(cohort: Cohort, points: pd.DataFrame) -> dict:
    """Time-invariant patient attributes of each point (see static_features)."""
    pts = cohort.patients
    codes, uniques = _point_patients(points)
    # position of each patient among the points' patients (reuses that hash table)
    pos = _codes_in(pts["patient_id"], uniques, runs=True)
    row_of = np.full(len(uniques), -1, dtype=np.int64)
    row_of[pos[pos >= 0]] = np.flatnonzero(pos >= 0)
    idx = row_of[codes]
    if (idx < 0).any():
        bad = points["patient_id"].to_numpy()[idx < 0][0]
        raise InputError(
            f"patient '{bad}' of the landmark points is not in the patients table",
            file="patients",
            column="patient_id",
        )
    return static_features(pts, idx)


def _check_points(points: pd.DataFrame) -> pd.DataFrame:
    missing = {"patient_id", "landmark_h"} - set(points.columns)
    if missing:
        raise InputError(
            f"landmark points need columns patient_id and landmark_h; missing {sorted(missing)}"
        )
    lm = pd.to_numeric(points["landmark_h"], errors="coerce")
    if lm.isna().any() or not np.isfinite(lm.to_numpy(dtype="float64")).all():
        raise InputError("landmark points: landmark_h must be finite numbers", column="landmark_h")
    codes, uniques = pd.factorize(points["patient_id"], sort=False)
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0]) + 1
        raise InputError("landmark points: missing patient_id", row=row, column="patient_id")
    # categorical: the patient ids are hashed once, not once per table
    categories = pd.Index(np.asarray(uniques, dtype=object), dtype=object)
    return pd.DataFrame(
        {
            "patient_id": pd.Categorical.from_codes(codes, categories=categories),
            "landmark_h": lm.to_numpy(dtype="float64"),
        }
    )


def build_features(
    cohort: Cohort, points: pd.DataFrame, config: FeatureConfig | None = None
) -> pd.DataFrame:
    """Features at each point (patient_id, landmark_h), one row per point in the given order.

    Returns a float64 DataFrame whose columns are ``feature_catalogue(config).name`` in order.
    Reads only ``cohort.patients`` and, through the leakage guard, the observations and events
    with hours <= landmark_h; never the outcomes (works for new admissions).
    """
    config = config or FeatureConfig()
    names = feature_names(config)
    points = _check_points(points)
    n = len(points)
    lm = points["landmark_h"].to_numpy()
    vis_obs = _visible(
        cohort.observations[["patient_id", "hours", "variable", "value", "source_row"]], points
    )
    vis_ev = _visible(
        cohort.events[["patient_id", "hours", "end_hours", "event", "detail"]], points
    )

    first = _first_per_point(vis_ev, n)
    none = np.full(n, np.nan)
    toci = first.get("tocilizumab", none)
    s = _Groups.from_visible(vis_obs)
    f = _variable_features(s, n, toci)
    f.update(_fever_features(s, n, lm, config))
    tl = f["temperature_last"]
    f["febrile_now"] = np.where(np.isnan(tl), np.nan, tl >= FEVER_C)
    f.update(_crs_state(s, vis_ev, n, lm))

    for drug in ("tocilizumab", "corticosteroid", "antipyretic"):
        when = first.get(drug, none)
        f[f"{drug}_given"] = (~np.isnan(when)).astype("float64")
        f[f"hours_since_{drug}"] = lm - when

    f.update(_static(cohort, points))
    f["landmark_h"] = lm.astype("float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        for when, stat in (("baseline", "baseline"), ("landmark", "last")):
            ldh, plt = f[f"ldh_{stat}"], f[f"platelets_{stat}"]
            measix = ldh * (f[f"crp_{stat}"] / 10.0) / plt
            easix = ldh * f[f"creatinine_{stat}"] / plt
            f[f"measix_{when}"] = np.where(np.isfinite(measix), measix, np.nan)
            f[f"easix_{when}"] = np.where(np.isfinite(easix), easix, np.nan)
    matrix = np.empty((n, len(names)), dtype="float64", order="F")
    for j, name in enumerate(names):
        matrix[:, j] = f[name]
    return pd.DataFrame(matrix, columns=pd.Index(names, dtype=object), copy=False)
