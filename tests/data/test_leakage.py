"""The leakage guard: nothing after the landmark, and no outcome, can reach a feature at L."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crs_ml.cohort import EVENT_COLUMNS, EVENT_NAMES, OBSERVATION_COLUMNS, TRUTH_COLUMNS, Cohort
from crs_ml.features.builder import build_features
from crs_ml.features.catalogue import VARIABLES
from crs_ml.features.grading import derive_outcomes, grade_events
from crs_ml.features.landmarks import build_landmark_dataset

PIDS = ["a", "b", "c"]
OBS_VARS = [*VARIABLES, "wbc"]
HOURS = st.sampled_from([-30.0, -1.0, 0.0, 2.0, 5.5, 6.0, 11.0, 12.0, 12.5, 20.0, 24.0])


def _patients(ids) -> pd.DataFrame:
    p = pd.DataFrame({"patient_id": pd.Series(ids, dtype=object)})
    p["person_id"] = p["patient_id"]
    p["infusion_time"] = pd.Series(pd.NaT, index=p.index, dtype="datetime64[ns, UTC]")
    p["product"], p["age_years"], p["sex"], p["disease"], p["site"] = (
        "axi-cel",
        55.0,
        "M",
        "MM",
        "x",
    )
    return p


def _obs(rows) -> pd.DataFrame:
    o = pd.DataFrame(rows, columns=["patient_id", "hours", "variable", "value", "source_row"])
    o = o.astype({"patient_id": object, "hours": float, "variable": object, "value": float})
    o["source_row"] = o["source_row"].astype("int64")
    o["censored"] = np.zeros(len(o), dtype=np.int8)
    o["out_of_range"] = False
    return o[OBSERVATION_COLUMNS]


def _events(rows) -> pd.DataFrame:
    e = pd.DataFrame(
        rows, columns=["patient_id", "hours", "end_hours", "event", "detail", "source_row"]
    )
    e = e.astype(
        {
            "patient_id": object,
            "hours": float,
            "end_hours": float,
            "event": object,
            "detail": object,
        }
    )
    e["source_row"] = e["source_row"].astype("int64")
    return e[EVENT_COLUMNS]


value_st = st.one_of(st.floats(0.0, 500.0), st.sampled_from([37.9, 38.0, 39.5, 85.0, np.nan]))
obs_row = st.tuples(st.sampled_from(PIDS), HOURS, st.sampled_from(OBS_VARS), value_st)
ev_row = st.tuples(
    st.sampled_from(PIDS),
    HOURS,
    st.one_of(st.none(), st.floats(0.0, 60.0)),
    st.sampled_from(EVENT_NAMES),
    st.sampled_from([None, "CRS", "sepsis"]),
)
after_obs = st.tuples(
    st.sampled_from(PIDS), st.floats(0.0, 100.0), st.sampled_from(OBS_VARS), value_st
)
after_ev = st.tuples(
    st.sampled_from(PIDS),
    st.floats(0.0, 100.0),
    st.one_of(st.none(), st.floats(0.0, 100.0)),
    st.sampled_from(EVENT_NAMES),
    st.sampled_from([None, "crs"]),
)


@settings(
    max_examples=100, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    obs=st.lists(obs_row, max_size=25),
    events=st.lists(ev_row, max_size=8),
    landmark=st.sampled_from([6.0, 12.0, 12.5, 24.0]),
    extra_obs=st.lists(after_obs, max_size=6),
    extra_ev=st.lists(after_ev, max_size=4),
    data=st.data(),
)
def test_changes_after_the_landmark_leave_features_bit_identical(
    obs, events, landmark, extra_obs, extra_ev, data
):
    o = [(p, h, v, x, i + 1) for i, (p, h, v, x) in enumerate(obs)]
    e = [
        (p, h, np.nan if d is None else h + d, n, det, i + 1)
        for i, (p, h, d, n, det) in enumerate(events)
    ]
    before = Cohort(_patients(PIDS), _obs(o), _events(e))

    # the same cohort, changed only after L
    o2, e2 = [], []
    for p, h, v, x, src in o:
        if h > landmark:
            action = data.draw(st.sampled_from(["keep", "drop", "change"]))
            if action == "drop":
                continue
            if action == "change":
                h = landmark + data.draw(st.floats(0.01, 50.0))
                v = data.draw(st.sampled_from(OBS_VARS))
                x = data.draw(value_st)
        o2.append((p, h, v, x, src))
    for p, h, end, n, det, src in e:
        if h > landmark:
            action = data.draw(st.sampled_from(["keep", "drop", "change"]))
            if action == "drop":
                continue
            if action == "change":
                h = landmark + data.draw(st.floats(0.01, 50.0))
                end, n = h + 5.0, data.draw(st.sampled_from(EVENT_NAMES))
        elif end == end and end > landmark:  # running at L: when it stops is the future
            end = landmark + data.draw(st.floats(0.01, 80.0))
        e2.append((p, h, end, n, det, src))
    next_src = len(o) + 1
    for p, dh, v, x in extra_obs:
        o2.append((p, landmark + 0.01 + dh, v, x, next_src))
        next_src += 1
    for k, (p, dh, end, n, det) in enumerate(extra_ev):
        h = landmark + 0.01 + dh
        e2.append((p, h, np.nan if end is None else h + end, n, det, len(e) + 1 + k))
    # row order carries no information either
    perm_o = data.draw(st.permutations(range(len(o2))))
    perm_e = data.draw(st.permutations(range(len(e2))))
    after = Cohort(_patients(PIDS), _obs([o2[i] for i in perm_o]), _events([e2[i] for i in perm_e]))

    points = pd.DataFrame({"patient_id": PIDS, "landmark_h": landmark})
    x1 = build_features(before, points)
    x2 = build_features(after, points)
    pd.testing.assert_frame_equal(x1, x2, check_exact=True)


def _busy_cohort(n: int, seed: int) -> Cohort:
    """Many fevers, low sbp and supports, so that grade >= 3 happens at many landmarks."""
    rng = np.random.default_rng(seed)
    ids = [f"p{i:03d}" for i in range(n)]
    rows, src = [], 1
    for i, pid in enumerate(ids):
        for h in np.sort(rng.uniform(-24, 120, 12)):
            var = ["temperature", "sbp", "il6", "crp"][rng.integers(4)]
            val = {
                "temperature": rng.normal(38.0, 1.0),
                "sbp": rng.normal(100, 15),
                "il6": rng.lognormal(3, 1),
                "crp": rng.lognormal(3, 1),
            }[var]
            rows.append((pid, round(h, 1), var, val, src))
            src += 1
        if i % 7 == 0:
            rows = [r for r in rows if r[0] != pid or r[1] > 30]  # some with late data only
    ev, esrc = [], 1
    for pid in ids:
        for _ in range(rng.integers(0, 4)):
            name = rng.choice(
                [
                    "vasopressor",
                    "oxygen_high_flow",
                    "oxygen_low_flow",
                    "tocilizumab",
                    "positive_pressure",
                    "antipyretic",
                ]
            )
            h = round(float(rng.uniform(0, 100)), 1)
            end = h + float(rng.exponential(10)) if rng.random() < 0.7 else np.nan
            ev.append((pid, h, end, name, None, esrc))
            esrc += 1
    c = Cohort(_patients(ids), _obs(rows), _events(ev))
    c.outcomes = derive_outcomes(c)
    return c


def test_patients_at_grade3_by_the_landmark_never_appear():
    c = _busy_cohort(150, seed=3)
    landmarks = [6.0, 12.0, 24.0, 36.0, 48.0, 72.0, 96.0]
    X, y, meta = build_landmark_dataset(c, landmarks)
    ge = grade_events(c.observations, c.events)
    first3 = ge[ge.grade >= 3].groupby("patient_id")["hours"].min()
    reached = meta["patient_id"].map(first3).to_numpy(dtype=float)
    assert len(meta) > 200 and 0 < y.sum() < len(y)
    assert not (reached <= meta["landmark_h"].to_numpy()).any()
    # some patients were excluded for exactly this reason, and the state features agree
    assert meta.attrs["attrition"]["already_grade3"].sum() > 20
    assert (X["astct_grade_so_far"] < 3).all()


def test_outcomes_and_truth_never_reach_the_features():
    c = _busy_cohort(40, seed=5)
    points = pd.DataFrame({"patient_id": c.patients["patient_id"], "landmark_h": 24.0})
    x0 = build_features(c, points)
    rng = np.random.default_rng(0)
    changed = c.outcomes.copy()
    changed["grade3_hours"] = rng.uniform(0, 30, len(changed))
    changed["crs_max_grade"] = 4
    changed["death_hours"] = rng.uniform(0, 30, len(changed))
    truth = pd.DataFrame(
        {
            "patient_id": c.patients["patient_id"],
            "landmark_h": 24.0,
            "true_risk": rng.random(len(changed)),
        }
    )[TRUTH_COLUMNS]
    for outcomes, tr in ((changed, truth), (None, None)):
        other = Cohort(c.patients, c.observations, c.events, outcomes=outcomes, truth=tr)
        pd.testing.assert_frame_equal(build_features(other, points), x0, check_exact=True)
    banned = (
        "grade3",
        "crs_max",
        "death",
        "followup",
        "true_risk",
        "outcome",
        "label",
        "competing",
        "status",
    )
    assert not [name for name in x0.columns if any(b in name for b in banned)]
    assert "y" not in x0.columns
