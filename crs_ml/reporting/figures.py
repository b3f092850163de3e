"""Figures for runs and reports: ROC, precision-recall, calibration, decision curve, SHAP.

Every function returns a matplotlib Figure (Agg backend, no screen needed) and shows only
aggregates: curves, binned rates and feature-level SHAP distributions, never an identifier.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd

from crs_ml.evaluation import metrics as M


def pyplot():
    """matplotlib.pyplot on the Agg backend (imported on first use: matplotlib is slow)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def roc_figure(y: np.ndarray, risks: dict[str, np.ndarray], title: str = "ROC"):
    """ROC curves of several risk scores on the same rows, AUROC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    for name, p in risks.items():
        ok = np.isfinite(p)
        if len(np.unique(y[ok])) < 2:
            continue
        fpr, tpr, _ = roc_curve(y[ok], p[ok])
        ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUROC {roc_auc_score(y[ok], p[ok]):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def pr_figure(y: np.ndarray, risks: dict[str, np.ndarray], title: str = "Precision-recall"):
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    for name, p in risks.items():
        ok = np.isfinite(p)
        if len(np.unique(y[ok])) < 2:
            continue
        prec, rec, _ = precision_recall_curve(y[ok], p[ok])
        ax.plot(
            rec, prec, lw=1.8, label=f"{name} (AUPRC {average_precision_score(y[ok], p[ok]):.3f})"
        )
    ax.axhline(float(np.mean(y)), ls="--", c="grey", lw=1, label=f"event rate {np.mean(y):.3f}")
    ax.set(
        xlabel="recall (sensitivity)",
        ylabel="precision (PPV)",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def calibration_figure(
    y: np.ndarray, p, n_bins: int = 10, title: str = "Calibration", smooth: bool | None = None
):
    """Observed rate per bin of predicted risk (Wilson 95% CI) against the bin's mean risk.

    ``p`` is one risk, or several on the same rows as ``{label: risk}`` (e.g. before / after a
    recalibration). One risk also gets a spline-smoothed curve (``smooth``, default on for one
    risk). Bins are quantiles of the risk (deciles by default).
    """
    curves = p if isinstance(p, dict) else {"deciles of risk" if n_bins == 10 else "binned": p}
    smooth = len(curves) == 1 if smooth is None else smooth
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    top = 0.05
    for (label, risk), marker in zip(curves.items(), "os^dv", strict=False):
        bins = M.calibration_curve_binned(y, risk, n_bins=n_bins)
        yerr = np.clip(
            [bins["observed"] - bins["ci_lo"], bins["ci_hi"] - bins["observed"]], 0, None
        )
        ax.errorbar(
            bins["mean_predicted"], bins["observed"], yerr=yerr,
            fmt=marker if len(curves) == 1 else marker + "-", ms=4, capsize=2, lw=1.2,
            label=f"{label} (95% CI)",
        )  # fmt: skip
        top = max(top, float(bins["mean_predicted"].max()), float(bins["ci_hi"].max()))
        if smooth:
            try:
                grid, fitted = M.calibration_curve_smooth(y, risk)
                ax.plot(grid, fitted, lw=1.8, label="smoothed (spline)")
            except Exception:  # a smoother can fail on tiny or one-class data; the bins stand
                pass
    top *= 1.05
    ax.plot([0, top], [0, top], ls="--", c="grey", lw=1, label="ideal")
    ax.set(xlabel="predicted risk", ylabel="observed rate", title=title)
    ax.set(xlim=(0, top), ylim=(0, top))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def incidence_by_band_figure(curves: dict[str, dict], title: str = "Observed incidence"):
    """Observed cumulative incidence of grade >= 3 (Aalen-Johansen, death competing,
    censored weighted) over hours since infusion, one step curve per risk band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4), dpi=110)
    for name, c in curves.items():
        label = f"{name} (n = {c['n']}, mean predicted {c['mean_risk']:.2f})"
        ax.step(c["hours"], c["cumulative_incidence"], where="post", lw=1.6, label=label)
    ax.set(xlabel="hours since infusion", ylabel="cumulative incidence of grade >= 3",
           title=title, ylim=(0, None))  # fmt: skip
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def decision_curve_figure(net_benefit: list[dict], title: str = "Decision curve"):
    """Net benefit of the model against treat-all and treat-none (Vickers & Elkin 2006)."""
    plt = pyplot()
    nb = pd.DataFrame(net_benefit)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    ax.plot(nb["threshold"], nb["net_benefit_model"], lw=1.8, marker="o", ms=3, label="model")
    ax.plot(nb["threshold"], nb["net_benefit_treat_all"], lw=1.2, c="grey", label="treat all")
    ax.axhline(0, lw=1.2, ls="--", c="black", label="treat none")
    model = nb["net_benefit_model"].to_numpy(dtype=float)
    top = max(float(np.nanmax(nb[["net_benefit_model", "net_benefit_treat_all"]])), 0.01)
    bottom = min(float(np.nanmin(model)), 0.0)  # treat-all may run far below: clipped
    pad = 0.08 * (top - bottom)
    ax.set(xlabel="threshold probability", ylabel="net benefit", title=title)
    ax.set(xlim=(float(nb["threshold"].min()) - 0.01, float(nb["threshold"].max()) + 0.01))
    ax.set(ylim=(bottom - pad, top + pad))
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def shap_summary_figure(
    contributions: np.ndarray,
    X: pd.DataFrame,
    labels: dict[str, str] | None = None,
    top: int = 15,
    title: str = "SHAP summary",
):
    """Beeswarm-style summary: per feature, SHAP value (log-odds) coloured by feature value."""
    plt = pyplot()
    labels = labels or {}
    contrib = np.asarray(contributions)[:, : X.shape[1]]
    order = np.argsort(-np.abs(contrib).mean(axis=0))[:top][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(order) + 1.5), dpi=110)
    rng = np.random.default_rng(0)
    for row, j in enumerate(order):
        values = X.iloc[:, j].to_numpy(dtype=float)
        finite = np.isfinite(values)
        colour = np.full(len(values), 0.5)
        if finite.sum() > 1:
            lo, hi = np.nanpercentile(values, [5, 95])
            colour[finite] = np.clip((values[finite] - lo) / (hi - lo + 1e-12), 0, 1)
        jitter = rng.uniform(-0.3, 0.3, len(values))
        ax.scatter(
            contrib[:, j], row + jitter, c=colour, cmap="coolwarm", s=6, alpha=0.6, linewidths=0
        )
        ax.scatter(
            contrib[~finite, j], row + jitter[~finite], c="lightgrey", s=6, alpha=0.6, linewidths=0
        )
    names = [labels.get(X.columns[j], X.columns[j]) for j in order]
    ax.set_yticks(range(len(order)), names, fontsize=8)
    ax.axvline(0, c="grey", lw=1)
    ax.set(xlabel="SHAP value (log-odds of grade >= 3 CRS)", title=title)
    sm = plt.cm.ScalarMappable(cmap="coolwarm")
    cbar = fig.colorbar(sm, ax=ax, pad=0.01, ticks=[0, 1])
    cbar.ax.set_yticklabels(["low", "high"])
    cbar.set_label("feature value (grey = missing)", fontsize=8)
    fig.tight_layout()
    return fig


def save(fig, path) -> None:
    """Save without identifying metadata (matplotlib writes its version only)."""
    fig.savefig(path, metadata={"Software": None} if str(path).endswith(".png") else None)
    pyplot().close(fig)


def data_uri(fig) -> str:
    """A matplotlib figure as a base64 PNG data URI (figure closed afterwards)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
