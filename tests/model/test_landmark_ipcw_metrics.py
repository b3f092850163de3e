"""The per-landmark IPCW training metrics (day 14: ``day14_ipcw_metrics``; the windows:
``horizon_metrics``) pinned to an independent computation on hand-made at-risk rows: the
masks of the censored, competing-risk outcome by the horizon, the time-dependent AUROC and
Brier score of :mod:`crs_ml.evaluation.censored` on each landmark's rows (CV repeats pooled),
the person bootstrap replayed replicate by replicate, and the oracle's AUROC on the same
rows and censoring strata. Every key each function returns is compared."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crs_ml.evaluation.censored import risk_groups, time_dependent_auroc, time_dependent_brier
from crs_ml.evaluation.metrics import too_few_events
from crs_ml.evaluation.resampling import GroupResampler
from crs_ml.modeling.horizons import DAY14, Horizon, HorizonData, horizon_metrics
from crs_ml.modeling.train import CensoredRows, day14_ipcw_metrics

H = 336.0
LANDMARKS = (24.0, 48.0)
WINDOW = Horizon.of(24.0, H)


def _rows(n_patients=150, seed=0, event_rate=0.3):
    """Everyone at risk at 24 h and 48 h (time_h > L): integer hours (tied times), grade >= 3
    (cause 1), death (2), censored (0, some before day 14) or followed through (0 at H); two
    sites; every second person has two patients (person bootstrap clusters)."""
    rng = np.random.default_rng(seed)
    pid = np.array([f"p{i:03d}" for i in range(n_patients)], dtype=object)
    person = np.array(
        [f"P{i // 2 if i % 4 < 2 else i:03d}" for i in range(n_patients)], dtype=object
    )
    site = np.where(rng.random(n_patients) < 0.5, "A", "B").astype(object)
    time = np.round(25.0 + rng.exponential(110.0, n_patients))  # some only at risk at 24 h
    u = rng.random(n_patients)
    cause = np.select([u < event_rate, u < event_rate + 0.1, u < event_rate + 0.35], [1, 2, 0], 0)
    followed = time >= H
    time[followed], cause[followed] = H, 0
    # outcomes at exactly a horizon's end (24 h and 48 h + 24 h, day 14): by it, not censored
    time[:8], cause[:8] = [48, 48, 48, 72, 72, 72, H, H], [0, 1, 2, 0, 1, 2, 1, 2]
    frames = []
    for L in LANDMARKS:
        at = time > L
        frames.append(pd.DataFrame({"patient_id": pid[at], "person_id": person[at],
                                    "landmark_h": L, "time_h": time[at],
                                    "cause": cause[at].astype(np.int8), "site": site[at]}))  # fmt: skip
    meta = pd.concat(frames, ignore_index=True)
    t, c = meta["time_h"].to_numpy(), meta["cause"].to_numpy()
    lm = meta["landmark_h"].to_numpy()
    y, censored, end = {}, {}, {}
    for column, e in (
        (WINDOW.column, np.minimum(lm + WINDOW.window_h, H)),
        (DAY14, np.full(len(lm), H)),
    ):
        y[column] = ((c == 1) & (t <= e)).astype(np.int64)
        censored[column] = (c == 0) & (t < e)
        end[column] = e
    data = HorizonData(pd.DataFrame(index=meta.index), meta, y, censored, end)
    return data, rng


def _risks(data, rng, repeats):
    """Risks that rank the events higher, (repeats, n)."""
    case = data.y[DAY14].astype(float)
    z = 1.2 * case[None, :] + rng.normal(size=(repeats, len(case)))
    return 1.0 / (1.0 + np.exp(-(z - 1.0)))


def _truth(data, rng, label):
    t = data.meta[["patient_id", "landmark_h"]].copy()
    t["true_risk"] = np.clip(0.5 * data.y[DAY14] + 0.5 * rng.random(len(t)), 0.0, 1.0)
    t["horizon"] = label
    return t


def _strata(censoring_by, site, p):
    if censoring_by == "risk_decile":
        return risk_groups(p, 10)
    return np.asarray(site).astype(str) if censoring_by == "site" else None


def _expected(data, column, risk, censoring_by, tag, n_boot=0, seed=0, oracle=None):
    """The metrics by hand, per landmark: masks, pooled repeats, time-dependent AUROC and
    Brier, the bootstrap replayed with the same person draws, the oracle on the same strata."""
    meta, risk = data.meta, np.atleast_2d(risk)
    repeats = risk.shape[0]
    out = {}
    for L in LANDMARKS:
        m = meta["landmark_h"].to_numpy() == L
        p = risk[:, m].ravel()
        if not np.isfinite(p).all():
            continue
        time = np.tile(meta["time_h"].to_numpy(dtype=float)[m], repeats)
        cause = np.tile(meta["cause"].to_numpy()[m], repeats)
        persons = np.tile(meta["person_id"].to_numpy()[m], repeats)
        strata = _strata(censoring_by, np.tile(meta["site"].to_numpy()[m], repeats), p)
        end = float(data.end_h[column][m][0])
        name = f"{tag}_L{L:g}"
        t1, c1 = time[: m.sum()], cause[: m.sum()]
        n, events = float(m.sum()), float(((c1 == 1) & (t1 <= end)).sum())
        out[f"n_{name}"], out[f"events_{name}"] = n, events
        out[f"competing_{name}"] = float(((c1 == 2) & (t1 <= end)).sum())
        out[f"censored_{name}"] = float(((c1 == 0) & (t1 < end)).sum())
        few = too_few_events(events, n)
        fns = {"auroc": time_dependent_auroc, "brier": time_dependent_brier}
        reps = {k: [] for k in fns}
        if n_boot > 0 and not few:
            resampler = GroupResampler(persons, time.size)
            for drawn in resampler.draw(np.random.default_rng(seed), n_boot):
                idx = resampler.rows(drawn)
                sb = None if strata is None else strata[idx]
                for k, fn in fns.items():
                    reps[k].append(fn(time[idx], cause[idx], p[idx], end, sb))
        for k, fn in fns.items():
            out[f"{k}_{name}"] = fn(time, cause, p, end, strata)
            if n_boot > 0 and not few:
                v = np.asarray(reps[k])
                lo, hi = np.percentile(v[np.isfinite(v)], [2.5, 97.5])
                out[f"{k}_lo_{name}"], out[f"{k}_hi_{name}"] = lo, hi
        if oracle is not None and np.isfinite(oracle[m]).all():
            o = time_dependent_auroc(time, cause, np.tile(oracle[m], repeats), end, strata)
            out[f"oracle_auroc_{name}"] = o
            out[f"oracle_ratio_{name}"] = out[f"auroc_{name}"] / o
    return out


def _assert_same(got, expected):
    assert sorted(got) == sorted(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-12, abs=1e-15, nan_ok=True), k


@pytest.mark.parametrize("censoring_by", ["risk_decile", "site", "none"])
def test_day14_ipcw_metrics_pinned(censoring_by):
    data, rng = _rows(seed=1)
    risk = _risks(data, rng, repeats=3)
    truth = _truth(data, rng, "by day 14")
    oracle = truth["true_risk"].to_numpy()
    got = day14_ipcw_metrics(CensoredRows(data, censoring_by), risk, list(LANDMARKS),
                             censoring_by, n_boot=40, seed=7,
                             truth=truth[["patient_id", "landmark_h", "true_risk"]])  # fmt: skip
    expected = _expected(data, DAY14, risk, censoring_by, "ipcw", 40, 7, oracle)
    assert {"auroc_lo_ipcw_L24", "brier_hi_ipcw_L48", "oracle_ratio_ipcw_L48"} <= set(expected)
    assert expected["censored_ipcw_L24"] > 0 and expected["competing_ipcw_L24"] > 0
    _assert_same(got, expected)


def test_day14_ipcw_metrics_pinned_without_bootstrap_or_oracle():
    data, rng = _rows(seed=2)
    risk = _risks(data, rng, repeats=2)
    got = day14_ipcw_metrics(CensoredRows(data, "risk_decile"), risk, list(LANDMARKS),
                             "risk_decile", n_boot=0, seed=0)  # fmt: skip
    _assert_same(got, _expected(data, DAY14, risk, "risk_decile", "ipcw"))
    assert "auroc_lo_ipcw_L24" not in got and "oracle_auroc_ipcw_L24" not in got


def test_day14_ipcw_metrics_pinned_with_few_events_a_missing_risk_and_partial_truth():
    """Fewer than 10 events: no interval; a row without a risk at 48 h: that landmark is left
    out; truth missing for one row at 24 h: no oracle ratio there."""
    data, rng = _rows(n_patients=60, seed=3, event_rate=0.1)
    risk = _risks(data, rng, repeats=2)
    at48 = np.flatnonzero(data.meta["landmark_h"].to_numpy() == 48.0)
    risk[1, at48[0]] = np.nan
    truth = _truth(data, rng, "by day 14").iloc[1:]
    oracle = data.meta[["patient_id", "landmark_h"]].merge(truth, how="left")["true_risk"]
    got = day14_ipcw_metrics(CensoredRows(data, "site"), risk, list(LANDMARKS), "site",
                             n_boot=30, seed=3, truth=truth)  # fmt: skip
    expected = _expected(data, DAY14, risk, "site", "ipcw", 30, 3, oracle.to_numpy())
    assert expected["events_ipcw_L24"] < 10 and "n_ipcw_L48" not in expected
    assert "auroc_lo_ipcw_L24" not in expected and "oracle_auroc_ipcw_L24" not in expected
    _assert_same(got, expected)


@pytest.mark.parametrize("censoring_by", ["risk_decile", "site", "none"])
def test_horizon_metrics_pinned(censoring_by):
    data, rng = _rows(seed=4)
    risk = _risks(data, rng, repeats=1)[0]
    truth = pd.concat([_truth(data, rng, WINDOW.label), _truth(data, rng, "by day 14")])
    oracle = truth[truth["horizon"] == WINDOW.label]["true_risk"].to_numpy()
    got = horizon_metrics(WINDOW, data, risk, list(LANDMARKS), censoring_by, truth)
    expected = _expected(data, WINDOW.column, risk, censoring_by, WINDOW.tag, oracle=oracle)
    assert {"auroc_next24h_L24", "oracle_ratio_next24h_L48", "censored_next24h_L48"} <= set(got)
    assert expected["censored_next24h_L48"] > 0 and expected["competing_next24h_L48"] > 0
    _assert_same(got, expected)
    # without truth: the same metrics, no oracle
    plain = horizon_metrics(WINDOW, data, risk, list(LANDMARKS), censoring_by)
    _assert_same(plain, _expected(data, WINDOW.column, risk, censoring_by, WINDOW.tag))
