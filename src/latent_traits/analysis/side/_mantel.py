"""The Mantel test: does one square matrix over a set of items correlate with another?

The statistic is the correlation (Pearson or Spearman) of the two matrices' off-diagonal
entries. Its null distribution comes from relabelling the items of one matrix: the same
permutation applied to its rows and its columns together, which keeps each matrix's internal
structure and breaks only the correspondence between them. Neither matrix needs to be
symmetric (a transfer matrix is not). The p-value is one-sided (a positive association):
with random permutations, (1 + #{r_perm >= r}) / (1 + permutations); when n! is at most the
number of permutations asked for, every permutation is enumerated and the p-value is exact,
#{r_perm >= r} / n! (the identity included).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from latent_traits.errors import LatentTraitsError

METHODS = ("pearson", "spearman")
TIE_TOLERANCE = 1e-12  # a permuted statistic equal to the observed one counts as at least as large


@dataclass(frozen=True)
class MantelResult:
    r: float  # correlation of the off-diagonal entries
    p_value: float  # one-sided, H1: positive association
    n_items: int
    n_pairs: int  # off-diagonal entries used (finite in both matrices)
    permutations: int  # permutations drawn (or enumerated, when exact)
    exact: bool
    method: str

    def to_dict(self) -> dict:
        return asdict(self)


def _as_square(matrix: pd.DataFrame | np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(matrix, dtype=float)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise LatentTraitsError(f"Mantel test: {name} must be a square matrix, got shape {values.shape}")
    return values


def _correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of x with the vector y (nan where x's row is constant)."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean()
    denominator = np.sqrt((xc**2).sum(axis=-1) * (yc**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc @ yc) / denominator


def _permutations(n: int, permutations: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    if math.factorial(n) <= permutations:
        return np.array(list(itertools.permutations(range(n)))), True
    return np.array([rng.permutation(n) for _ in range(permutations)]), False


def mantel_test(
    a: pd.DataFrame | np.ndarray,
    b: pd.DataFrame | np.ndarray,
    permutations: int = 999,
    seed: int = 0,
    method: str = "spearman",
) -> MantelResult:
    """Correlation of the off-diagonal entries of `a` and `b` (same items, same order) and its
    one-sided permutation p-value. Entries that are NaN in either matrix are left out, under
    every permutation. DataFrames must carry the same labels in the same order."""
    if method not in METHODS:
        raise LatentTraitsError(f"Mantel test: method={method!r} is not one of {METHODS}")
    if permutations < 1:
        raise LatentTraitsError("Mantel test: permutations must be >= 1")
    if isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame):
        if list(a.index) != list(b.index) or list(a.columns) != list(b.columns) \
                or list(a.index) != list(a.columns):
            raise LatentTraitsError(
                "Mantel test: both matrices need the same items as rows and columns, in the same "
                f"order; got rows {list(a.index)} / {list(b.index)}, columns {list(a.columns)} / "
                f"{list(b.columns)}")
    x, y = _as_square(a, "the first matrix"), _as_square(b, "the second matrix")
    if x.shape != y.shape:
        raise LatentTraitsError(f"Mantel test: shapes differ, {x.shape} vs {y.shape}")
    n = x.shape[0]
    if n < 3:
        raise LatentTraitsError(f"Mantel test: needs at least 3 items, got {n}")
    off = ~np.eye(n, dtype=bool)
    rng = np.random.default_rng(seed)
    perms, exact = _permutations(n, permutations, rng)
    permuted = x[perms[:, :, None], perms[:, None, :]]  # (P, n, n): rows and columns together
    if np.isfinite(x).all():
        # every permutation keeps the same valid entries of y: one vectorised pass
        valid = off & np.isfinite(y)
        y_values = _rank_if(y[valid], method)
        stats = _correlation(_rank_if(permuted[:, valid], method), y_values)
        observed = float(_correlation(_rank_if(x[valid], method)[None], y_values)[0])
    else:
        stats = np.array([_masked_correlation(p, y, off, method) for p in permuted])
        observed = _masked_correlation(x, y, off, method)
    n_pairs = int((off & np.isfinite(x) & np.isfinite(y)).sum())
    if not np.isfinite(observed):
        return MantelResult(float("nan"), float("nan"), n, n_pairs, len(perms), exact, method)
    at_least = int(np.sum(stats >= observed - TIE_TOLERANCE))  # nan (constant) never counts
    if exact:
        p_value = at_least / len(perms)
    else:
        p_value = (1 + at_least) / (1 + len(perms))
    return MantelResult(float(observed), float(p_value), n, n_pairs, len(perms), exact, method)


def _rank_if(values: np.ndarray, method: str) -> np.ndarray:
    """Ranks along the last axis for Spearman (Pearson of ranks); the values for Pearson."""
    return rankdata(values, axis=-1) if method == "spearman" else values


def _masked_correlation(x: np.ndarray, y: np.ndarray, off: np.ndarray, method: str) -> float:
    keep = off & np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return float("nan")
    return float(_correlation(_rank_if(x[keep], method)[None], _rank_if(y[keep], method))[0])
