"""Writing the simulated cohort as a FHIR R4 bulk export (the FHIR twin of the contract files).

One NDJSON file per resource type (``Patient.ndjson``, ``Encounter.ndjson``,
``Observation.ndjson``, ``MedicationAdministration.ndjson``, ``Procedure.ndjson``,
``Condition.ndjson``), one resource per line, from
:func:`crs_ml.simulate.coded_twin.twin_records`:

- Patient: id = the simulation's patient_id, gender, birthDate, deceasedDateTime (the cause
  as an Observation, LOINC 69453-9);
- Encounter: the infusion stay (``serviceProvider`` = the site), ICU stays (type v3 RoleCode
  ICU, period);
- Observation: labs and vitals (LOINC, ``valueQuantity`` with UCUM code and ``comparator`` for
  detection limits; ``effectiveDateTime`` = ``issued`` = the result time), the end of
  follow-up (SNOMED lost to follow-up);
- MedicationAdministration: treatments (RxNorm; ``effectivePeriod`` when they have an end,
  ``dosage.text`` = the detail) and the CAR-T infusion (HCPCS product code, ``context`` = the
  infusion stay);
- Procedure: oxygen and ventilation (SNOMED; ``performedPeriod``, ``note`` = the detail);
- Condition: the disease (ICD-10-CM) and the CRS grade (SNOMED 1290005006, ``stage.summary``
  = the grade, ``stage.type`` = the grading definition).

Times are written in UTC with ``Z``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from crs_ml.ingest.codes import split_code
from crs_ml.simulate.coded_twin import twin_records

#: OMOP vocabulary -> FHIR code system URL
SYSTEMS = {
    "LOINC": "http://loinc.org",
    "RxNorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "SNOMED": "http://snomed.info/sct",
    "CPT4": "http://www.ama-assn.org/go/cpt",
    "HCPCS": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "ATC": "http://www.whocc.no/atc",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "Visit": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
}
UCUM = {"degC": "Cel", "10^9/L": "10*9/L", "mmHg": "mm[Hg]"}
_GENDER = {"F": "female", "M": "male"}
_MEDICATION_VOCABULARIES = ("RxNorm", "ATC", "HCPCS")
RESOURCE_TYPES = ("Patient", "Encounter", "Observation", "MedicationAdministration",
                  "Procedure", "Condition")  # fmt: skip


def _when(ts) -> str | None:
    if ts is None or pd.isna(ts):
        return None
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _concept(code: str) -> dict:
    vocab, concept = split_code(code)
    return {"coding": [{"system": SYSTEMS.get(vocab, vocab), "code": concept}]}


def _subject(pid: str) -> dict:
    return {"reference": f"Patient/{pid}"}


def _number(x: float):
    return int(x) if float(x).is_integer() else float(x)


def _text(v) -> str | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def fhir_resources(tables: dict[str, pd.DataFrame], seed: int) -> dict[str, list[dict]]:
    """The twin's resources by type (see the module docstring)."""
    twin = twin_records(tables, seed)
    ep = twin.episodes
    pid_of = dict(zip(ep["subject_id"], ep["patient_id"], strict=True))
    out: dict[str, list[dict]] = {t: [] for t in RESOURCE_TYPES}
    deaths = {}
    rec = twin.records
    for i, r in enumerate(rec.itertuples(index=False)):
        pid = pid_of[r.subject_id]
        rid = f"r{i}"
        when, end = _when(r.time), _when(r.end_time)
        detail = _text(r.detail)
        vocab, _ = split_code(r.code)
        if r.kind == "death":
            deaths[pid] = (when, detail)
        elif r.kind == "observation":
            q = {"value": _number(r.number), "unit": r.unit, "system": "http://unitsofmeasure.org",
                 "code": UCUM.get(r.unit, r.unit)}  # fmt: skip
            if r.text:
                q["comparator"] = r.text[0]
            out["Observation"].append(
                {"resourceType": "Observation", "id": rid, "status": "final",
                 "code": _concept(r.code), "subject": _subject(pid), "effectiveDateTime": when,
                 "issued": when, "valueQuantity": q}
            )  # fmt: skip
        elif r.kind == "followup_end":
            out["Observation"].append(
                {"resourceType": "Observation", "id": rid, "status": "final",
                 "code": _concept(r.code), "subject": _subject(pid), "effectiveDateTime": when}
            )  # fmt: skip
        elif r.kind in ("disease", "crs_grade"):
            cond = {"resourceType": "Condition", "id": rid, "code": _concept(r.code),
                    "subject": _subject(pid), "onsetDateTime": when}  # fmt: skip
            if r.kind == "crs_grade":
                stage = {"summary": {"text": f"ASTCT grade {int(r.number)}"}}
                if detail:
                    stage["type"] = {"text": detail}
                cond["stage"] = [stage]
            out["Condition"].append(cond)
        elif r.kind == "infusion":
            enc = f"stay-{pid}"
            out["Encounter"].append(
                {"resourceType": "Encounter", "id": enc, "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                           "code": "IMP"},
                 "subject": _subject(pid), "period": {"start": when},
                 "serviceProvider": {"reference": f"Organization/{r.site}", "display": r.site}}
            )  # fmt: skip
            out["MedicationAdministration"].append(
                {"resourceType": "MedicationAdministration", "id": rid, "status": "completed",
                 "medicationCodeableConcept": _concept(r.code), "subject": _subject(pid),
                 "context": {"reference": f"Encounter/{enc}"}, "effectiveDateTime": when}
            )  # fmt: skip
        elif vocab == "Visit":
            period = {"start": when, **({"end": end} if end else {})}
            out["Encounter"].append(
                {"resourceType": "Encounter", "id": rid, "status": "finished",
                 "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                           "code": "IMP"},
                 "type": [{**_concept(r.code), **({"text": detail} if detail else {})}],
                 "subject": _subject(pid), "period": period}
            )  # fmt: skip
        elif vocab in _MEDICATION_VOCABULARIES:
            res = {"resourceType": "MedicationAdministration", "id": rid, "status": "completed",
                   "medicationCodeableConcept": _concept(r.code), "subject": _subject(pid)}  # fmt: skip
            if end:
                res["effectivePeriod"] = {"start": when, "end": end}
            else:
                res["effectiveDateTime"] = when
            if detail:
                res["dosage"] = {"text": detail}
            out["MedicationAdministration"].append(res)
        else:
            res = {"resourceType": "Procedure", "id": rid, "status": "completed",
                   "code": _concept(r.code), "subject": _subject(pid)}  # fmt: skip
            if end:
                res["performedPeriod"] = {"start": when, "end": end}
            else:
                res["performedDateTime"] = when
            if detail:
                res["note"] = [{"text": detail}]
            out["Procedure"].append(res)
    for e in ep.itertuples(index=False):
        pat = {"resourceType": "Patient", "id": e.patient_id,
               "gender": _GENDER.get(str(e.sex), "unknown")}  # fmt: skip
        if not pd.isna(e.birth):
            pat["birthDate"] = pd.Timestamp(e.birth).strftime("%Y-%m-%d")
        if e.patient_id in deaths:
            when, cause = deaths[e.patient_id]
            pat["deceasedDateTime"] = when
            if cause:
                out["Observation"].append(
                    {"resourceType": "Observation", "id": f"death-{e.patient_id}",
                     "status": "final", "code": _concept("LOINC/69453-9"),
                     "subject": _subject(e.patient_id), "effectiveDateTime": when,
                     "valueString": cause}
                )  # fmt: skip
        out["Patient"].append(pat)
    return out


def write_fhir(tables: dict[str, pd.DataFrame], out_dir, seed: int) -> dict[str, Path]:
    """Write the FHIR twin of a simulation's clean tables; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, resources in fhir_resources(tables, seed).items():
        path = out / f"{kind}.ndjson"
        with path.open("w", encoding="utf-8") as fh:
            for res in resources:
                fh.write(json.dumps(res, separators=(",", ":")) + "\n")
        paths[kind] = path
    return paths
