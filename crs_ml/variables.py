"""The variable catalogue: canonical names, units, conversions, aliases, LOINC codes, ranges.

Everything here is data. A :class:`Variable` lists the unit spellings it accepts, each with an
affine conversion ``canonical = value * factor + offset`` to the canonical unit. Unit
spellings are compared after :func:`unit_key` (case, whitespace, micro signs, degree signs,
UCUM brackets, ``10*9`` / ``10E9`` / ``x10^9`` and superscripts all normalised), so
``'mg/L'``, ``'mg/l'`` and ``' MG/L '`` are one unit. Names are resolved by
:func:`resolve_variable` from the canonical name, an alias (case, spaces, ``-`` and ``_``
ignored: ``IL-6`` = ``il6`` = ``Interleukin 6``) or a LOINC code.

D-dimer: canonical ug/mL FEU (fibrinogen-equivalent units). DDU (D-dimer units) are
converted with FEU = 2 x DDU, the usual approximation (fibrinogen is about twice the mass of
the D-dimer fragment; the true ratio varies by assay between about 1.7 and 2). A bare mass
unit without FEU/DDU is read as FEU, and each such row is counted as a unit assumption in the
check report.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from crs_ml.errors import ConfigError, InputError


@dataclass(frozen=True)
class Conversion:
    """``canonical = value * factor + offset``; ``note`` marks an assumption (reported)."""

    factor: float = 1.0
    offset: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class Variable:
    name: str
    display: str  #: clinical name for reports, e.g. "IL-6"
    unit: str  #: canonical unit
    display_unit: str  #: unit as printed in reports, e.g. "pg/mL"
    kind: str  #: "vital" or "lab" (features: difference for vitals, log ratio for labs)
    core: bool  #: one of the 12 variables the landmark features use
    units: Mapping[str, Conversion]  #: accepted spellings (as written) -> conversion
    aliases: tuple[str, ...] = ()
    loinc: tuple[str, ...] = ()
    plausible: tuple[float, float] = (-np.inf, np.inf)
    #: a missing unit is normal (dimensionless ratio) and not counted as a warning
    unit_optional: bool = False
    note: str = ""
    # --- landmark features (crs_ml.features.catalogue builds them from these fields) ----
    #: clinical direction: +1 high values are the dangerous side (summarised by the max),
    #: -1 low values are (summarised by the min)
    direction: int = 1
    #: monotone sign (+1 / -1) of summaries, keyed by summary: baseline, last, max, min,
    #: change, slope_24h, pretoci_max, pretoci_min, pretoci_last; unlisted summaries are free
    monotone: Mapping[str, int] = field(default_factory=dict)
    #: summaries of the values before the first tocilizumab dose: max, min, last
    pretoci: tuple[str, ...] = ()
    #: feature group of the pre-tocilizumab summaries ("" = the variable's own group)
    pretoci_group: str = ""
    #: why the direction, signs and pre-tocilizumab summaries are what they are (literature,
    #: or the word "assumption")
    evidence: str = ""
    _lookup: dict[str, Conversion] = field(default_factory=dict, repr=False, compare=False)

    def conversion(self, unit: str) -> Conversion | None:
        """The conversion for a unit spelling, or None when the unit is not accepted."""
        return self._lookup.get(unit_key(unit))


_SUPERSCRIPTS = str.maketrans({"⁹": "^9", "³": "^3", "⁶": "^6", "¹": "^1", "²": "^2"})


def unit_key(text: str) -> str:
    """Normalised form of a unit spelling, used for comparison only."""
    s = str(text).translate(_SUPERSCRIPTS)
    s = unicodedata.normalize("NFKC", s).lower()
    s = s.replace("μ", "u").replace("µ", "u").replace("mcg", "ug").replace("mckat", "ukat")
    s = s.replace("mcl", "ul")  # K/mcL, thou/mcL (US spellings of 10^3/uL)
    s = re.sub(r"10\((\d+)\)", r"10^\1", s)  # x10(9)/L
    s = re.sub(r"[\s°º\[\]{}()]", "", s)  # ug/mL{FEU} is ug/mL FEU: the annotation stays
    s = s.replace("×", "x")
    s = re.sub(r"10[*e](\d)", r"10^\1", s)
    s = re.sub(r"^x(?=10\^)", "", s)
    return s


def name_key(text: str) -> str:
    """Normalised form of a variable/event/category name: case, spaces, '-', '_' ignored."""
    s = unicodedata.normalize("NFKC", str(text)).strip().lower()
    return re.sub(r"[\s_\-.]+", "", s)


_LOINC_RE = re.compile(r"^(?:loinc:?)?\s*(\d{1,7}-\d)$")


def _c(factor: float = 1.0, offset: float = 0.0, note: str = "") -> Conversion:
    return Conversion(float(factor), float(offset), note)


# --- unit families -----------------------------------------------------------------------
_ONE = _c()
CELSIUS = {s: _ONE for s in ("degC", "°C", "C", "Cel", "Celsius", "ºC", "oC", "centigrade")}
FAHRENHEIT = {
    s: _c(5 / 9, -32 * 5 / 9) for s in ("degF", "°F", "F", "[degF]", "Fahrenheit", "ºF", "oF")
}
PG_ML = {"pg/mL": _ONE, "ng/L": _ONE, "ng/mL": _c(1000), "ng/dL": _c(10)}
MG_L_CRP = {"mg/L": _ONE, "ug/mL": _ONE, "mg/dL": _c(10), "g/L": _c(1000), "ug/dL": _c(0.01)}
NG_ML = {"ng/mL": _ONE, "ug/L": _ONE, "pmol/L": _c(1 / 2.247), "mg/L": _c(1000), "ug/dL": _c(10)}
U_L = {
    "U/L": _ONE, "IU/L": _ONE, "units/L": _ONE, "[IU]/L": _ONE, "ukat/L": _c(60),
    "nkat/L": _c(0.06),
}  # fmt: skip
COUNT_10_9_L = {
    "10^9/L": _ONE, "10*9/L": _ONE, "x10^9/L": _ONE, "10E9/L": _ONE, "G/L": _ONE,
    "10^3/uL": _ONE, "10*3/uL": _ONE, "x10^3/uL": _ONE, "K/uL": _ONE, "thou/uL": _ONE,
    "10^3/mm3": _ONE, "K/mm3": _ONE, "/nL": _ONE,
    "/uL": _c(1e-3), "cells/uL": _c(1e-3), "/mm3": _c(1e-3), "cells/mm3": _c(1e-3),
    "10^6/L": _c(1e-3),
}  # fmt: skip
CREATININE = {"mg/dL": _ONE, "umol/L": _c(1 / 88.4), "mmol/L": _c(1000 / 88.4), "mg/L": _c(0.1)}
MMHG = {"mmHg": _ONE, "mm Hg": _ONE, "mm[Hg]": _ONE, "kPa": _c(7.50062)}
PER_MIN = {"/min": _ONE, "1/min": _ONE, "min-1": _ONE, "per min": _ONE}
BEATS = {**PER_MIN, "bpm": _ONE, "beats/min": _ONE, "{beats}/min": _ONE}
BREATHS = {**PER_MIN, "breaths/min": _ONE, "{breaths}/min": _ONE, "br/min": _ONE, "rpm": _ONE}
PERCENT = {"%": _ONE, "percent": _ONE, "pct": _ONE}
_FEU = "unit without FEU/DDU read as FEU"
D_DIMER = {
    "ug/mL FEU": _ONE, "mg/L FEU": _ONE, "ng/mL FEU": _c(1e-3), "ug/L FEU": _c(1e-3),
    "ug/mL DDU": _c(2), "mg/L DDU": _c(2), "ng/mL DDU": _c(2e-3), "ug/L DDU": _c(2e-3),
    "ug/mL": _c(note=_FEU), "mg/L": _c(note=_FEU),
    "ng/mL": _c(1e-3, note=_FEU), "ug/L": _c(1e-3, note=_FEU),
}  # fmt: skip
FIBRINOGEN = {"mg/dL": _ONE, "g/L": _c(100), "mg/L": _c(0.1)}
BILIRUBIN = {"mg/dL": _ONE, "umol/L": _c(1 / 17.1), "mg/L": _c(0.1)}
RATIO = {"ratio": _ONE, "{ratio}": _ONE, "{INR}": _ONE, "INR": _ONE, "1": _ONE}


def _v(name, display, unit, display_unit, kind, core, units, aliases=(), loinc=(), lo=0.0,
       hi=np.inf, **kw) -> Variable:  # fmt: skip
    var = Variable(
        name=name, display=display, unit=unit, display_unit=display_unit, kind=kind,
        core=core, units=dict(units), aliases=tuple(aliases), loinc=tuple(loinc),
        plausible=(float(lo), float(hi)), **{**FEATURE_DECLARATIONS.get(name, {}), **kw},
    )  # fmt: skip
    if var.direction not in (-1, 1) or not set(var.monotone.values()) <= {-1, 1}:
        raise AssertionError(f"{name}: direction and monotone signs must be +1 or -1")
    for spelling, conv in var.units.items():
        key = unit_key(spelling)
        if key in var._lookup and var._lookup[key] != conv:
            raise AssertionError(f"{name}: unit spelling {spelling!r} is ambiguous")
        var._lookup[key] = conv
    if unit_key(unit) not in var._lookup or var._lookup[unit_key(unit)].factor != 1.0:
        raise AssertionError(f"{name}: canonical unit {unit!r} must convert with factor 1")
    return var


#: How each variable enters the landmark features (fields of :class:`Variable`): clinical
#: direction, monotone signs and pre-tocilizumab summaries, each with its reason. A variable
#: not listed gets the defaults: high is the dangerous side, no sign, no pre-tocilizumab
#: summary. Pre-tocilizumab summaries exist because tocilizumab blocks the IL-6 receptor:
#: serum IL-6 then rises and CRP (made in the liver on IL-6 signalling) falls, so values after
#: the first dose no longer mean what they meant before it.
FEATURE_DECLARATIONS: dict[str, dict] = {
    "il6": dict(
        pretoci=("max", "last"), monotone={"pretoci_max": 1, "pretoci_last": 1},
        evidence="higher peak IL-6 before treatment with severe CRS (Teachey 2016 Cancer "
        "Discov; Hay 2017 Blood); after tocilizumab IL-6 rises from receptor blockade",
    ),
    "crp": dict(
        pretoci=("max", "last"), monotone={"pretoci_max": 1, "pretoci_last": 1},
        evidence="higher CRP with severe CRS (Teachey 2016; Hay 2017); tocilizumab lowers "
        "CRP whatever the course",
    ),
    "ferritin": dict(
        pretoci=("max",), monotone={"pretoci_max": 1},
        evidence="higher peak ferritin with severe CRS (Teachey 2016; Hay 2017)",
    ),
    "temperature": dict(
        pretoci=("max",), monotone={"pretoci_max": 1}, pretoci_group="fever",
        evidence="fever >= 38.9 degC within 36 h flags severe CRS (Hay 2017 Blood)",
    ),
    "platelets": dict(
        direction=-1, monotone={"baseline": -1, "last": -1, "min": -1},
        evidence="low platelets with severe CRS and endothelial activation: EASIX / m-EASIX "
        "(Greenbaum 2021 Blood Adv; Pennisi 2021 Blood Adv)",
    ),
    "sbp": dict(direction=-1, evidence="hypotension grades CRS (ASTCT, Lee 2019)"),
    "spo2": dict(direction=-1, evidence="hypoxia grades CRS (ASTCT, Lee 2019)"),
    # cytokine panels: the peak before tocilizumab (which changes the cytokine milieu)
    "ifng": dict(
        pretoci=("max",), monotone={"pretoci_max": 1},
        evidence="IFN-gamma peaks higher in severe CRS (Teachey 2016 Cancer Discov: part of "
        "the predictive cytokine signature; Lee 2014 Blood)",
    ),
    "il10": dict(
        pretoci=("max",), monotone={"pretoci_max": 1},
        evidence="IL-10 peaks higher in severe CRS (Teachey 2016 Cancer Discov; Hay 2017 "
        "Blood)",
    ),
    "mcp1": dict(
        pretoci=("max",),
        evidence="MCP-1 higher in severe CRS (Teachey 2016; Hay 2017); no sign declared: "
        "assay spread and few data (assumption: left free)",
    ),
    "tnf_alpha": dict(
        pretoci=("max",),
        evidence="TNF-alpha rises in CRS but separates severe from mild CRS poorly in "
        "patients (Teachey 2016): no sign",
    ),
    "il1b": dict(
        pretoci=("max",),
        evidence="IL-1 drives CRS in mouse models (Norelli 2018 Nat Med; Giavridis 2018 Nat "
        "Med); serum IL-1beta is often undetectable in patients: no sign",
    ),
    # coagulation: consumption coagulopathy accompanies severe CRS
    "d_dimer": dict(
        monotone={"max": 1},
        evidence="D-dimer rises with the coagulopathy of severe CRS (Hay 2017 Blood; Wang 2020 "
        "Biol Blood Marrow Transplant)",
    ),
    "fibrinogen": dict(
        direction=-1, monotone={"min": -1},
        evidence="hypofibrinogenaemia in severe CRS (Hay 2017 Blood; Wang 2020 Biol Blood "
        "Marrow Transplant); fibrinogen is also an acute-phase protein that first rises, hence "
        "only the minimum is constrained",
    ),
    "inr": dict(
        evidence="INR prolongs with the coagulopathy of severe CRS (Hay 2017); no sign "
        "(anticoagulation and liver disease also raise it)",
    ),
    # blood counts after lymphodepletion: the low side is the one clinicians watch
    "wbc": dict(
        direction=-1,
        evidence="assumption: cytopenia after lymphodepletion is the watched side; no sign",
    ),
    "anc": dict(
        direction=-1,
        evidence="assumption: neutropenia after lymphodepletion is the watched side; no sign",
    ),
    # liver: transaminase and bilirubin rises accompany severe CRS
    "alt": dict(evidence="transaminases rise in severe CRS (Lee 2014 Blood; Hay 2017): no sign"),
    "ast": dict(evidence="transaminases rise in severe CRS (Lee 2014 Blood; Hay 2017): no sign"),
    "bilirubin": dict(evidence="hyperbilirubinaemia in severe CRS (Lee 2014 Blood): no sign"),
}  # fmt: skip

_CYTO = "lab"
_VARIABLE_LIST = [
    _v("temperature", "Temperature", "degC", "°C", "vital", True, {**CELSIUS, **FAHRENHEIT},
       ("Temp", "Temperature", "Body temperature", "Body temp"), ("8310-5", "8331-1"),
       25, 45),
    _v("il6", "IL-6", "pg/mL", "pg/mL", "lab", True, PG_ML,
       ("IL-6", "IL6", "IL 6", "Interleukin 6", "Interleukin-6", "Interleukin6"), ("26881-3",),
       0, 1e6),
    _v("crp", "CRP", "mg/L", "mg/L", "lab", True, MG_L_CRP,
       ("CRP", "hs-CRP", "hsCRP", "C-reactive protein", "C reactive protein"),
       ("1988-5", "30522-7"), 0, 1000),
    _v("ferritin", "Ferritin", "ng/mL", "ng/mL", "lab", True, NG_ML, ("Ferritin", "Ferr"),
       ("2276-4",), 0, 1e6),
    _v("ldh", "LDH", "U/L", "U/L", "lab", True, U_L,
       ("LDH", "LD", "Lactate dehydrogenase", "Lactic dehydrogenase"), ("2532-0", "14804-9"),
       0, 1e5),
    _v("platelets", "Platelets", "10^9/L", "10^9/L", "lab", True, COUNT_10_9_L,
       ("PLT", "Platelets", "Platelet", "Platelet count", "Plt count", "Thrombocytes"),
       ("777-3", "26515-7"), 0, 3000),
    _v("creatinine", "Creatinine", "mg/dL", "mg/dL", "lab", True, CREATININE,
       ("Creat", "Creatinine", "Cr", "Crea", "Serum creatinine"), ("2160-0", "38483-4"),
       0, 40),
    _v("sbp", "Systolic BP", "mmHg", "mmHg", "vital", True, MMHG,
       ("SBP", "Systolic BP", "Systolic blood pressure", "Systolic", "BP systolic",
        "NIBP systolic"), ("8480-6",), 20, 300),
    _v("dbp", "Diastolic BP", "mmHg", "mmHg", "vital", True, MMHG,
       ("DBP", "Diastolic BP", "Diastolic blood pressure", "Diastolic", "BP diastolic",
        "NIBP diastolic"), ("8462-4",), 5, 250),
    _v("heart_rate", "Heart rate", "/min", "/min", "vital", True, BEATS,
       ("HR", "Pulse", "Heart rate", "Pulse rate"), ("8867-4",), 10, 350),
    _v("resp_rate", "Respiratory rate", "/min", "/min", "vital", True, BREATHS,
       ("RR", "Resp rate", "Respiratory rate", "Respiration rate", "Resp"), ("9279-1",),
       1, 100),
    _v("spo2", "SpO2", "%", "%", "vital", True, PERCENT,
       ("SpO2", "O2 sat", "Sat O2", "O2 saturation", "Oxygen saturation", "SaO2", "Pulse ox"),
       ("59408-5", "2708-6"), 30, 100),
    _v("ifng", "IFN-gamma", "pg/mL", "pg/mL", _CYTO, False, PG_ML,
       ("IFN-gamma", "IFN-g", "IFNg", "IFN-γ", "Interferon gamma"), (), 0, 1e6),
    _v("mcp1", "MCP-1", "pg/mL", "pg/mL", _CYTO, False, PG_ML, ("MCP-1", "MCP1", "CCL2"), (),
       0, 1e6),
    _v("il10", "IL-10", "pg/mL", "pg/mL", _CYTO, False, PG_ML,
       ("IL-10", "IL10", "Interleukin 10", "Interleukin-10"), (), 0, 1e6),
    _v("tnf_alpha", "TNF-alpha", "pg/mL", "pg/mL", _CYTO, False, PG_ML,
       ("TNF-alpha", "TNFa", "TNF-α", "TNF", "Tumor necrosis factor alpha"), (), 0, 1e6),
    _v("il1b", "IL-1beta", "pg/mL", "pg/mL", _CYTO, False, PG_ML,
       ("IL-1b", "IL-1beta", "IL1B", "IL-1β", "Interleukin 1 beta"), (), 0, 1e6),
    _v("d_dimer", "D-dimer", "ug/mL FEU", "µg/mL FEU", "lab", False, D_DIMER,
       ("D-dimer", "Ddimer", "D dimer", "Fibrin D-dimer"), ("48065-7",), 0, 200,
       note="DDU x2 -> FEU (approximation); a bare mass unit is read as FEU"),
    _v("fibrinogen", "Fibrinogen", "mg/dL", "mg/dL", "lab", False, FIBRINOGEN,
       ("Fibrinogen", "Fib"), ("3255-7",), 0, 2000),
    _v("wbc", "WBC", "10^9/L", "10^9/L", "lab", False, COUNT_10_9_L,
       ("WBC", "Leukocytes", "White blood cells", "White cell count", "WBC count"),
       ("6690-2",), 0, 1000),
    _v("anc", "ANC", "10^9/L", "10^9/L", "lab", False, COUNT_10_9_L,
       ("ANC", "Absolute neutrophil count", "Neutrophils abs", "Neutrophil count"),
       ("751-8",), 0, 500),
    _v("alt", "ALT", "U/L", "U/L", "lab", False, U_L, ("ALT", "ALAT", "SGPT", "GPT"),
       ("1742-6",), 0, 3e4),
    _v("ast", "AST", "U/L", "U/L", "lab", False, U_L, ("AST", "ASAT", "SGOT", "GOT"),
       ("1920-8",), 0, 3e4),
    _v("bilirubin", "Bilirubin", "mg/dL", "mg/dL", "lab", False, BILIRUBIN,
       ("Bilirubin", "Total bilirubin", "Bilirubin total", "Tbili", "Bili"), ("1975-2",),
       0, 80),
    _v("inr", "INR", "ratio", "", "lab", False, RATIO, ("INR", "PT INR", "PT-INR"),
       ("6301-6", "34714-6"), 0.5, 25, unit_optional=True),
]  # fmt: skip

#: canonical name -> Variable, in catalogue order
VARIABLES: dict[str, Variable] = {v.name: v for v in _VARIABLE_LIST}
#: the 12 variables the landmark features use
CORE_VARIABLES: tuple[str, ...] = tuple(v.name for v in _VARIABLE_LIST if v.core)


def _build_index() -> tuple[dict[str, str], dict[str, str]]:
    names: dict[str, str] = {}
    loinc: dict[str, str] = {}
    for var in _VARIABLE_LIST:
        for text in (var.name, var.display, *var.aliases):
            key = name_key(text)
            if names.setdefault(key, var.name) != var.name:
                raise AssertionError(f"alias {text!r} names two variables")
        for code in var.loinc:
            if loinc.setdefault(code, var.name) != var.name:
                raise AssertionError(f"LOINC {code} names two variables")
    return names, loinc


_NAMES, _LOINC = _build_index()


def resolve_variable(text: object) -> str | None:
    """Canonical variable name for a canonical name, alias or LOINC code; None if unknown."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return None
    raw = unicodedata.normalize("NFKC", str(text)).strip().lower()
    m = _LOINC_RE.match(raw)
    if m:
        return _LOINC.get(m.group(1))
    return _NAMES.get(name_key(raw)) if raw else None


