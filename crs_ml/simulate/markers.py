"""The catalogue markers beyond the core 12: cytokine panel, coagulation, liver, blood counts.

Written when ``simulate(..., markers="all")``. Every value is a function of the latent grids
of the core kinetics (crs_ml.simulate.kinetics: the drive J, the IL-6-speed inflammation I,
the CRP synthesis, the ferritin-speed inflammation F, the smoothed hypotension), of the
patient's baseline and of patient factors of their own; nothing here changes a hazard, an
event or the true risk. Assumptions and sources: crs_ml.simulate.params.MarkerParams.

* cytokines (IFN-gamma, IL-10, MCP-1, TNF-alpha, IL-1beta): baseline + per_unit x J smoothed
  with the cytokine's time constant, scaled by exp(severity_loading x s + patient factor);
* coagulation: consumption K = I smoothed over ``tau_consumption_h``; fibrinogen rises with
  the CRP synthesis (acute phase, blocked by tocilizumab) and falls with K; D-dimer and INR
  rise with K;
* liver: ALT, AST (over ``tau_liver_h``) and bilirubin (over ``tau_bilirubin_h``) rise with
  the smoothed inflammation and with hypoperfusion;
* blood counts: neutrophils fall to a lymphodepletion nadir (a log-Gaussian bump in time)
  and further with F; WBC = neutrophils + the other leukocytes, which fall earlier.

Randomness: one generator of its own (the simulator's ``markers`` stream) for the patient
factors, the panel orders, the result delays and the measurement noise; the core streams
never see it, so the core cohort of a seed does not depend on whether markers are written.

Sampling: a panel is ordered at the first lab draw of each day (day = floor(draw time / 24);
the pre-infusion panel included) with the site's probability (SiteParams.panels); values
are read at the draw's grid hour and written at the result time (the site's lab delay, or
its ``cytokine_delay_h``); only results known by the end of observation are written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crs_ml.simulate.baseline import Baseline
from crs_ml.simulate.chain import activity_profile
from crs_ml.simulate.course import Course
from crs_ml.simulate.kinetics import Kinetics, smooth
from crs_ml.simulate.params import MARKER_PANELS, SimulationParams

#: display precision (decimals) of the written values, canonical units
MARKER_DECIMALS = {
    "ifng": 1, "il10": 1, "mcp1": 0, "tnf_alpha": 1, "il1b": 1,
    "d_dimer": 2, "fibrinogen": 0, "inr": 2, "alt": 0, "ast": 0, "bilirubin": 1,
    "wbc": 2, "anc": 2,
}  # fmt: skip
MARKER_VARIABLES = tuple(v for panel in MARKER_PANELS.values() for v in panel)
_COLUMNS = ("idx", "hours", "variable", "value", "censored")


@dataclass
class MarkerBaseline:
    """Per patient: pre-infusion values and patient factors of the markers."""

    cytokine0: dict[str, np.ndarray]  #: pg/mL
    cytokine_scale: dict[str, np.ndarray]  #: exp(severity_loading x s + patient factor)
    fibrinogen0: np.ndarray
    d_dimer0: np.ndarray
    inr0: np.ndarray
    alt0: np.ndarray
    ast0: np.ndarray
    bilirubin0: np.ndarray
    anc0: np.ndarray
    other_leukocytes0: np.ndarray  #: WBC - ANC at baseline
    anc_depth: np.ndarray


def draw_marker_baseline(
    base: Baseline, params: SimulationParams, rng: np.random.Generator
) -> MarkerBaseline:
    mp = params.markers
    n = base.n
    cyto0, scale = {}, {}
    for c in mp.cytokines:
        z = rng.standard_normal((2, n))
        cyto0[c.name] = c.baseline_median * np.exp(c.baseline_sd * z[0])
        scale[c.name] = np.exp(c.severity_loading * base.severity + c.patient_sd * z[1])
    z = rng.standard_normal((9, n))
    tb = base.tumour_burden
    anc0 = mp.anc_median * np.exp(mp.anc_tb * tb + mp.anc_sd * z[6])
    return MarkerBaseline(
        cytokine0=cyto0,
        cytokine_scale=scale,
        fibrinogen0=mp.fibrinogen_median * np.exp(mp.fibrinogen_sd * z[0]),
        d_dimer0=mp.d_dimer_median * np.exp(mp.d_dimer_tb * tb + mp.d_dimer_sd * z[1]),
        inr0=mp.inr_median * np.exp(mp.inr_sd * z[2]),
        alt0=mp.alt_median * np.exp(mp.alt_sd * z[3]),
        ast0=mp.ast_median * np.exp(mp.ast_sd * z[4]),
        bilirubin0=mp.bilirubin_median * np.exp(mp.bilirubin_sd * z[5]),
        anc0=anc0,
        other_leukocytes0=anc0
        * (1 - mp.neutrophil_share)
        / mp.neutrophil_share
        * np.exp(mp.other_leukocytes_sd * z[7]),
        anc_depth=mp.anc_depth * np.exp(mp.anc_depth_sd * z[8]),
    )


class MarkerKinetics:
    """Observed marker values from the core kinetics' latent grids (see module docstring)."""

    def __init__(self, kin: Kinetics, mb: MarkerBaseline, params: SimulationParams):
        self.kin, self.mb, self.mp = kin, mb, params.markers
        self.base = kin.base
        self.K = kin.K
        self._cache: dict[tuple[str, float], np.ndarray] = {}

    def _smoothed(self, source: str, tau_h: float) -> np.ndarray:
        key = (source, float(tau_h))
        if key not in self._cache:
            self._cache[key] = smooth(self.kin.grid(source), tau_h).astype(np.float32)
        return self._cache[key]

    @staticmethod
    def _read(grid: np.ndarray, i: np.ndarray, k: np.ndarray) -> np.ndarray:
        """Grid value at (patient i, hour k); k < 0 (before infusion) gives 0."""
        return np.where(k >= 0, grid[i, np.maximum(k, 0)], 0.0)

    def _bump(self, k: np.ndarray, mode_h: float, sigma: float) -> np.ndarray:
        return np.where(k >= 0, activity_profile(np.maximum(k, 0) + 0.5, mode_h, sigma), 0.0)

    def panel(self, panel: str, i: np.ndarray, k: np.ndarray, rng: np.random.Generator):
        """{variable: (value, censored)} for one panel drawn at grid hours ``k`` of patients
        ``i`` (the variables of one draw share it: WBC includes the ANC measured with it)."""
        mp, mb, n = self.mp, self.mb, len(i)
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        none = np.zeros(n, dtype=np.int8)
        if panel == "cytokines":
            for c in mp.cytokines:
                g = self._read(self._smoothed("drive", c.tau_h), i, k)
                v = (mb.cytokine0[c.name][i] + c.per_unit * g * mb.cytokine_scale[c.name][i]) * (
                    np.exp(c.noise_sd * rng.standard_normal(n))
                )
                cens = np.where(v < c.lower_limit, -1, 0).astype(np.int8)
                out[c.name] = (np.maximum(v, c.lower_limit), cens)
        elif panel == "coagulation":
            cons = self._read(self._smoothed("il6", mp.tau_consumption_h), i, k)
            x = self._read(self.kin.grid("crp"), i, k)
            acute = 1 + mp.fibrinogen_acute_max * x / (x + self.kin.kp.crp_half_unit)
            z = rng.standard_normal((3, n))
            fib = mb.fibrinogen0[i] * acute * np.exp(-mp.fibrinogen_consumption * cons)
            out["d_dimer"] = (
                np.clip(
                    mb.d_dimer0[i] * (1 + mp.d_dimer_per_unit * cons)
                    * np.exp(mp.d_dimer_noise * z[0]), 0.1, 150.0,
                ),
                none,
            )  # fmt: skip
            out["fibrinogen"] = (
                np.clip(fib * np.exp(mp.fibrinogen_noise * z[1]), 30.0, 1500.0),
                none,
            )
            out["inr"] = (
                np.clip(
                    mb.inr0[i] * (1 + mp.inr_per_unit * cons) * np.exp(mp.inr_noise * z[2]),
                    0.8, 20.0,
                ),
                none,
            )  # fmt: skip
        elif panel == "liver":
            hypo = self._read(self.kin.grid("hypotension"), i, k)
            h = self._read(self._smoothed("il6", mp.tau_liver_h), i, k)
            hb = self._read(self._smoothed("il6", mp.tau_bilirubin_h), i, k)
            z = rng.standard_normal((3, n))
            perf = mp.liver_per_hypotension * hypo
            for name, v0, per_unit, grid, zz in (
                ("alt", mb.alt0, mp.alt_per_unit, h, z[0]),
                ("ast", mb.ast0, mp.ast_per_unit, h, z[1]),
                ("bilirubin", mb.bilirubin0, mp.bilirubin_per_unit, hb, z[2]),
            ):
                v = v0[i] * (1 + per_unit * grid + perf) * np.exp(mp.liver_noise * zz)
                out[name] = (np.clip(v, 0.1 if name == "bilirubin" else 3.0, 2.0e4), none)
        elif panel == "cbc":
            f = self._read(self.kin.grid("ferritin"), i, k)
            ld = self._bump(k, mp.anc_nadir_h, mp.anc_nadir_sigma)
            lymph = self._bump(k, mp.lymph_nadir_h, mp.lymph_nadir_sigma)
            z = rng.standard_normal((2, n))
            anc = mb.anc0[i] * np.exp(-mb.anc_depth[i] * ld - mp.anc_per_unit * f)
            anc = np.maximum(anc * np.exp(mp.count_noise * z[0]), 0.01)
            other = mb.other_leukocytes0[i] * np.exp(-mp.lymph_depth * lymph)
            other = np.maximum(other * np.exp(mp.count_noise * z[1]), 0.01)
            anc_r = np.round(anc, MARKER_DECIMALS["anc"])
            out["anc"] = (anc_r, none)
            out["wbc"] = (anc_r + np.round(other, MARKER_DECIMALS["wbc"]), none)
        else:  # pragma: no cover - validated in SimulationParams.validate
            raise KeyError(panel)
        return {var: (np.round(v, MARKER_DECIMALS[var]), c) for var, (v, c) in out.items()}

    def release(self) -> None:
        self._cache.clear()


