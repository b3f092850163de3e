"""From the latent chain to a clinical course: event times, support events, outcomes.

Times. A chain transition in step k happens at k + j/100 with j uniform in 1..100, i.e. in
(k, k + 1] on a 0.01 h (36 s) grid, so everything known at a whole-hour landmark L is a
function of the chain up to step L (no information from after L leaks into data at L).

ASTCT consistency (label ``ASTCT-2019-derived-v4``, crs_ml.features.grading). By construction:

* CRS onset = the first recorded temperature >= 38.0 (a vital-sign set is forced at onset;
  earlier temperatures after infusion are < 38.0); an antipyretic follows within an hour,
  so every later time is fever-qualified (every antipyretic, tocilizumab and corticosteroid
  is given after CRS onset: no prophylaxis, no treatment of a never-febrile patient, so the
  rule "treatment lifts the fever requirement only after a fever" never bites here);
* grade 2 = a low-flow oxygen event (nasal cannula, <= 6 L/min or flow not stated) starting
  at the grade-2 time (hypoxia) and/or an sbp < 90 recorded at it (hypotension); sbp < 90 is
  never recorded at a lower grade;
* grade 3 = the start of the first vasopressor or high-flow oxygen (high-flow nasal cannula
  at 30-60 L/min, or a Venturi mask at FiO2 45-60%) (only ever one
  vasopressor below grade 4; vasopressin only alongside two vasopressors);
* grade 4 = a second vasopressor started while the first still runs, or positive pressure;
* grade 5 = a 'death' event with detail 'CRS' after grade 4.

So the outcomes written here are exactly what the grading rules derive from the data (the
tests check this with crs_ml.features.grading). The post-grade-3 course (grade 4/5, durations, ICU,
steroids) does not enter the true risk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crs_ml.simulate.baseline import Baseline
from crs_ml.simulate.chain import DEAD, G1, G1T, G2, G2T, G2TS, G3, RES
from crs_ml.simulate.params import SimulationParams

#: level grid codes (kinetics and sampling)
L_PRE, L_G1, L_G2, L_G3, L_G4, L_RES, L_DEAD = range(7)
_STATE_LEVEL = np.array([L_PRE, L_G1, L_G1, L_G2, L_G2, L_G2, L_RES, L_G3, L_DEAD], np.int8)
#: grade-2 type: none, hypotension, hypoxia, both; grade-3 type: none, vasopressor, high flow
HYPO, HYPOX, BOTH = 1, 2, 3
VASO, HFNO = 1, 2
NON_CRS_DEATH = np.array(["infection", "disease progression", "other"], dtype=object)


def _entry_step(path: np.ndarray, states) -> np.ndarray:
    """Step k in which each patient first entered ``states`` (-1 if never)."""
    inset = np.isin(path, states)
    entered = inset[:, 1:] & ~inset[:, :-1]
    return np.where(entered.any(axis=1), entered.argmax(axis=1), -1)


def _time(step: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """k + j/100 (j in 1..100) for entered steps, NaN otherwise."""
    j = rng.integers(1, 101, size=len(step))
    return np.where(step >= 0, np.round(step + j / 100.0, 2), np.nan)


def _u(rng, lo, hi, n):
    return np.round(rng.uniform(lo, hi, n), 2)


@dataclass
class Course:
    """Per-patient event times (hours, NaN = never) and the level grid."""

    onset: np.ndarray
    grade2: np.ndarray
    grade3: np.ndarray
    grade4: np.ndarray
    grade5: np.ndarray
    death: np.ndarray  #: any death (non-CRS from the chain, or grade 5)
    dropout: np.ndarray  #: effective end of follow-up before the horizon (NaN = none)
    obs_end: np.ndarray  #: no data after this (death, dropout, horizon)
    resolution: np.ndarray  #: CRS resolved (NaN: never, or not before death/horizon)
    toci: np.ndarray  #: first tocilizumab
    steroid: np.ndarray  #: first corticosteroid
    grade2_type: np.ndarray
    grade3_type: np.ndarray
    level: np.ndarray  #: (n, K + 1) int8 level at each whole hour
    events: pd.DataFrame = field(repr=False)  #: idx, hours, end_hours, event, detail


class _Events:
    def __init__(self):
        self.parts: list[pd.DataFrame] = []

    def add(self, mask, idx, start, end, event, detail):
        m = np.asarray(mask, dtype=bool) & np.isfinite(start)
        if not m.any():
            return
        n = int(m.sum())
        det = np.broadcast_to(np.asarray(detail, dtype=object), m.shape)[m]
        self.parts.append(
            pd.DataFrame(
                {
                    "idx": idx[m],
                    "hours": start[m],
                    "end_hours": np.broadcast_to(end, m.shape)[m].astype("float64"),
                    "event": np.full(n, event, dtype=object),
                    "detail": det,
                }
            )
        )

    def frame(self) -> pd.DataFrame:
        cols = ["idx", "hours", "end_hours", "event", "detail"]
        if not self.parts:
            return pd.DataFrame({c: [] for c in cols})
        return pd.concat(self.parts, ignore_index=True)


def oxygen_details(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(low-flow, high-flow) oxygen ``detail`` texts per patient, written as wards do and
    graded by crs_ml.features.grading as the event says: low flow is a nasal cannula at 1-6 L/min
    (flow not stated in 10%); high flow is a high-flow nasal cannula at 30-60 L/min with
    FiO2 40-90%, or (20%) a Venturi mask at FiO2 45-60% without a flow."""
    flow = rng.integers(1, 7, n).astype(str)
    form = rng.random(n)
    low = np.where(
        form < 0.5,
        np.char.add(np.char.add("nasal cannula ", flow), " L/min"),
        np.where(
            form < 0.75,
            np.char.add(np.char.add("NC ", flow), "lpm"),
            np.where(form < 0.9, np.char.add(flow, " l/min via nasal cannula"), "nasal cannula"),
        ),
    )
    hf = (5 * rng.integers(6, 13, n)).astype(str)
    fio2 = (5 * rng.integers(8, 19, n)).astype(str)
    venturi_fio2 = (5 * rng.integers(9, 13, n)).astype(str)
    hfnc = np.char.add(
        np.char.add(np.char.add("high-flow nasal cannula ", hf), " L/min, FiO2 "),
        np.char.add(fio2, "%"),
    )
    venturi = np.char.add(np.char.add("Venturi mask FiO2 ", venturi_fio2), "%")
    high = np.where(rng.random(n) < 0.2, venturi, hfnc)
    return low.astype(object), high.astype(object)