#: words that qualify a lab name without changing the variable ("Ferritin, serum")
QUALIFIER_WORDS = frozenset(
    "serum plasma blood whole venous arterial level levels total value result conc "
    "concentration sample lab test measured quantitative".split()
)


def suggest_variable(text: object) -> str | None:
    """The catalogue variable an unknown name most likely means, or None: the name without
    qualifiers (``Ferritin, serum``, ``CRP (mg/L)``, ``LDH total``) resolved as a name or
    alias, else the closest name or alias with the same digits (difflib ratio >= 0.85:
    ``Ferritn``, but not ``Interleukin 8`` for IL-6)."""
    import difflib

    raw = unicodedata.normalize("NFKC", str(text)).strip()
    if not raw or resolve_variable(raw) is not None:
        return None
    parts = [p for p in re.split(r"[,;()\[\]/|]", raw) if p.strip()]
    words = [w for w in re.split(r"[\s,;()\[\]/|]+", raw.lower()) if w]
    kept = " ".join(w for w in words if w not in QUALIFIER_WORDS)
    for candidate in (*parts, kept):
        found = resolve_variable(candidate)
        if found is not None:
            return found
    key = name_key(raw)
    digits = re.sub(r"\D", "", key)  # IL-8 is not a misspelt IL-6
    for close in difflib.get_close_matches(key, list(_NAMES), n=5, cutoff=0.85):
        if re.sub(r"\D", "", close) == digits:
            return _NAMES[close]
    return None


