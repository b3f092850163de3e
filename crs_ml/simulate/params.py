"""Every assumption of the CRS simulator, in one place: :class:`SimulationParams`.

Numbers taken from docs/domain.md cite their source; everything else is an **assumption** of
this simulator (marked so), chosen to be clinically plausible and to land the cohort on the
targets of docs/domain.md ("Simulator targets"). All of it is configurable: build a variant with
``dataclasses.replace`` (or :func:`with_products` / :func:`with_sites`).

Product rates. Targets per product are the pivotal-trial figures of docs/domain.md with these
choices for grade >= 3 (the trials graded on different scales):

* axi-cel 15% (ZUMA-1 reports 13% on the Lee 2014 scale, which puts one low-dose
  vasopressor at grade 2 and so understates ASTCT grade >= 3: +2 points);
* tisa-cel 20% (JULIET reports 22% on the Penn scale, whose grade 3 includes any oxygen and
  so overstates ASTCT grade >= 3: -2 points);
* liso-cel 4%, ide-cel 9% (upper figures of the ranges 2-4% and 5-9%), cilta-cel 5%,
  brexu-cel 18% (as published).

Default mix (assumption): axi-cel 30%, tisa-cel 15%, liso-cel 15%, brexu-cel 10%, ide-cel
15%, cilta-cel 15% (mixed cohort grade >= 3 about 12%).

Sites (assumption; a model trained under one site's policy can be validated under
another's):

* A (35%): academic centre; daily in-house IL-6; tocilizumab at grade 2 (about 2 h) or after
  about 36 h of grade-1 fever; a steroid if grade 2 persists after tocilizumab; canonical files.
* B (25%): IL-6 a send-out test (result 12-24 h after the draw); tocilizumab at grade 2
  (about 4 h); messy files with absolute times, CRP mg/dL, degF, aliases, brand names.
* C (25%): conservative: tocilizumab only at grade 3, steroids only at grade 4; IL-6 rarely
  measured; messy files with LOINC codes, platelets /uL, creatinine umol/L.
* D (15%): early intervention: tocilizumab after about 12 h of fever, at once at grade 2,
  steroids soon after; in-house IL-6; messy files with absolute times and aliases.

Markers beyond the core 12 (``markers="all"``, :class:`MarkerParams`; assumption): blood
counts, coagulation and liver panels at the first lab draw of each day at every site
(coagulation 80% at B, 40% at C); a cytokine panel (IFN-gamma, IL-10, MCP-1, TNF-alpha,
IL-1beta) daily at A only (a research protocol), result 6-24 h after the draw. Messy units:
D-dimer ng/mL DDU, fibrinogen g/L, bilirubin umol/L (B); WBC and ANC /uL,
bilirubin umol/L, fibrinogen g/L (C); D-dimer mg/L FEU, ALT and AST IU/L (D).

Sampling (informative): vital signs every 12/8/4/4 h and labs every 24/12/12/8 h when well /
grade 1 / grade 2 / grade >= 3; well patients are on the ward schedule for 48 h, then have
weekly outpatient labs. This gives about 90 observation rows per patient (more in CRS);
widen the intervals for a sparser cohort.

Horizon: the constants are calibrated for the default horizon of 336 h; at another horizon
the product rates are those of that horizon under the same mechanism.

The mechanism constants of each product (``onset_log_scale``, ``profile_mode_h``,
``progression_log_scale``) are *calibrated*, not chosen: :func:`crs_ml.simulate.calibrate.
calibrate_products` solves them so that the latent any-grade rate, grade >= 3 rate (under
the default site mix) and median onset hit the targets. Re-run it after changing anything
that moves the rates (severity weights, hazards, site policies or mix).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from crs_ml.cohort import PRODUCTS
from crs_ml.errors import ConfigError

#: level groups used by sampling schedules: well (no CRS / resolved), grade 1, 2, >= 3
LEVEL_GROUPS = ("well", "grade1", "grade2", "grade3plus")


@dataclass(frozen=True)
class ProductParams:
    """One CAR-T product: targets (docs/domain.md) and calibrated mechanism constants."""

    name: str
    share: float  #: share of the default mixed cohort (assumption)
    any_crs: float  #: target P(any-grade CRS by the horizon)
    grade3: float  #: target P(grade >= 3 by the horizon), see module docstring
    onset_median_h: float  #: target median onset (table days x 24)
    costim: str  #: "CD28" or "4-1BB"
    diseases: tuple[tuple[str, float], ...]  #: indication mix (assumption)
    source: str
    #: log of the onset hazard scale (calibrated)
    onset_log_scale: float = 0.0
    #: mode of the CAR-T activity profile, hours (calibrated to the median onset)
    profile_mode_h: float = 48.0
    #: width of the log-Gaussian activity profile (assumption; wider = longer onset tail)
    profile_sigma: float = 0.8
    #: log of the progression hazard scale (calibrated to the grade >= 3 rate)
    progression_log_scale: float = 0.0
    #: P(grade 4 | grade 3) (assumption; CD28 higher)
    grade4_given_grade3: float = 0.3


@dataclass(frozen=True)
class SiteParams:
    """One treating site: treatment policy, sampling schedule, reporting conventions.

    Treatment policy (assumption, per site so a model can be validated under another
    policy): hazards per hour of giving tocilizumab for persistent grade-1 fever
    (``toci_fever_per_h``; 1/36 means on average 36 h of fever), of giving tocilizumab at
    grade 2 (``toci_grade2_per_h``; 0 = only at grade 3), of adding a corticosteroid to
    tocilizumab at grade 2 (``steroid_grade2_per_h``). At grade 3 every site gives
    tocilizumab; corticosteroids at grade 3 if ``steroid_at_grade3`` else at grade 4.
    Memoryless (exponential) decision delays keep the latent process Markov, which is what
    makes the true risk exact (see crs_ml.simulate.chain).
    """

    name: str
    share: float
    toci_fever_per_h: float
    toci_grade2_per_h: float
    steroid_grade2_per_h: float
    steroid_at_grade3: bool
    #: hours between scheduled vital-sign sets by level group (well, g1, g2, >=g3)
    vitals_every_h: tuple[int, int, int, int] = (12, 8, 4, 4)
    #: hours between scheduled lab draws by level group
    labs_every_h: tuple[int, int, int, int] = (24, 12, 12, 8)
    vitals: tuple[str, ...] = ("temperature", "sbp", "dbp", "heart_rate", "resp_rate", "spo2")
    #: the shorter set of scheduled vital signs in well patients (the full set at baseline,
    #: in CRS and at CRS events)
    vitals_well: tuple[str, ...] = ("temperature", "sbp", "heart_rate")
    #: routine panel: (variable, probability it is ordered at a draw)
    labs: tuple[tuple[str, float], ...] = (
        ("crp", 1.0), ("ferritin", 1.0), ("ldh", 0.5), ("platelets", 1.0), ("creatinine", 1.0),
    )  # fmt: skip
    #: P(IL-6 ordered at a draw) by level group, and its result delay range (hours)
    il6_prob: tuple[float, float, float, float] = (0.5, 1.0, 1.0, 1.0)
    il6_delay_h: tuple[float, float] = (3.0, 8.0)
    lab_delay_h: tuple[float, float] = (2.0, 6.0)
    #: well patients are on the schedule this long after infusion, then seen as outpatients
    monitor_well_h: int = 48
    outpatient_every_h: int = 168
    #: messy style only: absolute ISO 8601 times instead of relative hours
    absolute_times: bool = False
    #: messy style only: (variable, unit) pairs reported in a non-canonical unit
    units: tuple[tuple[str, str], ...] = ()
    #: messy style only: "canonical", "alias" or "loinc" variable names
    naming: str = "canonical"
    #: markers="all" only: P(panel ordered) at the first lab draw of each day, per panel of
    #: MARKER_PANELS; a panel not listed is never ordered at this site
    panels: tuple[tuple[str, float], ...] = (("cbc", 1.0), ("coagulation", 1.0), ("liver", 1.0))
    #: result delay of the cytokine panel (hours; a send-out multiplex assay, assumption)
    cytokine_delay_h: tuple[float, float] = (12.0, 36.0)


@dataclass(frozen=True)
class BaselineParams:
    """Pre-infusion distributions (assumptions): each lab is
    ``median * exp(tb_loading * tumour_burden + sd * own deviation)``; myeloma has a lower
    LDH; ages by disease as (disease, mean, sd), clipped to 18-85."""

    female_share: float = 0.4
    ldh_median: float = 260.0
    ldh_median_myeloma: float = 190.0
    ldh_tb: float = 0.35
    ldh_sd: float = 0.25
    crp_median: float = 5.0
    crp_tb: float = 0.6
    crp_sd: float = 0.6
    platelets_median: float = 140.0
    platelets_tb: float = -0.3
    platelets_sd: float = 0.45
    ferritin_median: float = 550.0
    ferritin_tb: float = 0.4
    ferritin_sd: float = 0.7
    il6_median: float = 3.5
    il6_tb: float = 0.3
    il6_sd: float = 0.6
    creatinine_median_female: float = 0.8
    creatinine_median_male: float = 0.95
    creatinine_sd: float = 0.2
    age_by_disease: tuple[tuple[str, float, float], ...] = (
        ("LBCL", 60.0, 12.0), ("FL", 58.0, 10.0), ("MCL", 65.0, 8.0), ("B-ALL", 40.0, 15.0),
        ("MM", 61.0, 9.0), ("other", 58.0, 12.0),
    )  # fmt: skip


@dataclass(frozen=True)
class SeverityParams:
    """Latent severity s (assumption): s = sum of weights x standardised risk factors + noise.

    Risk factors after docs/domain.md "Biomarkers and risk factors": tumour burden (latent; drives
    LDH, CRP, ferritin up and platelets down), the CRP- and platelet-specific baseline
    deviations (Pennisi 2021, Hay 2017), ferritin (Greenbaum 2021) and age. The weights set
    how much of s baseline labs reveal (m-EASIX AUROC) and ``unexplained_sd`` how much they
    cannot (the rest shows only in early cytokines and the course).
    """

    tumour_burden: float = 0.65
    crp: float = 0.30
    low_platelets: float = 0.30
    ferritin: float = 0.10
    age_per_10y: float = 0.10
    unexplained_sd: float = 0.60
    #: onset hazard ~ exp(onset_exponent * s); progression hazards ~ exp(progression_exponent * s)
    onset_exponent: float = 1.0
    progression_exponent: float = 1.6


@dataclass(frozen=True)
class HazardParams:
    """The latent Markov chain (assumptions; hazards per hour)."""

    #: grade 1 -> 2 hazard relative to grade 2 -> 3 (most grade 3 pass through grade 2)
    grade2_factor: float = 4.0
    #: grade 1 -> 3 directly, relative to grade 2 -> 3
    direct_grade3_factor: float = 0.12
    #: progression follows the activity profile stretched later by this factor
    progression_delay_factor: float = 1.4
    resolution_grade1_per_h: float = 1 / 72
    resolution_grade2_per_h: float = 1 / 60
    #: tocilizumab / steroid multiply progression hazards by these (< 1) ...
    toci_progression: float = 0.40
    steroid_progression: float = 0.50
    #: ... and resolution hazards by these (> 1)
    toci_resolution: float = 3.0
    steroid_resolution: float = 1.5
    #: non-CRS death (competing): hazard per hour at age 60, log hazard ratio per 10 years
    death_per_h: float = 5e-5
    death_age_log_hr_per_10y: float = 0.4


@dataclass(frozen=True)
class CourseParams:
    """Clinical course details that do not enter the true risk (assumptions)."""

    #: grade 2 shows as hypotension (sbp < 90, fluids), hypoxia (low-flow O2) or both
    grade2_hypotension: float = 0.45
    grade2_both: float = 0.15
    #: grade 3 reached from grade 1 directly: share by vasopressor (rest high-flow O2)
    direct_grade3_vasopressor: float = 0.6
    grade4_delay_mean_h: float = 20.0
    grade5_given_grade4: float = 0.12
    support_duration_mean_h: float = 36.0
    #: follow-up ends early (dropout / transfer), uniformly in [24 h, horizon - 24 h]
    dropout_rate: float = 0.03
    #: share of episodes that are a second infusion of an earlier person (same person_id)
    reinfusion_rate: float = 0.02


@dataclass(frozen=True)
class KineticsParams:
    """Biomarker kinetics (assumptions). Latent inflammation I: exponential smoothing of the
    drive A x g_p(t)^profile_power x level multiplier; CRP lags I (hepatic synthesis, ~1 day),
    ferritin follows more slowly; tocilizumab blocks CRP synthesis and fever and raises serum
    IL-6 (receptor blockade, Nishimoto 2008); steroids damp the drive itself.

    Early phenotype (docs/domain.md: Teachey 2016, Hay 2017): the amplitude follows the log
    progression hazard, so patients who will progress have higher IL-6 (before and after
    onset) and higher fevers. No kinetics parameter changes a hazard or the true risk.
    Measured signal: benchmarks/results/simulator_calibration.md."""

    #: drive multiplier by level: pre-onset (subclinical CAR-T activation, visible in IL-6
    #: and sub-febrile temperatures before fever), grade 1, 2, 3, 4, resolved
    level_drive: tuple[float, float, float, float, float, float] = (0.4, 1.0, 2.5, 6.0, 10.0, 0.1)
    #: inflammation amplitude, log A = amplitude_severity * s + amplitude_progression *
    #: (progression_log_scale_p - amplitude_reference_log_scale) + amplitude_sd * z: the
    #: latent severity and the product's (calibrated) progression scale, i.e. log A moves
    #: with the log progression hazard, plus a patient factor z shared by IL-6, CRP and
    #: ferritin that changes no hazard
    amplitude_severity: float = 1.5
    amplitude_progression: float = 1.0
    amplitude_reference_log_scale: float = -4.6
    amplitude_sd: float = 0.35
    #: time shape of the drive: the product's activity profile g_p(t) ** profile_power
    #: (< 1: cytokine activity is broader than the onset hazard, starting on day 1)
    profile_power: float = 0.3
    #: temperature in CRS: t0 + 0.3 + max(fever_rise_c + fever_severity_c * s, 0.5) * phi
    #: + noise, phi = F / (F + fever_half_unit) with F the smoothed fever drive (blocked by
    #: tocilizumab): sicker patients run higher fevers (>= 38.9 more often, Hay 2017)
    fever_rise_c: float = 2.3
    fever_severity_c: float = 0.6
    fever_half_unit: float = 1.0
    tau_il6_h: float = 4.0
    #: CRP: hepatic synthesis follows IL-6 after ``crp_delay_h`` and accumulates with time
    #: constant ``tau_crp_h``: a step in IL-6 shows 63% in CRP after 22 h (about a day)
    crp_delay_h: int = 8
    tau_crp_h: float = 14.0
    #: hepatic CRP response: synthesis x exp(crp_response_sd * z), z a patient factor
    crp_response_sd: float = 0.7
    tau_ferritin_h: float = 60.0
    tau_fever_h: float = 3.0
    il6_per_unit: float = 120.0
    il6_toci_rise: float = 3.0  #: IL-6 x (1 + rise) right after tocilizumab ...
    il6_toci_decay_h: float = 96.0  #: ... decaying with this time constant
    crp_max_mg_l: float = 500.0
    crp_half_unit: float = 2.0
    ferritin_per_unit: float = 1.2
    steroid_drive: float = 0.4
    toci_fever_block: float = 0.95
    toci_crp_block: float = 0.97
    #: LDH x (1 + ldh_per_unit * F^0.7), platelets x exp(-decline * min(h, 200)) / (1 +
    #: platelet_per_unit * F) with F the ferritin-speed inflammation (lymphodepletion nadir
    #: and consumption); creatinine x (1 + creatinine_per_hypotension * smoothed hypotension)
    ldh_per_unit: float = 0.3
    platelet_decline_per_h: float = 0.003
    platelet_per_unit: float = 0.1
    creatinine_per_hypotension: float = 0.8
    noise_il6: float = 0.25
    noise_crp: float = 0.10
    noise_ferritin: float = 0.15
    il6_limits: tuple[float, float] = (1.5, 5000.0)  #: assay range (docs/domain.md)


@dataclass(frozen=True)
class CytokineParams:
    """One serum cytokine of a multiplex panel: a function of the same latent drive as IL-6.

    value = (baseline + per_unit * C(k)) * exp(noise_sd * z), C the drive J (see
    KineticsParams) with the cytokine's own amplitude and time constant: J x exp(
    severity_loading * s + patient_sd * z_c) smoothed with ``tau_h`` (z_c a patient factor
    that changes no hazard). ``severity_loading`` > 0 means the cytokine carries more of the
    latent severity than IL-6 does. Results below ``lower_limit`` are reported ``<limit``.
    Tocilizumab does not raise these (the receptor blockade is IL-6's); a steroid damps them
    through J."""

    name: str
    baseline_median: float  #: pg/mL before infusion
    baseline_sd: float  #: log-scale sd of the baseline
    per_unit: float  #: pg/mL per unit of the smoothed drive
    tau_h: float
    severity_loading: float
    patient_sd: float
    noise_sd: float
    lower_limit: float  #: assay lower limit of quantification, pg/mL
    source: str


def _default_cytokines() -> tuple[CytokineParams, ...]:
    C = CytokineParams
    teachey = "Teachey, Cancer Discov 2016 (n=51): peak "
    return (
        C("ifng", 2.0, 0.6, 30.0, 3.0, 0.30, 0.35, 0.25, 1.0,
          teachey + "IFN-gamma highly associated with severe CRS and in the early predictive "
          "signature; Hay, Blood 2017: higher in severe CRS. Sizes and timing: assumption"),
        C("il10", 3.0, 0.5, 8.0, 6.0, 0.20, 0.35, 0.25, 1.0,
          teachey + "IL-10 higher in severe CRS; Hay, Blood 2017 likewise. Sizes and timing: "
          "assumption"),
        C("mcp1", 300.0, 0.35, 120.0, 6.0, 0.20, 0.30, 0.20, 10.0,
          "Hay, Blood 2017: MCP-1 early after infusion in the severe-CRS classification tree; "
          "Teachey 2016: among the cytokines higher in severe CRS. Sizes: assumption"),
        C("tnf_alpha", 8.0, 0.4, 1.0, 4.0, 0.0, 0.30, 0.25, 1.0,
          "assumption: a modest rise with the drive and no severity signal of its own (not "
          "among the separating cytokines of Teachey 2016)"),
        C("il1b", 1.0, 0.5, 0.2, 4.0, 0.0, 0.30, 0.30, 0.5,
          "assumption: serum IL-1beta is low and often below the assay limit in patients "
          "(its role in CRS is shown in mouse models: Norelli, Giavridis, Nat Med 2018)"),
    )  # fmt: skip


#: panels of the catalogue markers the core simulator does not write (variables in order)
MARKER_PANELS: dict[str, tuple[str, ...]] = {
    "cbc": ("wbc", "anc"),
    "coagulation": ("d_dimer", "fibrinogen", "inr"),
    "liver": ("alt", "ast", "bilirubin"),
    "cytokines": ("ifng", "il10", "mcp1", "tnf_alpha", "il1b"),
}


@dataclass(frozen=True)
class MarkerParams:
    """The catalogue markers beyond the core 12 (cytokine panel, coagulation, liver, blood
    counts). Written when the simulation option ``markers="all"``; drawn from their own random
    stream, so the core observations, events and outcomes of a seed are the same with and
    without them. Every marker is a function of the latent grids of the core kinetics
    (crs_ml.simulate.kinetics): they add measurements of the same course, never a hazard.

    Baselines: ``median * exp(tb * tumour_burden + sd * own deviation)`` (assumptions)."""

    cytokines: tuple[CytokineParams, ...] = field(default_factory=_default_cytokines)
    # ---- coagulation (Hay, Blood 2017: severe CRS is a consumptive coagulopathy with rising
    # D-dimer, falling fibrinogen and prolonged PT; Buechner, Blood Adv 2021 (ELIANA/ENSIGN,
    # n=137): fibrinogen < 1.5 g/L only in severe CRS, PT/INR prolonged in some; Haematologica
    # 2024;109:2969 (n=41): fibrinogen first rises in CRS (IL-6-driven acute phase), then
    # falls after tocilizumab). Consumption K = the IL-6-speed inflammation I smoothed over
    # ``tau_consumption_h``.
    fibrinogen_median: float = 380.0  #: mg/dL (assumption; upper-normal in lymphoma)
    fibrinogen_sd: float = 0.2
    #: acute phase: x (1 + acute_max * S / (S + crp_half_unit)), S the CRP synthesis grid
    #: (blocked by tocilizumab, so fibrinogen falls after it: Haematologica 2024)
    fibrinogen_acute_max: float = 0.6
    #: consumption: x exp(-fibrinogen_consumption * K) (size: assumption, set so that about
    #: 40% of grade >= 3 patients and < 1% of the others reach a nadir < 150 mg/dL, near
    #: Buechner 2021's 23 replaced patients, all with severe CRS)
    fibrinogen_consumption: float = 0.06
    tau_consumption_h: float = 24.0
    fibrinogen_noise: float = 0.08
    d_dimer_median: float = 0.8  #: ug/mL FEU (assumption; above normal in active lymphoma)
    d_dimer_tb: float = 0.3
    d_dimer_sd: float = 0.5
    d_dimer_per_unit: float = 0.4  #: x (1 + per_unit * K) (assumption)
    d_dimer_noise: float = 0.12
    inr_median: float = 1.05
    inr_sd: float = 0.06
    inr_per_unit: float = 0.02  #: x (1 + per_unit * K) (assumption)
    inr_noise: float = 0.04
    # ---- liver (Lee, Blood 2014 and Brudno & Kochenderfer, Blood 2016: transaminase and
    # bilirubin rises are organ toxicities of CRS; Haematologica 2024: liver dysfunction
    # mainly at grade >= 3). Hepatic injury H = I smoothed over tau_liver_h (AST, ALT) or
    # tau_bilirubin_h, plus hypoperfusion (the smoothed hypotension of the core kinetics).
    alt_median: float = 22.0  #: U/L (assumption)
    alt_sd: float = 0.45
    ast_median: float = 24.0
    ast_sd: float = 0.35
    alt_per_unit: float = 0.08  #: x (1 + per_unit * H + hypoperfusion term) (assumption)
    ast_per_unit: float = 0.12  #: AST rises more than ALT early (assumption)
    liver_per_hypotension: float = 1.5
    tau_liver_h: float = 24.0
    bilirubin_median: float = 0.5  #: mg/dL
    bilirubin_sd: float = 0.35
    bilirubin_per_unit: float = 0.05
    tau_bilirubin_h: float = 48.0
    liver_noise: float = 0.08
    # ---- blood counts (cytopenias after lymphodepletion: Fried, Bone Marrow Transplant 2019
    # (early neutropenia, nadir in the first week); Jain, Blood Adv 2020 and Juluri, Blood Adv
    # 2022: higher-grade CRS and its cytokines mean deeper, longer cytopenias). Neutrophils
    # x exp(-depth * g(t)) with g a log-Gaussian bump of mode ``anc_nadir_h`` (timing:
    # assumption) and depth per patient, x exp(-anc_per_unit * F) with F the ferritin-speed
    # inflammation; lymphocytes and monocytes (WBC - ANC) fall deeper and earlier.
    anc_median: float = 3.0  #: 10^9/L at the pre-infusion draw
    anc_tb: float = -0.2  #: marrow tumour burden lowers the counts (assumption)
    anc_sd: float = 0.45
    neutrophil_share: float = 0.65  #: of the WBC at baseline (assumption)
    other_leukocytes_sd: float = 0.2  #: log-scale sd of the non-neutrophil share
    anc_depth: float = 2.5  #: exp(-2.5) = 8% of baseline at the nadir (grade 4 in many)
    anc_depth_sd: float = 0.3
    anc_nadir_h: float = 144.0
    anc_nadir_sigma: float = 0.55
    anc_per_unit: float = 0.03
    lymph_depth: float = 2.0
    lymph_nadir_h: float = 48.0
    lymph_nadir_sigma: float = 0.9
    count_noise: float = 0.1


@dataclass(frozen=True)
class DirtParams:
    """Messy style only: rates of the dirt the loader must handle (assumptions)."""

    text_result_rate: float = 0.004  #: extra 'Hemolyzed' / 'QNS' / '---' lab rows
    missing_unit_rate: float = 0.03  #: canonical-unit rows written without a unit
    exact_duplicate_rate: float = 0.004
    conflicting_duplicate_rate: float = 0.002
    #: ferritin (and per-uL platelets) >= 1000 written with a thousands separator here
    thousands_sites: tuple[str, ...] = ("B", "C")


def _default_products() -> tuple[ProductParams, ...]:
    P = ProductParams
    return (
        P("axi-cel", 0.30, 0.94, 0.15, 48.0, "CD28", (("LBCL", 0.9), ("FL", 0.1)),
          "ZUMA-1 n=108 (Lee 2014 scale)", -3.4297, 76.6059, 0.80, -4.6368, 0.35),
        P("tisa-cel", 0.15, 0.58, 0.20, 72.0, "4-1BB", (("LBCL", 0.8), ("B-ALL", 0.1), ("FL", 0.1)),
          "JULIET n=111 (Penn scale)", -5.1530, 61.6625, 0.80, -3.8973, 0.30),
        P("liso-cel", 0.15, 0.42, 0.04, 120.0, "4-1BB",
          (("LBCL", 0.85), ("FL", 0.1), ("other", 0.05)),
          "TRANSCEND n=269", -6.1152, 103.0344, 0.80, -6.2471, 0.25),
        P("brexu-cel", 0.10, 0.91, 0.18, 72.0, "CD28", (("MCL", 0.75), ("B-ALL", 0.25)),
          "ZUMA-2 n=82", -3.8573, 110.4782, 0.75, -4.2353, 0.35),
        P("ide-cel", 0.15, 0.84, 0.09, 24.0, "4-1BB", (("MM", 1.0),),
          "KarMMa n=128", -3.5448, 23.4159, 1.00, -5.5153, 0.20),
        P("cilta-cel", 0.15, 0.95, 0.05, 168.0, "4-1BB", (("MM", 1.0),),
          "CARTITUDE-1 n=97", -3.0299, 319.6490, 0.45, -4.6493, 0.30),
    )  # fmt: skip


def _default_sites() -> tuple[SiteParams, ...]:
    S = SiteParams
    return (
        # A: academic centre, research protocol with daily in-house IL-6, toci at grade 2
        # or after ~36 h of fever, steroids if grade 2 persists after toci
        S("A", 0.35, 1 / 36, 1 / 2, 1 / 36, True,
          panels=(("cbc", 1.0), ("coagulation", 1.0), ("liver", 1.0), ("cytokines", 1.0)),
          cytokine_delay_h=(6.0, 24.0)),
        # B: IL-6 as a send-out test (result 12-24 h after the draw), CRP in mg/dL, degF,
        # aliases, brand names, absolute times
        S("B", 0.25, 0.0, 1 / 4, 0.0, True,
          vitals=("temperature", "sbp", "heart_rate", "spo2"),
          vitals_well=("temperature", "sbp", "heart_rate"),
          labs=(("crp", 1.0), ("ferritin", 0.5), ("ldh", 0.3), ("platelets", 1.0),
                ("creatinine", 1.0)),
          il6_prob=(0.15, 0.6, 0.6, 0.6), il6_delay_h=(12.0, 24.0),
          absolute_times=True, units=(("crp", "mg/dL"), ("temperature", "degF"),
                                      ("d_dimer", "ng/mL DDU"), ("fibrinogen", "g/L"),
                                      ("bilirubin", "umol/L")),
          naming="alias",
          panels=(("cbc", 1.0), ("coagulation", 0.8), ("liver", 1.0))),
        # C: conservative policy (toci only at grade 3, steroids only at grade 4), IL-6
        # rarely measured, LOINC codes, platelets per uL, creatinine umol/L
        S("C", 0.25, 0.0, 0.0, 0.0, False,
          vitals=("temperature", "sbp", "heart_rate", "spo2"),
          vitals_well=("temperature", "sbp", "heart_rate"),
          labs=(("crp", 1.0), ("ferritin", 0.7), ("ldh", 0.3), ("platelets", 1.0),
                ("creatinine", 1.0)),
          il6_prob=(0.02, 0.05, 0.1, 0.1), il6_delay_h=(12.0, 24.0),
          units=(("platelets", "/uL"), ("creatinine", "umol/L"), ("wbc", "/uL"),
                 ("anc", "/uL"), ("bilirubin", "umol/L"), ("fibrinogen", "g/L")),
          naming="loinc",
          panels=(("cbc", 1.0), ("coagulation", 0.4), ("liver", 1.0))),
        # D: early intervention (toci after ~12 h of fever, steroids soon after toci at
        # grade 2), in-house IL-6 at fever, absolute times, aliases
        S("D", 0.15, 1 / 12, 1.0, 1 / 6, True,
          vitals=("temperature", "sbp", "heart_rate", "spo2"),
          vitals_well=("temperature", "sbp", "heart_rate"),
          labs=(("crp", 1.0), ("ferritin", 1.0), ("ldh", 0.3), ("platelets", 1.0),
                ("creatinine", 1.0)),
          il6_prob=(0.3, 1.0, 1.0, 1.0), il6_delay_h=(2.0, 6.0),
          absolute_times=True, naming="alias",
          units=(("d_dimer", "mg/L FEU"), ("alt", "IU/L"), ("ast", "IU/L"))),
    )  # fmt: skip


@dataclass(frozen=True)
class SimulationParams:
    """All assumptions of the simulator (see the module docstring)."""

    products: tuple[ProductParams, ...] = field(default_factory=_default_products)
    sites: tuple[SiteParams, ...] = field(default_factory=_default_sites)
    baseline: BaselineParams = field(default_factory=BaselineParams)
    severity: SeverityParams = field(default_factory=SeverityParams)
    hazards: HazardParams = field(default_factory=HazardParams)
    course: CourseParams = field(default_factory=CourseParams)
    kinetics: KineticsParams = field(default_factory=KineticsParams)
    dirt: DirtParams = field(default_factory=DirtParams)
    markers: MarkerParams = field(default_factory=MarkerParams)

    def product_names(self) -> list[str]:
        return [p.name for p in self.products]

    def validate(self) -> SimulationParams:
        """Raise ConfigError on inconsistent assumptions; returns self."""
        for group, items in (("products", self.products), ("sites", self.sites)):
            if not items:
                raise ConfigError(f"simulation params: no {group}")
            total = sum(x.share for x in items)
            if any(x.share < 0 for x in items) or total <= 0:
                raise ConfigError(f"simulation params: {group} shares must be >= 0, sum > 0")
            names = [x.name for x in items]
            if len(set(names)) != len(names):
                raise ConfigError(f"simulation params: duplicate {group} names {names}")
        for p in self.products:
            if p.name not in PRODUCTS:
                raise ConfigError(f"simulation params: unknown product '{p.name}'")
            if not (0 < p.any_crs < 1 and 0 < p.grade3 < p.any_crs):
                raise ConfigError(f"simulation params: {p.name}: need 0 < grade3 < any_crs < 1")
        for s in self.sites:
            for name, sched in (
                ("vitals_every_h", s.vitals_every_h),
                ("labs_every_h", s.labs_every_h),
            ):
                if len(sched) != 4 or any(int(a) != a or a <= 0 for a in sched):
                    raise ConfigError(
                        f"simulation params: site {s.name}: {name} must be 4 positive whole "
                        f"hours (well, grade 1, grade 2, grade >= 3), got {sched}"
                    )
            if s.naming not in ("canonical", "alias", "loinc"):
                raise ConfigError(f"simulation params: site {s.name}: naming '{s.naming}'")
            for panel, prob in s.panels:
                if panel not in MARKER_PANELS or not 0 <= prob <= 1:
                    raise ConfigError(
                        f"simulation params: site {s.name}: panel '{panel}' with probability "
                        f"{prob} (panels: {sorted(MARKER_PANELS)}, probability in [0, 1])"
                    )
        cyto = {c.name for c in self.markers.cytokines}
        if cyto != set(MARKER_PANELS["cytokines"]):
            raise ConfigError(
                f"simulation params: markers.cytokines must describe exactly "
                f"{list(MARKER_PANELS['cytokines'])}, got {sorted(cyto)}"
            )
        return self


def default_params() -> SimulationParams:
    """The default mixed cohort: products, four sites A-D, calibrated constants."""
    return SimulationParams()


def with_products(params: SimulationParams, **shares: float) -> SimulationParams:
    """Same params with other product shares, e.g. ``with_products(p, axi_cel=1)``
    (underscores for hyphens; products not named get share 0)."""
    want = {k.replace("_", "-"): float(v) for k, v in shares.items()}
    unknown = set(want) - set(params.product_names())
    if unknown:
        raise ConfigError(f"unknown products {sorted(unknown)}")
    return replace(
        params, products=tuple(replace(p, share=want.get(p.name, 0.0)) for p in params.products)
    )


def with_sites(params: SimulationParams, **shares: float) -> SimulationParams:
    """Same params with other site shares, e.g. ``with_sites(p, A=1)``."""
    unknown = set(shares) - {s.name for s in params.sites}
    if unknown:
        raise ConfigError(f"unknown sites {sorted(unknown)}")
    return replace(
        params, sites=tuple(replace(s, share=float(shares.get(s.name, 0.0))) for s in params.sites)
    )
