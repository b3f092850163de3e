"""Mechanistic, literature-grounded simulator of CRS after CAR T-cell therapy.

``simulate_cohort(n_patients, seed, style, horizon_h, landmarks_h, params)`` returns the
input tables of the data contract (patients, observations, events, outcomes) plus
``truth`` (patient_id, landmark_h, true_risk); ``write_cohort(tables, out_dir)`` writes them
as CSV. :func:`simulate` returns the same tables together with the latent quantities
(per-patient P(any CRS), P(grade >= 3), latent event times, onset distribution) that the
target tests and the calibration benchmark use.

The model, in the order it runs (each step in its own module; assumptions in
crs_ml.simulate.params):

1. baseline (simulate_baseline): product, site, demographics, baseline labs, latent
   severity s;
2. latent course (simulate_chain): hourly discrete-time Markov chain PRE -> grade 1 -> grade 2
   -> grade >= 3 with treatment states driven by each site's policy, resolution and
   competing death; hazards from s, the product's CAR-T activity profile and treatment;
3. true risk (simulate_chain.backward_risk): exact P(grade >= 3 in (L, H] | latent state at
   L) by backward recursion over the same transition probabilities (no Monte Carlo);
4. clinical course (simulate_course): event times, support events consistent with the
   ASTCT grading rules, post-grade-3 course, deaths, dropout, outcomes;
5. kinetics and sampling (simulate_kinetics, simulate_sampling): IL-6, CRP, ferritin,
   LDH, platelets, creatinine and vitals read at informative, site-specific times, each
   row at its RESULT time;
6. markers (``markers="all"``, crs_ml.simulate.markers): cytokine panel, coagulation, liver
   and blood counts from the same latent grids, at the first lab draw of each day, by site
   panel;
7. rendering (simulate_write): clean or messy files.

Randomness: one ``numpy.random.SeedSequence(seed)`` spawns independent streams for
baseline, chain, course, sampling, dirt and markers, so the messy style of a seed has exactly
the patients and values of the clean style, and a cohort with ``markers="all"`` has exactly
the core observations, events, outcomes and truth of the same seed without them. Patient ids carry the seed ('S{seed}-{index:06d}'),
so cohorts of different seeds never share an id.

Truth rows: every landmark L (whole hours, L < H; default every 6 h from 6 to 168 h,
crs_ml.config.SIMULATOR_TRUTH_LANDMARKS_H) and every patient at risk and included at
L by the task definition (crs_ml.features.landmarks rules 1-4: not yet grade >= 3, alive, followed
beyond L, follow-up not ended before the horizon other than by death), i.e. before the 'no
data' exclusion. What the true risk conditions on is documented in crs_ml.simulate.chain.
Follow-up ending early (dropout, 3%) is independent of everything and excludes a patient
whether or not an event was seen before it, so the truth rows are a random subset of the
patients at risk and their observed event rate matches the mean true risk.

Data at a landmark L never reflect the latent course after L: event times are on the hour
grid of the chain, values are read at the hour of the draw and written at the result time.
One caveat for feature code: an event that started at or before L carries its real
``end_hours``, which may lie after L; only "running at L" may be used at L, never the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crs_ml.config import DEFAULT_WINDOWS_H, SIMULATOR_TRUTH_LANDMARKS_H
from crs_ml.errors import ConfigError
from crs_ml.features.grading import LABEL_DEFINITION
from crs_ml.features.landmarks import at_risk_status, horizon_label
from crs_ml.simulate.baseline import Baseline, draw_baseline
from crs_ml.simulate.chain import (
    STATE_NAMES,
    backward_risk,
    chain_rates,
    median_onset_h,
    risk_by,
    simulate_paths,
)
from crs_ml.simulate.course import Course, build_course, outcomes
from crs_ml.simulate.kinetics import Kinetics
from crs_ml.simulate.markers import sample_markers
from crs_ml.simulate.params import SimulationParams, default_params
from crs_ml.simulate.sampling import sample_observations
from crs_ml.simulate.write import render_clean, render_messy, write_cohort

__all__ = [
    "SimulationResult", "simulate", "simulate_cohort", "write_cohort", "latent_probabilities",
    "default_params", "SimulationParams", "horizon_truth",
]  # fmt: skip

STYLES = ("clean", "messy")
#: "core": the 12 variables of the core kinetics; "all": also the catalogue markers of
#: crs_ml.simulate.markers (cytokine panel, coagulation, liver, blood counts)
MARKER_SETS = ("core", "all")
#: independent streams spawned from SeedSequence(seed), in this order (a stream appended at the
#: end leaves the earlier ones, and so every cohort written before it, unchanged)
_STREAMS = ("baseline", "chain", "course", "sampling", "dirt", "markers")


@dataclass
class SimulationResult:
    """Tables as written, plus the latent quantities behind them."""

    tables: dict[str, pd.DataFrame]
    #: per patient: patient_id, product, site, severity, p_any_crs, p_grade3 and latent
    #: event times (onset_hours, grade2_hours, grade3_hours_latent, death_hours_latent)
    latent: pd.DataFrame
    #: latent median onset (hours) per product
    median_onset_h: dict[str, float]
    params: SimulationParams = field(repr=False)
    horizon_h: float = 336.0


def _horizon_steps(horizon_h: float) -> int:
    H = float(horizon_h)
    if not np.isfinite(H) or H <= 0 or H != round(H):
        raise ConfigError(f"horizon_h must be a whole number of hours > 0, got {horizon_h}")
    return int(round(H))


def _landmark_steps(landmarks_h, K: int) -> np.ndarray:
    default = SIMULATOR_TRUTH_LANDMARKS_H
    lm = np.asarray(default if landmarks_h is None else landmarks_h, dtype="float64")
    if lm.ndim != 1 or (lm <= 0).any() or (lm != np.round(lm)).any():
        raise ConfigError(f"landmarks must be whole hours > 0, got {list(np.atleast_1d(lm))}")
    lm = np.unique(lm).astype(np.int64)
    return lm[lm < K]


def _streams(seed: int) -> dict[str, np.random.Generator]:
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed}")
    children = np.random.SeedSequence(int(seed)).spawn(len(_STREAMS))
    return {name: np.random.default_rng(c) for name, c in zip(_STREAMS, children, strict=True)}


def _truth(path, risk, oc: pd.DataFrame, steps, horizon: float, ids) -> pd.DataFrame:
    g3, death, fu = (oc[c].to_numpy() for c in ("grade3_hours", "death_hours", "followup_hours"))
    rows = np.arange(len(ids))
    parts = []
    for L in steps:
        status, _, _ = at_risk_status(g3, death, fu, float(L), horizon)  # rules 1-4
        keep = status == "included"
        state = path[:, L]
        r = risk.risk_at[int(L)][rows, state]
        parts.append(
            pd.DataFrame({"patient_id": ids[keep], "landmark_h": float(L), "true_risk": r[keep]})
        )
    if not parts:
        return pd.DataFrame({"patient_id": [], "landmark_h": [], "true_risk": []})
    out = pd.concat(parts, ignore_index=True)
    out["patient_id"] = out["patient_id"].astype(object)
    return out


def _patients_table(base: Baseline, params: SimulationParams) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": base.patient_id,
            "person_id": base.person_id,
            "product": np.array(params.product_names(), dtype=object)[base.product],
            "age_years": base.age.astype(np.int64),
            "sex": base.sex,
            "disease": base.disease,
            "site": np.array([s.name for s in params.sites], dtype=object)[base.site],
        }
    )


def _events_table(course: Course, ids: np.ndarray) -> pd.DataFrame:
    ev = course.events
    out = pd.DataFrame(
        {
            "patient_id": ids[ev["idx"].to_numpy(dtype=np.int64)],
            "hours": ev["hours"].to_numpy(dtype="float64"),
            "end_hours": ev["end_hours"].to_numpy(dtype="float64"),
            "event": ev["event"].to_numpy(dtype=object),
            "detail": ev["detail"].to_numpy(dtype=object),
            "_idx": ev["idx"].to_numpy(dtype=np.int64),
        }
    )
    out = out.sort_values(["_idx", "hours", "event"], kind="stable").drop(columns="_idx")
    return out.reset_index(drop=True)


def simulate(
    n_patients: int,
    seed: int,
    style: str = "clean",
    horizon_h: float = 336,
    landmarks_h=None,
    params: SimulationParams | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    markers: str = "core",
) -> SimulationResult:
    """Simulate a cohort; see the module docstring. ``progress(stage, done, total)``;
    ``markers``: "core" (the 12 variables) or "all" (also the catalogue markers)."""
    if style not in STYLES:
        raise ConfigError(f"style must be one of {STYLES}, got '{style}'")
    if markers not in MARKER_SETS:
        raise ConfigError(f"markers must be one of {MARKER_SETS}, got '{markers}'")
    if int(n_patients) != n_patients or n_patients < 1:
        raise ConfigError(f"n_patients must be a whole number >= 1, got {n_patients}")
    n = int(n_patients)
    params = (params or default_params()).validate()
    K = _horizon_steps(horizon_h)
    steps = _landmark_steps(landmarks_h, K)
    rng = _streams(seed)

    base = draw_baseline(n, int(seed), params, rng["baseline"])
    rates = chain_rates(base, params, K)
    path, incidence = simulate_paths(rates, rng["chain"], progress)
    risk = backward_risk(rates, steps, progress)
    course = build_course(base, path, params, rng["course"])
    oc = outcomes(course)
    ids = base.patient_id
    oc.insert(0, "patient_id", ids)
    oc["label_definition"] = LABEL_DEFINITION
    truth = _truth(path, risk, oc, steps, float(K), ids)
    if progress is not None:
        progress("observations", 0, 1)
    kin = Kinetics(base, course, params)
    obs, draws = sample_observations(base, course, kin, params, rng["sampling"])
    marker_obs, marker_dirt = None, None
    if markers == "all":
        marker_sampling, marker_dirt = rng["markers"].spawn(2)
        marker_obs = sample_markers(base, course, kin, draws, params, marker_sampling)
    kin.release()
    all_obs = obs
    if marker_obs is not None:  # the markers go between the core rows, in time order
        all_obs = pd.concat([obs, marker_obs], ignore_index=True)
        all_obs = all_obs.sort_values(["idx", "hours", "variable"], kind="stable")
    for frame in {id(f): f for f in (obs, all_obs, marker_obs) if f is not None}.values():
        frame.insert(0, "patient_id", ids[frame.pop("idx").to_numpy()])
    if progress is not None:
        progress("observations", 1, 1)
    tables = render_clean(
        _patients_table(base, params), all_obs, _events_table(course, ids), oc, truth
    )
    if style == "messy":
        tables = render_messy(tables, obs, base.site, params, rng["dirt"], marker_obs, marker_dirt)

    prod_names = np.array(params.product_names(), dtype=object)
    latent = pd.DataFrame(
        {
            "patient_id": ids,
            "product": prod_names[base.product],
            "site": np.array([s.name for s in params.sites], dtype=object)[base.site],
            "severity": base.severity,
            "p_any_crs": risk.p_any_crs,
            "p_grade3": risk.p_grade3,
            "onset_hours": course.onset,
            "grade2_hours": course.grade2,
            "grade3_hours_latent": course.grade3,
            "resolution_hours": course.resolution,
            "death_hours_latent": course.death,
            "tocilizumab_hours": course.toci,
            "final_state": np.array(STATE_NAMES, dtype=object)[path[:, -1]],
        }
    )
    med = median_onset_h(incidence)
    return SimulationResult(
        tables=tables,
        latent=latent,
        median_onset_h={p: float(m) for p, m in zip(prod_names, med, strict=True)},
        params=params,
        horizon_h=float(K),
    )


def simulate_cohort(
    n_patients: int,
    seed: int,
    style: str = "clean",
    horizon_h: float = 336,
    landmarks_h=None,
    params: SimulationParams | None = None,
    markers: str = "core",
) -> dict[str, pd.DataFrame]:
    """The input tables (patients, observations, events, outcomes) and truth, as written."""
    return simulate(n_patients, seed, style, horizon_h, landmarks_h, params, markers=markers).tables


def latent_probabilities(
    n_patients: int, seed: int, horizon_h: float = 336, params: SimulationParams | None = None
) -> pd.DataFrame:
    """Per patient P(any CRS by H) and P(grade >= 3 by H) at infusion (exact, latent), for
    the same patients ``simulate`` draws with this seed; fast (no observations)."""
    params = (params or default_params()).validate()
    K = _horizon_steps(horizon_h)
    rng = _streams(seed)
    base = draw_baseline(int(n_patients), int(seed), params, rng["baseline"])
    risk = backward_risk(chain_rates(base, params, K))
    return pd.DataFrame(
        {
            "patient_id": base.patient_id,
            "product": np.array(params.product_names(), dtype=object)[base.product],
            "p_any_crs": risk.p_any_crs,
            "p_grade3": risk.p_grade3,
        }
    )


def horizon_truth(
    n_patients: int,
    seed: int,
    landmarks_h=None,
    windows_h=None,
    horizon_h: float = 336,
    params: SimulationParams | None = None,
) -> pd.DataFrame:
    """True cumulative incidence of grade >= 3 by each horizon, for the same patients
    ``simulate`` draws with this seed (it redraws baseline, latent course and outcomes from
    the same streams; no observations, so it is fast).

    One row per patient at risk at L by rules 1-3 (not yet grade >= 3, alive, followed
    beyond L; rule 4 does not apply: a patient whose follow-up ends before the horizon has a
    true risk too, which the censored metrics need) and horizon: each window w of
    ``windows_h`` (default ``DEFAULT_WINDOWS_H``, hours after L, ending at min(L + w, H)),
    then H. Columns: patient_id, landmark_h, horizon (label as in
    :func:`crs_ml.features.landmarks.horizon_status`), horizon_end_h, true_risk =
    P(grade >= 3 in (L, end] | everything the simulator knows at L), exact by the backward
    recursion (:func:`crs_ml.simulate.chain.risk_by`), death competing. The "by H" rows equal
    ``truth.csv`` on the patients it holds (rule 4 applied).
    """
    params = (params or default_params()).validate()
    K = _horizon_steps(horizon_h)
    steps = _landmark_steps(landmarks_h, K)
    windows = np.unique(np.asarray(DEFAULT_WINDOWS_H if windows_h is None else windows_h, float))
    if (windows <= 0).any() or (windows != np.round(windows)).any():
        raise ConfigError(f"windows must be whole hours > 0, got {list(windows)}")
    rng = _streams(seed)
    base = draw_baseline(int(n_patients), int(seed), params, rng["baseline"])
    rates = chain_rates(base, params, K)
    path, _ = simulate_paths(rates, rng["chain"])
    oc = outcomes(build_course(base, path, params, rng["course"]))
    g3, death, fu = (oc[c].to_numpy() for c in ("grade3_hours", "death_hours", "followup_hours"))
    ids = base.patient_id
    rows = np.arange(len(ids))
    specs = [(int(w), horizon_label(w, K)) for w in windows] + [(None, horizon_label(None, K))]
    at_end = backward_risk(rates, steps).risk_at
    parts = []
    for L in steps:
        status, _, _ = at_risk_status(g3, death, fu, float(L), float(K))
        keep = np.isin(status, ("included", "censored_before_horizon"))  # rules 1-3
        state = path[:, L]
        for w, label in specs:
            end = K if w is None else min(int(L) + w, K)
            risk = at_end[int(L)] if end == K else risk_by(rates, end, [L])[int(L)]
            parts.append(
                pd.DataFrame(
                    {
                        "patient_id": ids[keep],
                        "landmark_h": float(L),
                        "horizon": label,
                        "horizon_end_h": float(end),
                        "true_risk": risk[rows, state][keep],
                    }
                )
            )
    cols = ["patient_id", "landmark_h", "horizon", "horizon_end_h", "true_risk"]
    if not parts:
        return pd.DataFrame({c: [] for c in cols})
    out = pd.concat(parts, ignore_index=True)
    out["patient_id"] = out["patient_id"].astype(object)
    return out[cols]
