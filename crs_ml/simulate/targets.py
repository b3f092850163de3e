"""The simulator targets of docs/domain.md, measured on a simulated (clean) cohort.

Definitions (the tests in tests/data/test_simulator_targets.py compute the same quantities
independently from the tables):

* product rates: realised any-grade CRS (crs_max_grade >= 1) and grade >= 3 shares per
  product, and the latent means of P(any CRS by H) and P(grade >= 3 by H);
* median onset: first temperature >= 38.0 at hours >= 0, median per product (days), and the
  exact latent median;
* Spearman(IL-6, CRP): patient-days (result day = floor(hours / 24)) with both measured,
  mean of each per day, from CRS onset to its resolution and before tocilizumab (after it
  IL-6 rises while CRP falls, docs/domain.md), at sites whose IL-6 is an in-house test (result
  within hours: send-out results arrive days later and cannot be paired by day);
* m-EASIX at day 0 = LDH x CRP [mg/dL] / platelets from the last values at hours <= 0 (the
  pre-infusion panel), AUROC for crs_max_grade >= 3;
* oracle AUROC at 24 h: truth.csv at landmark 24 vs y = 1{24 < grade3_hours <= H};
* share of grade >= 3 events reached by 24 h;
* calibration: mean true risk vs observed event rate at every landmark.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from crs_ml.simulate.simulator import SimulationResult

#: sites with IL-6 measured in-house (result delay of hours), used for the Spearman target
IN_HOUSE_IL6_MAX_DELAY_H = 12.0


def numeric_observations(observations: pd.DataFrame) -> pd.DataFrame:
    """Clean-style observations with a numeric ``num`` ('<x' -> x/2, '>x' -> x)."""
    text = observations["value"].astype(str)
    num = pd.to_numeric(text.str.lstrip("<>"), errors="coerce")
    num = num.where(~text.str.startswith("<"), num / 2)
    return observations.assign(num=num.to_numpy(dtype="float64"))


def onset_hours(obs: pd.DataFrame) -> pd.Series:
    t = obs[(obs["variable"] == "temperature") & (obs["hours"] >= 0) & (obs["num"] >= 38.0)]
    return t.groupby("patient_id")["hours"].min()


def spearman_il6_crp(result: SimulationResult, obs: pd.DataFrame) -> tuple[float, int]:
    lat = result.latent.set_index("patient_id")
    in_house = [s.name for s in result.params.sites if s.il6_delay_h[1] <= IN_HOUSE_IL6_MAX_DELAY_H]
    lab = obs[obs["variable"].isin(["il6", "crp"])]
    lab = lab[lab["patient_id"].map(lat["site"]).isin(in_house)]
    start = lab["patient_id"].map(lat["onset_hours"])
    end = lab["patient_id"].map(lat["resolution_hours"]).fillna(np.inf)
    toci = lab["patient_id"].map(lat["tocilizumab_hours"]).fillna(np.inf)
    h = lab["hours"]
    d = lab[(h >= start) & (h <= end) & (h < toci)].assign(day=np.floor(h / 24.0))
    w = d.pivot_table(index=["patient_id", "day"], columns="variable", values="num", aggfunc="mean")
    w = w.dropna()
    return float(spearmanr(w["il6"], w["crp"]).statistic), int(len(w))


def measix_day0(obs: pd.DataFrame) -> pd.Series:
    pre = obs[(obs["hours"] <= 0) & obs["variable"].isin(["ldh", "crp", "platelets"])]
    last = pre.sort_values("hours").groupby(["patient_id", "variable"])["num"].last().unstack()
    return last["ldh"] * (last["crp"] / 10.0) / last["platelets"]


def landmark_frame(result: SimulationResult, landmark_h: float) -> pd.DataFrame:
    oc = result.tables["outcomes"].set_index("patient_id")
    tr = result.tables["truth"]
    t = tr[tr["landmark_h"] == landmark_h]
    g3 = t["patient_id"].map(oc["grade3_hours"])
    y = ((g3 > landmark_h) & (g3 <= result.horizon_h)).astype(int)
    return t.assign(y=y.to_numpy())


def calibration_table(result: SimulationResult, latent: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per target: quantity, product, target, lower, upper, achieved (realised
    cohort), latent (exact latent value where there is one), n, ok (achieved and latent
    both within [lower, upper])."""
    params = result.params
    t = result.tables
    obs = numeric_observations(t["observations"])
    oc = t["outcomes"].set_index("patient_id")
    product = t["patients"].set_index("patient_id")["product"]
    lat = latent if latent is not None else result.latent
    rows = []

    def add(quantity, prod, target, lo, hi, achieved, latent_value=np.nan, n=np.nan):
        ok = lo <= achieved <= hi and (not np.isfinite(latent_value) or lo <= latent_value <= hi)
        rows.append({"quantity": quantity, "product": prod, "target": target, "lower": lo,
                     "upper": hi, "achieved": achieved, "latent": latent_value, "n": n,
                     "ok": bool(ok)})  # fmt: skip

    grade = oc["crs_max_grade"].reindex(product.index)
    onset = onset_hours(obs)
    for p in params.products:
        m = (product == p.name).to_numpy()
        lm = (lat["product"] == p.name).to_numpy()
        n_p = int(m.sum())
        add("any-grade CRS rate", p.name, p.any_crs, p.any_crs - 0.03, p.any_crs + 0.03,
            float((grade[m] >= 1).mean()), float(lat["p_any_crs"][lm].mean()), n_p)  # fmt: skip
        add("grade >= 3 rate", p.name, p.grade3, p.grade3 - 0.03, p.grade3 + 0.03,
            float((grade[m] >= 3).mean()), float(lat["p_grade3"][lm].mean()), n_p)  # fmt: skip
        on = onset[onset.index.map(product) == p.name] / 24.0
        d = p.onset_median_h / 24.0
        add("median onset (days)", p.name, d, d - 1, d + 1, float(on.median()),
            result.median_onset_h[p.name] / 24.0, int(len(on)))  # fmt: skip
    rho, n_pairs = spearman_il6_crp(result, obs)
    add("Spearman(IL-6, CRP) same day during CRS", "all", 0.81, 0.7, 0.9, rho, n=n_pairs)
    me = measix_day0(obs).dropna()
    y = (oc["crs_max_grade"].reindex(me.index) >= 3).astype(int)
    add("m-EASIX day 0 AUROC for grade >= 3", "all", 0.80, 0.70, 0.82,
        float(roc_auc_score(y, me)), n=int(len(me)))  # fmt: skip
    f24 = landmark_frame(result, 24.0)
    add("oracle AUROC (true risk) at 24 h", "all", 0.90, 0.85, 0.95,
        float(roc_auc_score(f24["y"], f24["true_risk"])), n=int(len(f24)))  # fmt: skip
    g3 = oc["grade3_hours"].dropna()
    add("share of grade >= 3 events by 24 h", "all", 0.20, 0.0, 0.20, float((g3 <= 24).mean()),
        n=int(len(g3)))  # fmt: skip
    for L in sorted(t["truth"]["landmark_h"].unique()):
        f = landmark_frame(result, float(L))
        se = float(np.sqrt((f["true_risk"] * (1 - f["true_risk"])).sum()) / len(f))
        mean_risk = float(f["true_risk"].mean())
        add(f"calibration at {L:g} h: observed rate vs mean true risk (3.5 SE)", "all",
            mean_risk, mean_risk - 3.5 * se, mean_risk + 3.5 * se, float(f["y"].mean()),
            n=int(len(f)))  # fmt: skip
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "" if not np.isfinite(v) else f"{v:.3f}"
        return str(v)

    cols = ["quantity", "product", "target", "lower", "upper", "achieved", "latent", "n", "ok"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table[cols].iterrows():
        lines.append("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"
