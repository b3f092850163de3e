"""The simulator's catalogue markers (``markers="all"``): the core cohort of a seed is the same
with and without them, their direction in severe CRS follows the literature, panels follow
the sites, and their messy unit variants load to the clean values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from crs_ml.errors import ConfigError
from crs_ml.simulate.markers import MARKER_VARIABLES
from crs_ml.simulate.simulator import simulate, write_cohort
from crs_ml.variables import CORE_VARIABLES, VARIABLES, resolve_variable

N, SEED = 1500, 31
CYTOKINES = ("ifng", "il10", "mcp1", "tnf_alpha", "il1b")


@pytest.fixture(scope="module")
def core():
    return simulate(N, seed=SEED)


@pytest.fixture(scope="module")
def full():
    return simulate(N, seed=SEED, markers="all")


def numeric(obs: pd.DataFrame) -> pd.DataFrame:
    text = obs["value"].astype(str)
    num = pd.to_numeric(text.str.lstrip("<>"), errors="coerce")
    return obs.assign(num=num.to_numpy(dtype="float64"), below=text.str.startswith("<"))


def canonical_names(names: pd.Series) -> np.ndarray:
    codes, uniques = pd.factorize(names)
    return np.array([resolve_variable(u) for u in uniques], dtype=object)[codes]


def per_patient(obs, var, how, after=0.0):
    v = obs[(obs["variable"] == var) & (obs["hours"] >= after)]
    return v.groupby("patient_id")["num"].agg(how)


# ---- the core cohort does not move ------------------------------------------------------------
def test_core_tables_are_identical_with_and_without_markers(core, full):
    a, b = core.tables, full.tables
    for name in ("patients", "events", "outcomes", "truth"):
        pd.testing.assert_frame_equal(a[name], b[name])
    pd.testing.assert_frame_equal(core.latent, full.latent)
    obs = b["observations"]
    kept = obs[obs["variable"].isin(CORE_VARIABLES)].reset_index(drop=True)
    pd.testing.assert_frame_equal(a["observations"], kept)
    assert set(obs["variable"]) == set(CORE_VARIABLES) | set(MARKER_VARIABLES)
    assert len(obs) > 1.3 * len(a["observations"])  # the comparison is not vacuous


def test_messy_core_rows_are_identical_with_and_without_markers():
    a = simulate(300, seed=SEED, style="messy").tables
    b = simulate(300, seed=SEED, style="messy", markers="all").tables
    for name in ("patients", "events", "outcomes", "truth"):
        pd.testing.assert_frame_equal(a[name], b[name])
    obs = b["observations"]
    is_core = np.isin(canonical_names(obs["variable"]), CORE_VARIABLES)
    assert (~is_core).sum() > 1000
    # the dirt of the core rows (text results, duplicates, missing units) is the same too
    pd.testing.assert_frame_equal(a["observations"], obs[is_core].reset_index(drop=True))


# ---- the clean contract with markers ------------------------------------------------------------
def test_marker_rows_follow_the_contract(full):
    obs = numeric(full.tables["observations"])
    m = obs[obs["variable"].isin(MARKER_VARIABLES)]
    assert (m["unit"] == m["variable"].map({v: VARIABLES[v].unit for v in MARKER_VARIABLES})).all()
    assert m["num"].notna().all()
    assert not obs.duplicated(["patient_id", "hours", "variable"]).any()
    # censored only at an assay's lower limit: IL-6 and the cytokines
    cens = obs[obs["value"].str[0].isin(["<", ">"])]
    assert set(cens["variable"]) <= {"il6", *CYTOKINES} and (cens["variable"] == "il1b").any()
    for v in MARKER_VARIABLES:
        lo, hi = VARIABLES[v].plausible
        x = m.loc[m["variable"] == v, "num"]
        assert len(x) > 100 and x.between(lo, hi).all(), v
    # the pre-infusion panel: every patient has baseline blood counts
    base = m[(m["hours"] < 0) & (m["variable"] == "anc")]
    assert base["patient_id"].nunique() == N


def test_invalid_markers_option_is_a_config_error():
    with pytest.raises(ConfigError, match="markers"):
        simulate(5, seed=1, markers="some")


# ---- direction in severe CRS (literature) ----------------------------------------------------------
def test_severe_crs_has_the_literature_marker_pattern(full):
    """Teachey 2016 / Hay 2017: higher peak IFN-gamma and IL-10 in severe CRS; Hay 2017 /
    Buechner 2021: consumptive coagulopathy (D-dimer up, fibrinogen down, INR up); liver
    enzymes and bilirubin up; cytopenias deeper (Jain 2020, Juluri 2022)."""
    obs = numeric(full.tables["observations"])
    oc = full.tables["outcomes"].set_index("patient_id")
    severe = oc["crs_max_grade"] >= 3
    expected = {  # variable: (summary after infusion, direction in severe CRS)
        "ifng": ("max", 1), "il10": ("max", 1), "mcp1": ("max", 1),
        "d_dimer": ("max", 1), "fibrinogen": ("min", -1), "inr": ("max", 1),
        "ast": ("max", 1), "alt": ("max", 1), "bilirubin": ("max", 1), "anc": ("min", -1),
    }  # fmt: skip
    auc = {}
    for var, (how, sign) in expected.items():
        x = per_patient(obs, var, how)
        y = severe.reindex(x.index).to_numpy()
        assert y.sum() >= 30, var
        auc[var] = roc_auc_score(y, sign * x.to_numpy())
        # the cytopenia signal is weaker (lymphodepletion dominates the nadir)
        assert auc[var] > (0.6 if var == "anc" else 0.75), (var, auc[var])
    # the cytokine peaks separate severe CRS strongly (peak, not early: Teachey 2016)
    for var in ("ifng", "il10"):
        x = per_patient(obs, var, "max")
        s = severe.reindex(x.index)
        assert x[s].median() > 5 * x[~s].median(), var
    nadir = per_patient(obs, "fibrinogen", "min")
    s = severe.reindex(nadir.index)
    assert (nadir[s] < 150).mean() > 0.25 > 0.02 > (nadir[~s] < 150).mean()


def test_fibrinogen_falls_after_tocilizumab(full):
    """Acute-phase synthesis is IL-6-driven: after tocilizumab fibrinogen falls (Haematologica
    2024) while the D-dimer does not."""
    obs = numeric(full.tables["observations"])
    toci = full.latent.set_index("patient_id")["tocilizumab_hours"].dropna()
    o = obs[obs["patient_id"].isin(toci.index)]
    dt = o["hours"] - o["patient_id"].map(toci)
    ratio = {}
    for var in ("fibrinogen", "d_dimer"):
        v = o[o["variable"] == var]
        d = dt[v.index]
        before = v[(d > -24) & (d <= 0)].groupby("patient_id")["num"].last()
        after = v[(d > 48) & (d <= 96)].groupby("patient_id")["num"].min()
        both = before.index.intersection(after.index)
        assert len(both) > 50, var
        ratio[var] = float(np.median(after[both] / before[both]))
    assert ratio["fibrinogen"] < 0.95 and ratio["d_dimer"] > 1.0, ratio


# ---- panels per site --------------------------------------------------------------------------------
def test_panels_follow_the_sites(full):
    obs = full.tables["observations"]
    site = full.tables["patients"].set_index("patient_id")["site"]
    panels = {s.name: dict(s.panels) for s in full.params.sites}
    pts = full.tables["patients"]
    cyto = obs[obs["variable"] == "ifng"]
    assert set(cyto["patient_id"].map(site)) == {"A"}  # cytokines only at the research site
    assert pts.loc[pts["site"] == "A", "patient_id"].isin(cyto["patient_id"]).mean() > 0.97
    # share of patients with a pre-infusion panel = the site's order probability
    for var, panel in (("fibrinogen", "coagulation"), ("wbc", "cbc"), ("alt", "liver")):
        pre = set(obs.loc[(obs["variable"] == var) & (obs["hours"] < 0), "patient_id"])
        share = pts["patient_id"].isin(pre).groupby(pts["site"]).mean()
        for name, p in share.items():
            assert abs(p - panels[name].get(panel, 0.0)) < 0.08, (var, name, p)
    # daily, not at every draw: sick patients have CRP every 8-12 h but one CBC a day
    oc = full.tables["outcomes"].set_index("patient_id")
    sick = oc.index[oc["crs_max_grade"] >= 3]
    o = obs[obs["patient_id"].isin(sick) & (obs["hours"].between(0, 120))]
    n = o.groupby(["patient_id", "variable"]).size().unstack(fill_value=0)
    assert (n["wbc"] <= 7).all() and n["crp"].median() > 1.5 * n["wbc"].median()


# ---- messy unit variants -----------------------------------------------------------------------------
def test_marker_unit_variants_load_to_the_clean_values(tmp_path):
    from crs_ml.ingest.load import load_cohort

    clean = simulate(400, seed=SEED + 1, markers="all").tables
    messy = simulate(400, seed=SEED + 1, style="messy", markers="all").tables
    units = set(zip(canonical_names(messy["observations"]["variable"]),
                    messy["observations"]["unit"], strict=True))  # fmt: skip
    variants = {("d_dimer", "ng/mL DDU"), ("d_dimer", "mg/L FEU"), ("fibrinogen", "g/L"),
                ("bilirubin", "umol/L"), ("wbc", "/uL"), ("anc", "/uL"), ("alt", "IU/L"),
                ("ast", "IU/L")}  # fmt: skip
    assert variants <= units
    write_cohort(clean, tmp_path / "clean")
    write_cohort(messy, tmp_path / "messy")
    c, m = load_cohort(tmp_path / "clean"), load_cohort(tmp_path / "messy")
    assert len(c.rejected) == 0 and len(m.rejected) == 0
    co, mo = c.observations, m.observations
    cols = ["patient_id", "hours", "variable", "censored"]
    assert len(co) == len(clean["observations"]) == len(mo)
    pd.testing.assert_frame_equal(co[cols].reset_index(drop=True), mo[cols].reset_index(drop=True))
    np.testing.assert_allclose(mo["value"].to_numpy(), co["value"].to_numpy(), rtol=1e-9)
    assert not co["out_of_range"].any()
    # the messy file really holds other numbers: D-dimer in ng/mL DDU is 500 x ug/mL FEU
    raw = messy["observations"]
    ddu = raw[raw["unit"] == "ng/mL DDU"]
    assert len(ddu) > 50
    assert pd.to_numeric(ddu["value"].str.replace(",", ""), errors="coerce").median() > 100


def test_cli_writes_markers_and_truth_landmarks(tmp_path):
    import typer
    from typer.testing import CliRunner

    from crs_ml.cli.simulate import register

    app = typer.Typer()

    @app.callback()
    def _root():
        pass

    register(app)
    out = tmp_path / "cohort"
    args = ["simulate", "--n-patients", "40", "--seed", "3", "--out", str(out),
            "--markers", "all", "--landmarks-h", "24,120,168"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    obs = pd.read_csv(out / "observations.csv")
    assert {"d_dimer", "anc", "bilirubin"} <= set(obs["variable"])
    truth = pd.read_csv(out / "truth.csv")
    assert sorted(truth["landmark_h"].unique()) == [24.0, 120.0, 168.0]
    res = CliRunner().invoke(app, [*args[:-4], "--markers", "every"])
    assert isinstance(res.exception, ConfigError)
    # a coded twin writes variables by their LOINC codes: the cytokines have none
    for fmt in ("omop", "meds", "fhir"):
        res = CliRunner().invoke(app, [*args[:-2], "--format", fmt])
        assert isinstance(res.exception, ConfigError), fmt
        assert "il10" in str(res.exception) and "--markers core" in str(res.exception)
