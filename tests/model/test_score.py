"""Behaviour of crs_ml.scoring.score.score on new simulated patients with a trained model."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import conftest_scoring as cs  # noqa: E402

from crs_ml.cohort import Cohort  # noqa: E402
from crs_ml.features.builder import build_features  # noqa: E402
from crs_ml.scoring.drivers import format_value  # noqa: E402
from crs_ml.scoring.score import (  # noqa: E402
    FIXED_COLUMNS,
    STATUSES,
    horizon_column_names,
    score,
    status_counts,
)


@pytest.fixture(scope="module")
def trained(session_dir):
    return cs.setup(session_dir)


@pytest.fixture(scope="module")
def new(session_dir):
    return cs.new_patients(session_dir)


def _copy(cohort: Cohort) -> Cohort:
    return Cohort(
        patients=cohort.patients.copy(),
        observations=cohort.observations.copy(),
        events=cohort.events.copy(),
        rejected=cohort.rejected.copy(),
    )


def _features(bundle, cohort, scores):
    scored = scores[scores["status"] == "scored"]
    points = scored[["patient_id", "landmark_h"]].reset_index(drop=True)
    from crs_ml.config import FeatureConfig

    cfg = FeatureConfig.model_validate(bundle.manifest["config"]["features"])
    return scored.reset_index(drop=True), build_features(cohort, points, cfg)


def test_one_row_per_patient_in_order_with_the_contract_columns(trained, new):
    out = score(trained.bundle, new.cohort, as_of_hours=30)
    assert list(out["patient_id"]) == list(new.cohort.patients["patient_id"])
    names = trained.bundle.feature_names
    # issue 18: the short horizons' columns come after message (none for a model without)
    short = horizon_column_names([h for h, _ in trained.bundle.horizons], names)
    assert short[:2] == ["risk_24h", "risk_72h"]
    assert list(out.columns) == [*FIXED_COLUMNS, *[f"shap_{n}" for n in names], "message", *short]
    assert set(out["status"]) <= set(STATUSES)
    assert sum(status_counts(out).values()) == len(new.cohort.patients)
    scored = out[out["status"] == "scored"]
    assert len(scored) >= 0.8 * len(out)
    assert (scored["landmark_h"] == 30).all() and (out["hours_since_infusion"] == 30).all()
    assert scored["risk"].between(0, 1).all() and scored["risk"].nunique() > 5
    low, high = 0.10, 0.30
    expected = np.where(scored["risk"] < low, "low", np.where(scored["risk"] >= high, "high",
                                                              "intermediate"))  # fmt: skip
    assert (scored["risk_band"].to_numpy() == expected).all()
    unscored = out[out["status"] != "scored"]
    assert unscored["risk"].isna().all() and (unscored["message"] != "").all()


def test_shap_adds_up_to_the_logit_and_risk_matches_the_booster(trained, new):
    out = score(trained.bundle, new.cohort, as_of_hours=48)
    scored, X = _features(trained.bundle, new.cohort, out)
    shap = scored.filter(like="shap_").to_numpy()
    np.testing.assert_allclose(scored["base_value"] + shap.sum(axis=1), logit(scored["risk"]),
                               atol=1e-6, rtol=0)  # fmt: skip
    np.testing.assert_allclose(scored["risk"], trained.bundle.predict_risk(X), atol=1e-5)
    assert scored["base_value"].nunique() == 1


def test_treeshap_does_not_depend_on_the_thread_count(trained, new):
    import json

    from crs_ml.modeling.explain import SMALL_INPUT_ROWS, tree_shap

    bundle = trained.bundle
    _, X = _features(bundle, new.cohort, score(bundle, new.cohort, as_of_hours=48))
    X = pd.concat([X] * (SMALL_INPUT_ROWS // len(X) + 1), ignore_index=True)  # threaded path

    def nthread():
        return json.loads(bundle.booster.save_config())["learner"]["generic_param"]["nthread"]

    before = nthread()
    every = tree_shap(bundle, X)
    for threads in (1, 2):
        ex = tree_shap(bundle, X, threads)
        assert np.array_equal(ex.contributions, every.contributions)
        assert np.array_equal(ex.logit, every.logit)
    assert nthread() == before  # the shared booster keeps its own setting


def test_top_drivers_list_measured_values_first_and_group_the_absent(trained, new):
    # issue 21: the top drivers are the largest contributions among measured values; the
    # contributions of inputs not measured yet are summed into one trailing line
    from crs_ml.modeling.completeness import impute_untrained_missing
    from crs_ml.scoring.drivers import not_measured

    out = score(trained.bundle, new.cohort, as_of_hours=24)
    scored, X = _features(trained.bundle, new.cohort, out)
    names = trained.bundle.feature_names
    X, imputed = impute_untrained_missing(X, names, trained.bundle.training_inputs)
    shap = scored[[f"shap_{n}" for n in names]].to_numpy()
    absent = not_measured(X, names, trained.bundle.catalogue)
    top = np.argsort(-np.where(absent | imputed, 0.0, np.abs(shap)), axis=1, kind="stable")[:, :3]
    grouped_rows = 0
    for i, text in enumerate(scored["top_drivers"]):
        items = text.split("; ")
        measured = [t for t in items if not t.startswith(("not measured yet:", "imputed"))]
        assert items[: len(measured)] == measured and len(measured) == 3, items
        for item, j in zip(measured, top[i], strict=True):
            name = names[j]
            value = format_value(name, X[name].iloc[i], trained.bundle.catalogue)
            assert item.endswith(f"= {value} ({shap[i, j]:+.2f})"), (item, name)
            assert "not measured" not in item
        grouped = [t for t in items if t.startswith("not measured yet:")]
        gone = absent[i] & (shap[i] != 0)
        assert len(grouped) == int(gone.any())
        if gone.any():
            grouped_rows += 1
            together = " together" if len(grouped[0].split(",")) > 1 else ""
            assert grouped[0].endswith(f"({shap[i, gone].sum():+.2f}{together})"), grouped[0]
    assert grouped_rows > 0  # the cohort has unmeasured inputs that carry weight


def test_data_after_the_landmark_changes_nothing(trained, new):
    # as of 29 h the landmark is 24 h: rows in (24, 29] must not move anything
    base = score(trained.bundle, new.cohort, as_of_hours=29)
    assert (base["landmark_h"] == 24).all()
    cohort = _copy(new.cohort)
    obs = cohort.observations
    late = obs[obs["hours"].between(0, 24)].copy()
    late["hours"] = 24.5 + (late["hours"] % 4)
    late["value"] = late["value"] * 3 + 50
    pids = cohort.patients["patient_id"]
    # treatments and grade-2 support the features read (a grade >= 3 after L but by the
    # as-of time changes the status, by design: test_grade_3_after_the_landmark_...)
    ev = pd.DataFrame({"patient_id": pd.concat([pids, pids]), "hours": 25.0,
                       "end_hours": [np.nan] * len(pids) + [28.0] * len(pids),
                       "event": ["tocilizumab"] * len(pids) + ["oxygen_low_flow"] * len(pids),
                       "detail": None, "source_row": 10**6})  # fmt: skip
    cohort.observations = pd.concat([obs, late], ignore_index=True)
    cohort.events = pd.concat([cohort.events, ev], ignore_index=True)
    after = score(trained.bundle, cohort, as_of_hours=29)
    pd.testing.assert_frame_equal(base, after)
    at_24 = score(trained.bundle, new.cohort, as_of_hours=24)
    cols = [c for c in base.columns if c not in ("hours_since_infusion", "as_of")]
    pd.testing.assert_frame_equal(base[cols], at_24[cols])


def test_grade_3_after_the_landmark_but_by_the_as_of_time_is_not_at_risk(trained, new):
    """The features read data up to L only, but a patient with severe CRS (or dead) by the
    time the score is read has no risk left to predict: not_at_risk, saying when."""
    base = score(trained.bundle, new.cohort, as_of_hours=29)
    scored = base.loc[base["status"] == "scored", "patient_id"].tolist()[:4]
    cohort = _copy(new.cohort)
    fever = pd.DataFrame({"patient_id": scored, "hours": 25.0, "variable": "temperature",
                          "value": 39.5, "censored": 0, "out_of_range": False,
                          "source_row": 10**6})  # fmt: skip
    ev = pd.DataFrame({"patient_id": scored, "hours": [26.0, 26.0, 30.0, 27.0],
                       "end_hours": [28.0, 28.0, 31.0, np.nan],
                       "event": ["vasopressor", "vasopressor", "vasopressor", "death"],
                       "detail": None, "source_row": 10**6})  # fmt: skip
    cohort.observations = pd.concat([cohort.observations, fever], ignore_index=True)
    cohort.events = pd.concat([cohort.events, ev], ignore_index=True)
    after = score(trained.bundle, cohort, as_of_hours=29).set_index("patient_id")
    g3, late, dead = scored[:2], scored[2], scored[3]
    assert (after.loc[g3, "status"] == "not_at_risk").all()
    assert after.loc[g3, "risk"].isna().all()
    assert after.loc[g3[0], "message"] == (
        "already grade >= 3 CRS at 26 h (after the 24 h landmark, by the as-of time 29 h)"
    )
    assert after.loc[late, "status"] == "scored"  # the vasopressor starts after the as-of time
    assert after.loc[dead, "message"].startswith("died at 27 h (after the 24 h landmark")
    rest = base.set_index("patient_id").drop(index=[*g3, dead])
    pd.testing.assert_frame_equal(after.drop(index=[*g3, dead]), rest)


def test_chunks_and_progress_do_not_change_the_result(trained, new):
    calls = []
    one = score(trained.bundle, new.cohort, as_of_hours=36)
    many = score(trained.bundle, new.cohort, as_of_hours=36, chunk_size=7,
                 progress=lambda stage, done, total: calls.append((done, total)))  # fmt: skip
    pd.testing.assert_frame_equal(one, many)
    # one chunk reads the whole cohort, patients not scored too; several read copies of
    # their own patients' rows: both give the same
    assert (one["status"] != "scored").any()
    n = int((one["status"] == "scored").sum())
    assert calls[-1] == (n, n) and len(calls) == 1 + -(-n // 7)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_a_hand_made_cohort_with_ids_of_other_types_scores_the_same_in_one_chunk(trained, new):
    """A Cohort holds its ids as text: a row whose id is the int 7 is patient "7"'s row, for
    the statuses and for the feature guard alike, in one chunk as in several."""
    c = new.cohort.subset(new.cohort.patients["patient_id"].iloc[:2])
    ren = dict(zip(c.patients["patient_id"], ["7", "8"], strict=True))

    def renamed(t):
        return t.assign(patient_id=t["patient_id"].map(ren).astype(object))

    extra = renamed(c.observations).iloc[[0]].assign(patient_id=7, hours=10.0,
                                                     variable="temperature", value=41.5)  # fmt: skip
    obs = pd.concat([renamed(c.observations), extra], ignore_index=True)
    cohort = Cohort(renamed(c.patients), obs.astype({"patient_id": object}), renamed(c.events))
    one = score(trained.bundle, cohort, as_of_hours=24)
    many = score(trained.bundle, cohort, as_of_hours=24, chunk_size=1)
    pd.testing.assert_frame_equal(one, many)
    assert (one["status"] == "scored").all()
    # the int 7's row (41.5 C at 10 h) is patient "7"'s
    points = pd.DataFrame({"patient_id": ["7"], "landmark_h": [24.0]})
    assert build_features(cohort, points)["temperature_max"].iloc[0] == 41.5


def test_the_package_attribute_is_the_scoring_function(trained, new):
    import crs_ml

    got = crs_ml.score(trained.bundle, new.cohort, as_of_hours=30)
    pd.testing.assert_frame_equal(got, score(trained.bundle, new.cohort, as_of_hours=30))
    assert crs_ml.score.STATUSES == STATUSES  # still the module


def test_statuses_where_expected(trained, new):
    cohort = _copy(new.cohort)
    pids = list(cohort.patients["patient_id"])
    g3, dead, early, unknown, empty = pids[:5]
    infusion = pd.Timestamp("2026-03-01T08:00:00Z")
    as_of = infusion + pd.Timedelta(hours=40)
    times = [infusion] * len(pids)
    times[pids.index(early)] = as_of - pd.Timedelta(hours=3)
    times[pids.index(unknown)] = pd.NaT
    cohort.patients["infusion_time"] = pd.Series(times, dtype="datetime64[ns, UTC]")
    extra_ev = pd.DataFrame(
        {"patient_id": [g3, dead], "hours": [10.0, 12.0], "end_hours": [20.0, np.nan],
         "event": ["vasopressor", "death"], "detail": [None, "sepsis"], "source_row": [-1, -2]}
    )  # fmt: skip
    fever = pd.DataFrame({"patient_id": [g3], "hours": [9.0], "variable": ["temperature"],
                          "value": [39.2], "censored": [0], "out_of_range": [False],
                          "source_row": [-3]})  # fmt: skip
    obs = cohort.observations
    cohort.observations = pd.concat([obs[obs["patient_id"] != empty], fever], ignore_index=True)
    cohort.events = pd.concat([cohort.events, extra_ev], ignore_index=True)
    out = score(trained.bundle, cohort, as_of=as_of.isoformat()).set_index("patient_id")
    assert out.loc[g3, "status"] == "not_at_risk" and "grade >= 3" in out.loc[g3, "message"]
    assert out.loc[dead, "status"] == "not_at_risk" and "died at 12 h" in out.loc[dead, "message"]
    assert out.loc[early, "status"] == "too_early" and out.loc[early, "hours_since_infusion"] == 3
    assert out.loc[unknown, "status"] == "error" and "infusion_time" in out.loc[unknown, "message"]
    assert out.loc[empty, "status"] == "error" and "no observation" in out.loc[empty, "message"]
    rest = out.drop(index=[g3, dead, early, unknown, empty])
    assert (rest["landmark_h"] == 36).all() and (rest["hours_since_infusion"] == 40).all()
    assert (rest["as_of"] == as_of).all()
    assert out.loc[[g3, dead, early, unknown, empty], "risk"].isna().all()


def test_without_as_of_each_patient_uses_the_landmark_before_the_latest_row(trained, new):
    cohort = _copy(new.cohort)
    pids = list(cohort.patients["patient_id"])
    obs = cohort.observations
    cut = {pids[0]: 20.0, pids[1]: 50.0}
    keep = ~obs["patient_id"].isin(cut) | (obs["hours"] <= obs["patient_id"].map(cut))
    cohort.observations = obs[keep.to_numpy()].reset_index(drop=True)
    cohort.events = cohort.events[~cohort.events["patient_id"].isin(cut)].reset_index(drop=True)
    out = score(trained.bundle, cohort).set_index("patient_id")
    latest = cohort.observations.groupby("patient_id")["hours"].max()
    assert out.loc[pids[0], "hours_since_infusion"] == latest[pids[0]] <= 20
    assert out.loc[pids[0], "landmark_h"] == 6 * np.floor(latest[pids[0]] / 6)
    assert out.loc[pids[1], "landmark_h"] == 6 * np.floor(latest[pids[1]] / 6)
    assert out["as_of"].isna().all()


def test_patient_with_rejected_rows_is_still_scored(trained, new, tmp_path):
    from crs_ml.ingest.load import load_cohort

    folder = tmp_path / "cohort"
    pid = cs.with_bad_units(new, folder, row=0, n_rows=2)
    cohort = load_cohort(folder)
    assert len(cohort.rejected) == 2
    out = score(trained.bundle, cohort, as_of_hours=30).set_index("patient_id")
    assert out.loc[pid, "status"] == "scored" and np.isfinite(out.loc[pid, "risk"])
    assert "2 input rows rejected (listed in the errors file" in out.loc[pid, "message"]
    assert (out.drop(index=pid)["message"].str.contains("rejected") == False).all()  # noqa: E712


def test_logistic_model_scores_with_exact_linear_shap(trained, new):
    from crs_ml.modeling.bundle import Bundle
    from crs_ml.modeling.estimators import LogisticRiskModel

    r = trained.result
    model = LogisticRiskModel(C=0.1).fit(r.X, r.y)
    manifest = {**trained.bundle.manifest, "model_type": "logistic",
                "calibration": {"method": "none", "slope": 1.0, "intercept": 0.0}}  # fmt: skip
    out = score(Bundle(manifest=manifest, estimator=model), new.cohort, as_of_hours=24)
    scored, X = _features(trained.bundle, new.cohort, out)
    shap = scored.filter(like="shap_").to_numpy()
    assert np.isfinite(shap).all()
    np.testing.assert_allclose(scored["base_value"] + shap.sum(axis=1), logit(scored["risk"]),
                               atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(scored["risk"], model.predict_proba(X)[:, 1], atol=1e-12)


@pytest.mark.parametrize("as_of_hours", [None, 12, 24, 48, 96])
def test_not_at_risk_statuses_equal_grading_every_patient(as_of_hours, tmp_path):
    """statuses() grades only the patients with a fever and a support by the as-of time (a
    shortcut for speed); the result must equal grading every patient over [0, as-of hours]
    with the grading code (grade >= 3 or death after L but by then is not at risk either)."""
    from crs_ml.features.grading import grade_summary
    from crs_ml.ingest.load import load_cohort
    from crs_ml.scoring.statuses import statuses
    from crs_ml.simulate.simulator import simulate_cohort, write_cohort

    tables = simulate_cohort(600, seed=2024)
    tables.pop("outcomes", None)
    tables.pop("truth", None)
    write_cohort(tables, tmp_path / "cohort")
    cohort = load_cohort(tmp_path / "cohort")
    landmarks = np.array([12.0, 24.0, 36.0, 48.0, 72.0])
    st = statuses(cohort, landmarks, as_of_hours=as_of_hours)
    pid = cohort.patients["patient_id"].astype(object).reset_index(drop=True)
    until = pd.Series(np.where(np.isfinite(st.landmark_h), st.hours, np.nan), index=pd.Index(pid))
    full = grade_summary(cohort.observations, cohort.events, "patient_id", until=until)
    g3 = pid.map(full["grade3_hours"]).to_numpy(dtype=np.float64)
    ev = cohort.events
    death = pid.map(ev[ev["event"] == "death"].groupby("patient_id")["hours"].min())
    L, at = st.landmark_h, np.where(np.isfinite(st.landmark_h), st.hours, np.nan)
    with np.errstate(invalid="ignore"):
        expect = np.isfinite(L) & ((g3 <= at) | (death.to_numpy(dtype=np.float64) <= at))
        after = expect & ~((g3 <= L) | (death.to_numpy(dtype=np.float64) <= L))
    assert ((st.status == "not_at_risk") == expect).all()
    assert (st.status == "not_at_risk").sum() >= (3 if as_of_hours != 12 else 0)
    # grade >= 3 or death after L but by the as-of time: no risk left to predict
    assert after.sum() >= (3 if as_of_hours is None else 0)
    assert all("after the" in m for m in st.message[after])


def test_a_patient_twice_in_a_cohort_built_by_hand_is_named(trained, new):
    from crs_ml.errors import InputError

    c = new.cohort
    patients = pd.concat([c.patients, c.patients.iloc[[0]]], ignore_index=True)
    twice = Cohort(patients, c.observations, c.events)
    with pytest.raises(InputError, match=r"duplicated patient_id .* \(rows 1 and \d+\)") as info:
        score(trained.bundle, twice, as_of_hours=24)
    assert info.value.file == "patients" and info.value.column == "patient_id"
    assert info.value.row == len(patients)
    # two missing ids are one id twice too
    blank = patients.iloc[:2].copy()
    blank["patient_id"] = pd.Series([None, None], dtype=object)
    with pytest.raises(InputError, match=r"\(rows 1 and 2\)"):
        score(trained.bundle, Cohort(blank, c.observations, c.events), as_of_hours=24)


def test_implausible_as_of_hours_are_a_clear_error(trained, new):
    from crs_ml.errors import InputError

    for hours in (1e9, "1e9"):
        with pytest.raises(InputError, match=r"as-of hours 1e\+09 are implausible"):
            score(trained.bundle, new.cohort, as_of_hours=hours)


def test_a_risk_the_arithmetic_cannot_give_is_an_error_not_a_band(new, tmp_path_factory):
    """A safeguard: an input so extreme that a member's arithmetic overflows (a temperature of
    1e308 in a table whose out_of_range flags were not set, as a hand-built one may be; the
    additive member's spline is linear beyond its knots) gives status error and no risk, and
    the served form has null, not the bare Infinity strict JSON lacks."""
    from shared_bundle import build_stack_bundle

    from crs_ml.modeling.bundle import load_bundle
    from crs_ml.tracking.pyfunc import to_output

    bundle = load_bundle(build_stack_bundle(tmp_path_factory.getbasetemp()))
    cohort = _copy(new.cohort)
    pid = cohort.patients["patient_id"].iloc[0]
    obs = cohort.observations
    at = obs.index[(obs["patient_id"] == pid) & (obs["variable"] == "temperature")
                   & (obs["hours"] <= 24)][0]  # fmt: skip
    obs.loc[at, "value"] = 1e308
    out = score(bundle, cohort, as_of_hours=24).set_index("patient_id")
    row = out.loc[pid]
    assert row["status"] == "error" and "no finite risk" in row["message"]
    assert np.isnan(row["risk"]) and row["risk_band"] is None and row["top_drivers"] == ""
    assert (out["status"] == "scored").sum() >= len(out) - 5
    served = to_output(out.reset_index())
    numbers = served.drop(columns=["as_of"]).select_dtypes(exclude="object")
    assert np.isfinite(numbers.to_numpy(dtype=float)).all()
    assert all(
        v is None or not isinstance(v, float) or np.isfinite(v)
        for v in served.select_dtypes("object").to_numpy().ravel()
    )


def test_a_value_outside_the_plausible_range_is_not_used_and_is_named(trained, new):
    """A fever typed in degF under degC (102.4 'degC'): loading keeps and flags it; the score
    is that of the cohort without it, and the message names it."""
    base = score(trained.bundle, new.cohort, as_of_hours=24)
    pid = base.loc[base["status"] == "scored", "patient_id"].iloc[0]
    cohort = _copy(new.cohort)
    obs = cohort.observations
    at = obs.index[(obs["patient_id"] == pid) & (obs["variable"] == "temperature")
                   & (obs["hours"] <= 24)][-1]  # fmt: skip
    hours = obs.loc[at, "hours"]
    obs.loc[at, ["value", "out_of_range"]] = [102.4, True]
    out = score(trained.bundle, cohort, as_of_hours=24).set_index("patient_id")
    without = _copy(new.cohort)
    without.observations = without.observations.drop(index=at).reset_index(drop=True)
    expect = score(trained.bundle, without, as_of_hours=24).set_index("patient_id")
    # the score, completeness, key-input ages, drivers and SHAP: all as without the value
    pd.testing.assert_series_equal(out.loc[pid].drop("message"), expect.loc[pid].drop("message"))
    assert (f"values outside the plausible range not used (check the unit): temperature "
            f"102.4 degC at {hours:g} h") in out.loc[pid, "message"]  # fmt: skip
    others = out.index != pid
    pd.testing.assert_frame_equal(out[others], expect[others])
