"""The simulator: determinism, the data contract, ASTCT-consistent outcomes, exact true risk,
the messy style (and that it loads to the same cohort as the clean style), the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from crs_ml.cohort import EVENT_NAMES, PRODUCTS, Cohort
from crs_ml.config import SIMULATOR_TRUTH_LANDMARKS_H
from crs_ml.errors import ConfigError
from crs_ml.simulate.simulator import simulate, simulate_cohort, write_cohort
from crs_ml.variables import CORE_VARIABLES, VARIABLES

EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "example"
EXAMPLE_SEED, EXAMPLE_N = 2024, 20
HORIZON = 336.0
LANDMARKS = SIMULATOR_TRUTH_LANDMARKS_H  # every 6 h up to day 7 (issue 14)


@pytest.fixture(scope="module")
def clean():
    return simulate(1500, seed=11)


@pytest.fixture(scope="module")
def messy():
    return simulate(1500, seed=11, style="messy")


def numeric(obs: pd.DataFrame) -> pd.DataFrame:
    text = obs["value"].astype(str)
    num = pd.to_numeric(text.str.lstrip("<>"), errors="coerce")
    cens = np.where(text.str.startswith("<"), -1, np.where(text.str.startswith(">"), 1, 0))
    return obs.assign(num=np.where(cens < 0, num / 2, num), censored=cens.astype(np.int8))


def as_cohort(tables: dict) -> Cohort:
    """The clean tables in normalised form (without the loader)."""
    o = numeric(tables["observations"])
    obs = pd.DataFrame(
        {
            "patient_id": o["patient_id"].astype(object),
            "hours": o["hours"].astype("float64"),
            "variable": o["variable"].astype(object),
            "value": o["num"].astype("float64"),
            "censored": o["censored"],
            "out_of_range": False,
            "source_row": np.arange(1, len(o) + 1),
        }
    )
    e = tables["events"]
    ev = pd.DataFrame(
        {
            "patient_id": e["patient_id"].astype(object),
            "hours": e["hours"].astype("float64"),
            "end_hours": e["end_hours"].astype("float64"),
            "event": e["event"].astype(object),
            "detail": e["detail"].astype(object),
            "source_row": np.arange(1, len(e) + 1),
        }
    )
    p = tables["patients"].astype({"patient_id": object, "person_id": object})
    p["infusion_time"] = pd.Series(pd.NaT, index=p.index, dtype="datetime64[ns, UTC]")
    oc = tables["outcomes"].astype({"patient_id": object})
    return Cohort(p, obs, ev, outcomes=oc, truth=tables["truth"])


# ---- determinism and ids -----------------------------------------------------------------
@pytest.mark.parametrize("style", ["clean", "messy"])
def test_same_seed_gives_identical_tables(style):
    a = simulate_cohort(150, seed=5, style=style)
    b = simulate_cohort(150, seed=5, style=style)
    assert set(a) == {"patients", "observations", "events", "outcomes", "truth"}
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])


def test_different_seeds_give_disjoint_string_ids():
    a = simulate_cohort(100, seed=1)["patients"]
    b = simulate_cohort(100, seed=2)["patients"]
    assert not set(a["patient_id"]) & set(b["patient_id"])
    assert not set(a["person_id"]) & set(b["person_id"])
    assert all(isinstance(x, str) for x in a["patient_id"])
    assert a["patient_id"].is_unique


def test_invalid_arguments_are_config_errors():
    for kwargs in (
        {"n_patients": 0, "seed": 1},
        {"n_patients": 5, "seed": 1, "style": "dirty"},
        {"n_patients": 5, "seed": 1, "horizon_h": 100.5},
        {"n_patients": 5, "seed": 1, "landmarks_h": [6.5]},
        {"n_patients": 5, "seed": -1},
    ):
        with pytest.raises(ConfigError):
            simulate_cohort(**kwargs)


# ---- the data contract (clean style) ------------------------------------------------------
def test_clean_tables_follow_the_contract(clean):
    t = clean.tables
    assert list(t["patients"].columns) == [
        "patient_id", "person_id", "product", "age_years", "sex", "disease", "site",
    ]  # fmt: skip
    assert list(t["observations"].columns) == ["patient_id", "hours", "variable", "value", "unit"]
    assert list(t["events"].columns) == ["patient_id", "hours", "end_hours", "event", "detail"]
    assert list(t["truth"].columns) == ["patient_id", "landmark_h", "true_risk"]
    pts, obs, ev, oc = t["patients"], t["observations"], t["events"], t["outcomes"]
    assert set(pts["product"]) <= set(PRODUCTS) and set(pts["sex"]) <= {"F", "M"}
    assert set(obs["variable"]) == set(CORE_VARIABLES)
    canonical = obs["variable"].map({v: VARIABLES[v].unit for v in CORE_VARIABLES})
    assert (obs["unit"] == canonical).all()
    assert set(ev["event"]) <= set(EVENT_NAMES)
    assert set(obs["patient_id"]) == set(pts["patient_id"]) == set(oc["patient_id"])
    assert not obs.duplicated(["patient_id", "hours", "variable"]).any()
    # censored results only for IL-6 at the assay limits; everything else numeric
    num = numeric(obs)
    cens = obs[num["censored"] != 0]
    assert set(cens["variable"]) == {"il6"} and set(cens["value"]) == {"<1.5", ">5000"}
    assert num["num"].notna().all()
    # baseline labs before infusion, for every patient
    base = obs[(obs["hours"] < 0) & obs["variable"].isin(["ldh", "crp", "platelets"])]
    assert base.groupby("patient_id")["variable"].nunique().reindex(pts["patient_id"]).eq(3).all()
    # hours on a 0.01 h grid
    assert np.allclose(obs["hours"] * 100, np.round(obs["hours"] * 100))
    # outcomes: grade3_hours iff grade >= 3, deaths recorded as events
    assert oc["crs_max_grade"].between(0, 5).all()
    assert (oc["grade3_hours"].notna() == (oc["crs_max_grade"] >= 3)).all()
    deaths = ev[ev["event"] == "death"].set_index("patient_id")["hours"].sort_index()
    died = oc.dropna(subset=["death_hours"]).set_index("patient_id")["death_hours"].sort_index()
    assert len(deaths) > 0 and deaths.index.equals(died.index)
    np.testing.assert_array_equal(deaths.to_numpy(), died.to_numpy())
    assert 40 <= len(obs) / len(pts) <= 160


def test_truth_covers_exactly_the_at_risk_and_included_set(clean):
    from crs_ml.features.landmarks import landmark_status

    cohort = as_cohort(clean.tables)
    status = landmark_status(cohort, LANDMARKS, HORIZON)
    expected = status[status["status"].isin(["included", "no_data"])]
    truth = clean.tables["truth"]

    def key(f):
        return set(zip(f["patient_id"], f["landmark_h"].astype(float), strict=True))

    assert key(truth) == key(expected)
    assert truth["true_risk"].between(0, 1).all()
    assert sorted(truth["landmark_h"].unique()) == LANDMARKS
    # a patient whose CRS resolved before L has no risk left; one in CRS at L has some
    lat = clean.latent.set_index("patient_id")
    t24 = truth[truth["landmark_h"] == 24.0].set_index("patient_id")["true_risk"]
    resolved = lat["resolution_hours"].reindex(t24.index) <= 24
    assert resolved.any() and (t24[resolved] == 0).all()


def test_derived_astct_labels_equal_simulator_outcomes(clean):
    from crs_ml.features.grading import derive_outcomes

    cohort = as_cohort(clean.tables)
    derived = derive_outcomes(cohort, horizon_h=HORIZON).set_index("patient_id")
    written = clean.tables["outcomes"].set_index("patient_id").loc[derived.index]
    assert written["crs_max_grade"].value_counts().index.nunique() == 6  # grades 0-5 occur
    assert (derived["crs_max_grade"] == written["crs_max_grade"]).all()
    for col in ("grade3_hours", "death_hours"):
        np.testing.assert_array_equal(derived[col].to_numpy(), written[col].to_numpy())
    assert (written["label_definition"] == derived["label_definition"]).all()


def test_site_policies_show_in_the_events(clean):
    t = clean.tables
    site = t["patients"].set_index("patient_id")["site"]
    oc = t["outcomes"].set_index("patient_id")
    ev = t["events"]
    toci = ev[ev["event"] == "tocilizumab"].groupby("patient_id")["hours"].min()
    # site C gives tocilizumab only at grade >= 3
    c = toci[toci.index.map(site) == "C"]
    assert len(c) and (c >= oc.loc[c.index, "grade3_hours"]).all()
    # early-intervention site D treats more grade 1-2 patients than site B
    mild = oc[oc["crs_max_grade"].between(1, 2)].index
    share = pd.Series(mild.isin(toci.index), index=mild).groupby(mild.map(site)).mean()
    assert share["D"] > share["B"] > share["C"] == 0


def test_sicker_patients_are_measured_more_often(clean):
    obs, oc = clean.tables["observations"], clean.tables["outcomes"].set_index("patient_id")
    early = obs[(obs["hours"] >= 0) & (obs["hours"] <= 96) & (obs["variable"] == "temperature")]
    n = early.groupby("patient_id").size().reindex(oc.index, fill_value=0)
    by_grade = n.groupby(oc["crs_max_grade"].clip(upper=3)).mean()
    assert by_grade.is_monotonic_increasing and by_grade[3] > 1.5 * by_grade[0]


# ---- exactness of the true risk --------------------------------------------------------------
def test_true_risk_matches_monte_carlo_of_the_same_chain():
    """Backward recursion == frequency over many replays of the same patients' chains."""
    from dataclasses import replace

    from crs_ml.simulate.baseline import Baseline, draw_baseline
    from crs_ml.simulate.chain import backward_risk, chain_rates, simulate_paths
    from crs_ml.simulate.params import default_params

    params = default_params()
    base = draw_baseline(400, 0, params, np.random.default_rng(3))
    pick = np.argsort(base.severity)[-4:]  # the sickest, so events are frequent
    reps = 1500
    idx = np.repeat(pick, reps)
    fields = {f: getattr(base, f)[idx] for f in Baseline.__dataclass_fields__}
    many = replace(base, **fields)
    rates = chain_rates(many, params, int(HORIZON))
    path, _ = simulate_paths(rates, np.random.default_rng(4))
    risk = backward_risk(rates, [24])
    g3 = (path[:, -1] == 7).reshape(len(pick), reps)
    p = risk.p_grade3.reshape(len(pick), reps)[:, 0]
    se = np.sqrt(p * (1 - p) / reps)
    assert (np.abs(g3.mean(axis=1) - p) <= 4 * se + 1e-9).all()
    # conditional on the state at 24 h
    state24 = path[:, 24]
    later = (path[:, -1] == 7) & (state24 != 7)
    r24 = risk.risk_at[24][np.arange(len(idx)), state24]
    for s in np.unique(state24):
        m = (state24 == s) & (state24 != 7) & (state24 != 8)
        if m.sum() < 300:
            continue
        expected = r24[m].mean()
        se = np.sqrt(np.sum(r24[m] * (1 - r24[m]))) / m.sum()
        assert abs(later[m].mean() - expected) <= 4 * se + 1e-9


