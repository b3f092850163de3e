"""The ward board: one self-contained HTML page a CAR-T team reads on a ward round.

:func:`board` turns a scores table (:func:`crs_ml.scoring.score.score`) and the cohort it was scored
from into one HTML page (Jinja2 template ``templates/board.html.j2``, autoescaped: every text
from the input is shown as text). The page loads nothing: no network, fonts or scripts from
elsewhere (a Content-Security-Policy meta forbids it), and its figures are inline SVG.

- a sortable patient list: risk and band (colour plus text), change since the previous
  landmark, hours since infusion, product, CRS grade so far, treatment given, completeness,
  status and message;
- beside the risk (by day 14), the short-horizon risks of a model that has them ("next 24 h",
  "next 72 h": :mod:`crs_ml.modeling.horizons`), in the list and, with each horizon's top
  drivers (its own SHAP explanation, in its log-odds), on the patient's card;
- per patient, the risk trajectory: the patient scored at every model landmark up to the
  landmark of the latest score, each point from data up to that landmark only (the training
  rule: :func:`crs_ml.features.build_features` for all (patient, landmark) pairs at once),
  with tocilizumab / steroid / anakinra times and ASTCT grade changes marked
  (:func:`crs_ml.features.grading.grade_events`). Points at or after grade >= 3 CRS or death are left
  out: the model does not score patients no longer at risk;
- per scored patient, a waterfall of the latest score: base value (the reference patient's
  log-odds) to the patient's risk, the :data:`WATERFALL_BARS` largest contributions of
  measured inputs in clinical words and units (:mod:`crs_ml.scoring.drivers`), then the inputs not
  measured yet, those imputed with the training median and the remaining features, each
  summed into one bar;
- per scored patient, how fresh the key labs are ("IL-6 last measured 14 h ago", "no ferritin
  yet"), from the scores table's ``hours_since_<input>`` (hours before the score's landmark)
  plus the hours from that landmark to the as-of time.

Only data up to each patient's as-of time are shown (``hours_since_infusion`` of the scores
table). The same waterfall and trajectory are matplotlib figures in
:mod:`crs_ml.scoring.board_figures`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from crs_ml.cohort import Cohort, implausible
from crs_ml.config import LabelConfig
from crs_ml.features.builder import build_features
from crs_ml.features.grading import grade_events
from crs_ml.features.landmarks import horizon_label
from crs_ml.files import write_text
from crs_ml.modeling.bundle import DECISION_SUPPORT
from crs_ml.modeling.completeness import KEY_INPUTS
from crs_ml.scoring.drivers import (
    feature_spec,
    format_numbers,
    format_values,
    input_name,
    not_measured,
)
from crs_ml.scoring.score import as_bundle, scoring_settings, status_counts
from crs_ml.variables import VARIABLES

#: measured inputs shown one by one in the waterfall (largest |contribution| first)
WATERFALL_BARS = 8
#: treatments marked on the trajectory and listed in the patient list
TREATMENTS = {"tocilizumab": "tocilizumab", "corticosteroid": "steroid", "anakinra": "anakinra"}
TEMPLATE = "board.html.j2"

__all__ = ["Course", "Waterfall", "board", "courses", "render_board", "trajectories"]


@dataclass
class Waterfall:
    """A score taken apart: base value (log-odds) plus bars (label, log-odds) = logit(risk)."""

    base_value: float
    bars: list[tuple[str, float]]

    @property
    def logit(self) -> float:
        return self.base_value + sum(c for _, c in self.bars)

    @property
    def risk(self) -> float:
        return float(1.0 / (1.0 + np.exp(-self.logit)))


@dataclass
class Course:
    """One patient as the board shows them (see the module docstring)."""

    patient_id: str
    status: str
    message: str
    hours: float  #: hours since infusion at the as-of time
    landmark_h: float
    risk: float
    band: str
    change: float  #: risk minus the previous landmark's risk (NaN when none)
    product: str
    grade_so_far: int
    treatment_text: str
    completeness: str
    #: (landmark_h, risk) of every landmark up to the latest score
    trajectory: list[tuple[float, float]] = field(default_factory=list)
    #: (hours, treatment, detail) up to the as-of time
    treatments: list[tuple[float, str, str]] = field(default_factory=list)
    #: (hours, grade) changes up to the as-of time
    grades: list[tuple[float, int]] = field(default_factory=list)
    waterfall: Waterfall | None = None
    freshness: list[str] = field(default_factory=list)
    #: (label, risk, top drivers) per short horizon, shortest first ("next 24 h", ...)
    short_horizons: list[tuple[str, float, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- the model
def _until_as_of(table: pd.DataFrame, as_of_h: pd.Series) -> pd.DataFrame:
    """Rows of ``table`` at or before their patient's as-of hours."""
    limit = table["patient_id"].astype(object).map(as_of_h).to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        keep = table["hours"].to_numpy(dtype=np.float64) <= limit
    return table[keep].reset_index(drop=True)


