"""Transfer prediction: do the latent traits predict an adapter's score on a task they never saw?

For each task j (leave one task out) and each adapter i (leave one adapter out of the fit):
1. fit k traits (PCA, centred as the main analysis) on the matrix without column j;
2. regress column j on the k projections over the other adapters (least squares with an
   intercept) and predict adapter i's cell from its own projections;
3. the baseline predicts column j's mean over the other adapters.
The cell (i, j) never enters the fit that predicts it, and neither does the rest of column j
enter the traits. Errors are reported as RMSE per task and overall; skill = 1 - MSE(traits) /
MSE(baseline) is positive when the traits beat the mean.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import AnalysisError

RANK_TOLERANCE = 1e-8


def supported_k(n_adapters: int, n_tasks: int) -> int:
    """Most traits the leave-one-out fit supports: the regression on I - 1 adapters keeps at
    least two residual degrees of freedom over its k + 1 parameters (fewer makes the held-out
    prediction an extrapolation through a handful of points), and the centred PCA of the
    other N - 1 tasks has at most N - 1 axes."""
    return max(0, min(n_adapters - 4, n_tasks - 1))


def _traits(x: np.ndarray, k: int, standardize: bool) -> np.ndarray:
    x = x - x.mean(axis=0)
    if standardize:
        std = x.std(axis=0)
        x = x / np.where(std > 0, std, 1.0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    k = min(k, int((s > RANK_TOLERANCE * max(s[0], 1e-300)).sum()))  # no zero-variance traits
    return u[:, :k] * s[:k]


def loto_predictions(data: pd.DataFrame, k: int, standardize: bool = False) -> pd.DataFrame:
    """Long table (adapter, task, actual, predicted, baseline) of held-out predictions."""
    x = data.to_numpy(float)
    n, m = x.shape
    if k < 1 or k > supported_k(n, m):
        raise AnalysisError(
            f"transfer prediction with k={k} traits needs at least k + 4 adapters and k + 1 "
            f"tasks; the matrix has {n} adapters x {m} tasks (at most k={supported_k(n, m)})"
        )
    rows = []
    for j in range(m):
        proj = _traits(np.delete(x, j, axis=1), k, standardize)
        y = x[:, j]
        for i in range(n):
            keep = np.arange(n) != i
            design = np.column_stack([np.ones(n - 1), proj[keep]])
            coef, *_ = np.linalg.lstsq(design, y[keep], rcond=None)
            predicted = float(coef[0] + proj[i] @ coef[1:])
            rows.append((data.index[i], data.columns[j], y[i], predicted, y[keep].mean()))
    return pd.DataFrame(rows, columns=["adapter", "task", "actual", "predicted", "baseline"])


def transfer_summary(predictions: pd.DataFrame) -> pd.DataFrame:
    """RMSE of the traits and of the mean baseline per task and overall, with skill."""
    err = predictions.assign(
        traits=(predictions.predicted - predictions.actual) ** 2,
        mean_baseline=(predictions.baseline - predictions.actual) ** 2,
    )
    per_task = err.groupby("task")[["traits", "mean_baseline"]].mean()
    per_task.loc["overall"] = err[["traits", "mean_baseline"]].mean()
    out = np.sqrt(per_task).rename(columns={"traits": "rmse_traits",
                                            "mean_baseline": "rmse_mean_baseline"})
    out["skill"] = 1.0 - per_task.traits / per_task.mean_baseline.replace(0.0, np.nan)
    out.index.name = "task"
    return out
