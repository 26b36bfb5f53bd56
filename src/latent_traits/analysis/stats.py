"""Small statistics shared by the side analyses and the findings: summaries, permutation tests,
divergences, multiple-testing control."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import norm, rankdata


def describe(values: Sequence[float]) -> dict[str, float]:
    """n, median, mean, p10, p90 of a sample (NaNs for an empty one)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return {"n": 0, "median": math.nan, "mean": math.nan, "p10": math.nan, "p90": math.nan}
    return {"n": int(x.size), "median": float(np.median(x)), "mean": float(x.mean()),
            "p10": float(np.quantile(x, 0.1)), "p90": float(np.quantile(x, 0.9))}


def permutation_spearman(x: Sequence[float], y: Sequence[float], n_permutations: int,
                         seed: int) -> dict[str, Any]:
    """Spearman's rho of x and y and its two-sided permutation p-value: the share of seeded
    shuffles of y whose |rho| reaches the observed one, (1 + hits) / (1 + n) so p > 0."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    out: dict[str, Any] = {"n": int(x.size), "rho": None, "p_value": None,
                           "n_permutations": int(n_permutations), "seed": int(seed)}
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        out["note"] = f"needs at least 3 points that vary in both variables (has {x.size})"
        return out
    rx, ry = rankdata(x), rankdata(y)  # Spearman = Pearson of ranks (ties averaged)
    rho = _corr(rx, ry)
    out["rho"] = float(rho)
    if n_permutations > 0:
        rng = np.random.default_rng(seed)
        shuffled = np.stack([rng.permutation(ry) for _ in range(n_permutations)])
        null = np.array([_corr(rx, row) for row in shuffled])
        out["p_value"] = float((1 + np.sum(np.abs(null) >= abs(rho) - 1e-12)) / (1 + n_permutations))
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denominator if denominator > 0 else 0.0


def js_distance(p: dict[str, float], q: dict[str, float], labels: Sequence[str]) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two label distributions over `labels`."""
    a = np.array([p.get(label, 0.0) for label in labels], dtype=float)
    b = np.array([q.get(label, 0.0) for label in labels], dtype=float)
    if a.sum() <= 0 or b.sum() <= 0:
        return math.nan
    return float(jensenshannon(a / a.sum(), b / b.sum(), base=2))


def shares(counts: dict[str, float], labels: Sequence[str]) -> dict[str, float]:
    """Counts over `labels` as shares summing to 1 (labels outside are dropped)."""
    total = sum(float(counts.get(label, 0.0)) for label in labels)
    return {label: (float(counts.get(label, 0.0)) / total if total else math.nan)
            for label in labels}


def normalised_entropy(dist: dict[str, float]) -> float:
    """Entropy of a distribution over its labels divided by log(#labels): 1 = balanced."""
    p = np.array([v for v in dist.values() if v > 0], dtype=float)
    if len(dist) < 2 or p.sum() <= 0:
        return math.nan
    p = p / p.sum()
    return float(-(p * np.log(p)).sum() / math.log(len(dist)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error), in the input order."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def two_sided_z(z: float) -> float:
    return float(2 * norm.sf(abs(z)))


def finite_or_none(value: Any) -> Any:
    """A JSON-able float: NaN and inf become None, numpy scalars plain floats."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