# ---- messy style -------------------------------------------------------------------------------
def test_messy_style_has_every_kind_of_dirt(clean, messy):
    t = messy.tables
    pts, obs = t["patients"], t["observations"]
    assert list(obs.columns) == ["patient_id", "time", "hours", "variable", "value", "unit"]
    site = obs["patient_id"].map(pts.set_index("patient_id")["site"])
    absolute = obs["time"] != ""
    assert absolute.any() and (absolute == site.isin(["B", "D"])).all()
    assert (obs["hours"].isna() == absolute).all()
    assert pd.to_datetime(pts["infusion_time"], format="ISO8601", utc=True).notna().all()
    assert {"IL-6", "Temp"} <= set(obs["variable"]) and {"26881-3", "8310-5"} <= set(
        obs["variable"]
    )
    assert {"mg/dL", "degF", "/uL", "umol/L", ""} <= set(obs["unit"])
    for v in ("<1.5", ">5000", "Hemolyzed", "QNS", "---"):
        assert (obs["value"] == v).any(), v
    assert obs["value"].str.fullmatch(r"\d{1,3}(,\d{3})+").any()  # thousands separators
    assert obs.duplicated().any()  # exact duplicates
    key = ["patient_id", "time", "hours", "variable"]
    conflict = obs[obs.duplicated(key, keep=False) & ~obs.duplicated(keep=False)]
    assert len(conflict) > 0
    # rows without a unit are only those whose site reports the canonical unit
    bare = obs["unit"] == ""
    assert not (bare & (site == "B") & obs["variable"].isin(["CRP", "Temp"])).any()
    assert not (bare & (site == "C") & obs["variable"].isin(["777-3", "2160-0"])).any()
    # the same patients and outcomes as the clean style of the seed
    assert pts["patient_id"].tolist() == clean.tables["patients"]["patient_id"].tolist()
    pd.testing.assert_frame_equal(t["outcomes"], clean.tables["outcomes"])
    pd.testing.assert_frame_equal(t["truth"], clean.tables["truth"])


