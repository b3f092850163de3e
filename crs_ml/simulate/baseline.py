"""Simulated patients at infusion: product, site, demographics, baseline labs, latent severity.

Baseline risk factors follow docs/domain.md "Biomarkers and risk factors". A latent tumour
burden (standard normal) raises LDH, CRP and ferritin and lowers platelets; each lab also
has its own patient-specific deviation. The latent severity ``s`` (see
:class:`crs_ml.simulate.params.SeverityParams`) combines the tumour burden, the CRP,
platelet and ferritin deviations, age and an unexplained part, and drives every hazard of
the CRS process (crs_ml.simulate.chain) and the size of the inflammatory response
(crs_ml.simulate.kinetics). Distributions: crs_ml.simulate.params.BaselineParams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crs_ml.simulate.params import SimulationParams


@dataclass
class Baseline:
    """One row per simulated infusion episode (arrays of length n)."""

    patient_id: np.ndarray
    person_id: np.ndarray
    product: np.ndarray  #: index into params.products
    site: np.ndarray  #: index into params.sites
    disease: np.ndarray
    age: np.ndarray
    sex: np.ndarray
    tumour_burden: np.ndarray
    severity: np.ndarray  #: latent s
    ldh0: np.ndarray  #: U/L
    crp0: np.ndarray  #: mg/L
    platelets0: np.ndarray  #: 10^9/L
    ferritin0: np.ndarray  #: ng/mL
    il6_0: np.ndarray  #: pg/mL
    creatinine0: np.ndarray  #: mg/dL
    temperature0: np.ndarray  #: degC
    sbp0: np.ndarray  #: mmHg
    heart_rate0: np.ndarray  #: /min
    amplitude_z: np.ndarray  #: standard normal, inflammation amplitude (no effect on hazards)
    crp_response_z: np.ndarray  #: standard normal, hepatic CRP response (no effect on hazards)

    @property
    def n(self) -> int:
        return len(self.patient_id)


def patient_ids(seed: int, n: int) -> np.ndarray:
    """'S{seed}-{index:06d}': different seeds never share an id."""
    return np.array([f"S{seed}-{i:06d}" for i in range(n)], dtype=object)


def _categorical(rng: np.random.Generator, shares, n: int) -> np.ndarray:
    p = np.asarray(shares, dtype="float64")
    return rng.choice(len(p), size=n, p=p / p.sum())


def draw_baseline(
    n: int, seed: int, params: SimulationParams, rng: np.random.Generator
) -> Baseline:
    """Draw ``n`` patients (vectorised). Uses only ``rng``; ids carry ``seed``."""
    sev = params.severity
    product = _categorical(rng, [p.share for p in params.products], n)
    site = _categorical(rng, [s.share for s in params.sites], n)
    disease = np.empty(n, dtype=object)
    u_dis = rng.random(n)
    for i, prod in enumerate(params.products):
        names = np.array([d for d, _ in prod.diseases], dtype=object)
        cum = np.cumsum([w for _, w in prod.diseases])
        idx = np.minimum(np.searchsorted(cum / cum[-1], u_dis, side="right"), len(names) - 1)
        mask = product == i
        disease[mask] = names[idx[mask]]
    bp = params.baseline
    ages = {d: (m, sd) for d, m, sd in bp.age_by_disease}
    mean_sd = np.array([ages.get(d, ages.get("other", (60.0, 12.0))) for d in disease])
    mean_sd = mean_sd.reshape(n, 2)
    age = np.clip(np.round(mean_sd[:, 0] + mean_sd[:, 1] * rng.standard_normal(n)), 18, 85)
    sex = np.where(rng.random(n) < bp.female_share, "F", "M").astype(object)

    z = rng.standard_normal((9, n))
    tb = z[0]
    ldh_med = np.where(disease == "MM", bp.ldh_median_myeloma, bp.ldh_median)
    ldh0 = ldh_med * np.exp(bp.ldh_tb * tb + bp.ldh_sd * z[1])
    crp0 = bp.crp_median * np.exp(bp.crp_tb * tb + bp.crp_sd * z[2])
    platelets0 = bp.platelets_median * np.exp(bp.platelets_tb * tb + bp.platelets_sd * z[3])
    ferritin0 = bp.ferritin_median * np.exp(bp.ferritin_tb * tb + bp.ferritin_sd * z[4])
    il6_0 = bp.il6_median * np.exp(bp.il6_tb * tb + bp.il6_sd * z[5])
    cr_med = np.where(sex == "M", bp.creatinine_median_male, bp.creatinine_median_female)
    creatinine0 = cr_med * np.exp(bp.creatinine_sd * z[6])
    severity = (
        sev.tumour_burden * tb
        + sev.crp * z[2]
        - sev.low_platelets * z[3]
        + sev.ferritin * z[4]
        + sev.age_per_10y * (age - 60.0) / 10.0
        + sev.unexplained_sd * z[7]
    )
    temperature0 = 36.7 + 0.2 * z[8]
    vit = rng.standard_normal((2, n))
    sbp0 = np.clip(122.0 + 12.0 * vit[0], 100.0, 165.0)
    heart_rate0 = np.clip(80.0 + 10.0 * vit[1], 55.0, 110.0)

    amplitude_z = rng.standard_normal(n)
    ids = patient_ids(seed, n)
    person = np.array([f"S{seed}-P{i:06d}" for i in range(n)], dtype=object)
    reinf = np.flatnonzero(rng.random(n) < params.course.reinfusion_rate)
    reinf = reinf[reinf > 0]
    if len(reinf):
        earlier = np.floor(rng.random(len(reinf)) * reinf).astype(np.int64)
        person[reinf] = person[earlier]
    crp_response_z = rng.standard_normal(n)
    return Baseline(
        patient_id=ids, person_id=person, product=product, site=site, disease=disease,
        age=age, sex=sex, tumour_burden=tb, severity=severity, ldh0=ldh0, crp0=crp0,
        platelets0=platelets0, ferritin0=ferritin0, il6_0=il6_0, creatinine0=creatinine0,
        temperature0=temperature0, sbp0=sbp0, heart_rate0=heart_rate0, amplitude_z=amplitude_z,
        crp_response_z=crp_response_z,
    )  # fmt: skip
