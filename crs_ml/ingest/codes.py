"""Vocabulary codes mapped to the project's targets: the code maps every data adapter uses.

The maps are data: CSV files shipped in the package (``crs_ml/ingest/code_maps/``, see its
README) plus the entries a site adds in its config (``data.codes``, validated by
:class:`crs_ml.config.CodeEntry`). Every entry has a ``kind`` and a ``target``:

=========== ===================================================================
kind        target
=========== ===================================================================
variable    a catalogue variable (``ferritin``); LOINC codes come from
            :mod:`crs_ml.variables`, the package files add only their OMOP ids
event       an event name of the contract (``tocilizumab``, ``vasopressor``, ...)
product     a CAR-T product (``axi-cel``, ...): its infusion record names it
infusion    ``cart``: a CAR-T administration record that names no product
disease     a disease of the contract (``LBCL``, ...); codes match as prefixes
outcome     ``crs_grade`` (value: ASTCT grade) or ``followup_end``
=========== ===================================================================

Codes are looked up by ``(vocabulary_id, concept_code)`` as OMOP spells them (``LOINC``,
``RxNorm``, ``ATC``, ``SNOMED``, ``CPT4``, ``HCPCS``, ``ICD10CM``) or by OMOP ``concept_id``.
:func:`vocabulary_of` turns FHIR system URLs and MEDS code prefixes into those names.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

from crs_ml.config import code_targets
from crs_ml.errors import ConfigError
from crs_ml.variables import VARIABLES, catalogue_version

__all__ = [
    "KINDS",
    "Code",
    "CodeMap",
    "code_map",
    "operators",
    "genders",
    "not_systemic",
    "split_code",
    "valid_targets",
    "vocabulary_of",
]

#: kind -> the targets it may map to
KINDS: dict[str, tuple[str, ...]] = code_targets()
_FILES = ("treatments.csv", "cart.csv", "diseases.csv", "outcomes.csv")

#: FHIR code system URLs (and OIDs) -> OMOP vocabulary_id
_SYSTEMS = {
    "http://loinc.org": "LOINC",
    "urn:oid:2.16.840.1.113883.6.1": "LOINC",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "urn:oid:2.16.840.1.113883.6.88": "RxNorm",
    "http://snomed.info/sct": "SNOMED",
    "urn:oid:2.16.840.1.113883.6.96": "SNOMED",
    "http://www.ama-assn.org/go/cpt": "CPT4",
    "urn:oid:2.16.840.1.113883.6.12": "CPT4",
    "urn:oid:2.16.840.1.113883.6.285": "HCPCS",
    "https://www.cms.gov/medicare/coding/hcpcsreleasecodesets": "HCPCS",
    "http://www.whocc.no/atc": "ATC",
    "urn:oid:2.16.840.1.113883.6.73": "ATC",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD10CM",
}
_NAMES = {
    v.lower(): v for v in ("LOINC", "RxNorm", "SNOMED", "CPT4", "HCPCS", "ATC", "ICD10CM")
} | {"snomedct": "SNOMED", "snomed ct": "SNOMED", "cpt": "CPT4", "rxnorm extension": "RxNorm"}
_NAMES |= {"visit": "Visit", "icd10": "ICD10CM", "icd-10-cm": "ICD10CM"}


def vocabulary_of(system: str) -> str:
    """The OMOP vocabulary_id for a vocabulary name, FHIR system URL or OID (``http://loinc.org``
    -> ``LOINC``, ``SNOMED CT`` -> ``SNOMED``); unknown systems are returned unchanged."""
    s = str(system).strip()
    key = s.lower().rstrip("/")
    return _SYSTEMS.get(key) or _NAMES.get(key) or s


def split_code(code: str) -> tuple[str, str]:
    """A MEDS-style code ``"LOINC/8310-5"`` as (vocabulary_id, concept_code); a code without a
    vocabulary prefix gives ``("", code)``."""
    vocab, sep, rest = str(code).partition("/")
    return (vocabulary_of(vocab), rest) if sep else ("", str(code))


@dataclass(frozen=True)
class Code:
    kind: str
    target: str
    vocabulary_id: str
    concept_code: str
    concept_id: int | None
    concept_name: str = ""
    verified: bool = False
    #: ``package`` (shipped file) or ``config`` (the site's ``data.codes``)
    origin: str = "package"


def valid_targets(kind: str) -> tuple[str, ...]:
    if kind not in KINDS:
        raise ConfigError(f"unknown code kind '{kind}' (known: {', '.join(KINDS)})")
    return KINDS[kind]


def _read(name: str) -> list[dict[str, str]]:
    text = resources.files("crs_ml.ingest").joinpath("code_maps", name).read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


def _int_or_none(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text else None


def _package_codes() -> tuple[Code, ...]:
    """The shipped code maps and the LOINC codes of the catalogue (with site variables)."""
    return _codes_of_catalogue(catalogue_version())


@lru_cache(maxsize=4)
def _codes_of_catalogue(version: int) -> tuple[Code, ...]:
    loinc_ids = {r["concept_code"]: r for r in _read("loinc_concepts.csv")}
    out: list[Code] = []
    for var in VARIABLES.values():
        for loinc in var.loinc:
            row = loinc_ids.get(loinc, {})
            out.append(
                Code("variable", var.name, "LOINC", loinc, _int_or_none(row.get("concept_id")),
                     row.get("concept_name", ""), row.get("verified") == "yes")
            )  # fmt: skip
    for name in _FILES:
        for r in _read(name):
            if r["target"] not in valid_targets(r["kind"]):
                raise AssertionError(f"code_maps/{name}: unknown target {r['target']!r}")
            out.append(
                Code(r["kind"], r["target"], r["vocabulary_id"], r["concept_code"],
                     _int_or_none(r["concept_id"]), r["concept_name"], r["verified"] == "yes")
            )  # fmt: skip
    return tuple(out)


@cache
def operators() -> dict[int, str]:
    """OMOP operator concept id -> ``<``, ``<=``, ``=``, ``>=``, ``>``."""
    return {int(r["concept_id"]): r["operator"] for r in _read("operators.csv")}


@cache
def genders() -> dict[int, str]:
    """OMOP gender concept id -> ``F`` / ``M`` (anything else is ``U``)."""
    return {int(r["concept_id"]): r["sex"] for r in _read("genders.csv")}


@cache
def _routes() -> tuple[tuple[re.Pattern, frozenset[str] | None, str], ...]:
    out = []
    for r in _read("routes.csv"):
        events = None if r["events"] == "all" else frozenset(r["events"].split(";"))
        for e in events or ():
            if e not in KINDS["event"]:
                raise AssertionError(f"code_maps/routes.csv: unknown event {e!r}")
        out.append((re.compile(rf"(?<![a-z]){re.escape(r['word'])}", re.IGNORECASE),
                    events, r["why"]))  # fmt: skip
    return tuple(out)


def not_systemic(texts: Sequence, events: Sequence) -> list[str | None]:
    """For each drug record: why it is not the systemic treatment its event means (a local
    route or dose form, or an injection where the event is an infusion, as declared in
    ``code_maps/routes.csv``), from ``texts`` (the route's or product's name; None or NaN
    when unknown); None where nothing says so."""
    out: list[str | None] = []
    for text, event in zip(texts, events, strict=True):
        why = None
        if isinstance(text, str) and text:
            for pattern, applies, reason in _routes():
                if (applies is None or event in applies) and pattern.search(text):
                    why = f"{reason}: {text}"
                    break
        out.append(why)
    return out


class CodeMap:
    """The package's codes plus a site's (``data.codes``); a site entry for the same
    (vocabulary, code) or concept id replaces the package's."""

    def __init__(self, codes: Iterable[Code]):
        by_code: dict[tuple[str, str], Code] = {}
        by_id: dict[int, Code] = {}
        for c in codes:
            if c.concept_code:
                by_code[(vocabulary_of(c.vocabulary_id), c.concept_code)] = c
            if c.concept_id is not None:
                by_id[c.concept_id] = c
        self.codes = tuple(dict.fromkeys([*by_code.values(), *by_id.values()]))
        self._by_code = by_code
        self._by_id = by_id

    def of_kind(self, *kinds: str) -> list[Code]:
        return [c for c in self.codes if c.kind in kinds]

    def lookup(self, vocabulary_id: str, concept_code: str) -> Code | None:
        """The entry for a code, e.g. ``lookup("http://loinc.org", "8310-5")``; disease codes
        also match as prefixes (``C83.30`` -> ``C83.3``)."""
        vocab = vocabulary_of(vocabulary_id)
        code = str(concept_code).strip()
        found = self._by_code.get((vocab, code))
        if found is not None:
            return found
        prefixes = [
            c
            for c in self.of_kind("disease")
            if c.concept_code
            and vocabulary_of(c.vocabulary_id) == vocab
            and code.startswith(c.concept_code)
        ]
        return max(prefixes, key=lambda c: len(c.concept_code), default=None)  # the longest

    def by_concept_id(self, concept_id: int) -> Code | None:
        return self._by_id.get(int(concept_id))

    def concept_ids(self, *kinds: str) -> dict[int, Code]:
        """{OMOP concept id: entry} of the entries of ``kinds`` that carry an id."""
        return {i: c for i, c in self._by_id.items() if c.kind in kinds}

    def codes_without_id(self, *kinds: str) -> list[Code]:
        """Entries of ``kinds`` known only by code (resolved through a ``concept`` table)."""
        return [c for c in self.of_kind(*kinds) if c.concept_id is None]


def code_map(entries: Iterable | None = None) -> CodeMap:
    """The package's code map extended by a site's config entries
    (:class:`crs_ml.config.CodeEntry`, or dicts with the same keys)."""
    extra = []
    for e in entries or ():
        d = e if isinstance(e, dict) else e.model_dump()
        extra.append(
            Code(d["kind"], d["target"], vocabulary_of(d.get("vocabulary_id") or ""),
                 str(d.get("concept_code") or ""), d.get("concept_id"),
                 d.get("concept_name") or "", True, "config")
        )  # fmt: skip
    return CodeMap([*_package_codes(), *extra])