def sample_markers(
    base: Baseline,
    course: Course,
    kin: Kinetics,
    draws: pd.DataFrame,
    params: SimulationParams,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Observation rows (idx, hours, variable, value, censored) of the marker panels at the
    first of the lab ``draws`` (idx, time, k) of each patient and day (see module
    docstring); ``rng`` is the markers stream, used for nothing else."""
    mb = draw_marker_baseline(base, params, rng)
    mk = MarkerKinetics(kin, mb, params)
    first = draws.assign(day=np.floor(draws["time"].to_numpy() / 24.0))
    first = first.sort_values(["idx", "time"], kind="stable")
    first = first.drop_duplicates(["idx", "day"], keep="first").reset_index(drop=True)
    d_site = base.site[first["idx"].to_numpy()]
    lab_delay = np.array([s.lab_delay_h for s in params.sites])[d_site]
    cyto_delay = np.array([s.cytokine_delay_h for s in params.sites])[d_site]
    obs_end = course.obs_end
    rows = []
    for panel in MARKER_PANELS:
        prob = np.array([dict(s.panels).get(panel, 0.0) for s in params.sites])[d_site]
        take = rng.random(len(first)) < prob
        delay = (cyto_delay if panel == "cytokines" else lab_delay)[take]
        sub = first[take]
        i, k = sub["idx"].to_numpy(), sub["k"].to_numpy()
        res = np.round(sub["time"].to_numpy() + rng.uniform(delay[:, 0], delay[:, 1]), 2)
        values = mk.panel(panel, i, k, rng)
        ok = res <= obs_end[i]
        for var, (v, c) in values.items():
            rows.append(
                pd.DataFrame(
                    {"idx": i[ok], "hours": res[ok], "variable": var, "value": v[ok],
                     "censored": c[ok]}
                )
            )  # fmt: skip
    mk.release()
    if not rows:
        return pd.DataFrame({c: [] for c in _COLUMNS})
    obs = pd.concat(rows, ignore_index=True)
    obs = obs.drop_duplicates(["idx", "hours", "variable"], keep="first")
    return obs.sort_values(["idx", "hours", "variable"], kind="stable").reset_index(drop=True)
