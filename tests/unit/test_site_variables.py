"""Site-defined variables: declared in the config, validated, registered in the catalogue, and
used by loading (aliases, LOINC, units, plausibility), the check report and the drivers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from crs_ml.config import config_from_dict, load_config
from crs_ml.errors import ConfigError
from crs_ml.ingest.load import load_cohort
from crs_ml.scoring.drivers import feature_spec, format_value, input_name
from crs_ml.variables import (
    VARIABLES,
    Conversion,
    catalogue_arrays,
    catalogue_table,
    catalogue_version,
    convert,
    make_variable,
    register_variables,
    resolve_variable,
    site_variables,
    variable_direction,
    variables_registered,
)

LYMPHOCYTES = """
variables:
  lymphocytes_pct:
    display: Lymphocytes
    unit: "%"
    units: {fraction: 100, "%": 1}
    aliases: ["Lymphocytes %", "Lymph %"]
    loinc: [736-9]
    plausible: [0, 100]
    direction: down
"""

PATIENTS = "patient_id,infusion_time,product,age_years,sex,disease,site\n" \
    "007,2024-03-01T08:00:00,Yescarta,54,female,DLBCL,A\n"  # fmt: skip


def cohort_folder(tmp_path, rows: list[tuple]):
    folder = tmp_path / "cohort"
    folder.mkdir()
    (folder / "patients.csv").write_text(PATIENTS)
    lines = ["patient_id,hours,variable,value,unit"]
    lines += [",".join(["007", *map(str, r)]) for r in rows]
    (folder / "observations.csv").write_text("\n".join(lines) + "\n")
    return folder


def site_config(tmp_path, text: str = LYMPHOCYTES):
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return load_config(path)


def test_declared_variable_joins_the_catalogue_with_its_names_codes_and_units(tmp_path):
    before = catalogue_version()
    cfg = site_config(tmp_path)
    assert "lymphocytes_pct" in cfg.variables and site_variables() == ["lymphocytes_pct"]
    assert catalogue_version() > before
    var = VARIABLES["lymphocytes_pct"]
    assert (var.display, var.unit, var.kind, var.plausible) == ("Lymphocytes", "%", "lab",
                                                               (0.0, 100.0))  # fmt: skip
    assert variable_direction("lymphocytes_pct") == -1
    for name in ("lymphocytes_pct", "Lymphocytes %", "LYMPH %", "lymph%", "736-9", "LOINC:736-9"):
        assert resolve_variable(name) == "lymphocytes_pct", name
    assert convert("lymphocytes_pct", [0.25, 30.0], ["fraction", "%"]).tolist() == [25.0, 30.0]
    assert "lymphocytes_pct" in catalogue_arrays().index
    assert "lymphocytes_pct" in set(catalogue_table()["name"])


def test_loading_resolves_alias_and_loinc_converts_units_and_flags_implausible(tmp_path):
    site_config(tmp_path)
    rows = [(1, "Lymphocytes %", "12", "%"), (2, "736-9", "0.3", "fraction"),
            (3, "Lymph %", "140", "%"), (4, "lymphocytes_pct", "8", "")]  # fmt: skip
    c = load_cohort(cohort_folder(tmp_path, rows))
    obs = c.observations
    assert obs["variable"].tolist() == ["lymphocytes_pct"] * 4
    assert obs["value"].tolist() == pytest.approx([12.0, 30.0, 140.0, 8.0])
    assert obs["out_of_range"].tolist() == [False, False, True, False]
    assert c.report.problem("out_of_range").details == {"lymphocytes_pct": 1}
    assert c.report.problem("unknown_variable") is None


def test_unknown_unit_of_a_site_variable_is_rejected_naming_it(tmp_path):
    site_config(tmp_path)
    c = load_cohort(cohort_folder(tmp_path, [(1, "Lymph %", "12", "cells/uL")]))
    assert len(c.observations) == 0
    assert c.rejected["reason"].tolist() == ["unknown unit 'cells/uL' for lymphocytes_pct"]


def test_undeclared_variable_is_unknown_with_a_declaration_hint(tmp_path):
    rows = [(1, "Lymphocytes %", "12", "%"), (2, "Lymphocytes %", "13", "%"),
            (1, "IL-6", "20", "pg/mL")]  # fmt: skip
    c = load_cohort(cohort_folder(tmp_path, rows))
    assert c.observations["variable"].tolist() == ["il6"]
    problem = c.report.problem("unknown_variable")
    assert problem.details == {"Lymphocytes %": 2}
    hint = c.report.hints()["unknown_variable"]
    assert "variables:" in hint and "lymphocytes_pct" in hint and "Lymphocytes %" in hint
    assert "Site-defined variables" in c.report.to_text(width=300)
    # the snippet is a config that declares the variable (once its unit is filled in)
    snippet = yaml.safe_load(hint.split("e.g. ", 1)[1].replace("<unit>", "%"))
    cfg = config_from_dict(snippet)
    assert resolve_variable("Lymphocytes %") == "lymphocytes_pct" == next(iter(cfg.variables))


def test_check_cli_lists_unknown_and_loads_declared(tmp_path):
    import typer
    from typer.testing import CliRunner

    from crs_ml.cli import data as data_cli

    app = typer.Typer(add_completion=False)
    app.callback()(lambda: None)  # a callback keeps 'check' a subcommand
    data_cli.register(app)
    folder = cohort_folder(tmp_path, [(1, "Lymph %", "12", "%"), (2, "Eosinophils %", "2", "%")])
    cfg = tmp_path / "site.yaml"
    cfg.write_text(LYMPHOCYTES)
    out = tmp_path / "check.json"
    res = CliRunner().invoke(app, ["check", "--data", str(folder), "--config", str(cfg),
                                   "--json", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["tables"]["observations"]["rows_used"] == 1
    unknown = [p for p in report["problems"] if p["code"] == "unknown_variable"]
    assert unknown[0]["details"] == {"Eosinophils %": 1}
    assert "eosinophils_pct" in report["hints"]["unknown_variable"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"lymphocytes_pct": {"unit": "%", "units": {"%": 100}}},
         "variables lymphocytes_pct.units: the canonical unit '%' must be listed with factor 1"),
        ({"Lymph-Pct": {"unit": "%"}}, "variables Lymph-Pct: a variable name is lower case"),
        ({"lymphocytes_pct": {"unit": "%", "aliases": ["IL6"]}},
         "variables lymphocytes_pct.aliases: 'IL6' already names the catalogue variable il6"),
        ({"lymphocytes_pct": {"unit": "%", "loinc": ["2160-0"]}},
         "variables lymphocytes_pct.loinc: 2160-0 already names the catalogue variable creatinine"),
        ({"lymphocytes_pct": {"unit": "%", "loinc": ["736"]}},
         "variables lymphocytes_pct.loinc: '736' is not a LOINC code"),
        ({"crp": {"unit": "mg/L"}}, "variables crp: a built-in catalogue variable cannot be"),
        ({"lymphocytes_pct": {"unit": "%", "plausible": [100, 0]}},
         "variables.lymphocytes_pct.plausible plausible range [min, max] needs min < max"),
        ({"lymphocytes_pct": {"unit": "%", "units": {"fraction": -100}}},
         "variables.lymphocytes_pct.units unit 'fraction': factor must be > 0"),
        ({"lymphocytes_pct": {"unit": "%", "direction": "sideways"}},
         "variables.lymphocytes_pct.direction"),
        ({"lymphocytes_pct": {"unit": "%", "colour": "red"}},
         "unknown setting 'variables.lymphocytes_pct.colour' (known: display, unit"),
        ({"a1": {"unit": "%", "aliases": ["Lymph"]}, "a2": {"unit": "%", "aliases": ["lymph"]}},
         "variables a2.aliases: 'lymph' already names the catalogue variable a1"),
    ],
)  # fmt: skip
def test_bad_declarations_are_config_errors_naming_entry_and_field(entry, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"variables": entry}, source="site.yaml")
    assert str(err.value).startswith("site.yaml: ") and message in str(err.value)
    assert site_variables() == []  # nothing half-registered


def test_same_definition_twice_is_a_no_op_and_a_different_one_an_error(tmp_path):
    first = site_config(tmp_path)
    version = catalogue_version()
    again = config_from_dict(yaml.safe_load(LYMPHOCYTES))
    assert again.variables == first.variables and catalogue_version() == version
    changed = yaml.safe_load(LYMPHOCYTES)
    changed["variables"]["lymphocytes_pct"]["plausible"] = [0, 90]
    with pytest.raises(ConfigError, match="already defined differently in this process"):
        config_from_dict(changed)
    assert VARIABLES["lymphocytes_pct"].plausible == (0.0, 100.0)


def test_registration_is_undone_by_the_context_manager():
    var = make_variable("eosinophils_pct", unit="%", units={"%": Conversion()},
                        aliases=("Eos %",), loinc=("713-8",))  # fmt: skip
    version = catalogue_version()
    with variables_registered([var]) as added:
        assert added == ["eosinophils_pct"] and resolve_variable("713-8") == "eosinophils_pct"
        assert register_variables([var]) == []  # same definition: no-op
    assert "eosinophils_pct" not in VARIABLES and resolve_variable("Eos %") is None
    assert resolve_variable("713-8") is None and catalogue_version() > version
    assert "eosinophils_pct" not in catalogue_arrays().index


def test_site_variable_whose_features_collide_with_built_in_ones_is_refused():
    from crs_ml.features.catalogue import feature_names

    var = make_variable("il6_pretoci", unit="pg/mL", units={"pg/mL": Conversion()})
    with variables_registered([var]):
        with pytest.raises(
            ConfigError, match=r"'il6_pretoci_\w+' is made twice .*il6.*il6_pretoci"
        ):
            feature_names()
    assert "il6_pretoci_max" in feature_names()  # the catalogue is whole again


def test_site_variables_may_be_named_by_the_other_config_sections():
    cfg = config_from_dict({
        **yaml.safe_load(LYMPHOCYTES),
        "data": {"variable_aliases": {"Lymphocytes, blood %": "lymphocytes_pct"},
                 "codes": [{"kind": "variable", "target": "lymphocytes_pct",
                            "vocabulary_id": "LOINC", "concept_code": "26478-8"}]},
    })  # fmt: skip
    assert cfg.data.variable_aliases == {"Lymphocytes, blood %": "lymphocytes_pct"}


def test_site_loinc_codes_join_the_code_map(tmp_path):
    from crs_ml.ingest.codes import code_map

    assert code_map().lookup("http://loinc.org", "736-9") is None
    site_config(tmp_path)
    found = code_map().lookup("http://loinc.org", "736-9")
    assert (found.kind, found.target) == ("variable", "lymphocytes_pct")


def test_drivers_name_site_variables_in_their_words_and_units(tmp_path):
    site_config(tmp_path)
    assert feature_spec("lymphocytes_pct_min") == ("Lymphocytes min to {L}h", "number", "%")
    assert format_value("lymphocytes_pct_last", 12.5) == "12.5 %"
    assert format_value("lymphocytes_pct_change", np.log(0.5)) == "x0.5"
    assert input_name("lymphocytes_pct_slope_24h") == "Lymphocytes trend"


def test_catalogue_arrays_hold_one_lookup_per_version_numpy_and_polars_alike(tmp_path):
    """The loaders' catalogue lookups (numpy arrays and polars series) are one object per
    catalogue version: a site variable appears in both, and an unchanged catalogue reuses it."""
    first = catalogue_arrays()
    assert catalogue_arrays() is first
    site_config(tmp_path)
    cat = catalogue_arrays()
    assert cat is not first and "lymphocytes_pct" in cat.index
    i = cat.index["lymphocytes_pct"]
    assert cat.variables[i] is VARIABLES["lymphocytes_pct"]
    assert cat.name_series.to_list() == list(cat.names) == list(VARIABLES)
    assert cat.rank_series.to_list() == cat.rank.tolist()
    assert cat.low_series.to_list() == cat.low.tolist() and cat.high[i] == 100.0
    assert cat.high_series.to_list() == cat.high.tolist()