def get_variable(name: str) -> Variable:
    try:
        return VARIABLES[name]
    except KeyError:
        raise InputError(f"unknown variable '{name}'") from None


def convert(variable: str, values, units) -> np.ndarray:
    """Values converted to the variable's canonical unit (vectorised).

    ``units`` is one spelling or an array aligned with ``values``; an empty or missing unit
    means the canonical unit. An unknown unit raises :class:`InputError` naming it.
    """
    var = get_variable(resolve_variable(variable) or variable)
    vals = np.asarray(values, dtype="float64")
    if isinstance(units, str) or units is None:
        units = np.full(vals.shape, "" if units is None else units, dtype=object)
    codes, uniques = pd.factorize(pd.Series(np.asarray(units, dtype=object)).fillna(""))
    factor = np.empty(len(uniques))
    offset = np.empty(len(uniques))
    for i, spelling in enumerate(uniques):
        conv = var.conversion(spelling) if str(spelling).strip() else Conversion()
        if conv is None:
            raise InputError(f"unknown unit '{spelling}' for {var.name}", column="unit")
        factor[i], offset[i] = conv.factor, conv.offset
    return vals * factor[codes] + offset[codes]


def catalogue_table() -> pd.DataFrame:
    """The catalogue as a table (for docs and reports)."""
    rows = [
        {
            "name": v.name,
            "display": v.display,
            "unit": v.unit,
            "display_unit": v.display_unit,
            "kind": v.kind,
            "core": v.core,
            "aliases": ", ".join(v.aliases),
            "loinc": ", ".join(v.loinc),
            "plausible_min": v.plausible[0],
            "plausible_max": v.plausible[1],
            "accepted_units": ", ".join(v.units),
            "note": v.note,
        }
        for v in _VARIABLE_LIST
    ]
    return pd.DataFrame(rows)


