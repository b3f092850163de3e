"""TEMPORARY stand-in for the shared code mappings (replaced once they are merged)."""

from __future__ import annotations

import numpy as np

from crs_ml.variables import VARIABLES

_TABLE = {f"LOINC/{c}": ("variable", v.name) for v in VARIABLES.values() for c in v.loinc}
_TABLE.update({
    "HCPCS/Q2041": ("infusion", "axi-cel"), "HCPCS/Q2042": ("infusion", "tisa-cel"),
    "HCPCS/Q2053": ("infusion", "brexu-cel"), "HCPCS/Q2054": ("infusion", "liso-cel"),
    "HCPCS/Q2055": ("infusion", "ide-cel"), "HCPCS/Q2056": ("infusion", "cilta-cel"),
    "ICD10PCS/XW033C3": ("infusion", ""),
    "RxNorm/1923319": ("event", "tocilizumab"), "RxNorm/3264": ("event", "corticosteroid"),
    "RxNorm/161": ("event", "antipyretic"), "RxNorm/7512": ("event", "vasopressor"),
    "RxNorm/11149": ("event", "vasopressin"), "RxNorm/72435": ("event", "anakinra"),
    "SNOMED/371907003": ("event", "oxygen_low_flow"), "SNOMED/426990007": ("event", "oxygen_high_flow"),
    "SNOMED/40617009": ("event", "positive_pressure"), "SNOMED/305351004": ("event", "icu_admission"),
    "MEDS_DEATH": ("death", ""), "ICD10CM/C83.30": ("disease", "LBCL"), "ICD10CM/C90.00": ("disease", "MM"),
    "ICD10CM/C83.10": ("disease", "MCL"), "ICD10CM/C82.90": ("disease", "FL"),
    "ICD10CM/C91.00": ("disease", "B-ALL"), "ICD10CM/C96.9": ("disease", "other"),
    "CRS_ML/FOLLOWUP_END": ("followup_end", ""),
    **{f"ICD10CM/D89.83{g}": ("crs_grade", str(g)) for g in range(1, 6)},
})


def classify(codes):
    kinds = np.array([_TABLE.get(str(c), ("", ""))[0] for c in codes], dtype=object)
    targets = np.array([_TABLE.get(str(c), ("", ""))[1] for c in codes], dtype=object)
    return kinds, targets


def preferred_code(kind: str, target: str) -> str:
    for code, (k, t) in _TABLE.items():
        if k == kind and t == target:
            return code
    raise KeyError((kind, target))
