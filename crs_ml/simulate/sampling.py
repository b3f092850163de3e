"""When things are measured: informative sampling schedules per site (assumptions).

* Baseline: one lab panel drawn 14-30 h before infusion (results before infusion, except
  send-out IL-6) and one vital-sign set 0.5-3 h before.
* After infusion, on the site's schedule by level group (well, grade 1, grade 2, grade >= 3):
  vital-sign sets every ``vitals_every_h`` and lab draws every ``labs_every_h``; sicker
  patients are measured more often (informative sampling). Well patients are on the
  schedule for ``monitor_well_h`` hours, then only have outpatient labs every
  ``outpatient_every_h``; any CRS brings them back on the ward schedule.
* Triggered: a vital-sign set at CRS onset (its temperature is the first >= 38.0), at grade 2
  (with the sbp < 90 for hypotension) and at grade 3; a fever work-up lab draw within 1.5 h
  of onset.
* The value is read at the draw; the row's time is the RESULT time: vitals at once, labs
  ``lab_delay_h`` later, IL-6 ``il6_delay_h`` later (send-out at some sites). Only results
  known at or before the end of observation (death, dropout, horizon) are written.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crs_ml.simulate.baseline import Baseline
from crs_ml.simulate.course import L_DEAD, L_G1, L_G2, L_G3, L_G4, L_RES, Course
from crs_ml.simulate.kinetics import Kinetics
from crs_ml.simulate.params import SimulationParams

#: level code -> level group (0 well, 1 grade 1, 2 grade 2, 3 grade >= 3); -1 = dead
_GROUP = np.full(7, 0, dtype=np.int64)
_GROUP[[L_G1, L_G2, L_G3, L_G4, L_RES, L_DEAD]] = [1, 2, 3, 3, 0, -1]
ROUTINE = ("crp", "ferritin", "ldh", "platelets", "creatinine")


def _site_table(params: SimulationParams, getter) -> np.ndarray:
    return np.array([getter(s) for s in params.sites])


def _jitter(rng, n, hi=90):
    """j/100 hours, j uniform in 0..hi (a draw inside its hour)."""
    return rng.integers(0, hi + 1, size=n) / 100.0


def _scheduled(level, site, every, phase, obs_end, monitor, out_every):
    """Boolean (n, K) of scheduled hours (ward schedule, or outpatient when well)."""
    n, K1 = level.shape
    K = K1 - 1
    grp = _GROUP[level[:, :K]]
    kk = np.arange(K)[None, :]
    interval = every[site[:, None], np.maximum(grp, 0)]
    on_ward = (grp > 0) | (kk < monitor[site][:, None])
    due = ((kk - phase[:, None]) % interval) == 0
    sched = due & on_ward & (grp >= 0) & (kk < obs_end[:, None])
    if out_every is not None:
        out = (grp == 0) & ~on_ward & (((kk - phase[:, None]) % out_every[site][:, None]) == 0)
        sched |= out & (kk < obs_end[:, None])
    return sched


def sample_observations(
    base: Baseline,
    course: Course,
    kin: Kinetics,
    params: SimulationParams,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(observations, lab draws): observation rows idx, hours (result time), variable,
    value, censored (unit-free); every lab draw as idx, time (draw time), k (grid hour, -1
    before infusion), group, full (the marker panels are ordered at these draws)."""
    n = base.n
    site = base.site
    level = course.level
    obs_end = course.obs_end
    vit_every = _site_table(params, lambda s: s.vitals_every_h)
    lab_every = _site_table(params, lambda s: s.labs_every_h)
    monitor = _site_table(params, lambda s: s.monitor_well_h)
    out_every = _site_table(params, lambda s: s.outpatient_every_h)
    il6_prob = _site_table(params, lambda s: s.il6_prob)

    # ---- vital-sign sets: (idx, time, grid index, forced kind) ----
    sets = []
    b_t = np.round(-rng.uniform(0.5, 3.0, n), 2)
    sets.append((np.arange(n), b_t, np.full(n, -1), np.zeros(n, np.int8), np.ones(n, bool)))
    for t_event, kind in ((course.onset, 1), (course.grade2, 2), (course.grade3, 3)):
        m = np.isfinite(t_event) & (t_event <= obs_end)
        ii = np.flatnonzero(m)
        k_ev = np.ceil(t_event[ii]).astype(np.int64)
        sets.append(
            (ii, t_event[ii], k_ev, np.full(len(ii), kind, np.int8), np.ones(len(ii), bool))
        )
    sched = _scheduled(level, site, vit_every, rng.integers(0, 24, n), obs_end, monitor, None)
    ii, kk = np.nonzero(sched)
    t = np.round(kk + _jitter(rng, len(ii)), 2)
    keep = t <= obs_end[ii]
    ii, kk, t = ii[keep], kk[keep], t[keep]
    ill = _GROUP[level[ii, kk]] > 0
    sets.append((ii, t, kk, np.zeros(len(ii), np.int8), ill))
    vs = pd.DataFrame(
        {
            "idx": np.concatenate([s[0] for s in sets]),
            "time": np.concatenate([s[1] for s in sets]),
            "k": np.concatenate([s[2] for s in sets]),
            "forced": np.concatenate([s[3] for s in sets]),
            "full": np.concatenate([s[4] for s in sets]),
        }
    )
    vs = vs.drop_duplicates(["idx", "time"], keep="first")  # triggered sets win

    # ---- lab draws: (idx, draw time, grid index, level group, fever work-up) ----
    draws = []
    b_draw = np.round(-rng.uniform(14.0, 30.0, n), 2)
    draws.append((np.arange(n), b_draw, np.full(n, -1), np.zeros(n, np.int64), np.ones(n, bool)))
    m = np.isfinite(course.onset) & (course.onset <= obs_end)
    ii = np.flatnonzero(m)
    t = np.round(course.onset[ii] + rng.uniform(0.2, 1.5, len(ii)), 2)
    ok = t <= obs_end[ii]
    ii, t = ii[ok], t[ok]
    draws.append(
        (ii, t, np.floor(t).astype(np.int64), np.ones(len(ii), np.int64), np.ones(len(ii), bool))
    )
    sched = _scheduled(level, site, lab_every, rng.integers(0, 24, n), obs_end, monitor, out_every)
    ii, kk = np.nonzero(sched)
    t = np.round(kk + _jitter(rng, len(ii)), 2)
    grp = np.maximum(_GROUP[level[ii, kk]], 0)
    draws.append((ii, t, kk, grp, np.zeros(len(ii), bool)))
    dr = pd.DataFrame(
        {
            "idx": np.concatenate([d[0] for d in draws]),
            "time": np.concatenate([d[1] for d in draws]),
            "k": np.concatenate([d[2] for d in draws]),
            "group": np.concatenate([d[3] for d in draws]),
            "full": np.concatenate([d[4] for d in draws]),
        }
    )

    rows = []
    for var in ("temperature", "sbp", "dbp", "heart_rate", "resp_rate", "spo2"):
        v_site = site[vs["idx"].to_numpy()]
        in_full = np.array([var in s.vitals for s in params.sites])[v_site]
        in_well = np.array([var in s.vitals_well for s in params.sites])[v_site]
        sub = vs[in_full & (vs["full"].to_numpy() | in_well)]
        i, k = sub["idx"].to_numpy(), sub["k"].to_numpy()
        v, c = kin.values(var, i, k, rng)
        forced = sub["forced"].to_numpy()
        if var == "temperature":
            v = np.where(
                forced == 1, np.maximum(v, np.round(38.0 + rng.exponential(0.4, len(v)), 1)), v
            )
        rows.append(
            pd.DataFrame(
                {
                    "idx": i,
                    "hours": sub["time"].to_numpy(),
                    "variable": var,
                    "value": v,
                    "censored": c,
                }
            )
        )
    lab_delay = _site_table(params, lambda s: s.lab_delay_h)
    il6_delay = _site_table(params, lambda s: s.il6_delay_h)
    d_site = site[dr["idx"].to_numpy()]
    for var in (*ROUTINE, "il6"):
        if var == "il6":
            p = il6_prob[d_site, dr["group"].to_numpy()]
            p = np.where(
                dr["full"].to_numpy() & (dr["k"].to_numpy() >= 0), np.minimum(2 * p, 1.0), p
            )
            delay = il6_delay[d_site]
        else:
            p = np.array([[dict(s.labs).get(var, 0.0) for s in params.sites]])[0][d_site]
            p = np.where(dr["full"].to_numpy(), 1.0, p)
            delay = lab_delay[d_site]
        take = rng.random(len(dr)) < p
        sub = dr[take]
        i, k = sub["idx"].to_numpy(), sub["k"].to_numpy()
        res = np.round(sub["time"].to_numpy() + rng.uniform(delay[take, 0], delay[take, 1]), 2)
        v, c = kin.values(var, i, k, rng)
        ok = res <= obs_end[i]
        rows.append(
            pd.DataFrame(
                {"idx": i[ok], "hours": res[ok], "variable": var, "value": v[ok], "censored": c[ok]}
            )
        )
    obs = pd.concat(rows, ignore_index=True)
    obs = obs.drop_duplicates(["idx", "hours", "variable"], keep="first")
    obs = obs.sort_values(["idx", "hours", "variable"], kind="stable").reset_index(drop=True)
    return obs, dr