# --- site-defined variables ------------------------------------------------------------------
# A site's config may add variables to the catalogue (``variables:``; validated in
# :mod:`crs_ml.config`). They are registered IN PLACE (``VARIABLES`` and the name and LOINC
# indexes), because modules import ``VARIABLES`` by name; every change bumps
# :func:`catalogue_version`, which caches built from the catalogue put in their keys.

#: the variables shipped with the package (never redefined or removed by a site)
BUILTIN_VARIABLES: frozenset[str] = frozenset(VARIABLES)
_VARIABLE_FIELDS = frozenset(f.name for f in fields(Variable))
if "direction" in _VARIABLE_FIELDS:
    _SiteVariable = Variable
else:

    @dataclass(frozen=True)
    class _SiteVariable(Variable):  # a Variable with its clinical direction
        #: +1 high values are the dangerous side (summarised by the max), -1 low values are
        direction: int = 1


_VERSION = [0]
#: a site variable's name: lower case letters, digits and ``_``, starting with a letter
SITE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def catalogue_version() -> int:
    """A counter bumped by every change of the catalogue (site variables registered or
    removed): cheap to put in a cache key."""
    return _VERSION[0]


def site_variables() -> list[str]:
    """Names of the site-defined variables registered in this process, in catalogue order."""
    return [name for name in VARIABLES if name not in BUILTIN_VARIABLES]


