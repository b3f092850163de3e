"""Reading a FHIR R4 bulk export (NDJSON: one resource per line) into the :class:`Cohort`.

Every ``*.ndjson`` / ``*.ndjson.gz`` file of the folder is read line by line (one JSON
resource per line; a file is never loaded whole), whatever its name: the ``resourceType`` of
each line decides. Read:

``Patient``
    ``id`` (the subject), ``gender``, ``birthDate``, ``deceasedDateTime`` (a death; its cause
    from an ``Observation`` coded LOINC 69453-9 at the same patient, if any; a date only is
    placed at 23:59:59 of that day, the latest it can be).
``Observation``
    ``code`` codings (LOINC -> catalogue variables; SNOMED lost-to-follow-up), the result
    time ``issued``, else ``effectiveDateTime`` / ``effectiveInstant`` /
    ``effectivePeriod.start``; ``valueQuantity`` (``comparator`` ``<``/``>`` as a detection
    limit; unit: the UCUM ``code``, else ``unit``), ``valueString``,
    ``valueCodeableConcept.text``, ``valueInteger``; a ``dataAbsentReason`` is a result without
    a value (counted by the ordinary load). A panel's ``component`` results (blood pressure
    85354-9: systolic 8480-6, diastolic 8462-4) are read each with its own code and value at
    the panel's time; the panel itself only when it has a value of its own.
``MedicationAdministration``
    ``medicationCodeableConcept`` codings (RxNorm / ATC treatments; HCPCS or RxNorm CAR-T
    products: the infusion), ``effectiveDateTime`` or ``effectivePeriod`` (start, end),
    ``dosage.text`` as the detail, ``context`` (its Encounter's ``serviceProvider`` is the
    site).
``Procedure``
    ``code`` codings (oxygen and ventilation, CAR-T administration), ``performedDateTime`` or
    ``performedPeriod``, ``note[].text`` as the detail, ``encounter`` for the site.
``Condition``
    ``code`` codings (ICD-10-CM diseases; the CRS code with the grade as the first number
    0-5 in ``stage[0].summary`` (coding code or text), the grading definition in
    ``stage[0].type.text``), ``onsetDateTime``, else ``recordedDate``.
``Encounter``
    ``serviceProvider`` (the site: display, else the Organization id), ``type``
    codings (an ICU stay: v3 RoleCode ``ICU`` is read as the OMOP Visit ``ICU``; the type's
    ``text`` is the detail), ``period``.

Resources with status ``entered-in-error``, ``not-done`` or ``cancelled`` are left out and
counted. Lines that are not JSON, resources without a subject, and unsupported resource
types are counted with file and line. A coding is looked up in the shared code mappings by
its ``system`` (FHIR URLs -> OMOP vocabulary names) and ``code``; the first mapped coding of a
CodeableConcept wins. FHIR requires a time zone on every time with a time of day: times
without one are read as UTC and counted (warning); dates without a time are rejected.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from crs_ml.cohort import Cohort
from crs_ml.config import DataConfig
from crs_ml.errors import InputError
from crs_ml.ingest.coded.assemble import CodedSource, classify_codes, coded_cohort
from crs_ml.ingest.coded.mapping import DEATH_CODE
from crs_ml.ingest.codes import vocabulary_of
from crs_ml.ingest.problems import MAX_EXAMPLES, Problem

__all__ = ["fhir_files", "is_fhir", "load_fhir", "read_fhir", "resource_lines"]

CAUSE_OF_DEATH = "LOINC/69453-9"
_SKIP_STATUS = {"entered-in-error", "not-done", "cancelled", "stopped"}
#: FHIR code systems read as another vocabulary than :func:`vocabulary_of` gives
_SYSTEM_ALIASES = {"http://terminology.hl7.org/CodeSystem/v3-RoleCode": "Visit"}
_ZONE = re.compile(r"(?:Z|[+-]\d{2}:\d{2})$")
_GRADE = re.compile(r"\b([0-5])\b")
#: resources left out: code -> (severity, message)
_NOT_READ = {
    "not_json": ("warning", "lines that are not a JSON resource: left out"),
    "no_subject": ("warning", "resources without a subject reference: left out"),
    "skipped_status": (
        "info",
        "resources entered in error, not done, cancelled or stopped: left out",
    ),
    "resource_type_not_read": ("info", "resource types this reader does not use: left out"),
    "death_date_only": (
        "info",
        "deceasedDateTime with a date only: the death is placed at 23:59:59 of that day",
    ),
}
_READ = ("Patient", "Observation", "MedicationAdministration", "Procedure", "Condition",
         "Encounter")  # fmt: skip


def fhir_files(path) -> list[Path]:
    root = Path(path)
    if root.is_file():
        return [root]
    return sorted(p for p in root.glob("*") if p.name.endswith((".ndjson", ".ndjson.gz")))


def is_fhir(path) -> bool:
    """A folder (or file) of NDJSON files whose first line is a FHIR resource."""
    files = fhir_files(path)
    if not files:
        return False
    for _, _, resource, _ in resource_lines(files[0]):
        return isinstance(resource, dict) and "resourceType" in resource
    return False


def resource_lines(path: Path) -> Iterator[tuple[str, int, dict | None, str]]:
    """(file name, 1-based line, resource or None, error) for every non-blank line, read one
    line at a time (gzip-compressed files too)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield path.name, number, json.loads(line), ""
            except json.JSONDecodeError as exc:
                yield path.name, number, None, f"not JSON: {exc.msg}"


