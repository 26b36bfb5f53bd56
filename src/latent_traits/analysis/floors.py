"""Columns at floor or ceiling: every row within binomial noise of 0 (or of 1).

The noise rule: a score p measured on n examples is "within noise of 0" when p is at most
the upper end of the exact (Clopper-Pearson) interval at `level` for 0 successes in n, i.e.
p <= 1 - ((1 - level) / 2) ** (1 / n) (about 3.7 / n at 95%: 0.109 at n = 32, 0.018 at
n = 200). Within noise of 1 is the mirror image. A task is at floor (ceiling) when every row
of its column is; a row whose n is unknown (e.g. a W&B run that logged no count) counts only
at exactly 0 (1); a column with a score outside [0, 1] is not a share and never flagged. Such
a column carries no signal about which adapter does what, so the PCA leaves it out by default
(analysis.floor_ceiling=exclude|keep).
"""

from __future__ import annotations

import math

import pandas as pd

POLICIES = ("exclude", "keep")


def noise_bound(n: float, level: float = 0.95) -> float:
    """Largest score still within noise of 0 at n examples (0 when n is unknown)."""
    if not (isinstance(n, int | float) and math.isfinite(n) and n >= 1):
        return 0.0
    return 1.0 - ((1.0 - level) / 2.0) ** (1.0 / n)


def floor_ceiling(matrix: pd.DataFrame, counts: pd.DataFrame, level: float = 0.95) -> dict[str, str]:
    """{task: why it is at floor or ceiling} for the columns where every row is."""
    found = {}
    for task in matrix.columns:
        scores, ns = matrix[task], counts[task] if task in counts else pd.Series(dtype=float)
        bounds = [noise_bound(ns.get(row, math.nan), level) for row in scores.index]
        if scores.isna().any() or len(scores) == 0 or not scores.between(0.0, 1.0).all():
            continue  # not a share of examples: the binomial rule does not apply
        near = {side: values for side, values in (("floor", scores.to_numpy()),
                                                  ("ceiling", 1.0 - scores.to_numpy()))
                if all(x <= b + 1e-12 for x, b in zip(values, bounds, strict=True))}
        if len(near) == 2:  # n so small that no score is told apart from 0 or from 1
            found[task] = (f"at floor and ceiling: n={_n_text(ns)} is too small to tell any score "
                           f"from 0 or 1 (noise bound {max(bounds):.3f})")
        elif near:
            side, values = next(iter(near.items()))
            target, what = ("0", "successes") if side == "floor" else ("1", "failures")
            found[task] = (f"at {side}: every row is within binomial noise of {target} (largest "
                           f"distance {max(values):.3f}; the noise bound at n={_n_text(ns)} is "
                           f"{max(bounds):.3f}, the {level:.0%} exact upper bound for 0 {what})")
    return found


def _n_text(ns: pd.Series) -> str:
    finite = ns.dropna()
    if finite.empty:
        return "unknown"
    low, high = int(finite.min()), int(finite.max())
    return str(low) if low == high else f"{low}-{high}"