def build_course(
    base: Baseline, path: np.ndarray, params: SimulationParams, rng: np.random.Generator
) -> Course:
    """Event times, events and the level grid from the chain paths (vectorised)."""
    n, K = path.shape[0], path.shape[1] - 1
    H = float(K)
    cp = params.course
    idx = np.arange(n)
    onset = _time(_entry_step(path, [G1, G1T, G2, G2T, G2TS, RES, G3]), rng)
    toci_chain = _time(_entry_step(path, [G1T, G2T, G2TS]), rng)
    grade2 = _time(_entry_step(path, [G2, G2T, G2TS]), rng)
    ster_chain = _time(_entry_step(path, [G2TS]), rng)
    res_chain = _time(_entry_step(path, [RES]), rng)
    grade3 = _time(_entry_step(path, [G3]), rng)
    dead_chain = _time(_entry_step(path, [DEAD]), rng)
    has2, has3 = np.isfinite(grade2), np.isfinite(grade3)

    # grade-2 and grade-3 presentation
    u = rng.random(n)
    g2_type = np.where(
        u < cp.grade2_hypotension,
        HYPO,
        np.where(u < cp.grade2_hypotension + cp.grade2_both, BOTH, HYPOX),
    )
    g2_type = np.where(has2, g2_type, 0).astype(np.int8)
    direct_vaso = rng.random(n) < cp.direct_grade3_vasopressor
    g3_type = np.where(
        has2, np.where(g2_type == HYPOX, HFNO, VASO), np.where(direct_vaso, VASO, HFNO)
    )
    g3_type = np.where(has3, g3_type, 0).astype(np.int8)

    # after grade 3: grade 4, grade 5, support durations, resolution
    p4 = np.array([p.grade4_given_grade3 for p in params.products])[base.product]
    has4 = has3 & (rng.random(n) < p4)
    grade4 = np.where(
        has4, grade3 + np.round(1.0 + rng.exponential(cp.grade4_delay_mean_h, n), 2), np.nan
    )
    has5 = has4 & (rng.random(n) < cp.grade5_given_grade4)
    grade5 = np.where(has5, grade4 + _u(rng, 6, 72, n), np.nan)
    dur3 = np.round(6 + rng.gamma(2.0, cp.support_duration_mean_h / 2, n), 2)
    dur4 = np.round(6 + rng.gamma(2.0, cp.support_duration_mean_h / 3, n), 2)
    sup1_end = grade3 + dur3
    sup2_end = grade4 + dur4
    # the first vasopressor still runs when the second starts (ASTCT grade 4 = both at once)
    sup1_end = np.where(
        has4 & (g3_type == VASO), np.maximum(sup1_end, grade4 + np.round(dur4 / 2 + 1, 2)), sup1_end
    )
    sup1_end = np.where(has4 & (g3_type == HFNO), grade4, sup1_end)
    sup1_end = np.fmin(sup1_end, grade5)
    sup2_end = np.fmin(sup2_end, grade5)
    res3 = np.where(has3 & ~has5, np.fmax(sup1_end, sup2_end) + _u(rng, 6, 36, n), np.nan)

    # deaths, dropout, end of observation
    death = np.fmin(dead_chain, grade5)
    drop = np.where(rng.random(n) < cp.dropout_rate, _u(rng, 24.0, max(H - 24.0, 25.0), n), np.nan)
    drop = np.where(drop < np.fmin(death, H), drop, np.nan)
    obs_end = np.fmin(np.fmin(death, drop), H)
    clip = np.where(obs_end < H, obs_end, np.inf)

    # treatments outside the chain (at grade >= 3; not part of the true risk)
    toci3 = np.where(has3, grade3 + _u(rng, 0.3, 2.0, n), np.nan)
    toci = np.fmin(toci_chain, toci3)
    steroid_g3 = np.array([s.steroid_at_grade3 for s in params.sites])[base.site]
    ster3 = np.where(has3 & steroid_g3, grade3 + _u(rng, 0.5, 4.0, n), np.nan)
    ster3 = np.where(has4 & ~steroid_g3, grade4 + _u(rng, 0.5, 3.0, n), ster3)
    steroid = np.fmin(ster_chain, ster3)

    ev = _Events()
    seen = lambda t: np.isfinite(t) & (t <= obs_end)  # noqa: E731
    antipyretic = onset + _u(rng, 0.01, 1.0, n)
    for dose in range(3):
        t = antipyretic + 8.0 * dose
        # repeat doses only while still febrile: no tocilizumab yet, not resolved
        febrile = ~(t >= toci) & ~(t >= res_chain) & ~(t >= res3)
        given = seen(t) & (febrile | (dose == 0))
        ev.add(given, idx, t, np.nan, "antipyretic", "acetaminophen 1 g")
    low_end = np.fmin(np.fmin(np.fmin(grade3, res_chain), death), H)
    # details from a spawned stream: the course stream, and so the cohort, stays as it was
    low_detail, high_detail = oxygen_details(n, rng.spawn(1)[0])
    ev.add(seen(grade2) & (g2_type != HYPO), idx, grade2, np.fmin(low_end, clip),
           "oxygen_low_flow", low_detail)  # fmt: skip
    ev.add(seen(toci), idx, toci, np.nan, "tocilizumab", "tocilizumab 8 mg/kg")
    ev.add(seen(grade4) & (toci < grade4), idx, grade4 + _u(rng, 0.5, 2.0, n), np.nan,
           "tocilizumab", "tocilizumab 8 mg/kg")  # fmt: skip
    for dose in range(3):
        t = steroid + 6.0 * dose
        ev.add(seen(t), idx, t, np.nan, "corticosteroid", "dexamethasone 10 mg")
    vaso = g3_type == VASO
    ev.add(
        seen(grade3) & vaso, idx, grade3, np.fmin(sup1_end, clip), "vasopressor", "norepinephrine"
    )
    ev.add(seen(grade3) & ~vaso, idx, grade3, np.fmin(sup1_end, clip), "oxygen_high_flow",
           high_detail)  # fmt: skip
    ev.add(seen(grade3), idx, grade3 + _u(rng, 0.0, 2.0, n), np.nan, "icu_admission", "ICU")
    ev.add(seen(grade4) & vaso, idx, grade4, np.fmin(sup2_end, clip), "vasopressor", "epinephrine")
    ev.add(seen(grade4) & ~vaso, idx, grade4, np.fmin(sup2_end, clip), "positive_pressure",
           np.where(rng.random(n) < 0.5, "CPAP", "intubation"))  # fmt: skip
    vp = grade4 + _u(rng, 0.5, 3.0, n)
    ev.add(seen(vp) & vaso & (vp < sup2_end) & (rng.random(n) < 0.3), idx, vp,
           np.fmin(sup2_end, clip), "vasopressin", "vasopressin 0.03 U/min")  # fmt: skip
    cause = NON_CRS_DEATH[rng.integers(0, len(NON_CRS_DEATH), n)]
    ev.add(seen(dead_chain), idx, dead_chain, np.nan, "death", cause)
    ev.add(seen(grade5), idx, grade5, np.nan, "death", "CRS")

    # level grid: index k = state at time k (events at times <= k)
    level = _STATE_LEVEL[path]
    kk = np.arange(K + 1)[None, :]
    level = np.where(kk >= grade4[:, None], L_G4, level)
    level = np.where(kk >= res3[:, None], L_RES, level)
    level = np.where(kk >= grade5[:, None], L_DEAD, level).astype(np.int8)

    return Course(
        onset=onset, grade2=grade2, grade3=grade3, grade4=grade4, grade5=grade5, death=death,
        dropout=drop, obs_end=obs_end, resolution=np.fmin(res_chain, res3), toci=toci,
        steroid=steroid, grade2_type=g2_type, grade3_type=g3_type, level=level,
        events=ev.frame(),
    )  # fmt: skip


def outcomes(course: Course) -> pd.DataFrame:
    """crs_max_grade, grade3_hours, followup_hours, death_hours as the data show them."""
    seen = lambda t: np.isfinite(t) & (t <= course.obs_end)  # noqa: E731
    grade = np.zeros(len(course.onset), dtype=np.int64)
    for g, t in enumerate(
        (course.onset, course.grade2, course.grade3, course.grade4, course.grade5), start=1
    ):
        grade = np.where(seen(t), g, grade)
    return pd.DataFrame(
        {
            "crs_max_grade": grade,
            "grade3_hours": np.where(seen(course.grade3), course.grade3, np.nan),
            "followup_hours": course.dropout,
            "death_hours": np.where(seen(course.death), course.death, np.nan),
        }
    )
