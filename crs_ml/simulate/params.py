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
        S("A", 0.35, 1 / 36, 1 / 2, 1 / 36, True),
        # B: IL-6 as a send-out test (result 12-24 h after the draw), CRP in mg/dL, degF,
        # aliases, brand names, absolute times
        S("B", 0.25, 0.0, 1 / 4, 0.0, True,
          vitals=("temperature", "sbp", "heart_rate", "spo2"),
          vitals_well=("temperature", "sbp", "heart_rate"),
          labs=(("crp", 1.0), ("ferritin", 0.5), ("ldh", 0.3), ("platelets", 1.0),
                ("creatinine", 1.0)),
          il6_prob=(0.15, 0.6, 0.6, 0.6), il6_delay_h=(12.0, 24.0),
          absolute_times=True, units=(("crp", "mg/dL"), ("temperature", "degF")),
          naming="alias"),
        # C: conservative policy (toci only at grade 3, steroids only at grade 4), IL-6
        # rarely measured, LOINC codes, platelets per uL, creatinine umol/L
        S("C", 0.25, 0.0, 0.0, 0.0, False,
          vitals=("temperature", "sbp", "heart_rate", "spo2"),
          vitals_well=("temperature", "sbp", "heart_rate"),
          labs=(("crp", 1.0), ("ferritin", 0.7), ("ldh", 0.3), ("platelets", 1.0),
                ("creatinine", 1.0)),
          il6_prob=(0.02, 0.05, 0.1, 0.1), il6_delay_h=(12.0, 24.0),
          units=(("platelets", "/uL"), ("creatinine", "umol/L")), naming="loinc"),
        # D: early intervention (toci after ~12 h of fever, steroids soon after toci at
        # grade 2), in-house IL-6 at fever, absolute times, aliases
        S("D", 0.15, 1 / 12, 1.0, 1 / 6, True,
          vitals=("temperature", "sbp", "heart_rate", "spo2"),
          vitals_well=("temperature", "sbp", "heart_rate"),
          labs=(("crp", 1.0), ("ferritin", 1.0), ("ldh", 0.3), ("platelets", 1.0),
                ("creatinine", 1.0)),
          il6_prob=(0.3, 1.0, 1.0, 1.0), il6_delay_h=(2.0, 6.0),
          absolute_times=True, naming="alias"),
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