def _no_longer_at_risk(cohort: Cohort, as_of_h: pd.Series, grading: LabelConfig) -> pd.Series:
    """Per patient, the first hour of grade >= 3 CRS (graded with ``grading``, the model's
    settings) or death seen by the as-of time."""

    obs = _until_as_of(cohort.observations, as_of_h)
    ev = _until_as_of(cohort.events, as_of_h)
    grades = grade_events(obs, ev, settings=grading)
    g3 = grades[grades["grade"] >= 3].groupby("patient_id")["hours"].min()
    death = ev[ev["event"] == "death"].groupby("patient_id")["hours"].min()
    both = pd.concat([g3, death], axis=1).min(axis=1)
    return both.groupby(level=0).min()


def trajectories(model, cohort: Cohort, scores: pd.DataFrame):
    """Risk at every model landmark up to each patient's latest landmark, and the features.

    Returns (points, X, imputed): points has patient_id, landmark_h, risk (one row per patient
    and landmark, in patient then landmark order); X is the feature matrix of those points as
    the model saw it, with training medians filled in where :mod:`crs_ml.modeling.completeness` says
    so, and imputed the (points, features) mask of the values so filled. Each
    point uses data with hours <= its landmark only; patients with status ``scored`` or
    ``not_at_risk`` get points; landmarks at or after grade >= 3 CRS or death, or with no
    observation yet, are left out."""

    bundle = as_bundle(model)
    landmarks, features, _ = scoring_settings(bundle)
    rows = scores[scores["status"].isin(["scored", "not_at_risk"])]
    rows = rows[np.isfinite(rows["landmark_h"].to_numpy(dtype=np.float64))]
    last = rows["landmark_h"].to_numpy(dtype=np.float64)
    upto = np.searchsorted(landmarks, last, side="right")
    pid = np.repeat(rows["patient_id"].astype(object).to_numpy(), upto)
    lm = np.concatenate([landmarks[:k] for k in upto]) if len(upto) else np.empty(0)
    points = pd.DataFrame({"patient_id": pd.Series(pid, dtype=object), "landmark_h": lm})
    as_of_h = pd.Series(
        scores["hours_since_infusion"].to_numpy(dtype=np.float64),
        index=pd.Index(scores["patient_id"].astype(object)),
    )
    as_of_h = as_of_h[~as_of_h.index.duplicated()]
    stop = points["patient_id"].map(_no_longer_at_risk(cohort, as_of_h, features.grading))
    stop = stop.to_numpy(np.float64)
    first_obs = cohort.observations.groupby("patient_id")["hours"].min()
    start = points["patient_id"].map(first_obs).to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        keep = ~(stop <= lm) & (start <= lm)
    points = points[keep].reset_index(drop=True)
    names = bundle.feature_names
    if not len(points):
        empty = pd.DataFrame(columns=names, dtype=np.float64)
        return points.assign(risk=np.empty(0)), empty, np.zeros((0, len(names)), dtype=bool)
    X = build_features(cohort.subset(points["patient_id"].unique()), points, features)
    X, imputed = bundle.fill_untrained_missing(X)
    points["risk"] = bundle.predict_risk(X)
    return points, X[names].reset_index(drop=True), imputed