@cache
def _vocabulary(system: str) -> str:
    return _SYSTEM_ALIASES.get(system) or vocabulary_of(system)


def _code(coding: dict) -> str:
    return f"{_vocabulary(str(coding.get('system') or ''))}/{coding.get('code', '')}".strip()


def _codings(concept: dict | None) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return [_code(c) for c in concept.get("coding") or [] if isinstance(c, dict)]


def _ref_id(ref: dict | None) -> str:
    """``Patient/123`` -> ``123`` (also ``urn:uuid:...`` and bare ids)."""
    text = str((ref or {}).get("reference") or "")
    return text.rsplit("/", 1)[-1].removeprefix("urn:uuid:")


class _Collect:
    """Lists of the fields the assembly needs, filled one resource at a time."""

    def __init__(self) -> None:
        self.rows: dict[str, list] = {
            k: []
            for k in ("subject", "time", "end_time", "codes", "value", "unit", "detail",
                      "encounter", "file", "row")
        }  # fmt: skip
        self.persons: list[tuple] = []
        self.encounter_site: dict[str, str] = {}
        self.causes: dict[str, str] = {}
        self.counts: Counter = Counter()
        self.problems: list[Problem] = []
        self.examples: dict[str, list[dict]] = {}

    def note(self, what: str, file: str, line: int, value: str) -> None:
        self.counts[what] += 1
        ex = self.examples.setdefault(what, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append({"file": file, "row": line, "column": "resource", "value": value})

    def add(self, subject, time, end, codes, value, unit, detail, encounter, file, row):
        r = self.rows
        r["subject"].append(subject)
        r["time"].append(time)
        r["end_time"].append(end)
        r["codes"].append(codes)
        r["value"].append(value)
        r["unit"].append(unit)
        r["detail"].append(detail)
        r["encounter"].append(encounter)
        r["file"].append(file)
        r["row"].append(row)


def _quantity_text(res: dict) -> tuple[str | None, str | None]:
    q = res.get("valueQuantity")
    if isinstance(q, dict) and q.get("value") is not None:
        return f"{q.get('comparator') or ''}{q['value']}", q.get("code") or q.get("unit")
    for key in ("valueString", "valueInteger", "valueBoolean"):
        if res.get(key) is not None:
            return str(res[key]), None
    concept = res.get("valueCodeableConcept")
    if isinstance(concept, dict):
        return concept.get("text") or None, None
    return None, None


def _first_note(res: dict) -> str | None:
    for n in res.get("note") or []:
        if isinstance(n, dict) and n.get("text"):
            return str(n["text"])
    return None


def _read_resource(res: dict, c: _Collect, file: str, line: int) -> None:
    kind = res.get("resourceType")
    if kind not in _READ:
        c.note("resource_type_not_read", file, line, str(kind))
        return
    if res.get("status") in _SKIP_STATUS:
        c.note("skipped_status", file, line, f"{kind}/{res.get('id', '')}: {res['status']}")
        return
    if kind == "Patient":
        pid = str(res.get("id") or "")
        c.persons.append((pid, res.get("gender"), res.get("birthDate"), file, line))
        died = res.get("deceasedDateTime")
        if died:
            if "T" not in str(died):  # a date only: the latest the death can be, that day
                c.note("death_date_only", file, line, str(died))
                died = f"{died}T23:59:59"
            c.add(pid, died, None, [DEATH_CODE], None, None, None, "", file, line)
        return
    if kind == "Encounter":
        sp = res.get("serviceProvider") or {}
        site = sp.get("display") or _ref_id(sp)
        if res.get("id") and site:
            c.encounter_site[str(res["id"])] = site
        types = [t for t in res.get("type") or [] if isinstance(t, dict)]
        codes = [x for t in types for x in _codings(t)]
        if codes:
            period = res.get("period") or {}
            text = next((t["text"] for t in types if t.get("text")), None)
            c.add(_ref_id(res.get("subject")), period.get("start"), period.get("end"), codes,
                  None, None, text, "", file, line)  # fmt: skip
        return
    subject = _ref_id(res.get("subject"))
    if not subject:
        c.note("no_subject", file, line, f"{kind}/{res.get('id', '')}")
        return
    if kind == "Observation":
        codes = _codings(res.get("code"))
        value, unit = _quantity_text(res)
        if CAUSE_OF_DEATH in codes:
            c.causes[subject] = value or ""
            return
        time = res.get("issued") or res.get("effectiveDateTime") or res.get("effectiveInstant")
        time = time or (res.get("effectivePeriod") or {}).get("start")
        encounter = _ref_id(res.get("encounter"))
        # a panel (blood pressure 85354-9: systolic 8480-6 and diastolic 8462-4) carries its
        # results as components, each with its own code and value, at the panel's time
        parts = [p for p in res.get("component") or [] if isinstance(p, dict)]
        for part in parts:
            part_value, part_unit = _quantity_text(part)
            part_codes = _codings(part.get("code"))
            if part_codes and part_value is not None:
                c.add(subject, time, None, part_codes, part_value, part_unit, None, encounter,
                      file, line)  # fmt: skip
        if not parts or value is not None:
            c.add(subject, time, None, codes, value, unit, None, encounter, file, line)
    elif kind == "MedicationAdministration":
        codes = _codings(res.get("medicationCodeableConcept"))
        if not codes and res.get("medicationReference"):
            codes = ["medicationReference/" + _ref_id(res["medicationReference"])]
        period = res.get("effectivePeriod") or {}
        time = res.get("effectiveDateTime") or period.get("start")
        dosage = res.get("dosage") or {}
        c.add(subject, time, period.get("end"), codes, None, None, dosage.get("text"),
              _ref_id(res.get("context")), file, line)  # fmt: skip
    elif kind == "Procedure":
        period = res.get("performedPeriod") or {}
        time = res.get("performedDateTime") or period.get("start")
        c.add(subject, time, period.get("end"), _codings(res.get("code")), None, None,
              _first_note(res), _ref_id(res.get("encounter")), file, line)  # fmt: skip
    elif kind == "Condition":
        stage = (res.get("stage") or [{}])[0] or {}
        summary = stage.get("summary") or {}
        texts = [str(x.get("code", "")) for x in summary.get("coding") or []]
        texts.append(str(summary.get("text") or ""))
        grade = next((m.group(1) for t in texts if (m := _GRADE.search(t))), None)
        time = res.get("onsetDateTime") or res.get("recordedDate")
        c.add(subject, time, None, _codings(res.get("code")), grade, None,
              (stage.get("type") or {}).get("text"), _ref_id(res.get("encounter")), file,
              line)  # fmt: skip


def _times(texts: list) -> tuple[pd.Series, np.ndarray]:
    """FHIR dateTime texts -> (UTC times, problem: '' | 'no time zone' | 'missing' |
    'date without a time of day' | 'unparseable')."""
    s = pd.Series(texts, dtype=object).fillna("").astype(str).str.strip()
    problem = np.full(len(s), "", dtype=object)
    empty = (s == "").to_numpy()
    has_time = s.str.contains("T", regex=False).to_numpy()
    zone = s.str.contains(_ZONE).to_numpy()
    problem[~empty & ~has_time] = "date without a time of day"
    problem[~empty & has_time & ~zone] = "no time zone"
    problem[empty] = "missing"
    use = ~empty & has_time
    ts = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    parsed = pd.to_datetime(s[use], utc=True, format="ISO8601", errors="coerce")
    ts[use] = parsed
    problem[use & ts.isna().to_numpy()] = "unparseable"
    return ts.astype("datetime64[ns, UTC]"), problem


def read_fhir(path, options: DataConfig | None = None) -> CodedSource:
    """The coded rows of a FHIR R4 bulk export (see the module docstring)."""
    opts = options or DataConfig()
    files = fhir_files(path)
    if not files:
        raise InputError("no FHIR NDJSON files (*.ndjson)", file=str(path))
    c = _Collect()
    lines = 0
    for f in files:
        for name, number, res, error in resource_lines(f):
            lines += 1
            if res is None or not isinstance(res, dict):
                c.note("not_json", name, number, error or "not an object")
                continue
            _read_resource(res, c, name, number)
    problems = [
        Problem("FHIR", what, severity, message, c.counts[what], c.examples.get(what, []))
        for what, (severity, message) in _NOT_READ.items()
        if c.counts[what]
    ]
    rows = _resolve_codes(c, opts)
    problems.extend(c.problems)
    persons = pd.DataFrame(c.persons, columns=["subject", "sex", "birth", "file", "row"])
    birth = pd.to_datetime(persons["birth"], utc=True, format="ISO8601", errors="coerce")
    persons["birth"] = pd.Series(birth, dtype="datetime64[ns, UTC]")
    persons["sex"] = persons["sex"].fillna("U")
    return CodedSource(
        format="FHIR",
        source=str(path),
        rows=rows,
        persons=persons,
        problems=problems,
        rows_read=lines,
    )


def _resolve_codes(c: _Collect, opts: DataConfig) -> pd.DataFrame:
    """One code per row: the first coding the maps know, else the first coding (counted as
    unmapped by the assembly); the site from the row's encounter."""
    r = c.rows
    distinct = pd.unique(pd.Series([x for codes in r["codes"] for x in codes], dtype=object))
    kinds, _ = classify_codes(pd.Series(distinct, dtype=object), opts.codes)
    known = {str(code) for code, k in zip(distinct, kinds, strict=True) if k != ""}
    chosen = [
        next((x for x in codes if x in known), codes[0] if codes else "no code")
        for codes in r["codes"]
    ]
    time, problem = _times(r["time"])
    end, end_problem = _times(r["end_time"])
    unusable = ~np.isin(end_problem, ["", "missing", "no time zone"])
    if unusable.any():
        at = np.flatnonzero(unusable)
        c.problems.append(
            Problem("FHIR", "bad_end_time", "warning",
                    "end times that are unparseable or a date only: read as no end", int(unusable.sum()),
                    [{"file": r["file"][i], "row": r["row"][i], "column": "end",
                      "value": str(r["end_time"][i])} for i in at[:MAX_EXAMPLES]],
                    {str(k): int(v) for k, v in Counter(end_problem[at]).items()})
        )  # fmt: skip
    subject = pd.Series(r["subject"], dtype=object)
    detail = pd.Series(r["detail"], dtype=object)
    is_death = np.array([x == DEATH_CODE for x in chosen], dtype=bool)
    detail[is_death] = subject[is_death].map(c.causes)
    site = pd.Series(r["encounter"], dtype=object).map(c.encounter_site)
    return pd.DataFrame(
        {
            "subject": subject,
            "time": time,
            "time_problem": problem,
            "end_time": end,
            "code": pd.Series(chosen, dtype=object),
            "value": pd.Series(r["value"], dtype=object),
            "unit": pd.Series(r["unit"], dtype=object),
            "detail": detail,
            "site": site.astype(object).where(site.notna(), None),
            "file": pd.Series(r["file"], dtype=object),
            "row": np.asarray(r["row"], dtype="int64"),
        }
    )


def load_fhir(path, options: DataConfig | None = None) -> Cohort:
    """Read and normalise a FHIR R4 bulk export into the same :class:`Cohort` the contract
    tables give (see the module docstring and :mod:`crs_ml.ingest.coded.assemble`)."""
    return coded_cohort(read_fhir(path, options), options)
