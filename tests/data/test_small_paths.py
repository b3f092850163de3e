"""The loader's small-input paths (one patient's rows: numpy and eager polars instead of lazy
queries) give exactly what the general path gives: on the simulator's messy cohort, as the
one-table model input of each patient alone and of all patients at once, with bad cells."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from crs_ml import cohort as cohort_module
from crs_ml.ingest import load, observations, records, rows, values
from crs_ml.simulate.simulator import simulate_cohort

TABLES = ("patients", "observations", "events", "rejected")
#: the row counts below which the loader takes its small paths
THRESHOLDS = ((observations, "SMALL_ROWS"), (rows, "SMALL_LOOKUP"), (values, "SMALL"),
              (cohort_module, "SMALL_TABLE_ROWS"))  # fmt: skip


def _general(m) -> None:
    """Every small path off."""
    for module, name in THRESHOLDS:
        m.setattr(module, name, 0)


def _assert_same(a, b) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True,
                                      obj=name)  # fmt: skip
    assert a.report.to_dict() == b.report.to_dict()


def _messy_records(duplicate: bool = True) -> pd.DataFrame:
    frame = records.cohort_to_records(load.load_frames(simulate_cohort(25, seed=8, style="messy")))
    obs = np.flatnonzero((frame["record"] == "observation").to_numpy())
    frame.loc[obs[0], "unit"] = "mg/furlong"
    frame.loc[obs[1:6], "value"] = ["lots", " 1,240 ", "<0.5", "---", "Hemolyzed"]
    frame.loc[obs[6], "variable"] = " Ferritin, serum "
    frame.loc[obs[7], "hours"] = 1e9
    # unsorted rows and a duplicate (exact) of another row of the same patient
    pid = frame.loc[obs[10], "patient_id"]
    rows = np.flatnonzero((frame["patient_id"] == pid) & (frame["record"] == "observation"))
    if duplicate:
        frame = pd.concat([frame, frame.iloc[[rows[3]]]], ignore_index=True)
    frame.iloc[rows[:4]] = frame.iloc[rows[:4][::-1]].to_numpy()
    return frame


@pytest.mark.parametrize("strict", [False, True])
def test_one_patient_loads_as_the_general_path(monkeypatch, strict):
    frame = _messy_records()
    assert observations.SMALL_ROWS > 500 and rows.SMALL_LOOKUP > 500  # one patient: small

    n = 0
    for _, one in frame.groupby("patient_id", sort=False):
        one = one.reset_index(drop=True)
        assert len(one) < observations.SMALL_ROWS
        try:
            fast = records.records_to_cohort(one, strict=strict)
        except Exception as e:  # noqa: BLE001 - compared with the general path's below
            fast = e
        with monkeypatch.context() as m:
            _general(m)
            try:
                slow = records.records_to_cohort(one, strict=strict)
            except Exception as e:  # noqa: BLE001
                slow = e
        if isinstance(slow, Exception):
            assert type(fast) is type(slow) and str(fast) == str(slow)
            n += 1
            continue
        _assert_same(fast, slow)
        n += len(fast.observations) > 0
    assert n == frame["patient_id"].nunique()


@pytest.mark.parametrize("duplicate", [True, False])
def test_batch_loads_as_the_general_path(monkeypatch, duplicate):
    frame = _messy_records(duplicate)
    with monkeypatch.context() as m:
        for module, name in THRESHOLDS:
            m.setattr(module, name, 10**9)
        fast = records.records_to_cohort(frame, strict=False)
    with monkeypatch.context() as m:
        _general(m)
        slow = records.records_to_cohort(frame, strict=False)
    assert len(slow.rejected) > 0
    assert (slow.report.problem("exact_duplicate") is not None) == duplicate
    _assert_same(fast, slow)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from shared_bundle import build_bundle

    from crs_ml.modeling.bundle import load_bundle

    return load_bundle(build_bundle(tmp_path_factory.getbasetemp()))


def test_one_patient_scores_as_in_the_batch(bundle, monkeypatch):
    """Each patient of the messy cohort scored alone (as a Cohort and as the model's one-table
    input, with the small paths) gives its row of the whole cohort scored at once (small
    paths off): same statuses, scores, SHAP values, driver texts and messages."""
    from crs_ml.features import builder, catalogue
    from crs_ml.modeling import completeness
    from crs_ml.scoring import statuses
    from crs_ml.scoring.score import score

    frame = _messy_records(duplicate=False)
    cohort = records.records_to_cohort(frame, strict=False)
    with monkeypatch.context() as m:
        _general(m)
        m.setattr(statuses, "SMALL_ROWS", 0)
        m.setattr(builder, "SMALL_QUERY_ROWS", 0)
        m.setattr(completeness, "SMALL_ROWS", 0)
        m.setattr(catalogue, "SMALL_PATIENTS", 0)
        batch = score(bundle, cohort, as_of_hours=40)
    assert set(batch["status"]) >= {"scored"} and batch["top_drivers"].str.len().gt(0).any()
    for i, (pid, one) in enumerate(frame.groupby("patient_id", sort=False)):
        alone = score(bundle, cohort.subset([pid]), as_of_hours=40)
        pd.testing.assert_frame_equal(alone, batch.iloc[[i]].reset_index(drop=True))
        one = records.records_to_cohort(one.reset_index(drop=True), strict=False)
        pd.testing.assert_frame_equal(score(bundle, one, as_of_hours=40), alone)


@pytest.mark.parametrize("as_of_hours", [None, 48])
def test_one_patient_statuses_as_in_the_batch(monkeypatch, as_of_hours):
    """statuses() of each patient alone (the small path) equal the whole cohort's (general
    path), not_at_risk ones included."""
    from crs_ml.scoring import statuses

    tables = simulate_cohort(300, seed=2024)
    tables.pop("outcomes", None)  # graded from the data, not read from known outcomes
    tables.pop("truth", None)
    cohort = load.load_frames(tables)
    landmarks = np.array([12.0, 24.0, 36.0, 48.0, 72.0])
    with monkeypatch.context() as m:
        m.setattr(statuses, "SMALL_ROWS", 0)
        batch = statuses.statuses(cohort, landmarks, as_of_hours=as_of_hours)
    assert (batch.status == "not_at_risk").sum() >= 3
    for i, pid in enumerate(batch.pid_values):
        alone = statuses.statuses(cohort.subset([pid]), landmarks, as_of_hours=as_of_hours)
        assert (alone.status[0], alone.message[0]) == (batch.status[i], batch.message[i])
        assert alone.landmark_h[0] == batch.landmark_h[i] or np.isnan(batch.landmark_h[i])


def test_completeness_of_a_few_patients_as_the_general_path(monkeypatch):
    """completeness() of each patient alone and of the whole messy cohort (numpy paths)
    equals the general (pandas) path's: shares, bands, missing names and input ages."""
    from crs_ml.modeling import completeness

    cohort = records.records_to_cohort(_messy_records(duplicate=False), strict=False)
    ids = cohort.patients["patient_id"].to_numpy(dtype=object)
    rng = np.random.default_rng(3)
    landmark = rng.choice([np.nan, 6.0, 24.0, 48.0], len(ids))

    def run(c, L):
        code = pd.Index(c.patients["patient_id"]).get_indexer(c.observations["patient_id"])
        return completeness.completeness(c.observations, code, L)

    obs = cohort.observations
    few = obs.loc[obs["variable"].isin(["temperature", "crp", "il6"])].reset_index(drop=True)
    few.loc[few.index[few["variable"] == "il6"][::2], "value"] = np.nan  # a value not known
    sparse = dataclasses.replace(cohort, observations=few)  # several inputs never measured
    cases = [(cohort, landmark), (sparse, np.full(len(ids), 48.0))]
    cases += [(c.subset([p]), L[[i]]) for c, L in cases for i, p in enumerate(ids)]
    bands, texts = set(), set()
    for c, L in cases:
        fast = run(c, L)
        with monkeypatch.context() as m:
            m.setattr(completeness, "SMALL_ROWS", 0)
            slow = run(c, L)
        pd.testing.assert_frame_equal(fast.frame(), slow.frame(), check_exact=True)
        assert [type(x) for x in fast.missing] == [type(x) for x in slow.missing]
        bands |= set(slow.band.tolist())
        texts |= set(slow.missing.tolist())
    assert bands >= {"partial", "sparse", None} and len(cases) > 10
    assert any(", " in t for t in texts if t)