def test_messy_and_clean_of_a_seed_load_to_the_same_cohort(clean, messy, tmp_path):
    """Rows removed by design: text results (left out by the loader), exact duplicates (one
    kept) and conflicting duplicates (the true row is last in the file: 'last_row' keeps it)."""
    from crs_ml.ingest.load import load_cohort

    write_cohort(clean.tables, tmp_path / "clean")
    write_cohort(messy.tables, tmp_path / "messy")
    c, m = load_cohort(tmp_path / "clean"), load_cohort(tmp_path / "messy")
    assert len(c.rejected) == 0 and len(m.rejected) == 0
    cols = ["patient_id", "hours", "variable", "censored"]
    co, mo = c.observations, m.observations
    assert len(co) == len(clean.tables["observations"]) == len(mo)
    pd.testing.assert_frame_equal(co[cols].reset_index(drop=True), mo[cols].reset_index(drop=True))
    np.testing.assert_allclose(mo["value"].to_numpy(), co["value"].to_numpy(), rtol=1e-9)
    for name in ("events", "outcomes", "truth"):
        a, b = getattr(c, name), getattr(m, name)
        keep = [x for x in a.columns if x != "source_row"]
        pd.testing.assert_frame_equal(
            a[keep].reset_index(drop=True), b[keep].reset_index(drop=True)
        )
    pd.testing.assert_frame_equal(
        c.patients.drop(columns="infusion_time"), m.patients.drop(columns="infusion_time")
    )
    counted = {p.code for p in m.report.problems}
    assert {
        "exact_duplicate",
        "conflicting_duplicate",
        "non_numeric_result",
        "missing_unit",
    } <= counted


