"""The variable catalogue: names, aliases, LOINC codes, unit spellings and conversions."""

from __future__ import annotations

import numpy as np
import pytest

from crs_ml.errors import InputError
from crs_ml.variables import (
    CORE_VARIABLES,
    VARIABLES,
    catalogue_table,
    convert,
    resolve_variable,
    unit_key,
)

#: canonical variables and units as the README's input section lists them
DESIGN_UNITS = {
    "temperature": "degC", "il6": "pg/mL", "crp": "mg/L", "ferritin": "ng/mL", "ldh": "U/L",
    "platelets": "10^9/L", "creatinine": "mg/dL", "sbp": "mmHg", "dbp": "mmHg",
    "heart_rate": "/min", "resp_rate": "/min", "spo2": "%", "ifng": "pg/mL", "mcp1": "pg/mL",
    "il10": "pg/mL", "tnf_alpha": "pg/mL", "il1b": "pg/mL", "d_dimer": "ug/mL FEU",
    "fibrinogen": "mg/dL", "wbc": "10^9/L", "anc": "10^9/L", "alt": "U/L", "ast": "U/L",
    "bilirubin": "mg/dL", "inr": "ratio",
}  # fmt: skip


def test_every_design_variable_with_its_canonical_unit():
    assert {name: v.unit for name, v in VARIABLES.items()} == DESIGN_UNITS
    assert set(CORE_VARIABLES) == {
        "il6", "crp", "ferritin", "ldh", "platelets", "creatinine", "temperature", "sbp", "dbp",
        "heart_rate", "resp_rate", "spo2",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("IL-6", "il6"), ("IL6", "il6"), ("Interleukin 6", "il6"), ("interleukin-6", "il6"),
        ("CRP", "crp"), ("hs-CRP", "crp"), ("C-reactive protein", "crp"), ("Temp", "temperature"),
        ("Body temperature", "temperature"), ("SpO2", "spo2"), ("O2 sat", "spo2"),
        ("Sat O2", "spo2"), ("HR", "heart_rate"), ("Pulse", "heart_rate"), ("RR", "resp_rate"),
        ("SBP", "sbp"), ("Systolic BP", "sbp"), ("DBP", "dbp"), ("PLT", "platelets"),
        ("Platelets", "platelets"), ("LDH", "ldh"), ("Ferritin", "ferritin"),
        ("Creat", "creatinine"), ("Creatinine", "creatinine"), ("D-dimer", "d_dimer"),
        ("  heart_rate  ", "heart_rate"), ("HEART RATE", "heart_rate"), ("tnf-α", "tnf_alpha"),
    ],
)  # fmt: skip
def test_aliases_resolve_case_and_space_insensitively(text, name):
    assert resolve_variable(text) == name


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("26881-3", "il6"), ("1988-5", "crp"), ("30522-7", "crp"), ("2276-4", "ferritin"),
        ("8310-5", "temperature"), ("2532-0", "ldh"), ("14804-9", "ldh"), ("777-3", "platelets"),
        ("2160-0", "creatinine"), ("8480-6", "sbp"), ("8462-4", "dbp"), ("8867-4", "heart_rate"),
        ("59408-5", "spo2"), ("2708-6", "spo2"), ("9279-1", "resp_rate"), (" 26881-3 ", "il6"),
        ("LOINC:1988-5", "crp"),
    ],
)  # fmt: skip
def test_loinc_codes_resolve(code, name):
    assert resolve_variable(code) == name


@pytest.mark.parametrize("text", ["sodium", "", "   ", None, "12345-6", "IL-7", np.nan])
def test_unknown_names_resolve_to_none(text):
    assert resolve_variable(text) is None


def test_every_alias_and_code_names_its_own_variable():
    for var in VARIABLES.values():
        for text in (var.name, var.display, *var.aliases, *var.loinc):
            assert resolve_variable(text) == var.name, text


@pytest.mark.parametrize(
    ("variable", "spellings"),
    [
        ("crp", ["mg/L", "mg/l", "MG/L", " mg / L "]),
        ("temperature", ["degC", "°C", "C", "Cel", "ºC"]),
        ("platelets", ["10^9/L", "10*9/L", "x10^9/L", "10^3/uL", "K/uL", "10³/µL", "×10⁹/L"]),
        ("creatinine", ["umol/L", "µmol/L", "μmol/L", "UMOL/L"]),
        ("sbp", ["mmHg", "mm Hg", "mm[Hg]"]),
    ],
)
def test_unit_spellings_are_one_unit(variable, spellings):
    var = VARIABLES[variable]
    conversions = {var.conversion(s) for s in spellings}
    assert None not in conversions
    assert len(conversions) == 1, spellings


