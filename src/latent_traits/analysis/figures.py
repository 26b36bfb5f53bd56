"""Figures of the report, rendered to PNG bytes with matplotlib's Agg canvas (no display,
no global pyplot state), so the same bytes go to a .png file and into the HTML page."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

DPI = 110


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def heatmap_png(
    frame: pd.DataFrame, title: str, *, diverging: bool = False, fmt: str = "{:.2f}"
) -> bytes:
    """Annotated heatmap of a table; `diverging` centres the colours on zero (blue-white-red)."""
    values = frame.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    fig = Figure(figsize=(1.5 + 0.85 * n_cols, 1.2 + 0.45 * n_rows))
    ax = fig.add_subplot()
    finite = values[np.isfinite(values)]
    if diverging:
        bound = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
        image = ax.imshow(values, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound))
    else:
        image = ax.imshow(values, cmap="viridis")
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
            if diverging:
                dark = abs(value) > 0.6 * max(abs(lo), abs(hi)) if np.isfinite(value) else False
            else:
                dark = np.isfinite(value) and value < lo + 0.5 * (hi - lo)
            ax.text(
                j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black"
            )
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _png(fig)


def scree_png(explained: pd.DataFrame) -> bytes:
    """Explained variance ratio per component (bars) and its cumulative sum (line)."""
    names = [str(i) for i in explained.index]
    fig = Figure(figsize=(max(4.0, 1.0 + 0.6 * len(names)), 3.4))
    ax = fig.add_subplot()
    ax.bar(names, explained["explained_variance_ratio"], color="tab:blue", label="per component")
    ax.plot(names, explained["cumulative"], color="tab:orange", marker="o", label="cumulative")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("component")
    ax.set_ylabel("explained variance ratio")
    ax.set_title("Scree plot")
    ax.legend(loc="center right")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)
