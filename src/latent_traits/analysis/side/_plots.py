"""Figure helpers of the side analyses (matplotlib Agg, no pyplot state; PNG bytes out)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from latent_traits.analysis.figures import png_bytes

__all__ = ["grid", "png_bytes", "signed_heatmap", "short"]


def grid(n_rows: int, n_cols: int, panel: tuple[float, float] = (2.8, 2.1),
         title: str | None = None) -> tuple[Figure, np.ndarray]:
    """A figure of n_rows x n_cols panels; axes always a 2-D array."""
    fig = Figure(figsize=(0.8 + panel[0] * n_cols, 0.6 + panel[1] * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    if title:
        fig.suptitle(title)
    fig.set_layout_engine("constrained")
    return fig, axes


def short(name: str, width: int = 28) -> str:
    """A row or column name short enough for a panel title."""
    return name if len(name) <= width else name[: width - 1] + "…"


def signed_heatmap(ax, frame: pd.DataFrame, title: str, bound: float | None = None,
                   fmt: str = "{:+.2f}") -> None:
    """Annotated blue-white-red heatmap of a table on `ax`, centred on zero."""
    values = frame.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if bound is None:
        bound = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    image = ax.imshow(values, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound), aspect="auto")
    ax.set_xticks(range(values.shape[1]), [short(str(c), 14) for c in frame.columns],
                  rotation=45, ha="right")
    ax.set_yticks(range(values.shape[0]), [short(str(i), 14) for i in frame.index])
    ax.set_title(title)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if abs(values[i, j]) > 0.6 * bound else "black")
    ax.figure.colorbar(image, ax=ax, shrink=0.8)