def variable_direction(name: str) -> int:
    """+1 when high values are the dangerous side of a variable, -1 when low values are."""
    var = get_variable(name)
    return int(getattr(var, "direction", 1))


def make_variable(
    name: str,
    *,
    unit: str,
    units: Mapping[str, Conversion],
    display: str = "",
    display_unit: str = "",
    kind: str = "lab",
    aliases: tuple[str, ...] = (),
    loinc: tuple[str, ...] = (),
    plausible: tuple[float, float] = (-np.inf, np.inf),
    direction: int = 1,
    unit_optional: bool = False,
    note: str = "",
) -> Variable:
    """A site :class:`Variable` (not core; not registered: see :func:`register_variables`).

    Raises :class:`ConfigError` naming the variable and field when a unit spelling is
    ambiguous or the canonical unit does not convert with factor 1 and offset 0."""
    if not SITE_NAME_RE.match(name):
        raise ConfigError(
            f"variables.{name}: a variable name is lower case letters, digits and '_', "
            "starting with a letter (at most 40 characters), e.g. lymphocytes_pct"
        )
    if kind not in ("lab", "vital"):
        raise ConfigError(f"variables.{name}.kind: 'lab' or 'vital', not {kind!r}")
    if direction not in (-1, 1):
        raise ConfigError(f"variables.{name}.direction: +1 or -1, not {direction!r}")
    var = _SiteVariable(
        name=name, display=display or name, unit=unit, display_unit=display_unit or unit,
        kind=kind, core=False, units=dict(units), aliases=tuple(aliases), loinc=tuple(loinc),
        plausible=(float(plausible[0]), float(plausible[1])), unit_optional=unit_optional,
        note=note, direction=direction,
    )  # fmt: skip
    for spelling, conv in var.units.items():
        key = unit_key(spelling)
        if key in var._lookup and var._lookup[key] != conv:
            raise ConfigError(
                f"variables.{name}.units: spelling {spelling!r} is the same unit as another "
                "spelling with a different conversion"
            )
        var._lookup[key] = conv
    canonical = var._lookup.get(unit_key(unit))
    if canonical is None or (canonical.factor, canonical.offset) != (1.0, 0.0):
        raise ConfigError(
            f"variables.{name}.units: the canonical unit {unit!r} must be listed with factor 1 "
            "and offset 0 "
            + (
                "(not listed)"
                if canonical is None
                else f"(got factor {canonical.factor:g}, offset {canonical.offset:g})"
            )
        )
    return var


