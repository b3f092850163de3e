"""The latent CRS process: a discrete-time Markov chain per patient, and its exact true risk.

States (hourly steps; a transition "in step k" happens at a time in (k, k+1]):

======  ==============================================================
PRE     no CRS yet
G1      grade 1 (fever), untreated          G1T  grade 1 after tocilizumab
G2      grade 2, untreated                  G2T  grade 2 after tocilizumab
G2TS    grade 2 after tocilizumab + corticosteroid
RES     CRS resolved (no further progression; absorbing)
G3      grade >= 3 reached (absorbing; the outcome)
DEAD    death before grade 3 from another cause (absorbing; competing)
======  ==============================================================

Hazards (per hour, evaluated at the middle of the step) with s the latent severity and
g_p the product's CAR-T activity profile (log-Gaussian bump with mode ``profile_mode_h``):

* onset PRE -> G1: exp(onset_log_scale_p + onset_exponent * s) * g_p(t)
* progression G1 -> G2: grade2_factor * c3 * g'_p(t); G1 -> G3: direct_grade3_factor * c3 *
  g'_p(t); G2 -> G3: c3 * g'_p(t), with c3 = exp(progression_log_scale_p + progression_exponent
  * s) and g'_p(t) = g_p(t / progression_delay_factor); after tocilizumab x toci_progression,
  after a corticosteroid x steroid_progression;
* treatment (site policy): G1 -> G1T toci_fever_per_h, G2 -> G2T toci_grade2_per_h,
  G2T -> G2TS steroid_grade2_per_h;
* resolution G1/G2 -> RES (constant, faster after treatment); death -> DEAD (age).

TRUE RISK at landmark L = P(reach G3 in steps L..H-1, i.e. grade >= 3 in (L, H] | s,
product, site, state at L), computed exactly by the backward (Kolmogorov) recursion
r_a(k) = sum_b P_ab(k) r_b(k + 1), r(H) = 1{G3}, with the *same* one-step transition
probabilities the forward simulation draws from. It conditions on everything the simulator
knows at L: the latent severity and baseline, product, site (its treatment policy), the
current grade and treatment state; it integrates over the future exactly (future onset,
progression, future policy-driven treatment, resolution, competing death). It does NOT
know: future random draws, and the independent dropout time (censoring).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from crs_ml.simulate.baseline import Baseline
from crs_ml.simulate.params import SimulationParams

PRE, G1, G1T, G2, G2T, G2TS, RES, G3, DEAD = range(9)
N_STATES = 9
STATE_NAMES = ("PRE", "G1", "G1T", "G2", "G2T", "G2TS", "RES", "G3", "DEAD")
#: profile of a transition: constant, onset profile g, progression profile g'
_CONST, _ONSET, _PROG = 0, 1, 2
#: (from, to, profile) of every transition; rates in ChainRates.const
TRANSITIONS = (
    (PRE, G1, _ONSET), (PRE, DEAD, _CONST),
    (G1, G1T, _CONST), (G1, G2, _PROG), (G1, G3, _PROG), (G1, RES, _CONST), (G1, DEAD, _CONST),
    (G1T, G2T, _PROG), (G1T, G3, _PROG), (G1T, RES, _CONST), (G1T, DEAD, _CONST),
    (G2, G2T, _CONST), (G2, G3, _PROG), (G2, RES, _CONST), (G2, DEAD, _CONST),
    (G2T, G2TS, _CONST), (G2T, G3, _PROG), (G2T, RES, _CONST), (G2T, DEAD, _CONST),
    (G2TS, G3, _PROG), (G2TS, RES, _CONST), (G2TS, DEAD, _CONST),
)  # fmt: skip
_FROM = np.array([t[0] for t in TRANSITIONS])
_TO = np.array([t[1] for t in TRANSITIONS])
_KIND = np.array([t[2] for t in TRANSITIONS])
_IS_CONST, _IS_ONSET, _IS_PROG = ((_KIND == k).astype("float64") for k in (_CONST, _ONSET, _PROG))
# transitions are grouped by origin state: block [_BLOCK_START[s], _BLOCK_END[s])
_BLOCK_START = np.array([np.searchsorted(_FROM, s_) for s_ in range(N_STATES)])
_BLOCK_END = np.array([np.searchsorted(_FROM, s_, side="right") for s_ in range(N_STATES)])
_BLOCK_STATES = np.flatnonzero(_BLOCK_END > _BLOCK_START)  # states with transitions
_BLOCK_OFFSETS = _BLOCK_START[_BLOCK_STATES]
_BLOCK_SIZES = (_BLOCK_END - _BLOCK_START)[_BLOCK_STATES]
assert (np.diff(_FROM) >= 0).all() and (_BLOCK_STATES == np.arange(len(_BLOCK_STATES))).all()
_ONSET_TR = 0


def activity_profile(hours: np.ndarray, mode_h: float, sigma: float) -> np.ndarray:
    """Log-Gaussian bump with maximum 1 at ``mode_h`` (CAR-T expansion/activity, assumption)."""
    t = np.maximum(np.asarray(hours, dtype="float64"), 1e-9)
    return np.exp(-0.5 * (np.log(t / mode_h) / sigma) ** 2)


@dataclass
class ChainRates:
    """Everything that defines each patient's transition probabilities."""

    const: np.ndarray  #: (n, n_tr) rate constants per hour
    product: np.ndarray  #: (n,) product index
    onset_profile: np.ndarray  #: (n_products, K) g_p at step midpoints
    prog_profile: np.ndarray  #: (n_products, K)
    n_steps: int

    @property
    def n(self) -> int:
        return len(self.product)

    def step_probabilities(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(P_move (n, n_tr), P_leave (n, n_blocks)) for step k: competing exponential
        hazards, at most one transition per step. Blocks are the origin states that have
        transitions (``_BLOCK_STATES``); the other states are absorbing. Written without
        BLAS calls (tiny matrices are slow with multi-threaded BLAS)."""
        g = self.onset_profile[self.product, k][:, None]
        gp = self.prog_profile[self.product, k][:, None]
        h = self.const * (_IS_CONST + _IS_ONSET * g + _IS_PROG * gp)
        total = np.add.reduceat(h, _BLOCK_OFFSETS, axis=1)  # (n, n_blocks)
        p_leave = -np.expm1(-total)
        ratio = p_leave / np.maximum(total, 1e-300)
        return h * np.repeat(ratio, _BLOCK_SIZES, axis=1), p_leave


def chain_rates(base: Baseline, params: SimulationParams, n_steps: int) -> ChainRates:
    """Rate constants of every transition for every patient (see module docstring)."""
    hz, sev = params.hazards, params.severity
    site = params.sites
    prod = params.products
    s = base.severity
    a1 = np.array([p.onset_log_scale for p in prod])[base.product]
    a3 = np.array([p.progression_log_scale for p in prod])[base.product]
    c1 = np.exp(a1 + sev.onset_exponent * s)
    c3 = np.exp(a3 + sev.progression_exponent * s)
    death = hz.death_per_h * np.exp(hz.death_age_log_hr_per_10y * (base.age - 60.0) / 10.0)
    toci_fever = np.array([x.toci_fever_per_h for x in site])[base.site]
    toci_g2 = np.array([x.toci_grade2_per_h for x in site])[base.site]
    ster_g2 = np.array([x.steroid_grade2_per_h for x in site])[base.site]
    rt, rs = hz.toci_progression, hz.steroid_progression
    ft, fs = hz.toci_resolution, hz.steroid_resolution
    r1, r2 = hz.resolution_grade1_per_h, hz.resolution_grade2_per_h
    c2, c13 = hz.grade2_factor * c3, hz.direct_grade3_factor * c3
    one = np.ones_like(s)
    cols = [
        c1, death,  # PRE
        toci_fever, c2, c13, r1 * one, death,  # G1
        rt * c2, rt * c13, ft * r1 * one, death,  # G1T
        toci_g2, c3, r2 * one, death,  # G2
        ster_g2, rt * c3, ft * r2 * one, death,  # G2T
        rt * rs * c3, ft * fs * r2 * one, death,  # G2TS
    ]  # fmt: skip
    mid = np.arange(n_steps) + 0.5
    onset = np.stack([activity_profile(mid, p.profile_mode_h, p.profile_sigma) for p in prod])
    delay = hz.progression_delay_factor
    prog = np.stack(
        [activity_profile(mid / delay, p.profile_mode_h, p.profile_sigma) for p in prod]
    )
    return ChainRates(np.stack(cols, axis=1), base.product.copy(), onset, prog, int(n_steps))


def simulate_paths(
    rates: ChainRates, rng: np.random.Generator, progress: Callable | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(path, onset_incidence): the state at every hour 0..K, shape (n, K + 1) int8 (one
    uniform per patient and step), and the latent expected onset incidence per product and
    step, shape (n_products, K) (exact, from the same transition probabilities)."""
    n, K = rates.n, rates.n_steps
    path = np.empty((n, K + 1), dtype=np.int8)
    state = np.full(n, PRE, dtype=np.int64)
    path[:, 0] = PRE
    start, end = _BLOCK_START, _BLOCK_END
    rows = np.arange(n)
    n_products = rates.onset_profile.shape[0]
    alive_pre = np.ones(n)
    incidence = np.zeros((n_products, K))
    for k in range(K):
        p_move, p_leave = rates.step_probabilities(k)
        incidence[:, k] = np.bincount(
            rates.product, weights=alive_pre * p_move[:, _ONSET_TR], minlength=n_products
        )
        alive_pre *= 1.0 - p_leave[:, PRE]
        cum = np.cumsum(p_move, axis=1)
        b0 = start[state]
        offset = np.where(b0 > 0, cum[rows, np.maximum(b0 - 1, 0)], 0.0)
        target = offset + rng.random(n)
        idx = (cum <= target[:, None]).sum(axis=1)
        moved = idx < end[state]
        state = np.where(moved, _TO[np.minimum(idx, len(_TO) - 1)], state)
        path[:, k + 1] = state
        if progress is not None and (k % 24 == 23 or k == K - 1):
            progress("latent course", k + 1, K)
    return path, incidence


@dataclass
class RiskResult:
    """Backward-recursion results."""

    risk_at: dict[int, np.ndarray]  #: step L -> (n, n_states) P(G3 in (L, H] | state at L)
    p_grade3: np.ndarray  #: (n,) P(grade >= 3 by H) at infusion
    p_any_crs: np.ndarray  #: (n,) P(CRS onset by H) at infusion (death competing)


def backward_risk(
    rates: ChainRates, landmark_steps=(), progress: Callable | None = None
) -> RiskResult:
    """Exact risk of G3 within the horizon from every state, at the requested steps."""
    n, K = rates.n, rates.n_steps
    wanted = {int(k) for k in landmark_steps if 0 <= int(k) < K}
    r = np.zeros((n, N_STATES))
    r[:, G3] = 1.0
    r_any = np.zeros(n)
    out: dict[int, np.ndarray] = {}
    nb = len(_BLOCK_STATES)
    for k in range(K - 1, -1, -1):
        p_move, p_leave = rates.step_probabilities(k)
        r_any = (1.0 - p_leave[:, PRE]) * r_any + p_move[:, _ONSET_TR]
        gain = np.add.reduceat(p_move * r[:, _TO], _BLOCK_OFFSETS, axis=1)
        r[:, :nb] = (1.0 - p_leave) * r[:, :nb] + gain
        if k in wanted:
            out[k] = r.copy()
        if progress is not None and (k % 24 == 0):
            progress("true risk", K - k, K)
    return RiskResult(out, r[:, PRE].copy(), r_any)


def risk_by(rates: ChainRates, end_step: int, landmark_steps) -> dict[int, np.ndarray]:
    """Exact P(G3 in (L, end] | state at L), step L -> (n, n_states), for the landmarks
    L < end: the backward recursion of :func:`backward_risk` started at ``end`` instead of
    the horizon (the risk over a shorter window after L)."""
    end = min(int(end_step), rates.n_steps)
    wanted = {int(k) for k in landmark_steps if 0 <= int(k) < end}
    out: dict[int, np.ndarray] = {}
    if not wanted:
        return out
    r = np.zeros((rates.n, N_STATES))
    r[:, G3] = 1.0
    nb = len(_BLOCK_STATES)
    for k in range(end - 1, min(wanted) - 1, -1):
        p_move, p_leave = rates.step_probabilities(k)
        gain = np.add.reduceat(p_move * r[:, _TO], _BLOCK_OFFSETS, axis=1)
        r[:, :nb] = (1.0 - p_leave) * r[:, :nb] + gain
        if k in wanted:
            out[k] = r.copy()
    return out


def median_onset_h(incidence: np.ndarray) -> np.ndarray:
    """Median onset (hours) per product from the onset incidence of :func:`simulate_paths`
    (linear within a step; onset in step k happens in (k, k + 1])."""
    cum = np.cumsum(incidence, axis=1)
    total = cum[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = cum / total
    out = np.full(incidence.shape[0], np.nan)
    for p in range(incidence.shape[0]):
        if not np.isfinite(frac[p, -1]):
            continue
        k = int(np.searchsorted(frac[p], 0.5))
        prev = frac[p, k - 1] if k > 0 else 0.0
        out[p] = k + (0.5 - prev) / max(frac[p, k] - prev, 1e-12)
    return out