def test_untrained_missing_fill_of_a_few_rows_as_the_general_path(monkeypatch):
    """impute_untrained_missing() on a few float rows (numpy path) gives the general path's
    frame and mask, with and without gaps, and leaves its input as it was."""
    from crs_ml.modeling import completeness

    names = ["age_years", "il6_max", "crp_last", "landmark_h"]
    stored = {"missing_share": {"age_years": 0.0, "il6_max": 0.4, "crp_last": 0.0},
              "median": {"age_years": 58.0, "il6_max": 40.0, "crp_last": 7.5}}  # fmt: skip
    X = pd.DataFrame({"age_years": [np.nan, 70.0, np.nan], "il6_max": [np.nan, 3.0, 1.0],
                      "crp_last": [2.0, np.nan, np.nan], "landmark_h": [np.nan, 24.0, 48.0]},
                     index=[4, 7, 9])  # fmt: skip
    for picked in ([0, 1, 2], [1], [2], [0]):
        one = X.iloc[picked]
        before = one.copy()
        fast, fast_mask = completeness.impute_untrained_missing(one, names, stored)
        with monkeypatch.context() as m:
            m.setattr(completeness, "SMALL_ROWS", 0)
            slow, slow_mask = completeness.impute_untrained_missing(one, names, stored)
        pd.testing.assert_frame_equal(fast, slow, check_exact=True)
        assert np.array_equal(fast_mask, slow_mask) and (fast is one) == (slow is one)
        pd.testing.assert_frame_equal(one, before, check_exact=True)
    assert slow_mask.any()