def register_variables(variables: list[Variable], source: str = "config") -> list[str]:
    """Add site variables to the catalogue, in place; returns the names newly added.

    A variable registered again with the same definition is a no-op; any other
    redefinition, a built-in name, or an alias, display name or LOINC code that already names
    another variable raises :class:`ConfigError` naming the variable and field (nothing is
    registered then)."""
    where = f"{source}: " if source else ""
    names: dict[str, str] = {}
    codes: dict[str, str] = {}
    new: list[Variable] = []
    for var in variables:
        old = VARIABLES.get(var.name)
        if old is not None:
            if var.name in BUILTIN_VARIABLES:
                raise ConfigError(
                    f"{where}variables.{var.name}: a built-in catalogue variable cannot be "
                    "redefined (choose another name)"
                )
            if old != var:
                raise ConfigError(
                    f"{where}variables.{var.name}: already defined differently in this "
                    "process (by another config or a loaded model); a model trained with one "
                    "definition scores only with that definition"
                )
            continue
        for field_name, texts in (("name", (var.name,)), ("display", (var.display,)),
                                  ("aliases", var.aliases)):  # fmt: skip
            for text in texts:
                key = name_key(text)
                owner = _NAMES.get(key) or names.get(key)
                if owner is not None and owner != var.name:
                    raise ConfigError(
                        f"{where}variables.{var.name}.{field_name}: {text!r} already names "
                        f"the catalogue variable {owner}"
                    )
                names[key] = var.name
        for code in var.loinc:
            if not _LOINC_RE.match(code):
                raise ConfigError(
                    f"{where}variables.{var.name}.loinc: {code!r} is not a LOINC code "
                    "(digits, '-', check digit: 736-9)"
                )
            owner = _LOINC.get(code) or codes.get(code)
            if owner is not None and owner != var.name:
                raise ConfigError(
                    f"{where}variables.{var.name}.loinc: {code} already names the catalogue "
                    f"variable {owner}"
                )
            codes[code] = var.name
        new.append(var)
    for var in new:
        VARIABLES[var.name] = var
        _VARIABLE_LIST.append(var)
    _NAMES.update(names)
    _LOINC.update(codes)
    if new:
        _VERSION[0] += 1
    return [v.name for v in new]