# --------------------------------------------------------------------------- the waterfall
def waterfall(
    shap_row: np.ndarray, base_value: float, x_row: pd.Series, names: list[str],
    landmark_h: float, catalogue: pd.DataFrame | None = None, imputed: np.ndarray | None = None,
    bars: int = WATERFALL_BARS,
) -> Waterfall:  # fmt: skip
    """One score's waterfall (see the module docstring); labels in clinical words and units."""

    c = np.nan_to_num(np.asarray(shap_row, dtype=np.float64), nan=0.0)
    X = pd.DataFrame([x_row[names].to_numpy(dtype=np.float64)], columns=names)
    absent = not_measured(X, names, catalogue)[0]
    imputed = np.zeros(len(names), bool) if imputed is None else np.asarray(imputed, bool)
    absent &= ~imputed
    measured = ~absent & ~imputed & (c != 0)
    order = [j for j in np.argsort(-np.abs(c), kind="stable") if measured[j]][:bars]
    lm = format_numbers([landmark_h])[0]
    out: list[tuple[str, float]] = []
    for j in order:
        label, kind, unit = feature_spec(names[j], catalogue)
        value = format_values(kind, unit, [X.iloc[0, j]])[0]
        out.append((f"{label.replace('{L}', lm)} = {value}", float(c[j])))

    def group(title: str, mask: np.ndarray) -> None:
        idx = [j for j in np.argsort(-np.abs(c), kind="stable") if mask[j] and c[j] != 0]
        if not idx:
            return
        inputs = list(dict.fromkeys(input_name(names[j], catalogue) for j in idx))
        shown = ", ".join(inputs[:3]) + (f" and {len(inputs) - 3} more" if len(inputs) > 3 else "")
        out.append((f"{title}: {shown}", float(c[idx].sum())))

    group("not measured yet", absent)
    group("imputed (training median)", imputed)
    rest = measured.copy()
    rest[order] = False
    if rest.any():
        n = int(rest.sum())
        out.append((f"{n} other measured feature{'s' if n > 1 else ''}", float(c[rest].sum())))
    return Waterfall(float(base_value), out)


# --------------------------------------------------------------------------- per patient
def _freshness(row, last: dict[str, float], catalogue_names: dict[str, str]) -> list[str]:
    """How long ago each key input was last measured, at the as-of time (``last``: the
    patient's latest hours of each, from the data up to the as-of time)."""
    as_of, landmark = float(row["hours_since_infusion"]), float(row["landmark_h"])
    out = []
    for v in KEY_INPUTS:
        h = last.get(v)
        name = catalogue_names[v]
        if h is None:
            out.append(f"no {name} yet")
        else:
            note = (
                f" (after the {landmark:g} h landmark: not in this score)" if h > landmark else ""
            )
            out.append(f"{name} last measured {as_of - h:.0f} h ago{note}")
    return out


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def courses(scores: pd.DataFrame, cohort: Cohort, model) -> list[Course]:
    """Every patient of ``scores`` (in its order) as the board shows them."""

    bundle = as_bundle(model)
    names = bundle.feature_names
    catalogue = bundle.catalogue
    scores = scores.reset_index(drop=True)
    points, X, imputed = trajectories(bundle, cohort, scores)
    as_of_h = pd.Series(
        scores["hours_since_infusion"].to_numpy(dtype=np.float64),
        index=pd.Index(scores["patient_id"].astype(object)),
    )
    as_of_h = as_of_h[~as_of_h.index.duplicated()]
    ev = _until_as_of(cohort.events, as_of_h)
    obs = _until_as_of(cohort.observations, as_of_h)
    grades = grade_events(obs, ev, settings=scoring_settings(bundle)[1].grading)
    limit = grades["patient_id"].map(as_of_h).to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):  # a support's end after the as-of time is not known yet
        grades = grades[(grades["hours"].to_numpy() >= 0) & (grades["hours"].to_numpy() <= limit)]
    treat = ev[ev["event"].isin(list(TREATMENTS))]
    key = obs[obs["variable"].isin(list(KEY_INPUTS)).to_numpy(dtype=bool)
              & obs["value"].notna().to_numpy() & ~implausible(obs)]  # fmt: skip
    latest = key.groupby(["patient_id", "variable"], sort=False, observed=True)["hours"].max()
    last_of: dict = {}
    for (pid, v), h in latest.items():
        last_of.setdefault(pid, {})[v] = float(h)
    product = cohort.patients.drop_duplicates("patient_id").set_index("patient_id")["product"]
    by_pid_points = {k: g for k, g in points.groupby("patient_id", sort=False)}
    by_pid_treat = {k: g for k, g in treat.groupby("patient_id", sort=False)}
    by_pid_grade = {k: g for k, g in grades.groupby("patient_id", sort=False)}
    display = {v: VARIABLES[v].display for v in VARIABLES}
    shap_cols = [f"shap_{n}" for n in names]
    has_shap = all(c in scores.columns for c in shap_cols)
    horizons = [h for h, _ in bundle.horizons if f"risk_{h.suffix}" in scores.columns]
    out = []
    for _, row in scores.iterrows():
        pid = row["patient_id"]
        pts = by_pid_points.get(pid)
        traj = [] if pts is None else list(zip(pts["landmark_h"].tolist(), pts["risk"].tolist(),
                                               strict=True))  # fmt: skip
        status = str(row["status"])
        risk = float(row["risk"]) if status == "scored" else np.nan
        change = np.nan
        if status == "scored" and len(traj) >= 2 and traj[-1][0] == row["landmark_h"]:
            change = risk - traj[-2][1]
        tr = by_pid_treat.get(pid)
        treatments = [] if tr is None else [
            (float(h), TREATMENTS[e], _text(d))
            for h, e, d in zip(tr["hours"], tr["event"], tr["detail"], strict=True)
        ]  # fmt: skip
        gr = by_pid_grade.get(pid)
        grade_list = [] if gr is None else [(float(h), int(g)) for h, g in
                                             zip(gr["hours"], gr["grade"], strict=True)]  # fmt: skip
        given = {}
        for h, name, _ in treatments:
            given.setdefault(name, []).append(h)
        treatment_text = ", ".join(
            f"{name}{f' x{len(hs)}' if len(hs) > 1 else ''} (from {min(hs):.0f} h)"
            for name, hs in given.items()
        )
        wf, fresh = None, []
        if status == "scored" and has_shap and pts is not None and len(pts):
            j = pts.index[pts["landmark_h"] == row["landmark_h"]]
            if len(j):
                k = int(j[0])
                wf = waterfall(row[shap_cols].to_numpy(dtype=np.float64), row["base_value"],
                               X.iloc[k], names, row["landmark_h"], catalogue,
                               imputed[k])  # fmt: skip
            fresh = _freshness(row, last_of.get(pid, {}), display)
        band = _text(row.get("risk_band"))
        comp = row.get("completeness")
        out.append(
            Course(
                patient_id=_text(pid), status=status, message=_text(row.get("message")),
                hours=float(row["hours_since_infusion"]), landmark_h=float(row["landmark_h"]),
                risk=risk, band=band, change=change,
                product=_text(product.get(pid)) if pid in product.index else "",
                grade_so_far=max((g for _, g in grade_list), default=0),
                treatment_text=treatment_text,
                completeness=(f"{comp:.0%} {_text(row.get('completeness_band'))}"
                              if comp is not None and np.isfinite(comp) else ""),
                trajectory=traj, treatments=treatments, grades=grade_list,
                waterfall=wf, freshness=fresh,
                short_horizons=[(h.label, float(row[f"risk_{h.suffix}"]) if status == "scored"
                                 else np.nan, _text(row.get(f"top_drivers_{h.suffix}")))
                                for h in horizons],
            )
        )  # fmt: skip
    return out


