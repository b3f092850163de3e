"""The simulator lands on the targets of docs/domain.md ("Simulator targets").

One 3,000-patient clean cohort is simulated once for the module; product rates are checked on
the simulator's LATENT probabilities of 20,000 patients (on 3,000 realised patients a
+-3 point band is only about two standard errors). Everything else is measured from the
written tables the way a user would.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from crs_ml.simulate.simulator import latent_probabilities, simulate

SEED = 20240
HORIZON = 336.0
#: docs/domain.md "Products" table: any-grade, grade >= 3 (ranges: upper figure), median onset days
TABLE = {
    "axi-cel": (0.94, 0.13, 2), "tisa-cel": (0.58, 0.22, 3), "liso-cel": (0.42, 0.04, 5),
    "brexu-cel": (0.91, 0.18, 3), "ide-cel": (0.84, 0.09, 1), "cilta-cel": (0.95, 0.05, 7),
}  # fmt: skip


@pytest.fixture(scope="module")
def sim():
    return simulate(3000, seed=SEED)


@pytest.fixture(scope="module")
def obs(sim):
    o = sim.tables["observations"]
    text = o["value"].astype(str)
    num = pd.to_numeric(text.str.lstrip("<>"), errors="coerce")
    return o.assign(num=np.where(text.str.startswith("<"), num / 2, num))


@pytest.fixture(scope="module")
def outcomes(sim):
    return sim.tables["outcomes"].set_index("patient_id")


def landmark(sim, outcomes, L):
    tr = sim.tables["truth"]
    t = tr[tr["landmark_h"] == L]
    g3 = t["patient_id"].map(outcomes["grade3_hours"])
    return t["true_risk"].to_numpy(), ((g3 > L) & (g3 <= HORIZON)).to_numpy().astype(int)


def test_latent_product_rates_within_3_points_of_the_table(sim):
    lat = latent_probabilities(20_000, seed=SEED + 1)
    rates = lat.groupby("product")[["p_any_crs", "p_grade3"]].mean()
    chosen = {p.name: p for p in sim.params.products}
    for name, (any_crs, grade3, _) in TABLE.items():
        assert abs(rates.loc[name, "p_any_crs"] - any_crs) <= 0.03, name
        assert abs(rates.loc[name, "p_grade3"] - grade3) <= 0.03, name
        # and close to the stated choice (ASTCT-comparable: axi-cel 15%, tisa-cel 20%)
        assert abs(rates.loc[name, "p_grade3"] - chosen[name].grade3) <= 0.015, name
    # the latent probabilities are the same patients' as simulate() draws for that seed
    same = latent_probabilities(3000, seed=SEED)
    np.testing.assert_allclose(same["p_grade3"], sim.latent["p_grade3"])


def test_median_onset_within_a_day_of_the_table(sim, obs):
    fever = obs[(obs["variable"] == "temperature") & (obs["hours"] >= 0) & (obs["num"] >= 38.0)]
    onset = fever.groupby("patient_id")["hours"].min()
    product = sim.tables["patients"].set_index("patient_id")["product"]
    realised = (onset / 24).groupby(onset.index.map(product)).median()
    for name, (_, _, days) in TABLE.items():
        assert abs(sim.median_onset_h[name] / 24 - days) <= 1.0, name
        assert abs(realised[name] - days) <= 1.0, name


def test_il6_and_crp_move_together_during_crs(sim, obs):
    """Spearman of same-day IL-6 and CRP (day means) from CRS onset to resolution, before
    tocilizumab, at the sites with in-house IL-6 (send-out results arrive days later)."""
    lat = sim.latent.set_index("patient_id")
    in_house = [s.name for s in sim.params.sites if s.il6_delay_h[1] <= 12]
    lab = obs[obs["variable"].isin(["il6", "crp"])]
    lab = lab[lab["patient_id"].map(lat["site"]).isin(in_house)]
    h = lab["hours"]
    start = lab["patient_id"].map(lat["onset_hours"])
    end = lab["patient_id"].map(lat["resolution_hours"]).fillna(np.inf)
    toci = lab["patient_id"].map(lat["tocilizumab_hours"]).fillna(np.inf)
    during = lab[(h >= start) & (h <= end) & (h < toci)].assign(day=np.floor(h / 24))
    pairs = during.pivot_table(index=["patient_id", "day"], columns="variable", values="num")
    pairs = pairs.dropna()
    assert len(pairs) > 300
    rho = spearmanr(pairs["il6"], pairs["crp"]).statistic
    assert 0.7 <= rho <= 0.9


def test_measix_at_day_0_discriminates_like_pennisi(obs, outcomes):
    """m-EASIX = LDH x CRP[mg/dL] / platelets, last values at hours <= 0 (pre-infusion)."""
    pre = obs[(obs["hours"] <= 0) & obs["variable"].isin(["ldh", "crp", "platelets"])]
    last = pre.sort_values("hours").groupby(["patient_id", "variable"])["num"].last().unstack()
    measix = (last["ldh"] * last["crp"] / 10 / last["platelets"]).dropna()
    y = outcomes.loc[measix.index, "crs_max_grade"] >= 3
    assert len(measix) == len(outcomes)
    assert 0.70 <= roc_auc_score(y, measix) <= 0.82


def test_oracle_auroc_at_24h(sim, outcomes):
    risk, y = landmark(sim, outcomes, 24.0)
    assert y.sum() > 150
    assert 0.85 <= roc_auc_score(y, risk) <= 0.95


def test_few_grade3_events_are_reached_by_24h(outcomes):
    g3 = outcomes["grade3_hours"].dropna()
    assert len(g3) > 200
    assert (g3 <= 24).mean() < 0.20


def test_true_risk_is_calibrated_at_every_landmark(sim, outcomes):
    for L in sorted(sim.tables["truth"]["landmark_h"].unique()):
        risk, y = landmark(sim, outcomes, L)
        se = np.sqrt(np.sum(risk * (1 - risk))) / len(risk)
        assert abs(y.mean() - risk.mean()) <= 3.5 * se, L
    # and within risk deciles at 24 h
    risk, y = landmark(sim, outcomes, 24.0)
    decile = pd.qcut(risk, 10, labels=False, duplicates="drop")
    for d in np.unique(decile):
        m = decile == d
        sd = np.sqrt(np.sum(risk[m] * (1 - risk[m])))
        assert abs(y[m].sum() - risk[m].sum()) <= 4 * sd + 1, d


def test_tocilizumab_raises_il6_while_crp_and_fever_fall(sim, obs):
    """docs/domain.md: serum IL-6 rises after tocilizumab (receptor blockade), CRP and fever fall."""
    toci = sim.latent.set_index("patient_id")["tocilizumab_hours"].dropna()
    o = obs[obs["patient_id"].isin(toci.index)]
    dt = o["hours"] - o["patient_id"].map(toci)
    ratios = {}
    # IL-6 and temperature: the day before vs 1-3 days after; CRP lags IL-6 by about a day,
    # so its reference is the first 12 h after the dose (its peak) vs 2-4 days after
    windows = {"il6": ((-24, 0), (24, 72)), "temperature": ((-24, 0), (24, 72)),
               "crp": ((0, 12), (48, 96))}  # fmt: skip
    for var, ((b0, b1), (a0, a1)) in windows.items():
        v = o[o["variable"] == var]
        d = dt[v.index]
        before = v[(d > b0) & (d <= b1)].groupby("patient_id")["num"].max()
        after = v[(d > a0) & (d <= a1)].groupby("patient_id")["num"].max()
        both = before.index.intersection(after.index)
        assert len(both) > 50, var
        ratios[var] = np.median(after[both] / before[both])
    assert ratios["il6"] > 1.2
    assert ratios["crp"] < 0.8
    assert ratios["temperature"] < 1.0


def _early_max(obs, var, ids, lo, hi):
    v = obs[(obs["variable"] == var) & (obs["hours"] >= lo) & (obs["hours"] <= hi)]
    return v.groupby("patient_id")["num"].max().reindex(ids).to_numpy(dtype=float)


def _auc_median_imputed(y, v):
    return roc_auc_score(y, np.where(np.isnan(v), np.nanmedian(v), v))


def test_early_il6_and_fever_signal_progression(sim, obs, outcomes):
    """docs/domain.md (Teachey 2016, Hay 2017): early IL-6 and early high fever mark the patients
    who progress to grade >= 3; CRP alone does not beat m-EASIX early. At risk at 24 h and
    48 h (truth rows); il6_max over every result at hours <= L (baseline included, as the
    feature), temperature_max_early over [0, min(36, L)]. Targets (assumption): IL-6 where
    measured >= 0.60 at 24 h and >= 0.65 at 48 h (with the median for the unmeasured the
    signal is bounded by the sites' sampling: IL-6 is missing at 24 h for about 60% of
    patients, more often at the higher-risk sites), early maximum temperature >= 0.62."""
    tr = sim.tables["truth"]
    for L, il6_min in ((24.0, 0.60), (48.0, 0.65)):
        ids = tr.loc[tr["landmark_h"] == L, "patient_id"]
        g3 = ids.map(outcomes["grade3_hours"])
        y = ((g3 > L) & (g3 <= HORIZON)).to_numpy().astype(int)
        il6 = _early_max(obs, "il6", ids, -np.inf, L)
        measured = ~np.isnan(il6)
        assert y[measured].sum() > 50 and measured.mean() > 0.3
        assert roc_auc_score(y[measured], il6[measured]) >= il6_min - 0.02, L
        assert _auc_median_imputed(y, il6) > 0.52, L
        tmax = _early_max(obs, "temperature", ids, 0.0, min(36.0, L))
        assert _auc_median_imputed(y, tmax) >= 0.62 - 0.02, L
        if L == 24.0:
            crp = _early_max(obs, "crp", ids, -np.inf, L)
            pre = obs[(obs["hours"] <= L) & obs["variable"].isin(["ldh", "crp", "platelets"])]
            last = pre.sort_values("hours").groupby(["patient_id", "variable"])["num"].last()
            last = last.unstack().reindex(ids)
            measix = (last["ldh"] * last["crp"] / 10 / last["platelets"]).to_numpy(dtype=float)
            assert _auc_median_imputed(y, crp) < _auc_median_imputed(y, measix)
    # among febrile patients at 24 h, those who progress run higher fevers (>= 38.9)
    ids = tr.loc[tr["landmark_h"] == 24.0, "patient_id"]
    g3 = ids.map(outcomes["grade3_hours"])
    y = ((g3 > 24) & (g3 <= HORIZON)).to_numpy().astype(bool)
    tmax = _early_max(obs, "temperature", ids, 0.0, 24.0)
    febrile = tmax >= 38.0
    assert febrile[y].sum() > 15
    assert (tmax[febrile & y] >= 38.9).mean() > (tmax[febrile & ~y] >= 38.9).mean()