def unregister_variables(names) -> None:
    """Remove site variables from the catalogue (tests; built-in variables stay)."""
    gone = [n for n in names if n in VARIABLES and n not in BUILTIN_VARIABLES]
    for name in gone:
        var = VARIABLES.pop(name)
        _VARIABLE_LIST.remove(var)
    for index in (_NAMES, _LOINC):
        for key in [k for k, v in index.items() if v in gone]:
            del index[key]
    if gone:
        _VERSION[0] += 1


@contextmanager
def variables_registered(variables: list[Variable]):
    """Site variables registered for the duration of a ``with`` block (tests)."""
    added = register_variables(variables)
    try:
        yield added
    finally:
        unregister_variables(added)


class CatalogueArrays(NamedTuple):
    """The catalogue as arrays for vectorised loading (rebuilt when the catalogue changes):
    numpy arrays and the same columns as polars series, built once per catalogue version and
    shared by every loader (:mod:`crs_ml.ingest.observations` reads the series)."""

    names: np.ndarray  #: object array of canonical names, catalogue order
    rank: np.ndarray  #: rank of each name in alphabetical order
    low: np.ndarray  #: plausible minimum
    high: np.ndarray  #: plausible maximum
    index: dict[str, int]  #: name -> position
    variables: tuple  #: the :class:`Variable` of each name, catalogue order
    name_series: Any  #: ``names`` as a polars String series named ``variable``
    rank_series: Any  #: ``rank`` as a polars Int64 series named ``vrank``
    low_series: Any  #: ``low`` as a polars Float64 series
    high_series: Any  #: ``high`` as a polars Float64 series


