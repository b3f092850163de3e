"""Parity: the polars feature builder gives the frozen pandas builder's features (issue 13.3).

The oracle is the builder as it was before the rewrite, frozen under ``tests/oracle/`` (not in
the package). Same 139 columns, same order, same values to 1e-12 (relative, or absolute below
1) and NaN exactly where the oracle has NaN, at every landmark, on the simulator's clean and
messy cohorts (written and loaded, as a user would) and on the fuzz corpus of
``test_fuzz_load`` (hypothesis, fixed seed: every generated cohort that loads).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from data.test_fuzz_load import (
    DATA_MODES,
    FILE_MODES,
    FUZZ,
    IDS,
    PATIENT_COLUMNS,
    _cell,
    _table,
    _write,
)
from hypothesis import given
from hypothesis import strategies as st
from oracle.builder import build_features as frozen_features

from crs_ml.cohort import EVENT_COLUMNS, EVENT_NAMES, OBSERVATION_COLUMNS, Cohort
from crs_ml.config import DEFAULT_LANDMARKS_H, FeatureConfig
from crs_ml.errors import CrsMlError
from crs_ml.features.builder import build_features
from crs_ml.features.catalogue import VARIABLES as LEAKAGE_VARIABLES
from crs_ml.ingest.load import load_cohort
from crs_ml.simulate.simulator import simulate_cohort, write_cohort
from crs_ml.variables import CORE_VARIABLES


def oracle_features(cohort, points, cfg=None):
    """The frozen builder on the cohort without its values outside the plausible range: the
    builder reads none of them since the sixteenth session (the frozen one read them); a
    test below checks that they are what it leaves out."""
    obs = cohort.observations
    plausible = obs[~obs["out_of_range"].astype(bool)].reset_index(drop=True)
    kept = dataclasses.replace(cohort, observations=plausible)
    return frozen_features(kept, points) if cfg is None else frozen_features(kept, points, cfg)


LANDMARKS = [0.0, *DEFAULT_LANDMARKS_H, 13.37, 120.0, 168.0]
RTOL = 1e-12
#: the oracle's features: the 12 variables it was written for (the default is now every
#: catalogue variable; the others have their own tests)
CORE = list(CORE_VARIABLES)


def assert_same_features(new: pd.DataFrame, old: pd.DataFrame) -> None:
    assert new.columns.tolist() == old.columns.tolist()
    assert (new.dtypes == "float64").all() and new.shape == old.shape
    a, b = new.to_numpy(), old.to_numpy()
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    where = np.argwhere(nan_a != nan_b)
    assert not len(where), f"NaN differs at {[(i, new.columns[j]) for i, j in where[:5]]}"
    with np.errstate(invalid="ignore"):
        bad = ~nan_b & (np.abs(a - b) > RTOL * np.maximum(1.0, np.abs(b)))
    where = np.argwhere(bad)
    assert not len(where), "values differ: " + ", ".join(
        f"row {i} {new.columns[j]}: {a[i, j]!r} vs {b[i, j]!r}" for i, j in where[:5]
    )


def every_landmark(cohort) -> pd.DataFrame:
    ids = cohort.patients["patient_id"]
    return pd.DataFrame(
        {
            "patient_id": np.repeat(ids.to_numpy(dtype=object), len(LANDMARKS)),
            "landmark_h": np.tile(LANDMARKS, len(ids)),
        }
    )


def test_a_value_outside_the_plausible_range_is_read_by_no_feature(tmp_path):
    """A fever typed in degF under degC (102.4 'degC') is kept and flagged by loading; the
    features are those of the cohort without it (the CRS state included)."""
    write_cohort(simulate_cohort(40, seed=8), tmp_path / "c")
    cohort = load_cohort(tmp_path / "c")
    obs = cohort.observations
    temps = obs.index[(obs["variable"] == "temperature") & obs["hours"].between(0, 24)]
    bad = obs.copy()
    bad.loc[temps[::7], "value"] = 102.4
    bad.loc[temps[::7], "out_of_range"] = True
    flagged = dataclasses.replace(cohort, observations=bad)
    without = dataclasses.replace(
        cohort, observations=bad[~bad["out_of_range"]].reset_index(drop=True)
    )
    points = every_landmark(cohort)
    cfg = FeatureConfig()
    got = build_features(flagged, points, cfg)
    pd.testing.assert_frame_equal(got, build_features(without, points, cfg))
    assert np.nanmax(got["temperature_max"]) < 45
    # a table built by hand without the flags, or with missing ones: nothing is flagged
    bare = dataclasses.replace(cohort, observations=obs.drop(columns="out_of_range"))
    unset = dataclasses.replace(cohort, observations=obs.assign(out_of_range=None))
    expect = build_features(cohort, points, cfg)
    pd.testing.assert_frame_equal(build_features(bare, points, cfg), expect)
    pd.testing.assert_frame_equal(build_features(unset, points, cfg), expect)


@pytest.fixture(scope="module", params=["clean", "messy"])
def simulated(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"parity_{request.param}")
    write_cohort(simulate_cohort(300, seed=5, style=request.param), folder)
    return load_cohort(folder)


def test_simulated_cohorts_every_landmark(simulated):
    points = every_landmark(simulated)
    new = build_features(simulated, points, FeatureConfig(variables=CORE))
    assert new.shape[1] == 139 and len(new) == len(points)
    assert_same_features(new, oracle_features(simulated, points))
    # the features are informative here: values, not all NaN (a vacuous parity)
    # (at 24 h: the default grid now runs to 168 h, when fewer are still observed)
    at_24h = (points["landmark_h"] == 24.0).to_numpy()
    assert new["temperature_slope_24h"][at_24h].notna().mean() > 0.5
    assert new["il6_slope_24h"].notna().any()
    assert new["astct_grade_so_far"].max() >= 3


def test_simulated_feature_groups_and_settings(simulated):
    points = every_landmark(simulated).iloc[::7]
    for cfg in (
        FeatureConfig(groups=["labs", "fever"], variables=CORE),
        FeatureConfig(groups=["static", "treatment"], variables=CORE),
        FeatureConfig(early_fever_window_h=20.0, high_fever_c=39.4, variables=CORE),
    ):
        assert_same_features(
            build_features(simulated, points, cfg), oracle_features(simulated, points, cfg)
        )


def _compare(cohort) -> None:
    if cohort is None:
        return
    points = every_landmark(cohort)
    cfg = FeatureConfig(variables=CORE)
    assert_same_features(build_features(cohort, points, cfg), oracle_features(cohort, points))


def _load(folder: Path):
    try:
        return load_cohort(folder)
    except CrsMlError:
        return None


@FUZZ
@given(data=st.data())
def test_fuzz_corpus_random_cohorts(tmp_path_factory, data):
    with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as tmp:
        folder = Path(tmp)
        ids = data.draw(st.lists(IDS, min_size=1, max_size=4), label="ids")
        _table(data, folder, "patients", ids, 5, FILE_MODES)
        _table(data, folder, "observations", ids, 12, FILE_MODES)
        if data.draw(st.booleans(), label="events?"):
            _table(data, folder, "events", ids, 6, FILE_MODES)
        _compare(_load(folder))


@FUZZ
@given(data=st.data())
def test_fuzz_corpus_mostly_valid_cohorts(tmp_path_factory, data):
    with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as tmp:
        folder = Path(tmp)
        ids = data.draw(st.lists(IDS, min_size=1, max_size=4, unique=True), label="ids")
        pat_rows = [[i, *(_cell(data, c) for c in PATIENT_COLUMNS[1:])] for i in ids]
        _write(folder / "patients", PATIENT_COLUMNS, pat_rows, "csv", data)
        cols = ["patient_id", "hours", "variable", "value", "unit"]
        n = data.draw(st.integers(1, 25), label="n obs")
        rows = [[data.draw(st.sampled_from([*ids, "ghost"])) if c == "patient_id"
                 else _cell(data, c) for c in cols] for _ in range(n)]  # fmt: skip
        mode = data.draw(st.sampled_from(DATA_MODES), label="observations mode")
        _write(folder / "observations", cols, rows, mode, data)
        if data.draw(st.booleans(), label="events?"):
            ev_cols = ["patient_id", "hours", "end_hours", "event", "detail"]
            ev_rows = [[data.draw(st.sampled_from(ids)) if c == "patient_id"
                        else _cell(data, c) for c in ev_cols]
                       for _ in range(data.draw(st.integers(1, 6)))]  # fmt: skip
            _write(folder / "events", ev_cols, ev_rows, "csv", data)
        _compare(_load(folder))


# numeric stress cases written as Cohorts directly: most file-fuzz cohorts that load carry
# few observations, so times with near-ties, large values and runs of equal times are drawn here
NEAR = st.sampled_from([-30.0, -0.5, 0.0, 3.0, 6.0, 11.999, 12.0, 12.001, 20.25, 23.9, 24.0])
OBS_ROW = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.one_of(NEAR, st.floats(-200, 200), NEAR.map(lambda h: h + 1e-7)),
    st.sampled_from([*LEAKAGE_VARIABLES, "wbc"]),
    st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, 38.0, 37.99, 89.99, 90.0, 1e5 + 0.5])),
)
EV_ROW = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.one_of(NEAR, st.floats(-50, 200)),
    st.one_of(st.just(np.nan), st.floats(0, 100)),
    st.sampled_from(EVENT_NAMES),
)


@FUZZ
@given(
    obs=st.lists(OBS_ROW, max_size=60),
    events=st.lists(EV_ROW, max_size=8),
    sort=st.booleans(),
    landmarks=st.lists(st.sampled_from(LANDMARKS + [11.999, 12.001]), min_size=1, max_size=4),
)
def test_numeric_stress_cohorts(obs, events, sort, landmarks):
    o = pd.DataFrame(obs, columns=["patient_id", "hours", "variable", "value"])
    o = o.astype({"patient_id": object, "hours": float, "variable": object, "value": float})
    o["censored"] = np.zeros(len(o), dtype=np.int8)
    o["out_of_range"] = False
    o["source_row"] = np.random.default_rng(len(o)).permutation(len(o)).astype(np.int64) + 1
    e = pd.DataFrame(events, columns=["patient_id", "hours", "end_hours", "event"])
    e = e.astype({"patient_id": object, "hours": float, "end_hours": float, "event": object})
    e["end_hours"] = np.where(e["end_hours"] < e["hours"], np.nan, e["end_hours"])
    e["detail"] = pd.Series([None] * len(e), dtype=object)
    e["source_row"] = np.arange(1, len(e) + 1, dtype=np.int64)
    if sort:
        o = o.sort_values(["patient_id", "hours", "variable", "source_row"], ignore_index=True)
        e = e.sort_values(["patient_id", "hours", "event"], ignore_index=True)
    p = pd.DataFrame({"patient_id": pd.Series(["a", "b", "c"], dtype=object)})
    p["person_id"] = p["patient_id"]
    p["infusion_time"] = pd.Series(pd.NaT, index=p.index, dtype="datetime64[ns, UTC]")
    p["product"], p["age_years"], p["sex"], p["disease"], p["site"] = (
        "axi-cel",
        50.0,
        "F",
        "MM",
        "x",
    )
    cohort = Cohort(p[PATIENT_COLUMNS], o[OBSERVATION_COLUMNS], e[EVENT_COLUMNS])
    points = pd.DataFrame(
        {
            "patient_id": np.repeat(["a", "b", "c"], len(landmarks)).astype(object),
            "landmark_h": np.tile(landmarks, 3),
        }
    )
    cfg = FeatureConfig(variables=CORE)
    assert_same_features(build_features(cohort, points, cfg), oracle_features(cohort, points))


@pytest.mark.parametrize("optimised", [False, True])
def test_unsorted_tables_and_repeated_points(optimised, monkeypatch):
    """Tables out of the Cohort's sort order (hand-made cohorts) and a patient at several
    landmarks, in any order: still the oracle's values (the sort check's fallback path),
    with polars' plan optimisation (the batch's queries) and without (one patient's)."""
    from crs_ml.features import builder

    if optimised:
        monkeypatch.setattr(builder, "SMALL_QUERY_ROWS", 0)
    tables = simulate_cohort(40, seed=9)
    with tempfile.TemporaryDirectory() as tmp:
        write_cohort(tables, Path(tmp))
        cohort = load_cohort(Path(tmp))
    rng = np.random.default_rng(0)
    cohort.observations = cohort.observations.sample(frac=1.0, random_state=1).reset_index(
        drop=True
    )
    cohort.events = cohort.events.iloc[::-1].reset_index(drop=True)
    points = every_landmark(cohort).sample(frac=1.0, random_state=2).reset_index(drop=True)
    points = pd.concat([points, points.iloc[rng.integers(0, len(points), 50)]], ignore_index=True)
    cfg = FeatureConfig(variables=CORE)
    assert_same_features(build_features(cohort, points, cfg), oracle_features(cohort, points))


def test_points_for_some_patients_once_each_in_another_order():
    """A batch chunk with patients not scored: points for some of the cohort's patients, each
    once, in an order of their own (each run's point looked up, not matched one by one): the
    oracle's values, and the rows of the patients without a point are never read."""
    tables = simulate_cohort(30, seed=5)
    with tempfile.TemporaryDirectory() as tmp:
        write_cohort(tables, Path(tmp))
        cohort = load_cohort(Path(tmp))
    ids = cohort.patients["patient_id"].to_numpy(dtype=object)
    chosen = np.random.default_rng(4).permutation(ids)[:17]
    points = pd.DataFrame({"patient_id": chosen, "landmark_h": np.resize([24.0, 48.0], 17)})
    cfg = FeatureConfig(variables=CORE)
    got = build_features(cohort, points, cfg)
    assert_same_features(got, oracle_features(cohort, points))
    others = ~cohort.observations["patient_id"].isin(chosen)
    cohort.observations.loc[others, "value"] = 1e9  # rows of patients without a point
    pd.testing.assert_frame_equal(build_features(cohort, points, cfg), got)


def test_split_patient_runs_matching_repeated_points():
    """A hand-made table whose rows of one patient come in two runs (a, b, a) scored at the
    points a, b, a: the runs' ids equal the points' one by one, but a patient comes twice, so
    each point must see all of its patient's rows (not only its run's)."""
    tables = simulate_cohort(2, seed=3)
    with tempfile.TemporaryDirectory() as tmp:
        write_cohort(tables, Path(tmp))
        cohort = load_cohort(Path(tmp))
    a, b = cohort.patients["patient_id"].tolist()
    obs = cohort.observations
    early = obs["hours"] <= 12
    first, second = obs[(obs["patient_id"] == a) & early], obs[(obs["patient_id"] == a) & ~early]
    cohort.observations = pd.concat([first, obs[obs["patient_id"] == b], second], ignore_index=True)
    points = pd.DataFrame({"patient_id": [a, b, a], "landmark_h": [24.0, 24.0, 24.0]})
    cfg = FeatureConfig(variables=CORE)
    got = build_features(cohort, points, cfg)
    assert_same_features(got, oracle_features(cohort, points))
    assert got.iloc[0].equals(got.iloc[2])
    assert got.loc[0, "il6_n"] == ((obs["patient_id"] == a) & (obs["variable"] == "il6")
                                       & (obs["hours"] <= 24)).sum()  # fmt: skip


def test_slope_is_exact_for_close_times_far_from_the_landmark():
    """Sufficient statistics taken relative to the group's last row: two results 30 min
    apart, 22 h before L, on a large value, give the two-pass slope to 1e-12 (sums of raw
    t = hours - L would lose ~4 digits here); two results 0.36 s apart give the slope of the
    two floats exactly (the oracle, which subtracts L first, is off by ~1e-11 there)."""
    p = pd.DataFrame({"patient_id": pd.Series(["a"], dtype=object), "person_id": "a"})
    p["infusion_time"] = pd.Series(pd.NaT, index=p.index, dtype="datetime64[ns, UTC]")
    p["product"], p["age_years"], p["sex"], p["disease"], p["site"] = (
        "axi-cel",
        50.0,
        "F",
        "MM",
        "x",
    )
    rows = [("a", 2.0, "crp", 1e5 + 1.0), ("a", 2.5, "crp", 1e5 + 3.0)]
    rows += [("a", 3.0, "ldh", 400.0), ("a", 3.0001, "ldh", 401.0)]
    o = pd.DataFrame(rows, columns=["patient_id", "hours", "variable", "value"])
    o["censored"], o["out_of_range"] = np.int8(0), False
    o["source_row"] = np.arange(1, len(o) + 1, dtype=np.int64)
    e = pd.DataFrame({c: pd.Series(dtype=object) for c in EVENT_COLUMNS})
    e = e.astype({"hours": float, "end_hours": float, "source_row": np.int64})
    cohort = Cohort(p[PATIENT_COLUMNS], o[OBSERVATION_COLUMNS], e[EVENT_COLUMNS])
    points = pd.DataFrame({"patient_id": ["a"], "landmark_h": [24.0]})
    new = build_features(cohort, points, FeatureConfig(variables=CORE))
    assert new["crp_slope_24h"].iloc[0] == pytest.approx(4.0, rel=1e-12)
    assert new["ldh_slope_24h"].iloc[0] == pytest.approx(1.0 / (3.0001 - 3.0), rel=1e-15)
    old = oracle_features(cohort, points)
    assert_same_features(new.drop(columns="ldh_slope_24h"), old.drop(columns="ldh_slope_24h"))


def test_one_patient_and_small_chunks_equal_the_batch(simulated, monkeypatch):
    """Scoring builds one patient (or one chunk) at its landmark: few rows, so the queries run
    without polars' plan optimisation, the patients are looked up by position and small
    frames go to pandas through numpy (issue 13, latency). The features equal those of one
    call on the whole cohort (optimised queries, patients looked up by id, frames through
    to_pandas) to 1e-12, NaN where NaN, on 150 random patients and landmarks."""
    from crs_ml import cohort as cohort_module
    from crs_ml.features import builder

    rng = np.random.default_rng(13)
    ids = simulated.patients["patient_id"].to_numpy(dtype=object)
    chosen = rng.choice(ids, 150, replace=False)
    grid = np.array(LANDMARKS + [7.25, 33.3, 61.0])
    landmark = np.where(rng.random(150) < 0.5, rng.choice(grid, 150), rng.uniform(0, 170, 150))
    points = pd.DataFrame({"patient_id": chosen, "landmark_h": landmark})
    cfg = FeatureConfig(variables=CORE)
    with monkeypatch.context() as m:
        m.setattr(builder, "SMALL_QUERY_ROWS", 0)  # the batch: every query optimised
        m.setattr(cohort_module, "SMALL_TABLE_ROWS", 0)  # ... and every table through to_pandas
        batch = build_features(simulated, points, cfg)
    assert builder.SMALL_QUERY_ROWS > 1000  # ... and one patient's not
    assert cohort_module.SMALL_TABLE_ROWS > 100  # (nor its tables)
    assert batch["il6_slope_24h"].notna().any() and batch["age_years"].notna().all()
    one = pd.concat(
        [
            build_features(simulated.subset([p]), points.iloc[[i]], cfg)
            for i, p in enumerate(chosen)
        ],
        ignore_index=True,
    )
    assert_same_features(one, batch)
    # chunks of 10 patients in the patients table's order (what scoring builds)
    position = pd.Index(ids).get_indexer(chosen)
    order = np.argsort(position, kind="stable")
    chunks = []
    for k in range(0, 150, 10):
        part = points.iloc[order[k : k + 10]]
        sub = simulated.subset(part["patient_id"])
        assert sub.patients["patient_id"].tolist() == part["patient_id"].tolist()
        chunks.append(build_features(sub, part, cfg))
    assert_same_features(
        pd.concat(chunks, ignore_index=True), batch.iloc[order].reset_index(drop=True)
    )
