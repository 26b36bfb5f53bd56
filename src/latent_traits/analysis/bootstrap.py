"""Uncertainty by bootstrap over evaluation examples.

Each resample draws a task's evaluation examples with replacement and recomputes every
cell's score from the per-example ``correct`` values of its predictions file. Where all rows
of a task were scored on the same example ids (the normal case), the same draw is applied to
every row (a paired bootstrap: base and adapters see the same resampled test set, so deltas
get honest, narrower intervals); otherwise each cell is resampled on its own. Every resample
goes through the same view and PCA as the point estimate; bootstrap components are matched
to the point estimate's by absolute cosine (Hungarian assignment) and flipped to agree in
sign before explained-variance ratios and loadings are summarised, so a component that swaps
rank or sign in a resample is still compared with its own counterpart. Intervals are
percentile intervals at ``level``.

Cells without usable predictions (W&B cells, imputed cells, or a predictions file whose
mean ``correct`` does not reproduce the record's score) keep their point value in every
resample and get no interval of their own; imputed cells follow their task's resampled mean.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from latent_traits.eval.records import PREDICTIONS_FIX, primary_score
from latent_traits.io import read_jsonl

from . import matrix as mx

log = logging.getLogger(__name__)
SCORE_TOLERANCE = 1e-6


@dataclass
class Replicates:
    """Bootstrap replicates of the score matrix: values (B, rows, tasks) on `matrix`'s axes."""

    values: np.ndarray
    has_ci: pd.DataFrame  # bool per cell: resampled from its own predictions
    level: float

    def interval(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        alpha = 1.0 - self.level
        return (np.quantile(data, alpha / 2, axis=0), np.quantile(data, 1 - alpha / 2, axis=0))


def read_correct(path: str) -> dict[str, float]:
    """{example id: 1.0 | 0.0} of a predictions file; rows without a verdict are dropped."""
    out = {}
    for i, row in enumerate(read_jsonl(path, fix=PREDICTIONS_FIX)):
        if row.get("correct") is not None:
            out[str(row.get("id", i))] = float(bool(row["correct"]))
    return out


def _usable(record: dict[str, Any]) -> dict[str, float] | None:
    path = record.get("_predictions")
    if not path:
        return None
    correct = read_correct(path)
    if not correct:
        return None
    mean = float(np.mean(list(correct.values())))
    if abs(mean - primary_score(record)) > SCORE_TOLERANCE:
        log.warning("%s: mean `correct` %.4f != score %.4f; this cell gets no interval",
                    path, mean, primary_score(record))
        return None
    return correct


def resample_task(
    found: dict[Any, dict[str, float]], n_resamples: int, rng: np.random.Generator
) -> dict[Any, np.ndarray]:
    """Resampled scores (n_resamples,) per row of one task, from {row: {example id: correct}}:
    paired when every row has the same example ids, else each row on its own (a binomial
    draw, which is exactly the bootstrap of a 0/1 mean)."""
    if not found:
        return {}
    ids = [sorted(c) for c in found.values()]
    if all(x == ids[0] for x in ids):  # paired: one draw of examples for every row
        n = len(ids[0])
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples)
        table = np.array([[found[i][k] for k in ids[0]] for i in found])
        return dict(zip(found, (counts @ table.T / n).T, strict=True))
    out = {}
    for i, correct in found.items():
        values = np.fromiter(correct.values(), float)
        if np.isin(values, (0.0, 1.0)).all():
            out[i] = rng.binomial(len(values), values.mean(), size=n_resamples) / len(values)
        else:
            out[i] = values[rng.integers(0, len(values), (n_resamples, len(values)))].mean(1)
    return out


def resample_matrix(
    matrix: pd.DataFrame,
    cells: list[dict[str, Any]],
    n_resamples: int,
    seed: int = 0,
    level: float = 0.95,
    imputed: list[tuple[str, str]] | None = None,
) -> Replicates | None:
    """Bootstrap replicates of `matrix` (rows x tasks); None when no cell has predictions."""
    rng = np.random.default_rng(seed)
    by_cell = {(mx.cell_row(r), r["task"]["name"]): r for r in cells}
    rows, tasks = list(matrix.index), list(matrix.columns)
    values = np.broadcast_to(matrix.to_numpy(float), (n_resamples, *matrix.shape)).copy()
    has_ci = pd.DataFrame(False, index=matrix.index, columns=matrix.columns)
    imputed = set(imputed or [])
    for j, task in enumerate(tasks):
        found = {}
        for i, row in enumerate(rows):
            record = by_cell.get((row, task))
            if record is not None and (row, task) not in imputed:
                correct = _usable(record)
                if correct is not None:
                    found[i] = correct
        for i, scores in resample_task(found, n_resamples, rng).items():
            values[:, i, j] = scores
            has_ci.iat[i, j] = True
    if not has_ci.to_numpy().any():
        return None
    for row, task in imputed:  # an imputed cell follows its task's resampled mean
        i, j = rows.index(row), tasks.index(task)
        observed = [k for k, r in enumerate(rows) if (r, task) not in imputed]
        values[:, i, j] = values[:, observed, j].mean(axis=1)
    return Replicates(values=values, has_ci=has_ci, level=level)


