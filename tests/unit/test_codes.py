"""The shared code maps: package files, the catalogue's LOINC codes, site entries."""

from __future__ import annotations

import pytest

from crs_ml.config import config_from_dict
from crs_ml.errors import ConfigError
from crs_ml.ingest.codes import KINDS, code_map, split_code, vocabulary_of
from crs_ml.variables import VARIABLES


def test_every_catalogue_loinc_code_is_mapped_to_its_variable():
    m = code_map()
    for var in VARIABLES.values():
        for loinc in var.loinc:
            found = m.lookup("http://loinc.org", loinc)
            assert found is not None and (found.kind, found.target) == ("variable", var.name)


def test_treatments_products_and_infusion_codes():
    m = code_map()
    assert m.lookup("RxNorm", "612865").target == "tocilizumab"
    assert m.lookup("ATC", "H02AB02").target == "corticosteroid"
    for code, product in [
        ("Q2041", "axi-cel"),
        ("Q2042", "tisa-cel"),
        ("Q2053", "brexu-cel"),
        ("Q2054", "liso-cel"),
        ("Q2055", "ide-cel"),
        ("Q2056", "cilta-cel"),
    ]:
        assert (m.lookup("HCPCS", code).kind, m.lookup("HCPCS", code).target) == (
            "product",
            product,
        )
    assert m.lookup("CPT4", "38228").kind == "infusion"
    # vasopressin is its own event; the other pressors are 'vasopressor'
    assert m.lookup("RxNorm", "11149").target == "vasopressin"
    assert {m.lookup("RxNorm", c).target for c in ("7512", "3992", "8163", "3628")} == {
        "vasopressor"
    }
    assert {c.target for c in m.of_kind("event")} == set(KINDS["event"])
    assert m.lookup("ICD10CM", "C83.38").target == "LBCL"  # disease codes are prefixes
    assert m.by_concept_id(40171288).target == "tocilizumab"


def test_site_entries_extend_and_override_the_package_maps():
    cfg = config_from_dict(
        {"data": {"codes": [
            {"kind": "variable", "target": "ferritin", "vocabulary_id": "LOCAL",
             "concept_code": "FERR-S"},
            {"kind": "event", "target": "corticosteroid", "vocabulary_id": "RxNorm",
             "concept_code": "612865"},
        ]}}
    )  # fmt: skip
    m = code_map(cfg.data.codes)
    assert m.lookup("LOCAL", "FERR-S").target == "ferritin"
    assert m.lookup("RxNorm", "612865").target == "corticosteroid"
    assert m.lookup("RxNorm", "612865").origin == "config"


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"kind": "event", "target": "tocilizumb", "concept_id": 1}, "did you mean 'tocilizumab'"),
        ({"kind": "drug", "target": "tocilizumab", "concept_id": 1}, "kind 'drug'"),
        ({"kind": "event", "target": "tocilizumab", "vocabulary_id": "RxNorm"}, "concept_id"),
    ],
)
def test_bad_site_entries_are_config_errors(entry, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"data": {"codes": [entry]}})


def test_vocabulary_names():
    assert vocabulary_of("http://loinc.org") == "LOINC"
    assert vocabulary_of("http://snomed.info/sct") == "SNOMED"
    assert split_code("RxNorm/612865") == ("RxNorm", "612865")
    assert split_code("8310-5") == ("", "8310-5")