def catalogue_arrays() -> CatalogueArrays:
    """:class:`CatalogueArrays` of the current catalogue (cached per :func:`catalogue_version`)."""
    return _arrays(catalogue_version())


@lru_cache(maxsize=4)
def _arrays(version: int) -> CatalogueArrays:
    import polars as pl  # here: importing the catalogue does not start polars

    names = np.array(list(VARIABLES), dtype=object)
    rank = np.argsort(np.argsort(names.astype(str)))
    low = np.array([v.plausible[0] for v in VARIABLES.values()], dtype=np.float64)
    high = np.array([v.plausible[1] for v in VARIABLES.values()], dtype=np.float64)
    return CatalogueArrays(
        names,
        rank,
        low,
        high,
        {name: i for i, name in enumerate(names)},
        tuple(VARIABLES.values()),
        pl.Series("variable", list(names), dtype=pl.String),
        pl.Series("vrank", rank, dtype=pl.Int64),
        pl.Series(low, dtype=pl.Float64),
        pl.Series(high, dtype=pl.Float64),
    )


def declaration_hint(raw_name: str, unit: str = "") -> str:
    """A ``variables:`` config snippet declaring an unknown variable (for the check report)."""
    text = unicodedata.normalize("NFKC", str(raw_name)).lower().replace("%", " pct")
    slug = re.sub(r"[^a-z0-9]+", "_", text)
    slug = slug.strip("_") or "my_variable"
    slug = slug if slug[0].isalpha() else f"v_{slug}"
    unit_text = unit.strip() or "<unit>"
    return (
        f"variables: {{{slug}: {{unit: '{unit_text}', aliases: ['{raw_name}'], kind: lab, "
        "direction: up}}"
    )
