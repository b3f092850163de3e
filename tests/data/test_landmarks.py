"""At-risk sets, outcomes and attrition: one patient per rule of the task definition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crs_ml.cohort import EVENT_COLUMNS, OBSERVATION_COLUMNS, OUTCOME_COLUMNS, Cohort
from crs_ml.errors import InputError
from crs_ml.features.builder import build_features
from crs_ml.features.landmarks import (
    ATTRITION_COLUMNS,
    HORIZON_ATTRITION_COLUMNS,
    HORIZON_COLUMNS,
    HORIZON_OUTCOMES,
    META_COLUMNS,
    at_risk_status,
    attrition_table,
    build_landmark_dataset,
    competing_risk_times,
    horizon_attrition,
    horizon_status,
    landmark_status,
)

H = 336.0
# patient: (grade3_hours, death_hours, followup_hours, first observation hours or None)
PATIENTS = {
    "event6": (10.0, np.nan, np.nan, -2.0),  # y=1 at 6, already_grade3 at 12
    "at_L": (12.0, np.nan, np.nan, -2.0),  # grade 3 exactly at L=12: excluded at 12
    "event_H": (H, np.nan, np.nan, 1.0),  # grade 3 exactly at the horizon: y=1
    "late": (400.0, np.nan, np.nan, 1.0),  # after the horizon: y=0
    "dies": (np.nan, 10.0, np.nan, 1.0),  # competing at 6, died at 12
    "dies_late": (np.nan, 500.0, np.nan, 1.0),  # death after H: plain y=0
    "fu10": (np.nan, np.nan, 10.0, 1.0),  # censored at 6, followup_ended at 12
    # rule 4 does not look at the outcome: an event seen before follow-up ended early is
    # excluded like a non-event (it was kept before issue 20)
    "fu_event": (20.0, np.nan, 30.0, 1.0),
    "event_fu10": (8.0, np.nan, 10.0, 1.0),  # censored at 6, already_grade3 at 12 (rule 1)
    # death ends follow-up: complete, whether followup_hours is the death time or empty
    "dies_fu": (np.nan, 50.0, 50.0, 1.0),  # competing, like "dies" (followup_hours NaN)
    "event_dies": (20.0, 60.0, 60.0, 1.0),  # grade 3, then death: y=1, not competing
    "fu_dies": (np.nan, 50.0, 40.0, 1.0),  # death known after follow-up ended: censored
    "fu_H": (np.nan, np.nan, H, 1.0),  # followed exactly to H: not censored
    "fu_late": (np.nan, np.nan, 400.0, 1.0),  # followed beyond H
    "quiet": (np.nan, np.nan, np.nan, 3.0),  # y=0
    "no_obs": (np.nan, np.nan, np.nan, None),  # no_data everywhere
    "obs_late": (np.nan, np.nan, np.nan, 8.0),  # no_data at 6, included at 12
}
EXPECTED = {  # (status at 6, y at 6), (status at 12, y at 12)
    "event6": [("included", 1), ("already_grade3", None)],
    "at_L": [("included", 1), ("already_grade3", None)],
    "event_H": [("included", 1), ("included", 1)],
    "late": [("included", 0), ("included", 0)],
    "dies": [("included", 0), ("died", None)],
    "dies_late": [("included", 0), ("included", 0)],
    "fu10": [("censored_before_horizon", None), ("followup_ended", None)],
    "fu_event": [("censored_before_horizon", None), ("censored_before_horizon", None)],
    "event_fu10": [("censored_before_horizon", None), ("already_grade3", None)],
    "dies_fu": [("included", 0), ("included", 0)],
    "event_dies": [("included", 1), ("included", 1)],
    "fu_dies": [("censored_before_horizon", None), ("censored_before_horizon", None)],
    "fu_H": [("included", 0), ("included", 0)],
    "fu_late": [("included", 0), ("included", 0)],
    "quiet": [("included", 0), ("included", 0)],
    "no_obs": [("no_data", 0), ("no_data", 0)],
    "obs_late": [("no_data", 0), ("included", 0)],
}


def _cohort(patients=PATIENTS) -> Cohort:
    ids = list(patients)
    p = pd.DataFrame({"patient_id": pd.Series(ids, dtype=object)})
    p["person_id"] = p["patient_id"].str.upper()
    p["infusion_time"] = pd.Series(pd.NaT, index=p.index, dtype="datetime64[ns, UTC]")
    p["product"], p["age_years"], p["sex"], p["disease"] = "axi-cel", 50.0, "F", "LBCL"
    p["site"] = ["north" if i % 2 else "south" for i in range(len(ids))]
    rows = [(k, v[3], "crp", 5.0) for k, v in patients.items() if v[3] is not None]
    o = pd.DataFrame(rows, columns=["patient_id", "hours", "variable", "value"])
    o = o.astype({"patient_id": object, "hours": float, "variable": object, "value": float})
    o["censored"], o["out_of_range"] = np.int8(0), False
    o["source_row"] = np.arange(1, len(o) + 1, dtype=np.int64)
    e = pd.DataFrame(
        {
            "patient_id": pd.Series(["quiet", "dies_late"], dtype=object),
            "hours": [5.0, 20.0],
            "end_hours": np.nan,
            "event": pd.Series(["tocilizumab", "corticosteroid"], dtype=object),
            "detail": pd.Series([None, None], dtype=object),
            "source_row": np.array([1, 2], dtype=np.int64),
        }
    )
    out = pd.DataFrame(
        [(k, 0, *v[:3], "test") for k, v in patients.items()],
        columns=[
            "patient_id",
            "crs_max_grade",
            "grade3_hours",
            "death_hours",
            "followup_hours",
            "label_definition",
        ],
    )[OUTCOME_COLUMNS]
    return Cohort(p, o[OBSERVATION_COLUMNS], e[EVENT_COLUMNS], outcomes=out)


def test_each_rule_of_the_task_definition():
    st = landmark_status(_cohort(), [6, 12], H)
    for L_i, L in enumerate([6.0, 12.0]):
        at = st[st.landmark_h == L].set_index("patient_id")
        for pid, exp in EXPECTED.items():
            status, y = exp[L_i]
            assert at.loc[pid, "status"] == status, (pid, L)
            if y is None:
                assert pd.isna(at.loc[pid, "y"]), (pid, L)
            else:
                assert at.loc[pid, "y"] == y, (pid, L)
    at6 = st[st.landmark_h == 6.0].set_index("patient_id")
    assert at6.loc["dies", "competing_event"] and at6.loc["dies_fu", "competing_event"]
    assert not at6.loc["dies_late", "competing_event"] and not at6.loc["quiet", "competing_event"]
    assert not at6.loc["event_dies", "competing_event"]
    assert not at6.loc["fu_dies", "competing_event"]  # excluded rows are never competing


@pytest.mark.parametrize(
    ("followup_hours", "followed"),
    [(np.nan, True), (30.0, False), (H - 0.5, False), (H, True), (400.0, True)],
)
def test_censoring_rule_does_not_look_at_grade3(followup_hours, followed):
    # the same follow-up with three grade >= 3 outcomes: an event seen before follow-up
    # ended, none, one after the horizon; all three get the same status
    g3 = [20.0, np.nan, 400.0]
    status, event, competing = at_risk_status(g3, [np.nan] * 3, [followup_hours] * 3, 6.0, H)
    expected = "included" if followed else "censored_before_horizon"
    assert status.tolist() == [expected] * 3
    assert event.tolist() == [True, False, False] and not competing.any()


def test_death_ends_followup_completely():
    # patient:      dies, fu = death | dies, fu empty | fu, then death | grade 3, dies, fu = death
    #               | fu early, death after H | fu early, death before L
    g3 = [np.nan, np.nan, np.nan, 20.0, np.nan, np.nan]
    death = [50.0, 50.0, 50.0, 60.0, 400.0, 4.0]
    fu = [50.0, np.nan, 40.0, 60.0, 100.0, 4.0]
    status, event, competing = at_risk_status(g3, death, fu, 6.0, H)
    assert status.tolist() == [
        "included",
        "included",
        "censored_before_horizon",
        "included",
        "censored_before_horizon",
        "died",
    ]
    assert event.tolist() == [False, False, False, True, False, False]
    assert competing[[0, 1]].all() and not competing[[3, 4]].any()
    # landmarks per row; the rules apply in order (grade 3 at 20 h: censored at 6 h as the
    # follow-up ends at 30 h, already grade 3 at 24 h)
    status, _, _ = at_risk_status([20.0, 20.0], [np.nan] * 2, [30.0] * 2, [6.0, 24.0], H)
    assert status.tolist() == ["censored_before_horizon", "already_grade3"]


def test_attrition_table_counts_every_patient_once():
    tab = attrition_table(_cohort(), [6, 12], H)
    assert tab.columns.tolist() == ATTRITION_COLUMNS
    excluded = ["already_grade3", "died", "followup_ended", "censored_before_horizon", "no_data"]
    assert (tab[excluded].sum(axis=1) + tab.n_at_risk == tab.n_patients).all()
    row6, row12 = tab.iloc[0], tab.iloc[1]
    assert row6.n_patients == len(PATIENTS)
    assert (row6.censored_before_horizon, row6.no_data, row6.already_grade3) == (4, 2, 0)
    assert (row6.n_events, row6.n_competing) == (4, 2)
    assert (row12.already_grade3, row12.died, row12.followup_ended, row12.no_data) == (3, 1, 1, 1)
    assert (row12.censored_before_horizon, row12.n_events, row12.n_competing) == (2, 2, 1)


def test_dataset_rows_meta_and_attrition():
    c = _cohort()
    X, y, meta = build_landmark_dataset(c, [12, 6], H)
    st = landmark_status(c, [6, 12], H)
    inc = st[st.status == "included"].reset_index(drop=True)
    assert meta.columns.tolist() == META_COLUMNS
    assert len(X) == len(y) == len(meta) == len(inc)
    assert isinstance(X.index, pd.RangeIndex) and isinstance(meta.index, pd.RangeIndex)
    assert meta[["patient_id", "landmark_h"]].equals(inc[["patient_id", "landmark_h"]])
    assert meta.landmark_h.is_monotonic_increasing  # landmark-major
    assert y.dtype.kind == "i" and y.tolist() == inc.y.astype(int).tolist()
    assert meta.attrs["attrition"].equals(attrition_table(c, [6, 12], H))
    # metas can be sliced and concatenated (pandas compares attrs with ==)
    both = pd.concat([meta.iloc[:3], meta.iloc[3:]], ignore_index=True)
    assert both.equals(meta) and both.attrs["attrition"].equals(meta.attrs["attrition"])
    assert (X.landmark_h.to_numpy() == meta.landmark_h.to_numpy()).all()
    m = meta.set_index(["patient_id", "landmark_h"])
    assert m.loc[("quiet", 6.0), "treated_before_L"]  # tocilizumab at 5 h
    assert not m.loc[("dies_late", 6.0), "treated_before_L"]  # corticosteroid at 20 h
    assert m.loc[("dies_late", 12.0), "person_id"] == "DIES_LATE"
    assert m.loc[("event_dies", 12.0), "outcome_hours"] == 20.0
    assert m.loc[("dies_fu", 12.0), "competing_event"]
    assert ("fu_event", 12.0) not in m.index
    assert m.loc[("quiet", 6.0), "product"] == "axi-cel"
    assert set(m["site"]) == {"north", "south"}
    # X is exactly the features at those points
    pd.testing.assert_frame_equal(X, build_features(c, inc[["patient_id", "landmark_h"]]))


def test_default_landmarks_and_horizon():
    tab = attrition_table(_cohort())
    assert tab.landmark_h.tolist() == [float(h) for h in range(6, 169, 6)]  # issue 14
    # a shorter horizon: the 336 h event becomes y=0, follow-up to 336 h is still complete,
    # and follow-up ending at 150 h now censors
    st = landmark_status(_cohort(), [6], 200.0).set_index("patient_id")
    assert st.loc["event_H", "y"] == 0 and st.loc["fu_H", "status"] == "included"
    assert st.loc["dies_fu", "status"] == "included" and st.loc["dies_fu", "y"] == 0
    assert st.loc["fu_dies", "status"] == "censored_before_horizon"
    longer = {**PATIENTS, "fu150": (np.nan, np.nan, 150.0, 1.0)}
    st = landmark_status(_cohort(longer), [6], 200.0).set_index("patient_id")
    assert st.loc["fu150", "status"] == "censored_before_horizon"
    st = landmark_status(_cohort(longer), [6], 100.0).set_index("patient_id")
    assert st.loc["fu150", "status"] == "included"


def test_outcomes_are_required():
    c = _cohort()
    c.outcomes = None
    with pytest.raises(InputError, match="crs-ml label"):
        build_landmark_dataset(c, [6])
    c = _cohort()
    c.outcomes = c.outcomes.iloc[1:]
    with pytest.raises(InputError, match="no outcome row"):
        attrition_table(c, [6])
    c = _cohort()
    c.outcomes = pd.concat([c.outcomes, c.outcomes.iloc[[0]]], ignore_index=True)
    with pytest.raises(InputError, match="more than one outcome row"):
        attrition_table(c, [6])
    with pytest.raises(InputError, match="landmarks"):
        attrition_table(_cohort(), [0, 6])


# censored, competing-risk view (issue 18): (outcome by L + 24 h = 30 h, outcome by H) at L = 6
HORIZON_EXPECTED = {
    "event6": ("event", "event"),
    "at_L": ("event", "event"),
    "event_H": ("event_free", "event"),  # grade 3 exactly at H counts by H
    "late": ("event_free", "event_free"),
    "dies": ("competing", "competing"),
    "dies_late": ("event_free", "event_free"),
    "fu10": ("censored", "censored"),  # rule 4 drops it; here it stays, censored at 10 h
    "fu_event": ("event", "event"),  # event seen at 20 h before follow-up ended at 30 h
    "event_fu10": ("event", "event"),
    "dies_fu": ("event_free", "competing"),
    "event_dies": ("event", "event"),
    "fu_dies": ("event_free", "censored"),  # death after follow-up ended is not seen
    "fu_H": ("event_free", "event_free"),  # followed exactly to H: not censored
    "fu_late": ("event_free", "event_free"),
    "quiet": ("event_free", "event_free"),
    "no_obs": (None, None),  # no_data
    "obs_late": (None, None),  # no_data at 6
}


def test_horizon_status_each_patient():
    hs = horizon_status(_cohort(), [6], windows_h=[24], horizon_h=H)
    assert list(hs.columns) == HORIZON_COLUMNS
    assert hs["horizon"].unique().tolist() == ["next 24 h", "by day 14"]
    assert hs.groupby("horizon")["horizon_end_h"].first().to_dict() == {
        "next 24 h": 30.0, "by day 14": H,
    }  # fmt: skip
    for label, i in (("next 24 h", 0), ("by day 14", 1)):
        at = hs[hs.horizon == label].set_index("patient_id")
        for pid, exp in HORIZON_EXPECTED.items():
            got = at.loc[pid, "outcome"]
            assert (got if exp[i] is not None else None) == exp[i], (pid, label, got)
    at = hs[hs.horizon == "by day 14"].set_index("patient_id")
    assert at.loc["fu10", ["time_h", "cause"]].tolist() == [10.0, 0]
    assert at.loc["fu_event", ["time_h", "cause"]].tolist() == [20.0, 1]
    assert at.loc["dies_fu", ["time_h", "cause"]].tolist() == [50.0, 2]
    assert at.loc["fu_dies", ["time_h", "cause"]].tolist() == [40.0, 0]
    assert at.loc["late", ["time_h", "cause"]].tolist() == [H, 0]
    assert at.loc["no_obs", "status"] == "no_data"


def test_horizon_status_window_capped_and_rules_1_to_3():
    hs = horizon_status(_cohort(), [12, 320], windows_h=[24], horizon_h=H)
    at = hs[(hs.landmark_h == 320.0) & (hs.horizon == "next 24 h")]
    assert (at["horizon_end_h"] == H).all()  # L + 24 h is past the horizon: capped
    at12 = hs[(hs.landmark_h == 12.0) & (hs.horizon == "next 24 h")].set_index("patient_id")
    assert at12.loc["fu10", "status"] == "followup_ended"
    assert at12.loc["event6", "status"] == "already_grade3"
    assert at12.loc["dies", "status"] == "died"
    assert at12.loc["obs_late", "status"] == "included"
    assert at12["outcome"].isna().tolist() == (at12["status"] != "included").tolist()


def test_horizon_status_agrees_with_the_complete_case_rule():
    """Where rule 4 keeps a patient, the censored view gives the same outcome by H."""
    cohort = _cohort()
    st = landmark_status(cohort, [6, 12], H)
    hs = horizon_status(cohort, [6, 12], windows_h=[], horizon_h=H)
    assert len(hs) == len(st)
    assert (hs["patient_id"].to_numpy() == st["patient_id"].to_numpy()).all()
    kept = (st["status"] == "included").to_numpy()
    assert (hs["status"].to_numpy()[kept] == "included").all()
    outcome = hs["outcome"].to_numpy()[kept]
    y = st["y"].to_numpy()[kept].astype(int)
    assert ((outcome == "event") == (y == 1)).all()
    assert ((outcome == "competing") == st["competing_event"].to_numpy()[kept]).all()
    assert not (outcome == "censored").any()
    # rule 4's exclusions are censored unless an event or death was seen before the end
    lost = (st["status"] == "censored_before_horizon").to_numpy()
    assert set(hs["outcome"].to_numpy()[lost]) == {"censored", "event"}


def test_horizon_attrition_counts_the_censored():
    cohort = _cohort()
    tab = horizon_attrition(cohort, [6, 12], windows_h=[24], horizon_h=H)
    assert list(tab.columns) == HORIZON_ATTRITION_COLUMNS
    row = tab[(tab.landmark_h == 6.0) & (tab.horizon == "by day 14")].iloc[0]
    expected = pd.Series([v[1] for v in HORIZON_EXPECTED.values() if v[1] is not None])
    for o in HORIZON_OUTCOMES:
        assert row[f"n_{o}"] == (expected == o).sum(), o
    assert row["n_censored"] == 2 and row["n_at_risk"] == len(expected)
    # the complete-case attrition table still counts the censored at the same horizon
    att = attrition_table(cohort, [6, 12], H).set_index("landmark_h")
    assert att.loc[6.0, "censored_before_horizon"] == 4


def test_competing_risk_times_rules():
    # grade 3 and death at the same hour: grade 3; death after follow-up: censored at its end
    time, cause = competing_risk_times(
        [20.0, np.nan, np.nan, 50.0, np.nan], [20.0, 30.0, 60.0, np.nan, np.nan],
        [np.nan, 30.0, 40.0, 40.0, 500.0], H,
    )  # fmt: skip
    assert time.tolist() == [20.0, 30.0, 40.0, 40.0, H]
    assert cause.tolist() == [1, 2, 0, 0, 0]
