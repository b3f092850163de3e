"""The shared code mappings (:mod:`crs_ml.ingest.codes`) as the coded readers use them.

A code is ``VOCABULARY/CODE`` (MEDS spelling; FHIR codings are turned into it). Its kind for
:mod:`crs_ml.ingest.coded.assemble`: ``variable`` / ``event`` / ``disease`` (target as in
the maps), ``infusion`` (target the product, or "" for a CAR-T administration code naming
none), ``crs_grade`` (the grade is the record's value), ``followup_end``, ``death``
(``MEDS_DEATH``, FHIR ``Patient.deceasedDateTime``), or "" when not mapped.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from crs_ml.ingest.codes import CodeMap, code_map, split_code

__all__ = ["DEATH_CODE", "classify", "preferred_code"]

#: the MEDS standard's death code (also what FHIR deaths are read as)
DEATH_CODE = "MEDS_DEATH"


def _one(cmap: CodeMap, code: str) -> tuple[str, str]:
    if code == DEATH_CODE:
        return "death", ""
    vocab, concept = split_code(code)
    found = cmap.lookup(vocab, concept) if vocab else None
    if found is None:
        return "", ""
    if found.kind == "product":
        return "infusion", found.target
    if found.kind == "infusion":
        return "infusion", ""
    if found.kind == "outcome":
        return found.target, ""
    return found.kind, found.target


def classify(codes: Iterable[str], entries=None) -> tuple[np.ndarray, np.ndarray]:
    """(kind, target) arrays of ``codes`` (distinct codes: each is looked up once).
    ``entries``: the site's ``data.codes``."""
    cmap = code_map(entries)
    pairs = [_one(cmap, str(c)) for c in codes]
    return (
        np.array([k for k, _ in pairs], dtype=object),
        np.array([t for _, t in pairs], dtype=object),
    )


def preferred_code(kind: str, target: str) -> str:
    """The first package code of a map kind and target, as ``VOCABULARY/CODE`` (what the
    simulator's MEDS and FHIR twins write)."""
    for c in code_map().codes:
        if c.kind == kind and c.target == target and c.concept_code:
            return f"{c.vocabulary_id}/{c.concept_code}"
    raise KeyError(f"no package code for {kind} '{target}'")
