"""Figures for runs and reports: ROC, precision-recall, calibration, SHAP summary.

Every function returns a matplotlib Figure (Agg backend, no screen needed) and shows only
aggregates: curves, binned rates and feature-level SHAP distributions, never an identifier.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def roc_figure(y: np.ndarray, risks: dict[str, np.ndarray], title: str = "ROC"):
    """ROC curves of several risk scores on the same rows, AUROC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
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

    plt = _plt()
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


def calibration_figure(y: np.ndarray, p: np.ndarray, n_bins: int = 10, title: str = "Calibration"):
    """Binned observed rate (Wilson 95% CI) against mean predicted risk, plus a smooth curve."""
    from crs_ml.evaluation import metrics as M

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    bins = M.calibration_curve_binned(y, p, n_bins=n_bins)
    top = float(max(np.nanmax(p), bins["observed"].max(), 0.05)) * 1.05
    ax.plot([0, top], [0, top], ls="--", c="grey", lw=1, label="ideal")
    lo = np.clip(bins["observed"] - bins["ci_lo"], 0, None)  # rounding can cross 0
    hi = np.clip(bins["ci_hi"] - bins["observed"], 0, None)
    ax.errorbar(
        bins["mean_predicted"],
        bins["observed"],
        yerr=[lo, hi],
        fmt="o",
        ms=4,
        capsize=2,
        label="binned (95% CI)",
    )
    try:
        grid, smooth = M.calibration_curve_smooth(y, p)
        ax.plot(grid, smooth, lw=1.8, label="smoothed")
    except Exception:  # a smoother can fail on tiny or one-class data; the bins still stand
        pass
    ax.set(
        xlabel="predicted risk", ylabel="observed rate", title=title, xlim=(0, top), ylim=(0, top)
    )
    ax.legend(loc="upper left", fontsize=8)
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
    plt = _plt()
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
    _plt().close(fig)