# ---- CLI and the committed example ---------------------------------------------------------------
def test_cli_writes_the_cohort_and_prints_a_summary(tmp_path):
    from crs_ml.cli.simulate import register

    app = typer.Typer()

    @app.callback()
    def _root():
        pass

    register(app)
    out = tmp_path / "cohort"
    args = ["simulate", "--n-patients", "60", "--seed", "3", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--style", "messy", "--json", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    assert "grade >= 3 CRS" in res.output
    for name in ("patients", "observations", "events", "outcomes", "truth"):
        assert (out / f"{name}.csv").is_file()
    assert pd.read_csv(out / "patients.csv")["patient_id"].str.startswith("S3-").all()
    res = CliRunner().invoke(app, ["simulate", "--out", str(out), "--style", "dirty"])
    assert isinstance(res.exception, ConfigError)


def test_committed_example_cohort_is_what_the_simulator_makes(tmp_path):
    write_cohort(simulate_cohort(EXAMPLE_N, EXAMPLE_SEED), tmp_path)
    for name in ("patients", "observations", "events", "outcomes", "truth"):
        assert (EXAMPLE / f"{name}.csv").read_text() == (tmp_path / f"{name}.csv").read_text(), (
            f"data/example/{name}.csv differs from the simulator's output: regenerate it "
            "(data/example/README.md) if the simulator changed on purpose"
        )


def test_il6_peaks_first_then_crp_then_ferritin():
    """Latent kinetics of untreated CRS: CRP lags IL-6 (hepatic synthesis), ferritin later."""
    from crs_ml.simulate.baseline import draw_baseline
    from crs_ml.simulate.chain import chain_rates, simulate_paths
    from crs_ml.simulate.course import build_course
    from crs_ml.simulate.kinetics import Kinetics
    from crs_ml.simulate.params import default_params
    from crs_ml.simulate.simulator import _streams

    params, rng = default_params(), _streams(8)
    base = draw_baseline(1500, 8, params, rng["baseline"])
    path, _ = simulate_paths(chain_rates(base, params, int(HORIZON)), rng["chain"])
    course = build_course(base, path, params, rng["course"])
    kin = Kinetics(base, course, params)
    m = np.isfinite(course.onset) & ~np.isfinite(course.toci)
    assert m.sum() > 200
    peak = {v: kin._grid(v)[m].argmax(axis=1) for v in ("il6", "crp", "ferritin")}
    assert np.median(peak["crp"] - peak["il6"]) >= 6
    assert np.median(peak["ferritin"]) > np.median(peak["crp"]) > np.median(peak["il6"])