def test_static_features_of_a_few_patients_as_the_general_path(monkeypatch):
    """static_features() of a few patients (texts mapped one by one) equals the general
    path's (factorized) for odd texts: spaces, case, unlisted, missing, not text."""
    from crs_ml.features import catalogue

    patients = pd.DataFrame({
        "product": [" Axi-Cel ", "tisa-cel", None, "unheard-of", "axi-cel", 3, ""],
        "disease": ["lbcl", " B-ALL", "mm ", None, "weird", "LBCL", "  "],
        "sex": ["F", "m ", None, "x", "M", "f", "F"],
        "age_years": [58.0, np.nan, 70.5, 33.0, 81.0, 45.0, 60.0],
    })  # fmt: skip
    for idx in (np.arange(7), np.array([3, 0, 0]), np.array([5]), np.array([], dtype=np.int64)):
        fast = catalogue.static_features(patients, idx)
        with monkeypatch.context() as m:
            m.setattr(catalogue, "SMALL_PATIENTS", 0)
            slow = catalogue.static_features(patients, idx)
        assert list(fast) == list(slow)
        for name in slow:
            assert fast[name].dtype == slow[name].dtype, name
            np.testing.assert_array_equal(fast[name], slow[name], err_msg=name)
    assert np.nansum(slow["sex_female"]) == 0.0  # [] rows
    ages = patients.assign(age_years=["58", "n/a", 70, None, 81.5, "45", 60])
    assert np.array_equal(
        catalogue.static_features(ages, np.arange(7))["age_years"],
        [58.0, np.nan, 70.0, np.nan, 81.5, 45.0, 60.0],
        equal_nan=True,
    )
