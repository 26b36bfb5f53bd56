"""Figures of the report, rendered to PNG bytes with matplotlib's Agg canvas (no display,
no global pyplot state), so the same bytes go to a .png file and into the HTML page."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

DPI = 110


def png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def heatmap_png(
    frame: pd.DataFrame,
    title: str,
    *,
    diverging: bool = False,
    fmt: str = "{:.2f}",
    low: pd.DataFrame | None = None,
    high: pd.DataFrame | None = None,
    marked: list[tuple[str, str]] | None = None,
) -> bytes:
    """Annotated heatmap of a table; `diverging` centres the colours on zero (blue-white-red).
    With `low`/`high`, each cell also shows its interval; `marked` cells (e.g. imputed) get
    a hatched frame and an asterisk."""
    values = frame.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    ci = low is not None and high is not None
    lows = low.reindex_like(frame).to_numpy(float) if ci else None
    highs = high.reindex_like(frame).to_numpy(float) if ci else None
    marked_idx = {(list(frame.index).index(r), list(frame.columns).index(c))
                  for r, c in (marked or []) if r in frame.index and c in frame.columns}
    fig = Figure(figsize=(1.8 + (1.5 if ci else 0.85) * n_cols,
                          1.4 + (0.62 if ci else 0.45) * n_rows))
    ax = fig.add_subplot()
    finite = values[np.isfinite(values)]
    if diverging:
        bound = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
        image = ax.imshow(values, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound), aspect="auto")
    else:
        image = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(n_cols), [str(c) for c in frame.columns], rotation=45, ha="right")
    ax.set_yticks(range(n_rows), [str(i) for i in frame.index])
    ax.set_xlabel(frame.columns.name or "")
    ax.set_ylabel(frame.index.name or "")
    ax.set_title(title)
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    for i in range(n_rows):
        for j in range(n_cols):
            value = values[i, j]
            text = "n/a" if not np.isfinite(value) else fmt.format(value)
            if ci and np.isfinite(lows[i, j]):
                text += "\n[" + fmt.format(lows[i, j]) + "," + fmt.format(highs[i, j]) + "]"
            if (i, j) in marked_idx:
                text += "*"
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//",
                                       edgecolor="grey", linewidth=0))
            if diverging:
                dark = abs(value) > 0.6 * max(abs(lo), abs(hi)) if np.isfinite(value) else False
            else:
                dark = np.isfinite(value) and value < lo + 0.5 * (hi - lo)
            ax.text(
                j, i, text, ha="center", va="center", fontsize=7 if ci else 8,
                color="white" if dark else "black",
            )
    fig.colorbar(image, ax=ax, shrink=0.8)
    return png_bytes(fig)


def scree_png(
    explained: pd.DataFrame, low: pd.Series | None = None, high: pd.Series | None = None,
    level: float | None = None,
) -> bytes:
    """Explained variance ratio per component (bars, with bootstrap intervals when given)
    and its cumulative sum (line)."""
    names = [str(i) for i in explained.index]
    ratio = explained["explained_variance_ratio"].to_numpy(float)
    fig = Figure(figsize=(max(4.0, 1.0 + 0.6 * len(names)), 3.4))
    ax = fig.add_subplot()
    err = None
    if low is not None and high is not None:
        lo, hi = low.reindex(explained.index).to_numpy(), high.reindex(explained.index).to_numpy()
        err = np.vstack([np.clip(ratio - lo, 0, None), np.clip(hi - ratio, 0, None)])
    label = "per component" + (f" ({level:.0%} interval)" if err is not None and level else "")
    ax.bar(names, ratio, color="tab:blue", label=label, yerr=err, capsize=4,
           error_kw={"ecolor": "black", "elinewidth": 1})
    ax.plot(names, explained["cumulative"], color="tab:orange", marker="o", label="cumulative")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("component")
    ax.set_ylabel("explained variance ratio")
    ax.set_title("Scree plot")
    ax.legend(loc="best")
    ax.grid(axis="y", alpha=0.3)
    return png_bytes(fig)


def biplot_png(projections: pd.DataFrame, loadings: pd.DataFrame,
               names: list[str] | None = None) -> bytes:
    """Adapters as points on the first two traits, tasks as loading arrows (scaled to the
    points' spread)."""
    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot()
    pcs = list(projections.columns[:2])
    xy = projections[pcs].to_numpy(float)
    if len(pcs) == 1:
        xy = np.column_stack([xy[:, 0], np.zeros(len(xy))])
    ax.scatter(xy[:, 0], xy[:, 1], color="tab:blue", zorder=3)
    for (x, y), label in zip(xy, projections.index, strict=True):
        ax.annotate(str(label), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    arrows = loadings.loc[pcs].to_numpy(float).T
    if len(pcs) == 1:
        arrows = np.column_stack([arrows[:, 0], np.zeros(len(arrows))])
    # each axis scaled so the arrows span the points' range on it (components' variances
    # differ by orders of magnitude; one shared scale would hide the second axis' arrows)
    spread = np.abs(xy).max(axis=0) if xy.size else np.ones(2)
    spread = np.where(spread > 1e-9, spread, 1.0)  # no adapter moves on an axis: unit arrows
    scale = 0.9 * spread / np.maximum(np.abs(arrows).max(axis=0), 1e-12)
    # the axes hold the arrows and their labels too (annotations do not widen the limits; a
    # label far outside them, as when no adapter moves on an axis, breaks the text rasteriser)
    ax.update_datalim(1.1 * arrows * scale)
    for (dx, dy), task in zip(arrows * scale, loadings.columns, strict=True):
        ax.annotate("", xy=(dx, dy), xytext=(0, 0), annotation_clip=False,
                    arrowprops={"arrowstyle": "->", "color": "tab:red", "alpha": 0.7})
        ax.text(dx * 1.08, dy * 1.08, str(task), color="tab:red", fontsize=8,
                ha="center", va="center", clip_on=True)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    labels = [f"{pc}" + (f" ({names[i]})" if names else "") for i, pc in enumerate(pcs)]
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1] if len(labels) > 1 else "(one component only)")
    ax.set_title("Biplot: adapters (points), task loadings (arrows, scaled per axis)")
    ax.margins(0.15)
    return png_bytes(fig)


def transfer_png(summary: pd.DataFrame, k: int) -> bytes:
    """Held-out RMSE per task: traits vs the mean baseline."""
    names = [str(i) for i in summary.index]
    x = np.arange(len(names))
    fig = Figure(figsize=(max(4.5, 1.2 + 0.8 * len(names)), 3.4))
    ax = fig.add_subplot()
    ax.bar(x - 0.2, summary["rmse_traits"], 0.4, label=f"{k} trait(s)", color="tab:green")
    ax.bar(x + 0.2, summary["rmse_mean_baseline"], 0.4, label="mean baseline", color="tab:grey")
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel("held-out RMSE")
    ax.set_title("Transfer prediction (leave one task out; lower is better)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return png_bytes(fig)
