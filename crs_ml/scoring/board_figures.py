"""The ward board's per-patient figures as matplotlib Figures, for notebooks and reports.

:func:`trajectory_figure` and :func:`waterfall_figure` draw what the board draws as SVG
(:mod:`crs_ml.scoring.board`): the risk over every landmark up to the latest score (each point from
data up to its landmark only) with treatments and grades marked, and the latest score taken
apart from the base value to the risk. :func:`patient_course` gets one patient's
:class:`~crs_ml.scoring.board.Course` from a scores table::

    c = patient_course(scores, cohort, model, "S1-000042")
    trajectory_figure(c); waterfall_figure(c.waterfall)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crs_ml.cohort import Cohort
from crs_ml.errors import InputError
from crs_ml.scoring.board import Course, Waterfall, courses

_MARK = {"tocilizumab": "T", "steroid": "S", "anakinra": "A"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def patient_course(scores: pd.DataFrame, cohort: Cohort, model, patient_id) -> Course:
    """One patient's :class:`~crs_ml.scoring.board.Course` (trajectory, waterfall, freshness)."""

    pid = str(patient_id)
    rows = scores[scores["patient_id"].astype(str) == pid]
    if rows.empty:
        raise InputError(f"scores table: no row for patient_id {pid!r}")
    return courses(rows, cohort.subset([pid]), model)[0]


def trajectory_figure(course: Course, title: str | None = None):
    """Risk at each landmark (data up to that landmark only), treatments and grades marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3), dpi=110)
    if course.trajectory:
        h, r = zip(*course.trajectory, strict=True)
        ax.plot(h, np.asarray(r) * 100, "-o", c="k", lw=1.8, ms=4, label="risk at landmark")
    top = max([r for _, r in course.trajectory] + [0.1]) * 115
    for hours, name, _ in course.treatments:
        ax.axvline(hours, c="#6a3d9a", lw=1.2)
        ax.annotate(_MARK.get(name, name), (hours, top), ha="center", va="bottom", fontsize=8)
    best = 0
    for hours, grade in course.grades:
        if grade > best:
            best = grade
            ax.annotate(f"G{grade}", (hours, 0), ha="center", va="bottom", fontsize=8)
    if np.isfinite(course.hours):
        ax.axvline(course.hours, c="#c08a00", ls=":", lw=1.2, label="as-of time")
    ax.set(xlabel="hours since infusion", ylabel="risk of grade >= 3 CRS (%)", ylim=(0, top * 1.1),
           title=title or f"{course.patient_id}: risk over time")  # fmt: skip
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return fig


def waterfall_figure(waterfall: Waterfall, title: str = "Why this risk"):
    """Base value to risk in log-odds; bars labelled in clinical words and units."""
    from scipy.special import expit

    plt = _plt()
    bars = waterfall.bars
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(bars) + 1.4), dpi=110)
    start = waterfall.base_value
    for k, (_, c) in enumerate(bars):
        ax.barh(k, c, left=start, color="#b2182b" if c > 0 else "#92c5de",
                edgecolor="#2166ac" if c <= 0 else "#b2182b")  # fmt: skip
        ax.annotate(f"{c:+.2f}", (max(start, start + c), k), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=7)  # fmt: skip
        start += c
    ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(waterfall.base_value, c="grey", ls="--", lw=1)
    ax.axvline(waterfall.logit, c="k", lw=1.2)
    ax.set_xlabel(f"log-odds: base {expit(waterfall.base_value):.1%} -> risk {waterfall.risk:.1%}")
    ax.set_title(title)
    fig.tight_layout()
    return fig
