"""Biomarker and vital-sign values from the latent course (assumptions in KineticsParams).

On the whole-hour grid k = 0..H the inflammatory *drive* is

    J(k) = A * g_p(k)^profile_power * level_drive[level(k)] * (steroid_drive if a steroid
           was given)

with amplitude log A = amplitude_severity * s + amplitude_progression * (a3_p - reference)
+ amplitude_sd * z (a3_p the product's progression log scale, z a patient factor that moves
all cytokines together but no hazard): log A moves with the log progression hazard
a3_p + progression_exponent * s, so among patients alike in everything observable, higher
early IL-6 and fever mean a higher risk of progression (docs/domain.md, Teachey 2016, Hay 2017).
The pre-onset level multiplier is subclinical CAR-T activation (IL-6 and sub-febrile
temperatures rise before fever in those who will be sick). The latent inflammation I is J
smoothed with time constant ``tau_il6_h`` (causal first-order filter, so I(k) depends only
on the course up to k). The fever drive uses the same J. From I:

* IL-6 = baseline + il6_per_unit * I, times (1 + rise * exp(-(k - t_toci)/decay)) after
  tocilizumab (serum IL-6 rises under receptor blockade) -- peaks first;
* CRP = baseline + saturating function of the synthesis I(k - crp_delay_h) x a patient's
  hepatic response exp(crp_response_sd * z') accumulated with time constant ``tau_crp_h``
  (lags IL-6 by about a day), synthesis blocked after tocilizumab (CRP falls);
* ferritin rises later and slower (``tau_ferritin_h``); LDH follows ferritin mildly;
  platelets fall over time (lymphodepletion) and with inflammation; creatinine rises with
  hypotension;
* fever: J (blocked by tocilizumab) smoothed over ``tau_fever_h``, F; in CRS the
  temperature is t0 + 0.3 + max(fever_rise_c + fever_severity_c * s, 0.5) * F / (F +
  fever_half_unit) (higher fevers in sicker patients); afebrile (< 38.0) before onset and
  after resolution, febrile in CRS unless treated;
* sbp < 90 only at grade 2 hypotension or on vasopressors; heart rate up with fever and
  grade; SpO2 down and respiratory rate up with hypoxia.

Values are read at the grid index of the draw (``floor`` of the draw time, or the state just
after an event for the vital-sign set recorded at that event), so a value never reflects
anything that happened after its draw time's hour.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from crs_ml.simulate.baseline import Baseline
from crs_ml.simulate.chain import activity_profile
from crs_ml.simulate.course import (
    BOTH,
    HFNO,
    HYPO,
    HYPOX,
    L_G1,
    L_G2,
    L_G3,
    L_G4,
    VASO,
    Course,
)
from crs_ml.simulate.params import SimulationParams

#: display precision (decimals) per variable
DECIMALS = {
    "temperature": 1, "il6": 1, "crp": 1, "ferritin": 0, "ldh": 0, "platelets": 0,
    "creatinine": 2, "sbp": 0, "dbp": 0, "heart_rate": 0, "resp_rate": 0, "spo2": 0,
}  # fmt: skip


def smooth(x: np.ndarray, tau_h: float) -> np.ndarray:
    """Causal exponential smoothing along axis 1 (hourly grid), starting from 0."""
    a = float(np.exp(-1.0 / tau_h))
    return lfilter([1.0 - a], [1.0, -a], x, axis=1)


class Kinetics:
    """Latent drivers on the hourly grid, computed lazily, and observed values on demand."""

    def __init__(self, base: Baseline, course: Course, params: SimulationParams):
        self.base, self.course, self.kp = base, course, params.kinetics
        self.params = params
        self.K = course.level.shape[1] - 1
        self._cache: dict[str, np.ndarray] = {}

    # -- latent grids ------------------------------------------------------------------
    def _grid(self, name: str) -> np.ndarray:
        if name in self._cache:
            return self._cache[name]
        kp, c = self.kp, self.course
        kk = np.arange(self.K + 1, dtype="float64")[None, :]
        if name == "drive":
            prof = np.stack(
                [
                    activity_profile(kk[0], p.profile_mode_h, p.profile_sigma)
                    for p in self.params.products
                ]
            )
            mult = np.array([*kp.level_drive, 0.0])[c.level]
            ster = np.where(kk >= c.steroid[:, None], kp.steroid_drive, 1.0)
            b = self.base
            a3 = np.array([p.progression_log_scale for p in self.params.products])[b.product]
            amp = np.exp(
                kp.amplitude_severity * b.severity
                + kp.amplitude_progression * (a3 - kp.amplitude_reference_log_scale)
                + kp.amplitude_sd * b.amplitude_z
            )
            drive = amp[:, None] * prof[self.base.product] ** kp.profile_power * mult * ster
            out = drive
        elif name == "toci_on":
            out = (kk >= c.toci[:, None]).astype("float64")
        elif name == "il6":
            out = smooth(self._grid("drive"), kp.tau_il6_h)
        elif name == "crp":
            il6, d = self._grid("il6"), int(kp.crp_delay_h)
            lagged = np.zeros_like(il6)
            lagged[:, d:] = il6[:, : il6.shape[1] - d]
            synthesis = lagged * (1 - kp.toci_crp_block * self._grid("toci_on"))
            synthesis *= np.exp(kp.crp_response_sd * self.base.crp_response_z)[:, None]
            out = smooth(synthesis, kp.tau_crp_h)
        elif name == "ferritin":
            out = smooth(self._grid("il6"), kp.tau_ferritin_h)
        elif name == "fever":
            out = smooth(
                self._grid("drive") * (1 - kp.toci_fever_block * self._grid("toci_on")),
                kp.tau_fever_h,
            )
        elif name == "hypotension":
            lev = c.level
            hypo = ((lev == L_G2) & np.isin(c.grade2_type, [HYPO, BOTH])[:, None]) | (
                np.isin(lev, [L_G3, L_G4]) & (c.grade3_type == VASO)[:, None]
            )
            out = smooth(hypo.astype("float64"), 24.0)
        else:  # pragma: no cover
            raise KeyError(name)
        out = np.asarray(out, dtype=np.float32)  # halves the memory of the hourly grids
        self._cache[name] = out
        return out

    def release(self) -> None:
        self._cache.clear()

    def grid(self, name: str) -> np.ndarray:
        """A latent grid (n, K + 1) by name: drive, il6, crp, ferritin, fever, hypotension,
        toci_on (see the module docstring); computed once and cached until ``release``."""
        return self._grid(name)

    def _at(self, name: str, i: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Grid value at (patient i, hour k); k < 0 (before infusion) gives 0."""
        g = self._grid(name)
        return np.where(k >= 0, g[i, np.maximum(k, 0)], 0.0)

    # -- observed values --------------------------------------------------------------
    def values(self, var: str, i: np.ndarray, k: np.ndarray, rng: np.random.Generator):
        """(value, censored) for measurements of ``var`` drawn at grid hours ``k`` (-1 =
        before infusion), rounded to display precision; IL-6 censored at the assay limits."""
        b, c, kp = self.base, self.course, self.kp
        n = len(i)
        lev = np.where(k >= 0, c.level[i, np.maximum(k, 0)], 0)
        z = rng.standard_normal(n)
        cens = np.zeros(n, dtype=np.int8)
        if var == "il6":
            toci_dt = np.where(k >= c.toci[i], k - c.toci[i], np.inf)
            rise = 1.0 + kp.il6_toci_rise * np.exp(-toci_dt / kp.il6_toci_decay_h)
            v = (b.il6_0[i] + kp.il6_per_unit * self._at("il6", i, k) * rise) * np.exp(
                kp.noise_il6 * z
            )
            lo, hi = kp.il6_limits
            cens = np.where(v < lo, -1, np.where(v > hi, 1, 0)).astype(np.int8)
            v = np.clip(v, lo, hi)
        elif var == "crp":
            x = self._at("crp", i, k)
            v = (b.crp0[i] + kp.crp_max_mg_l * x / (x + kp.crp_half_unit)) * np.exp(
                kp.noise_crp * z
            )
        elif var == "ferritin":
            f = self._at("ferritin", i, k)
            v = b.ferritin0[i] * (1 + kp.ferritin_per_unit * f) * np.exp(kp.noise_ferritin * z)
        elif var == "ldh":
            f = self._at("ferritin", i, k)
            v = b.ldh0[i] * (1 + kp.ldh_per_unit * f**0.7) * np.exp(0.08 * z)
        elif var == "platelets":
            f = self._at("ferritin", i, k)
            decline = np.exp(-kp.platelet_decline_per_h * np.clip(k, 0, 200))
            v = b.platelets0[i] * decline / (1 + kp.platelet_per_unit * f) * np.exp(0.1 * z)
            v = np.maximum(v, 2.0)
        elif var == "creatinine":
            hypo = self._at("hypotension", i, k)
            v = b.creatinine0[i] * (1 + kp.creatinine_per_hypotension * hypo) * np.exp(0.07 * z)
        elif var == "temperature":
            f = self._at("fever", i, k)
            phi = f / (f + kp.fever_half_unit)
            ill = (lev >= L_G1) & (lev <= L_G4)
            t0 = b.temperature0[i]
            rise = np.maximum(kp.fever_rise_c + kp.fever_severity_c * b.severity[i], 0.5)
            v = np.where(
                ill, t0 + 0.3 + rise * phi + 0.3 * z, np.minimum(t0 + 0.7 * phi + 0.25 * z, 37.9)
            )
            v = np.clip(v, 35.0, 41.5)
        elif var in ("sbp", "dbp"):
            v = self._sbp(i, k, lev, z, rng)
            if var == "dbp":
                v = np.clip(np.round(0.62 * v + 5.0 * rng.standard_normal(n)), 35, 110)
        elif var == "heart_rate":
            f = self._at("fever", i, k)
            grade = np.where(lev <= L_G4, lev, 0)
            on_vaso = np.isin(lev, [L_G3, L_G4]) & (c.grade3_type[i] == VASO)
            v = np.clip(
                b.heart_rate0[i] + 20 * f / (f + 0.3) + 6 * grade + 10 * on_vaso + 6 * z, 40, 180
            )
        elif var in ("resp_rate", "spo2"):
            hyp = self._hypoxia(i, lev)
            if var == "resp_rate":
                grade = np.where(lev <= L_G4, lev, 0)
                v = np.clip(16 + 1.5 * grade + 4 * (hyp > 0) + 2 * z, 8, 45)
            else:
                drop = np.array([0.0, 4.5, 6.5, 8.5])[hyp]
                sd = np.array([1.0, 1.5, 2.0, 3.0])[hyp]
                v = np.clip(97.5 - drop + sd * z, 70, 100)
        else:
            raise KeyError(var)
        v = np.round(v, DECIMALS[var])
        if var == "temperature":
            v = np.where((lev >= L_G1) & (lev <= L_G4), v, np.minimum(v, 37.9))
        return v, cens

    def _hypoxia(self, i, lev):
        """0 none, 1 low flow, 2 high flow, 3 positive pressure (by level and type)."""
        c = self.course
        g2 = (lev == L_G2) & np.isin(c.grade2_type[i], [HYPOX, BOTH])
        hf = (c.grade3_type[i] == HFNO) & np.isin(lev, [L_G3, L_G4])
        return np.select([hf & (lev == L_G4), hf, g2], [3, 2, 1], default=0)

    def _sbp(self, i, k, lev, z, rng):
        """Systolic BP: < 90 only at grade-2 hypotension or on a vasopressor."""
        b, c = self.base, self.course
        n = len(i)
        f = self._at("fever", i, k)
        phi = f / (f + 0.3)
        normal = b.sbp0[i] + 7.0 * z
        ill = b.sbp0[i] - 8.0 - 6.0 * phi + 7.0 * z
        hypo2 = (lev == L_G2) & np.isin(c.grade2_type[i], [HYPO, BOTH])
        vaso = np.isin(lev, [L_G3, L_G4]) & (c.grade3_type[i] == VASO)
        v = np.where((lev >= L_G1) & (lev <= L_G4), ill, normal)
        v = np.where(hypo2, 72.0 + 17.0 * rng.random(n), v)
        v = np.where(vaso, 92.0 + 9.0 * z, v)
        v = np.round(v)
        low_ok = hypo2 | vaso
        v = np.where(low_ok, np.clip(v, 60, 160), np.clip(v, 91, 190))
        return np.where(hypo2, np.minimum(v, 89), v)
