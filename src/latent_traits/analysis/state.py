"""What the analysis stage computes from the records, as one object the report reads:
`Analysis` (matrix, views, PCA, intervals, transfer, side analyses, findings) and the
`SideResult` each side analysis returns into it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from . import matrix as mx
from .bootstrap import Replicates
from .findings import Claim
from .options import AnalysisOptions
from .pca import PCAResult


@dataclass
class SideResult:
    name: str
    title: str
    blocks: list[tuple] = field(default_factory=list)  # render blocks (analysis/render.py)
    figures: dict[str, bytes] = field(default_factory=dict)  # "<name>_<what>.png" -> PNG bytes
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # "<name>_<what>.csv" -> frame
    summary: dict[str, Any] = field(default_factory=dict)  # JSON-able, goes into report.json
    skipped: str | None = None  # why the analysis did not run on these records
    error: str | None = None  # set by the registry when run() raised (the report goes on)
    seconds: float | None = None  # set by the registry


@dataclass(frozen=True)
class Analysis:
    """Everything the report shows, computed from the records by run.analyze_records; frozen:
    the report's sections and the side analyses read it and return their own parts."""

    options: AnalysisOptions
    cells: list[dict[str, Any]]  # the records used, one per (adapter, task)
    ignored: list[str]  # paths of older duplicate records
    matrix: pd.DataFrame  # base + adapters x tasks, after the missing-cell policy
    counts: pd.DataFrame  # data.n per cell, same shape
    delta: pd.DataFrame | None  # adapters x tasks minus base; None without a base row
    pca: PCAResult | None
    pca_note: str | None  # why PCA did not run
    dropped: dict[str, list[str]] = field(default_factory=dict)
    stand_in: list[dict[str, Any]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # cells without a record
    imputed: list[tuple[str, str]] = field(default_factory=list)
    long: pd.DataFrame | None = None  # every record read, one row each
    zscores: pd.DataFrame | None = None
    traits: list[str] = field(default_factory=list)
    traits_given: list[bool] = field(default_factory=list)
    intervals: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = field(default_factory=dict)
    pca_ci: dict[str, Any] = field(default_factory=dict)
    bootstrap_note: str | None = None
    seeds: pd.DataFrame | None = None
    transfer: pd.DataFrame | None = None  # per task and overall RMSE, skill
    transfer_predictions: pd.DataFrame | None = None
    transfer_k: int | None = None
    transfer_note: str | None = None
    mixed_versions: dict[str, list[str]] = field(default_factory=dict)
    side: list[SideResult] = field(default_factory=list)  # the selected side analyses, in order
    floor_ceiling: dict[str, str] = field(default_factory=dict)  # task -> why at floor/ceiling
    replicates: Replicates | None = None
    findings: list[Claim] = field(default_factory=list)

    @property
    def excluded(self) -> list[str]:
        """Tasks left out of the PCA (at floor or ceiling, analysis.floor_ceiling=exclude)."""
        return list(self.floor_ceiling) if self.options.floor_ceiling == "exclude" else []

    @property
    def pca_input(self) -> pd.DataFrame:
        return mx.pca_input(self.matrix, self.delta, self.options.view, self.excluded)
