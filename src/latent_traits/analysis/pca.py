"""PCA of the adapter x task matrix: the principal components are the latent traits.

Conventions, so that runs compare:
- loadings are the unit-length principal axes (components x tasks), as scikit-learn's
  ``components_``; projections are the adapters' coordinates on them (adapters x components);
- each component is flipped so that its largest-|loading| task has a positive loading (the
  projections flip with it, so loadings @ projections is unchanged);
- with ``center`` the axes are those of the adapter rows around their mean, so I adapters
  support at most I - 1 components; without it the SVD of the raw rows (at most I).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from .errors import AnalysisError

MIN_ADAPTERS = 2


@dataclass
class PCAResult:
    explained_variance_ratio: pd.Series  # per component
    loadings: pd.DataFrame  # components x tasks
    projections: pd.DataFrame  # adapters x components
    center: bool
    standardize: bool

    @property
    def n_components(self) -> int:
        return len(self.explained_variance_ratio)

    def explained_variance_table(self) -> pd.DataFrame:
        ratio = self.explained_variance_ratio
        return pd.DataFrame({"explained_variance_ratio": ratio, "cumulative": ratio.cumsum()})


def max_components(n_adapters: int, n_tasks: int, center: bool = True) -> int:
    """How many components the matrix supports."""
    return max(0, min(n_adapters - 1 if center else n_adapters, n_tasks))


def resolve_n_components(
    n_adapters: int, n_tasks: int, requested: int | None = None, center: bool = True
) -> int:
    """`requested`, or all the data supports when None; a clear error when it asks too many."""
    most = max_components(n_adapters, n_tasks, center)
    if requested is None:
        return most
    if requested < 1 or requested > most:
        rule = "min(adapters - 1, tasks) when centred" if center else "min(adapters, tasks)"
        raise AnalysisError(
            f"analysis.n_components={requested}, but a matrix of {n_adapters} adapters x "
            f"{n_tasks} tasks supports at most {most} component(s) ({rule}); set "
            f"analysis.n_components={most} or fewer, or analysis.n_components=null for all of "
            "them, or train and evaluate more adapters"
        )
    return requested


def pca_skip_reason(data: pd.DataFrame, center: bool = True) -> str | None:
    """Why PCA cannot run on these adapter rows, or None when it can."""
    if len(data) < MIN_ADAPTERS:
        return (
            f"PCA needs at least {MIN_ADAPTERS} adapters; the matrix has {len(data)}. "
            "Train more adapters (`python train.py -m source_dataset=...`) and evaluate them."
        )
    values = data.to_numpy(dtype=float)
    if not np.isfinite(values).all():
        return "PCA needs a complete matrix; some cells are missing."
    if np.allclose(values, values.mean(axis=0) if center else 0.0):
        return "PCA needs variation between the adapter rows; every row is the same."
    return None


def orient_components(components: np.ndarray) -> np.ndarray:
    """Signs (+1/-1) per component so that each one's largest-|loading| entry is positive."""
    largest = np.abs(components).argmax(axis=1)
    signs = np.sign(components[np.arange(len(components)), largest])
    return np.where(signs == 0, 1.0, signs)


def fit_pca(
    data: pd.DataFrame,
    n_components: int | None = None,
    center: bool = True,
    standardize: bool = False,
) -> PCAResult:
    """PCA of `data` (adapters x tasks) with the sign convention of this module."""
    reason = pca_skip_reason(data, center)
    if reason:
        raise AnalysisError(reason)
    n_adapters, n_tasks = data.shape
    k = resolve_n_components(n_adapters, n_tasks, n_components, center)
    x = StandardScaler(with_mean=center, with_std=standardize).fit_transform(data.to_numpy())
    if center:
        pca = PCA(n_components=k, svd_solver="full").fit(x)
        components, ratio = pca.components_, pca.explained_variance_ratio_
    else:  # scikit-learn's PCA always centres: the SVD of the raw rows instead
        _, s, vt = np.linalg.svd(x, full_matrices=False)
        components, ratio = vt[:k], (s**2 / max((s**2).sum(), 1e-300))[:k]
    components = components * orient_components(components)[:, None]
    names = pd.Index([f"PC{i}" for i in range(k)], name="component")
    return PCAResult(
        explained_variance_ratio=pd.Series(ratio, index=names, name="explained_variance_ratio"),
        loadings=pd.DataFrame(components, index=names, columns=data.columns),
        projections=pd.DataFrame(x @ components.T, index=data.index, columns=names),
        center=center,
        standardize=standardize,
    )
