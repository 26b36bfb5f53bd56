"""The analysis stage end to end: cell records -> matrix -> PCA latent traits -> report folder.

Importable and testable without Hydra; analyze.py only wires the config into `run_analysis`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from latent_traits.eval.records import find_records, load_records

from . import matrix as mx
from .errors import AnalysisError, NoRecordsError
from .pca import PCAResult, fit_pca, pca_skip_reason
from .report import write_report

log = logging.getLogger(__name__)

VIEWS = ("delta", "raw")


@dataclass(frozen=True)
class PCAOptions:
    """The `analysis` config group's pca member (conf/analysis/pca.yaml)."""

    view: str = "delta"  # delta: adapter rows minus the base row; raw: adapter rows as scored
    n_components: int | None = None  # None: all the data supports
    center: bool = True
    standardize: bool = False
    missing: str = "error"  # error | drop_rows | drop_columns

    @classmethod
    def from_config(cls, analysis: Mapping[str, Any]) -> PCAOptions:
        """From the `analysis` config node (keys of other analyses are left to them)."""
        return cls(**{f.name: analysis[f.name] for f in fields(cls) if f.name in analysis})

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise AnalysisError(f"analysis.view={self.view!r} is not one of {', '.join(VIEWS)}")
        if self.missing not in mx.MISSING_POLICIES:
            raise AnalysisError(
                f"analysis.missing={self.missing!r} is not one of {', '.join(mx.MISSING_POLICIES)}"
            )


@dataclass
class Analysis:
    """Everything the report shows, computed from the records."""

    options: PCAOptions
    cells: list[dict[str, Any]]  # the records used, one per (adapter, task)
    ignored: list[str]  # paths of older duplicate records
    matrix: pd.DataFrame  # base + adapters x tasks, after the missing-cell policy
    counts: pd.DataFrame  # data.n per cell, same shape
    delta: pd.DataFrame | None  # adapters x tasks minus base; None without a base row
    pca: PCAResult | None
    pca_note: str | None  # why PCA did not run
    dropped: dict[str, list[str]] = field(default_factory=dict)
    stand_in: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pca_input(self) -> pd.DataFrame:
        return self.delta if self.options.view == "delta" else mx.adapter_rows(self.matrix)


def analyze_records(
    records: list[dict[str, Any]], options: PCAOptions | None = None, model_name: str | None = None
) -> Analysis:
    """Build the matrix and its delta view from cell records and fit PCA on the adapter rows."""
    options = options or PCAOptions()
    if not records:
        raise NoRecordsError("no cell records to analyse")
    cells = mx.select_cells(records, model_name)
    kept = {r.get("_path") for r in cells}
    ignored = sorted(r["_path"] for r in records if "_path" in r and r["_path"] not in kept)
    full = mx.score_matrix(cells)
    matrix = mx.apply_missing_policy(full, options.missing)
    dropped = {
        "adapters": [a for a in full.index if a not in matrix.index],
        "tasks": [t for t in full.columns if t not in matrix.columns],
    }
    if options.view == "delta" or mx.BASE_ADAPTER_ID in matrix.index:
        delta = mx.delta_view(matrix)
    else:
        delta = None
    analysis = Analysis(
        options=options,
        cells=cells,
        ignored=ignored,
        matrix=matrix,
        counts=mx.count_matrix(cells).reindex_like(matrix),
        delta=delta,
        pca=None,
        pca_note=None,
        dropped=dropped,
        stand_in=mx.stand_in_cells(cells),
    )
    analysis.pca_note = pca_skip_reason(analysis.pca_input, options.center)
    if analysis.pca_note is None:
        analysis.pca = fit_pca(
            analysis.pca_input, options.n_components, options.center, options.standardize
        )
    else:
        log.warning("%s The report shows the matrix only.", analysis.pca_note)
    return analysis


def no_records_message(records_dir: str | Path) -> str:
    found = find_records(records_dir)
    detail = (
        f" ({len(found)} .json file(s) there, none a complete cell record of this schema)"
        if found
        else ""
    )
    return (
        f"no cell records were found under {records_dir}{detail}. "
        "`python evaluate.py` produces them (the base model and every trained adapter on every "
        "target task); check model=... and paths.artifacts_dir=... if they are elsewhere."
    )


def run_analysis(
    records_dir: str | Path,
    report_dir: str | Path,
    options: PCAOptions | None = None,
    model_name: str | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Read the records under records_dir, analyse them and write the report folder
    atomically to report_dir. Returns the path of report.html. Writes nothing on error."""
    records = load_records(records_dir)
    if not records:
        raise NoRecordsError(no_records_message(records_dir))
    log.info("Read %d cell record(s) from %s", len(records), records_dir)
    analysis = analyze_records(records, options, model_name)
    meta = {"records_dir": str(records_dir), "model_name": model_name}
    return write_report(analysis, report_dir, config=config, meta=meta)