def test_unit_key_ignores_case_space_and_micro_signs():
    assert len({unit_key(s) for s in ["umol/L", "µmol/L", "μmol/L", " UMOL / l"]}) == 1
    assert unit_key("x10^9/L") == unit_key("10*9/L") == unit_key("10E9/l")
    # US spellings, a parenthesised power and UCUM annotations (whose text stays: FEU and
    # DDU D-dimer differ by a factor 2)
    assert unit_key("K/mcL") == unit_key("K/uL") and unit_key("thou/mcL") == unit_key("thou/uL")
    assert unit_key("x10(9)/L") == unit_key("10^9/L")
    assert unit_key("ug/mL{FEU}") == unit_key("ug/mL FEU") != unit_key("ug/mL{DDU}")


def test_annotated_and_us_spellings_convert():
    assert convert("d_dimer", [1.0, 1.0], ["ug/mL{FEU}", "ng/mL{DDU}"]).tolist() == [1.0, 0.002]
    assert convert("platelets", [150.0] * 2, ["K/mcL", "x10(9)/L"]).tolist() == [150.0, 150.0]


@pytest.mark.parametrize(
    ("variable", "value", "unit", "expected"),
    [
        ("temperature", 100.4, "degF", 38.0),
        ("temperature", 102.0, "°F", (102.0 - 32) * 5 / 9),
        ("temperature", 98.6, "[degF]", 37.0),
        ("temperature", 37.2, "Cel", 37.2),
        ("crp", 1.5, "mg/dL", 15.0),
        ("crp", 7.0, "ug/mL", 7.0),
        ("ferritin", 800.0, "ug/L", 800.0),
        ("ferritin", 2247.0, "pmol/L", 1000.0),
        ("il6", 55.0, "ng/L", 55.0),
        ("platelets", 150000.0, "/uL", 150.0),
        ("platelets", 150000.0, "cells/uL", 150.0),
        ("platelets", 150.0, "10^3/uL", 150.0),
        ("creatinine", 88.4, "umol/L", 1.0),
        ("d_dimer", 1.0, "ug/mL FEU", 1.0),
        ("d_dimer", 1.0, "mg/L DDU", 2.0),
        ("d_dimer", 500.0, "ng/mL FEU", 0.5),
        ("fibrinogen", 3.5, "g/L", 350.0),
        ("bilirubin", 17.1, "umol/L", 1.0),
        ("ldh", 4.0, "ukat/L", 240.0),
        ("wbc", 7500.0, "/mm3", 7.5),
    ],
)
def test_conversions_to_the_canonical_unit(variable, value, unit, expected):
    out = convert(variable, np.array([value]), unit)
    assert out[0] == pytest.approx(expected, rel=1e-12)


def test_convert_is_vectorised_over_mixed_units():
    values = np.array([1.0, 10.0, 2.5, 7.0])
    units = np.array(["mg/dL", "mg/L", "MG/DL", ""], dtype=object)
    assert np.allclose(convert("CRP", values, units), [10.0, 10.0, 25.0, 7.0])


def test_unknown_unit_raises_naming_the_unit():
    with pytest.raises(InputError, match="mmol/parsec"):
        convert("crp", np.array([1.0, 2.0]), np.array(["mg/L", "mmol/parsec"], dtype=object))


def test_canonical_unit_is_identity_and_ranges_are_ordered():
    for var in VARIABLES.values():
        conv = var.conversion(var.unit)
        assert (conv.factor, conv.offset) == (1.0, 0.0), var.name
        lo, hi = var.plausible
        assert lo < hi, var.name
        assert var.display and var.kind in {"vital", "lab"}


def test_ddu_and_bare_units_are_documented_assumptions():
    var = VARIABLES["d_dimer"]
    assert var.conversion("ug/mL").note  # bare unit read as FEU, reported
    assert not var.conversion("ug/mL FEU").note
    assert "DDU" in var.note


def test_catalogue_table_has_one_row_per_variable():
    table = catalogue_table()
    assert list(table["name"]) == list(VARIABLES)
    for col in ("display", "unit", "aliases", "loinc", "plausible_min", "plausible_max"):
        assert col in table.columns
    assert table.loc[table["name"] == "il6", "display"].item() == "IL-6"


@pytest.mark.parametrize(
    ("text", "name"),
    [("Ferritin, serum", "ferritin"), ("CRP (mg/L)", "crp"), ("LDH total", "ldh"),
     ("Creatinine, serum", "creatinine"), ("Ferritn", "ferritin"), ("Platelts", "platelets"),
     ("Interleukin 8", None), ("IL-8", None), ("sodium", None), ("Na+", None),
     ("ferritin", None)],  # a known name needs no suggestion
)  # fmt: skip
def test_suggest_variable_for_names_that_resemble_the_catalogue(text, name):
    from crs_ml.variables import suggest_variable

    assert suggest_variable(text) == name
