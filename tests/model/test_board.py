"""The ward board (crs_ml.scoring.board): content, escaping, no data after a landmark, atomic write."""

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import conftest_scoring as cs  # noqa: E402

from crs_ml.cohort import Cohort  # noqa: E402
from crs_ml.scoring.board import board, courses, trajectories  # noqa: E402
from crs_ml.scoring.board_figures import patient_course, trajectory_figure, waterfall_figure  # noqa: E402
from crs_ml.scoring.score import score  # noqa: E402

AS_OF_H = 36


@pytest.fixture(scope="module")
def trained(session_dir):
    return cs.setup(session_dir)


@pytest.fixture(scope="module")
def new(session_dir):
    return cs.new_patients(session_dir)


@pytest.fixture(scope="module")
def scores(trained, new):
    return score(trained.bundle, new.cohort, as_of_hours=AS_OF_H)


class Page(HTMLParser):
    """The list's rows (cells' text) and the page's visible text."""

    def __init__(self):
        super().__init__()
        self.rows, self.text, self.tags = [], [], []
        self._row, self._cell, self._in_body = None, None, False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def _copy(cohort: Cohort) -> Cohort:
    return Cohort(patients=cohort.patients.copy(), observations=cohort.observations.copy(),
                  events=cohort.events.copy(), rejected=cohort.rejected.copy())  # fmt: skip


def _shown(text: str, risk: float, cuts=(0.10, 0.30)) -> bool:
    """A risk as the board prints it: whole percents from 10%, one decimal below, more only
    where rounding would carry it across a band cut (never across one)."""
    usual = f"{risk:.0%}" if risk >= 0.1 else f"{risk:.1%}"
    shown = float(text.rstrip("%")) / 100
    same_side = all((shown < c) == (risk < c) for c in cuts)
    return same_side and (text == usual or abs(shown - risk) < 0.001)


def test_a_risk_just_under_a_band_cut_is_not_printed_as_the_cut(trained, new, scores):
    from crs_ml.scoring.board import render_board

    s = scores.copy()
    at = s.index[s["status"] == "scored"][:3]
    s.loc[at, "risk"] = [0.0995, 0.29999999, 0.1]
    rows = {r[0]: r for r in parse(render_board(s, new.cohort, trained.bundle)).rows}
    shown = [rows[p][1] for p in s.loc[at, "patient_id"]]
    assert shown == ["9.95%", "29.99%", "10%"]


def test_every_patient_listed_with_the_scores_tables_risk(trained, new, scores, tmp_path):
    out = tmp_path / "board.html"
    html = board(scores, new.cohort, trained.bundle, out, model_name="models:/crs-severity@x")
    assert out.read_text(encoding="utf-8") == html
    page = parse(html)
    assert len(page.rows) == len(scores) == len(new.cohort.patients)
    listed = {r[0]: r for r in page.rows}
    assert set(listed) == set(scores["patient_id"])
    for r in scores.itertuples():
        row = listed[r.patient_id]
        # issue 18: the short horizons' risks stand after the band, so status is the last
        assert row[-1].startswith(r.status.replace("_", " "))
        if r.status == "scored":
            assert _shown(row[1], r.risk) and r.risk_band in row[2]
            for k, col in enumerate(("risk_24h", "risk_72h")):  # issue 18: beside the band
                assert _shown(row[3 + k], getattr(r, col))
        else:
            assert row[1] == ""
    # sections: one per patient, in the list's order (highest risk first)
    sections = [a["id"] for t, a in page.tags if t == "section"]
    assert len(sections) == len(scores)
    text = "".join(page.text)
    assert "not a replacement for clinical assessment" in text  # the model card's sentence
    assert f"{AS_OF_H} h after infusion" in text


def _il6_age(cohort, pid, as_of_h: float, landmark_h: float) -> str:
    obs = cohort.observations
    mine = obs[(obs["patient_id"] == pid) & (obs["variable"] == "il6") & obs["value"].notna()
               & (obs["hours"] <= as_of_h)]  # fmt: skip
    if mine.empty:
        return "no IL-6 yet"
    last = mine["hours"].max()
    note = f" (after the {landmark_h:g} h landmark: not in this score)" if last > landmark_h else ""
    return f"IL-6 last measured {as_of_h - last:.0f} h ago{note}"


def test_freshness_counts_results_after_the_landmark(trained, new):
    """Key inputs measured after the score's landmark but by the as-of time are the freshest
    (and said not to be in the score yet); none measured is 'no ... yet'."""
    as_of = 40.0
    s = score(trained.bundle, new.cohort, as_of_hours=as_of)
    items = courses(s, new.cohort, trained.bundle)
    after = 0
    for c, r in zip(items, s.itertuples(), strict=True):
        if r.status != "scored":
            continue
        assert r.landmark_h < as_of
        il6 = next(f for f in c.freshness if "IL-6" in f)
        assert il6 == _il6_age(new.cohort, r.patient_id, as_of, r.landmark_h)
        after += "not in this score" in il6
    assert after >= 3