def view_replicates(reps: Replicates, matrix: pd.DataFrame, view: str) -> np.ndarray:
    """Replicates of the PCA input: adapter rows (raw) or adapter rows minus their base."""
    rows = list(matrix.index)
    adapters = [i for i, r in enumerate(rows) if not mx.is_base(r)]
    out = reps.values[:, adapters, :]
    if view == "delta":
        bases = [rows.index(mx.base_of(rows[i])) for i in adapters]
        out = out - reps.values[:, bases, :]
    return out


def batched_pca(x: np.ndarray, center: bool, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Principal axes (B, m, tasks) and explained-variance ratios (B, m) of a stack of
    matrices (B, rows, tasks), preprocessed as `pca.fit_pca` does."""
    if center:
        x = x - x.mean(axis=1, keepdims=True)
    if standardize:
        std = x.std(axis=1, keepdims=True) if center else np.sqrt((x**2).mean(1, keepdims=True))
        x = x / np.where(std > 0, std, 1.0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    power = s**2
    ratio = power / np.maximum(power.sum(axis=1, keepdims=True), 1e-300)
    m = min(x.shape[1] - 1 if center else x.shape[1], x.shape[2])
    return vt[:, :m], ratio[:, :m]


def align_components(
    components: np.ndarray, ratios: np.ndarray, reference: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Match each reference component (k, tasks) to one bootstrap component by largest total
    |cosine|, flip it to a positive cosine; returns loadings (B, k, tasks), ratios (B, k)."""
    n, k = len(components), len(reference)
    loadings, matched = np.empty((n, k, reference.shape[1])), np.empty((n, k))
    cosine = np.einsum("bmt,kt->bkm", components, reference)
    for b in range(n):
        ref_idx, comp_idx = linear_sum_assignment(-np.abs(cosine[b]))
        signs = np.sign(cosine[b, ref_idx, comp_idx])
        signs[signs == 0] = 1.0
        loadings[b, ref_idx] = components[b, comp_idx] * signs[:, None]
        matched[b, ref_idx] = ratios[b, comp_idx]
    return loadings, matched


def pca_intervals(reps: Replicates, matrix: pd.DataFrame, pca: Any, view: str) -> dict:
    """Intervals of every explained-variance ratio and every loading of `pca` (a PCAResult)."""
    x = view_replicates(reps, matrix, view)
    components, ratios = batched_pca(x, pca.center, pca.standardize)
    reference = pca.loadings.to_numpy()
    if components.shape[1] < len(reference):
        return {}
    loadings, matched = align_components(components, ratios, reference)
    lo_r, hi_r = reps.interval(matched)
    lo_l, hi_l = reps.interval(loadings)
    lo_c, hi_c = reps.interval(np.cumsum(matched, axis=1))
    names, tasks = pca.loadings.index, pca.loadings.columns
    return {
        "ratio_low": pd.Series(lo_r, index=names),
        "ratio_high": pd.Series(hi_r, index=names),
        "cumulative_low": pd.Series(lo_c, index=names),  # share of the first k components
        "cumulative_high": pd.Series(hi_c, index=names),
        "loadings_low": pd.DataFrame(lo_l, index=names, columns=tasks),
        "loadings_high": pd.DataFrame(hi_l, index=names, columns=tasks),
        "cosine": pd.Series(np.abs(np.einsum("bkt,kt->bk", loadings, reference)).mean(0),
                            index=names),
    }


def cell_intervals(reps: Replicates, matrix: pd.DataFrame, delta: pd.DataFrame | None) -> dict:
    """Interval tables (low, high) for the raw matrix and for the delta view."""
    lo, hi = reps.interval(reps.values)
    mask = ~reps.has_ci.to_numpy()
    lo[mask], hi[mask] = np.nan, np.nan
    out = {"matrix": (pd.DataFrame(lo, index=matrix.index, columns=matrix.columns),
                      pd.DataFrame(hi, index=matrix.index, columns=matrix.columns))}
    if delta is not None:
        d = view_replicates(reps, matrix, "delta")
        dlo, dhi = reps.interval(d)
        rows = list(matrix.index)
        own = reps.has_ci.to_numpy()
        adapters = [i for i, r in enumerate(rows) if not mx.is_base(r)]
        bases = [rows.index(mx.base_of(rows[i])) for i in adapters]
        dmask = ~(own[adapters] | own[bases])
        dlo[dmask], dhi[dmask] = np.nan, np.nan
        out["delta"] = (pd.DataFrame(dlo, index=delta.index, columns=delta.columns),
                        pd.DataFrame(dhi, index=delta.index, columns=delta.columns))
    return out


def long_intervals(point: pd.DataFrame, low: pd.DataFrame, high: pd.DataFrame,
                   value: str) -> pd.DataFrame:
    """A point table and its interval tables as one long table (row, column, value, low, high)."""
    out = point.stack().rename(value).to_frame()
    out["low"], out["high"] = low.stack(), high.stack()
    return out.reset_index()
