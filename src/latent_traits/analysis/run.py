"""The analysis stage end to end: cell records -> matrix -> PCA latent traits, uncertainty,
transfer prediction and the selected side analyses -> report folder.

Importable and testable without Hydra; analyze.py only wires the config into `run_analysis`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from latent_traits.eval.records import find_records
from latent_traits.safe_paths import check_replaceable

from . import bootstrap as bs
from . import findings as fd
from . import matrix as mx
from . import store
from .errors import AnalysisError, NoRecordsError
from .floors import floor_ceiling
from .options import AnalysisOptions, BootstrapOptions, PCAOptions, TransferOptions
from .pca import PCAResult, fit_pca, pca_skip_reason
from .report import previous_report_files, write_report
from .seeds import seed_table
from .side.context import SideContext
from .side.registry import run_selected
from .state import Analysis
from .traits import task_tags, trait_names
from .transfer import loto_predictions, supported_k, transfer_summary

__all__ = ["AnalysisOptions", "BootstrapOptions", "PCAOptions", "TransferOptions",
           "Analysis", "analyze_records", "run_analysis", "load_cells"]
log = logging.getLogger(__name__)


class Uncertainty(NamedTuple):
    """Bootstrap intervals of the cells, their changes over the base and the PCA."""

    replicates: bs.Replicates | None = None
    intervals: dict[str, tuple[pd.DataFrame, pd.DataFrame]] | None = None
    pca_ci: dict[str, Any] | None = None
    note: str | None = None


class Transfer(NamedTuple):
    """Held-out-task prediction from the traits (transfer.py)."""

    table: pd.DataFrame | None = None
    predictions: pd.DataFrame | None = None
    k: int | None = None
    note: str | None = None


def uncertainty(matrix: pd.DataFrame, delta: pd.DataFrame | None, cells: list[dict[str, Any]],
                imputed: list, pca: PCAResult | None, used_tasks: list[str],
                options: AnalysisOptions) -> Uncertainty:
    o = options.bootstrap
    if o.n_resamples == 0:
        return Uncertainty(note="the bootstrap is off (analysis.bootstrap.n_resamples=0)")
    reps = bs.resample_matrix(matrix, cells, o.n_resamples, o.seed, o.level, imputed)
    if reps is None:
        return Uncertainty(note="no cell has a usable predictions file, so no intervals")
    pca_ci: dict[str, Any] = {}
    if pca is not None:
        kept = [list(matrix.columns).index(t) for t in used_tasks]
        used = bs.Replicates(reps.values[:, :, kept], reps.has_ci.iloc[:, kept], reps.level)
        pca_ci = bs.pca_intervals(used, matrix.iloc[:, kept], pca, options.view)
    without = int((~reps.has_ci).to_numpy().sum())
    return Uncertainty(reps, bs.cell_intervals(reps, matrix, delta), pca_ci,
                       f"{without} cell(s) have no predictions to resample (no interval)" if without else None)


def transfer(data: pd.DataFrame, options: AnalysisOptions) -> Transfer:
    o = options.transfer
    if not o.enabled:
        return Transfer(note="off (analysis.transfer.enabled=false)")
    most = supported_k(*data.shape)
    if most < 1:
        return Transfer(note=f"needs at least 5 adapters and 2 tasks; the matrix has "
                             f"{data.shape[0]} adapters x {data.shape[1]} tasks")
    k = most if o.k is None else min(o.k, most)
    note = (f"analysis.transfer.k={o.k} lowered to {most}, all the matrix supports"
            if o.k is not None and o.k > most else None)
    predictions = loto_predictions(data, k, options.standardize)
    return Transfer(transfer_summary(predictions), predictions, k, note)


def analyze_records(
    records: list[dict[str, Any]],
    options: AnalysisOptions | None = None,
    model_name: str | None = None,
) -> Analysis:
    """The analysis as a pipeline of steps, each reading what it needs and returning its part:
    cells -> matrix and its views -> floor/ceiling -> PCA and traits -> bootstrap intervals ->
    transfer prediction; then the side analyses and the findings read that whole, and the
    result is one frozen Analysis."""
    o = options or AnalysisOptions()
    if not records:
        raise NoRecordsError("no cell records to analyse")
    cells = mx.select_cells(records, model_name, o.allow_mixed_models, o.allow_mixed_versions)
    if o.rows or o.tasks:
        cells = mx.select_rows_and_tasks(cells, o.rows, o.tasks)
    kept = {id(r) for r in cells}
    ignored = sorted(str(r.get("_path")) for r in records if id(r) not in kept)
    full = mx.score_matrix(cells)
    matrix, imputed = mx.apply_missing_policy(full, o.missing)
    dropped = {
        "adapters": [a for a in full.index if a not in matrix.index],
        "tasks": [t for t in full.columns if t not in matrix.columns],
    }
    has_base = any(mx.is_base(row) for row in matrix.index)
    delta = mx.delta_view(matrix) if o.view == "delta" or has_base else None
    versions: dict[str, set] = {}
    for r in cells:
        versions.setdefault(r["task"]["name"], set()).add(str(r["task"].get("version")))
    counts = mx.count_matrix(cells).reindex_like(matrix)
    floors = floor_ceiling(matrix, counts, o.bootstrap.level)
    data = mx.pca_input(matrix, delta, o.view, list(floors) if o.floor_ceiling == "exclude" else [])
    pca_note = ("every task is at floor or ceiling (analysis.floor_ceiling=exclude)"
                if data.shape[1] == 0 else pca_skip_reason(data, o.center))
    pca, traits, traits_given = None, [], []
    if pca_note is None:
        pca = fit_pca(data, o.n_components, o.center, o.standardize)
        traits, traits_given = trait_names(pca.loadings, task_tags(cells), o.trait_names)
    else:
        log.warning("%s The report shows the matrix only.", pca_note)
    spread = uncertainty(matrix, delta, cells, imputed, pca, list(data.columns), o)
    held_out = transfer(data, o)
    a = Analysis(
        options=o, cells=cells, ignored=ignored, matrix=matrix, counts=counts, delta=delta, pca=pca,
        pca_note=pca_note, dropped=dropped, stand_in=mx.stand_in_cells(cells),
        missing=mx.missing_cells(full), imputed=imputed,
        long=store.long_table(records, cells), zscores=mx.zscore_view(matrix),
        traits=traits, traits_given=traits_given,
        intervals=dict(spread.intervals or {}), pca_ci=dict(spread.pca_ci or {}),
        bootstrap_note=spread.note, seeds=seed_table(matrix), transfer=held_out.table,
        transfer_predictions=held_out.predictions, transfer_k=held_out.k, transfer_note=held_out.note,
        mixed_versions={t: sorted(v) for t, v in versions.items() if len(v) > 1},
        floor_ceiling=floors, replicates=spread.replicates,
    )
    side = run_selected(SideContext(a), o.side) if o.side else []
    a = replace(a, side=side)
    return replace(a, findings=fd.evaluate(evidence(a)))


def evidence(a: Analysis) -> fd.Evidence:
    """What the findings engine reads from the analysis (nothing is recomputed)."""
    sources = mx.adapter_sources(a.cells)
    types = {r["task"]["name"]: r["task"].get("type") for r in a.cells}
    return fd.Evidence(
        matrix=a.matrix, delta=a.delta, counts=a.counts, level=a.options.bootstrap.level,
        replicates=None if a.replicates is None else a.replicates.values,
        has_ci=None if a.replicates is None else a.replicates.has_ci,
        explained=None if a.pca is None else a.pca.explained_variance_ratio,
        loadings=None if a.pca is None else a.pca.loadings, pca_ci=a.pca_ci, pca_note=a.pca_note,
        pca_tasks=list(a.pca_input.columns), floor=a.floor_ceiling, sources=sources,
        task_tags=task_tags(a.cells), task_types=types,
        side={s.name: {"title": s.title, "summary": s.summary, "tables": s.tables,
                       "skipped": s.skipped, "error": s.error} for s in a.side})


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


def load_cells(
    source: str, records_dir: str | Path, wandb_cfg: Mapping[str, Any] | None = None,
    api: Any = None,
) -> tuple[list[dict[str, Any]], str]:
    """Records from `source` (local | wandb) and a description of where they came from."""
    if source == "local":
        records = store.local_records(records_dir)
        if not records:
            raise NoRecordsError(no_records_message(records_dir))
        return records, f"`{records_dir}`"
    if source == "wandb":
        wandb_cfg = dict(wandb_cfg or {})
        records = store.load_from_wandb(wandb_cfg, api)
        where = "/".join(x for x in (wandb_cfg.get("entity"), wandb_cfg.get("project")) if x)
        return records, f"W&B project `{where}`"
    raise AnalysisError(f"analysis.source={source!r} is not one of {', '.join(store.SOURCES)}")


def run_analysis(
    records_dir: str | Path,
    report_dir: str | Path,
    options: AnalysisOptions | None = None,
    model_name: str | None = None,
    config: dict[str, Any] | None = None,
    source: str = "local",
    wandb_cfg: Mapping[str, Any] | None = None,
    api: Any = None,
) -> Path:
    """Read the records, analyse them and write the report folder atomically to report_dir.
    Returns the path of report.html. Writes nothing on error."""
    check_replaceable(report_dir, "report_dir", previous_report_files(Path(report_dir)))  # before any work
    records, where = load_cells(source, records_dir, wandb_cfg, api)
    log.info("Read %d cell record(s) from %s", len(records), where)
    analysis = analyze_records(records, options, model_name)
    meta = {"records_dir": str(records_dir), "source": source, "where": where,
            "model_name": model_name}
    return write_report(analysis, report_dir, config=config, meta=meta)