def test_trajectory_ends_at_the_score_and_the_waterfall_adds_up(trained, new, scores):
    items = courses(scores, new.cohort, trained.bundle)
    landmarks = trained.bundle.manifest["config"]["task"]["landmarks_h"]
    scored = scores[scores["status"] == "scored"]
    assert len(scored) >= 20
    later = new.cohort.events["hours"] > AS_OF_H
    assert later.any()  # the simulated follow-up goes on: none of it may show
    for c, r in zip(items, scores.itertuples(), strict=True):
        assert c.patient_id == r.patient_id
        assert all(h <= AS_OF_H for h, *_ in c.treatments + c.grades)
        if r.status != "scored":
            continue
        hours = [h for h, _ in c.trajectory]
        assert hours[-1] == r.landmark_h
        assert set(hours) <= {h for h in landmarks if h <= r.landmark_h}
        assert c.trajectory[-1][1] == pytest.approx(r.risk, rel=1e-5)
        wf = c.waterfall
        assert wf.base_value == pytest.approx(r.base_value)
        assert wf.logit == pytest.approx(logit(r.risk), abs=1e-4)
        assert len(wf.bars) <= 8 + 3
        # freshness: one line per key input, ages counted to the as-of time
        assert len(c.freshness) == 9
        il6 = next(f for f in c.freshness if "IL-6" in f)
        assert il6 == _il6_age(new.cohort, r.patient_id, AS_OF_H, r.landmark_h)
    # every earlier point is what scoring at that landmark gives
    at_24 = score(trained.bundle, new.cohort, as_of_hours=24).set_index("patient_id")
    for c in items:
        point = dict(c.trajectory).get(24.0)
        if point is not None and at_24.loc[c.patient_id, "status"] == "scored":
            assert point == pytest.approx(at_24.loc[c.patient_id, "risk"], rel=1e-5)


def test_no_data_after_a_landmark_changes_its_point(trained, new, scores):
    base, _, _ = trajectories(trained.bundle, new.cohort, scores)
    cohort = _copy(new.cohort)
    obs = cohort.observations
    late = obs["hours"] > 24
    cohort.observations.loc[late, "value"] = obs.loc[late, "value"] * 3 + 50
    pids = cohort.patients["patient_id"]
    ev = pd.DataFrame({"patient_id": pids, "hours": 25.0, "end_hours": 28.0,
                       "event": "tocilizumab", "detail": "8 mg/kg", "source_row": 10**6})  # fmt: skip
    cohort.events = pd.concat([cohort.events, ev], ignore_index=True)
    after, _, _ = trajectories(trained.bundle, cohort, scores)
    early_b, early_a = base[base["landmark_h"] <= 24], after[after["landmark_h"] <= 24]
    pd.testing.assert_frame_equal(early_b.reset_index(drop=True), early_a.reset_index(drop=True))
    late_b = base[base["landmark_h"] > 24].set_index(["patient_id", "landmark_h"])["risk"]
    late_a = after[after["landmark_h"] > 24].set_index(["patient_id", "landmark_h"])["risk"]
    both = late_b.index.intersection(late_a.index)
    assert len(both) and (late_b[both] != late_a[both]).any()  # the change was seen later


def test_input_text_is_shown_as_text_not_markup(trained, new, tmp_path):
    evil_id = "<script>alert(\"x\")</script>' onclick='y"
    detail = '<img src=x onerror="alert(1)"> 8 mg/kg "quoted"'
    cohort = _copy(new.cohort)
    old = cohort.patients["patient_id"].iloc[0]
    for table in (cohort.patients, cohort.observations, cohort.events):
        table.loc[table["patient_id"] == old, "patient_id"] = evil_id
    toci = pd.DataFrame({"patient_id": [evil_id], "hours": [20.0], "end_hours": [np.nan],
                         "event": ["tocilizumab"], "detail": [detail], "source_row": [10**6]})  # fmt: skip
    cohort.events = pd.concat([cohort.events, toci], ignore_index=True)
    sc = score(trained.bundle, cohort, as_of_hours=AS_OF_H)
    product = cohort.patients["product"].iloc[1]
    html = board(sc, cohort, trained.bundle, tmp_path / "b.html")
    page = parse(html)
    assert [t for t, _ in page.tags].count("script") == 1  # the page's own sorting script
    assert not any(t == "img" for t, _ in page.tags)
    assert not any("onclick" in a or "onerror" in a for _, a in page.tags)
    text = "".join(page.text)
    assert evil_id in text  # shown, as text
    assert f"tocilizumab at 20 h: {detail}" in text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&#39; onclick=&#39;y" in html
    assert re.search(r"<script>\s*\(function", html)  # ours, unescaped
    assert product in text


def test_page_is_self_contained(trained, new, scores, tmp_path):
    html = board(scores, new.cohort, trained.bundle)
    assert 'http-equiv="Content-Security-Policy" content="default-src \'none\'' in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert len(html.encode()) / len(scores) < 20_000  # 500 patients stay under 10 MB


def test_written_atomically(trained, new, scores, tmp_path, monkeypatch):
    out = tmp_path / "b.html"
    out.write_text("previous board")
    import crs_ml.files as files

    def disk_full(tmp, target):
        raise OSError("no space left on device")

    monkeypatch.setattr(files, "_publish", disk_full)  # fails after the page was written
    with pytest.raises(OSError):
        board(scores, new.cohort, trained.bundle, out)
    assert out.read_text() == "previous board"
    assert [p.name for p in tmp_path.iterdir()] == ["b.html"]
    monkeypatch.undo()
    board(scores, new.cohort, trained.bundle, out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["b.html"]  # no temp file left


def test_figures_for_notebooks(trained, new, scores):
    pid = scores.loc[scores["status"] == "scored", "patient_id"].iloc[0]
    c = patient_course(scores, new.cohort, trained.bundle, pid)
    row = scores.set_index("patient_id").loc[pid]
    assert c.trajectory[-1][1] == pytest.approx(row["risk"], rel=1e-5)
    fig = trajectory_figure(c)
    assert len(fig.axes[0].lines[0].get_xdata()) == len(c.trajectory)
    fig = waterfall_figure(c.waterfall)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == [b[0] for b in c.waterfall.bars]
    assert f"risk {row['risk']:.1%}" in fig.axes[0].get_xlabel()
