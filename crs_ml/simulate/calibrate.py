"""Calibration of the product constants of the simulator to the targets of docs/domain.md.

For each product, on a reference sample of latent patients (default site mix):

1. ``onset_log_scale`` and ``profile_mode_h`` (alternating root finding) so that the latent
   P(any CRS by the horizon) equals ``any_crs`` and the latent median onset equals
   ``onset_median_h``;
2. ``progression_log_scale`` so that the latent mean P(grade >= 3 by the horizon) equals
   ``grade3``.

All probabilities are exact functions of the latent state (no Monte Carlo beyond drawing
the reference patients). The defaults in crs_ml.simulate.params were produced by
``python -m crs_ml.simulate.calibrate`` (prints the constants to paste).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.optimize import brentq

from crs_ml.simulate.baseline import draw_baseline
from crs_ml.simulate.chain import activity_profile, backward_risk, chain_rates
from crs_ml.simulate.params import SimulationParams, default_params, with_products


def _onset_stats(c1, death, mode_h, sigma, horizon_steps):
    """(P(onset by H), median onset hours) for onset hazard c1 * g(t) and death hazard."""
    mid = np.arange(horizon_steps) + 0.5
    g = activity_profile(mid, mode_h, sigma)
    h = c1[:, None] * g[None, :]
    tot = h + death[:, None]
    surv = np.exp(-np.cumsum(tot, axis=1))
    surv_before = np.concatenate([np.ones((len(c1), 1)), surv[:, :-1]], axis=1)
    inc = (surv_before * h / tot * -np.expm1(-tot)).mean(axis=0)
    cum = np.cumsum(inc)
    frac = cum / cum[-1]
    k = int(np.searchsorted(frac, 0.5))
    prev = frac[k - 1] if k > 0 else 0.0
    return cum[-1], k + (0.5 - prev) / max(frac[k] - prev, 1e-12)


def _solve_onset(prod, s, death, b1, horizon_h, rounds: int = 8) -> tuple[float, float]:
    """Alternate root finding: onset scale for the any-grade rate, mode for the median."""
    a1, mode = prod.onset_log_scale, prod.profile_mode_h
    sigma = prod.profile_sigma

    def any_gap(a: float) -> float:
        return _onset_stats(np.exp(a + b1 * s), death, mode, sigma, horizon_h)[0] - prod.any_crs

    def median_gap(log_mode: float) -> float:
        stats = _onset_stats(np.exp(a1 + b1 * s), death, np.exp(log_mode), sigma, horizon_h)
        return stats[1] - prod.onset_median_h

    for _ in range(rounds):
        a1 = brentq(any_gap, -20.0, 10.0, xtol=1e-6)
        mode = float(np.exp(brentq(median_gap, np.log(2.0), np.log(2000.0), xtol=1e-6)))
    return float(a1), mode


def calibrate_products(
    params: SimulationParams | None = None,
    n_ref: int = 10000,
    seed: int = 20240,
    horizon_h: int = 336,
    verbose: bool = False,
) -> SimulationParams:
    """Params with every product's mechanism constants solved to its targets."""
    params = (params or default_params()).validate()
    new_products = []
    for prod in params.products:
        one = with_products(params, **{prod.name.replace("-", "_"): 1.0})
        rng = np.random.default_rng(seed)
        base = draw_baseline(n_ref, 0, one, rng)
        hz = one.hazards
        death = hz.death_per_h * np.exp(hz.death_age_log_hr_per_10y * (base.age - 60.0) / 10.0)
        a1, mode = _solve_onset(prod, base.severity, death, one.severity.onset_exponent, horizon_h)
        cur = replace(prod, onset_log_scale=float(a1), profile_mode_h=mode)

        def g3_gap(a3: float, cur=cur, one=one, base=base) -> float:
            p = replace(one, products=tuple(
                replace(cur, progression_log_scale=a3) if q.name == cur.name else q
                for q in one.products
            ))  # fmt: skip
            rates = chain_rates(base, p, horizon_h)
            return float(backward_risk(rates).p_grade3.mean()) - cur.grade3

        a3 = brentq(g3_gap, -16.0, 2.0, xtol=1e-4)
        cur = replace(cur, progression_log_scale=float(a3))
        if verbose:
            print(
                f"{cur.name:10s} onset_log_scale={cur.onset_log_scale:.4f} "
                f"profile_mode_h={cur.profile_mode_h:.4f} "
                f"progression_log_scale={cur.progression_log_scale:.4f}"
            )
        new_products.append(cur)
    # restore the original shares
    return replace(
        params,
        products=tuple(
            replace(q, share=p.share) for q, p in zip(new_products, params.products, strict=True)
        ),
    )


if __name__ == "__main__":  # pragma: no cover - maintenance script
    calibrate_products(verbose=True)