# --------------------------------------------------------------------------- figures as SVG
#: trajectory plot size (px) and margins (left, right, top, bottom)
TRAJ_W, TRAJ_H, TRAJ_M = 400, 160, (40, 12, 18, 28)
#: waterfall: width, label column, row height
WF_W, WF_LABEL_W, WF_ROW = 600, 330, 19
_NICE_RISK = (0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)
_PROB_TICKS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95, 0.99)
_MARK = {"tocilizumab": "T", "steroid": "S", "anakinra": "A"}


def _pct(p: float, cuts: tuple[float, ...] = ()) -> str:
    """``p`` as a percentage: whole percents from 10%, one decimal below; near a band cut in
    ``cuts`` with more decimals where rounding would carry it across (0.0995 is "9.95%",
    not "10.0%" beside 'low')."""
    if not np.isfinite(p):
        return ""
    digits = 0 if p >= 0.1 or p == 0 else 1
    while digits < 2 and any(p < c <= round(p * 100, digits) / 100 for c in cuts):
        digits += 1
    if any(p < c <= round(p * 100, digits) / 100 for c in cuts):
        return f"{np.floor(p * 10_000) / 100:.2f}%"  # closer still: cut, not rounded
    return f"{p:.{digits}%}"


def _first_reached(grades: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """The grade changes that raise the highest grade so far: (hours, grade)."""
    out, top = [], 0
    for h, g in grades:
        if g > top:
            out.append((h, g))
            top = g
    return out


def _trajectory_svg(c: Course, low_below: float, high_from: float) -> dict | None:
    if not c.trajectory:
        return None
    left, right, top, bottom = TRAJ_M
    pw, ph = TRAJ_W - left - right, TRAJ_H - top - bottom
    hours = [h for h, _ in c.trajectory]
    x_max = max(24.0, c.hours, max(hours)) if np.isfinite(c.hours) else max(24.0, max(hours))
    x_max = float(np.ceil(x_max / 12.0) * 12.0)
    top_risk = max(r for _, r in c.trajectory) * 1.15
    y_max = next((v for v in _NICE_RISK if v >= top_risk), 1.0)

    def X(h):
        return round(left + pw * h / x_max, 1)

    def Y(p):
        return round(top + ph * (1 - p / y_max), 1)

    pts = [{"x": X(h), "y": Y(r)} for h, r in c.trajectory]
    step = 12 if x_max <= 48 else 24
    xticks = [{"x": X(h), "label": f"{h:g}"} for h in np.arange(0, x_max + 1e-9, step)]
    yticks = [{"y": Y(v), "label": _pct(v)} for v in np.linspace(0, y_max, 3)]
    lines = [{"y": Y(v), "label": name} for v, name in ((low_below, "low"),
              (high_from, "high")) if v < y_max]  # fmt: skip
    marks = [{"x": X(h), "mark": _MARK.get(name, "?"),
              "title": f"{name} at {h:g} h" + (f": {detail}" if detail else "")}
             for h, name, detail in c.treatments if 0 <= h <= x_max]  # fmt: skip
    grades = []
    for h, g in _first_reached(c.grades):  # a label too close to the next one gives way to it
        if 0 <= h <= x_max:
            if grades and X(h) - grades[-1]["x"] < 16:
                grades.pop()
            grades.append({"x": X(h), "label": f"G{g}",
                           "title": f"ASTCT grade {g} first reached at {h:.1f} h"})  # fmt: skip
    return {
        "w": TRAJ_W, "h": TRAJ_H, "left": left, "right": TRAJ_W - right, "top": top,
        "bottom": TRAJ_H - bottom, "line": " ".join(f"{p['x']},{p['y']}" for p in pts),
        "points": pts, "xticks": xticks, "yticks": yticks, "bands": lines, "marks": marks,
        "grades": grades, "now": X(c.hours) if np.isfinite(c.hours) else None,
    }  # fmt: skip


def _waterfall_svg(wf: Waterfall) -> dict:
    from scipy.special import expit, logit

    cum = np.concatenate([[wf.base_value], wf.base_value + np.cumsum([b for _, b in wf.bars])])
    lo, hi = float(cum.min()), float(cum.max())
    pad = max((hi - lo) * 0.06, 0.15)
    lo, hi = lo - pad, hi + pad
    x0, x1 = WF_LABEL_W + 10, WF_W - 10

    def X(v):
        return round(x0 + (x1 - x0) * (v - lo) / (hi - lo), 1)

    rows = []
    y = 6
    rows.append({"y": y, "label": "average patient (base value)", "title": "", "value": _pct(expit(cum[0])),
                 "x": X(cum[0]) - 1, "width": 2, "kind": "end"})  # fmt: skip
    for k, (label, contribution) in enumerate(wf.bars):
        y += WF_ROW
        a, b = cum[k], cum[k + 1]
        short = label if len(label) <= 54 else label[:52] + "…"
        rows.append({"y": y, "label": short, "title": label if short != label else "",
                     "value": f"{contribution:+.2f}", "x": X(min(a, b)),
                     "width": max(round(X(max(a, b)) - X(min(a, b)), 1), 1.0),
                     "kind": "up" if contribution > 0 else "down"})  # fmt: skip
    y += WF_ROW
    rows.append({"y": y, "label": "this patient (risk)", "title": "", "value": _pct(expit(cum[-1])),
                 "x": X(cum[-1]) - 1, "width": 2, "kind": "end"})  # fmt: skip
    height = y + WF_ROW + 22
    ticks = [{"x": X(float(logit(p))), "label": _pct(p)} for p in _PROB_TICKS
             if lo <= logit(p) <= hi]  # fmt: skip
    if len(ticks) > 6:
        ticks = ticks[:: int(np.ceil(len(ticks) / 6))]
    return {"w": WF_W, "h": height, "rows": rows, "ticks": ticks, "axis_y": y + WF_ROW,
            "x0": x0, "x1": x1, "row_h": WF_ROW - 4, "label_x": WF_LABEL_W}  # fmt: skip


# --------------------------------------------------------------------------- the page
def _model_label(bundle, model_name: str | None) -> str:
    name = model_name or (bundle.path.name if bundle.path is not None else "model")
    if "://" not in name and ":/" not in name:
        name = Path(name).name or name  # a folder: its name, not the machine's path
    sha = next(iter(bundle.manifest.get("files_sha256", {}).values()), "")
    digest = bundle.manifest.get("dataset_digest")
    parts = [f"{name} ({bundle.model_type}"]
    if sha:
        parts.append(f", file sha256 {sha[:12]}")
    if digest:
        parts.append(f", trained on dataset {str(digest)[:12]}")
    return "".join(parts) + ")"


def _as_of_text(scores: pd.DataFrame) -> tuple[str, str]:
    """(as-of text, data window text)."""
    when = pd.to_datetime(scores["as_of"], utc=True, errors="coerce").dropna()
    hours = scores["hours_since_infusion"].to_numpy(dtype=np.float64)
    hours = hours[np.isfinite(hours)]
    lm = scores["landmark_h"].to_numpy(dtype=np.float64)
    lm = lm[np.isfinite(lm)]
    if len(when) and when.min() == when.max() and when.min().year > 1971:
        as_of = when.min().strftime("%Y-%m-%d %H:%M UTC")
    elif len(hours) and hours.min() == hours.max():
        as_of = f"{hours.min():g} h after infusion"
    elif len(hours):
        as_of = f"{hours.min():g} to {hours.max():g} h after infusion (per patient)"
    else:
        as_of = "unknown"
    if len(lm):
        span = f"{lm.min():g} h" if lm.min() == lm.max() else f"{lm.min():g} to {lm.max():g} h"
        window = (f"each score uses data up to its landmark ({span} after infusion, the largest "
                  "model landmark at or before the as-of time); the board shows data up to the "
                  "as-of time")  # fmt: skip
    else:
        window = "no patient has reached the first landmark"
    return as_of, window


def render_board(scores: pd.DataFrame, cohort: Cohort, model, model_name: str | None = None,
                 title: str = "CRS early warning: ward board") -> str:  # fmt: skip
    """The board's HTML (see the module docstring)."""
    import jinja2

    bundle = as_bundle(model)
    _, _, settings = scoring_settings(bundle)
    cuts = (settings.low_below, settings.high_from)
    items = courses(scores, cohort, bundle)
    order = sorted(range(len(items)), key=lambda i: (
        -items[i].risk if np.isfinite(items[i].risk) else np.inf, i))  # fmt: skip
    patients = []
    for rank, i in enumerate(order):
        c = items[i]
        patients.append({
            "c": c, "anchor": f"p{i}", "rank": rank,
            "risk_text": _pct(c.risk, cuts), "change_text": (f"{c.change * 100:+.1f} pp"
                                                       if np.isfinite(c.change) else ""),
            "band_mark": {"high": "▲", "intermediate": "■", "low": "○"}.get(c.band, ""),
            "trajectory": _trajectory_svg(c, settings.low_below, settings.high_from),
            "waterfall": _waterfall_svg(c.waterfall) if c.waterfall else None,
            "first_grades": _first_reached(c.grades),
            "short": [{"label": label, "risk": r, "risk_text": _pct(r, cuts), "drivers": d}
                      for label, r, d in c.short_horizons],
        })  # fmt: skip
    as_of, window = _as_of_text(scores)
    counts = status_counts(scores)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("crs_ml", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE).render(
        title=title, model=_model_label(bundle, model_name), as_of=as_of, window=window,
        intended_use=DECISION_SUPPORT, counts=counts, n=len(items), patients=patients,
        horizon=horizon_label(None, _horizon_h(bundle)),
        horizon_labels=[h.label for h, _ in bundle.horizons
                        if f"risk_{h.suffix}" in scores.columns],
        low_below=_pct(settings.low_below), high_from=_pct(settings.high_from),
        nan=float("nan"),
    )  # fmt: skip


def _horizon_h(bundle) -> float:
    """The day-14 horizon the bundle was trained for (hours; 336 when not recorded)."""
    task = (bundle.manifest.get("config") or {}).get("task") or {}
    return float(task.get("horizon_h", 336.0))


def board(scores: pd.DataFrame, cohort: Cohort, model, out: str | Path | None = None,
          model_name: str | None = None) -> str:  # fmt: skip
    """The ward board of ``scores`` (from ``cohort`` with ``model``) as HTML; written
    atomically to ``out`` when given (:func:`crs_ml.files.write_text`)."""

    html = render_board(scores, cohort, model, model_name)
    if out is not None:
        write_text(out, html)
    return html
