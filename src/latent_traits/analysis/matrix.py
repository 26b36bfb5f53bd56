"""Cell records -> the adapter x task matrix of primary scores, and its views.

Rows are adapter ids with the base model first, columns are task names in sorted order.
The delta view subtracts the base row from every adapter row (adapters only); the z-score
view standardises each task over the rows shown. When the user allows records of several
models in one matrix, rows are labelled ``<model>:<adapter id>`` and each adapter's delta is
taken against its own model's base row.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from latent_traits.eval.records import BASE_ADAPTER_ID, primary_score

from .errors import AnalysisError, MissingCellsError, RecordConflictError

MISSING_POLICIES = ("error", "drop_rows", "drop_columns", "impute_mean")
MODEL_SEP = ":"


def _where(record: dict[str, Any]) -> str:
    return record.get("_path", f"{record['adapter']['id']}/{record['task']['name']}")


def _created_at(record: dict[str, Any]) -> tuple[datetime, str]:
    try:
        when = datetime.fromisoformat(record.get("created_at") or "")
    except ValueError:
        when = datetime.min
    if when.tzinfo is None:  # naive stamps are read as UTC so they compare with aware ones
        when = when.replace(tzinfo=timezone.utc)
    return when, _where(record)


def _check_unique(records: list[dict[str, Any]], what: str, key) -> None:
    first: dict[Any, dict[str, Any]] = {}
    for record in records:
        group, value = key(record)
        seen = first.setdefault(group, record)
        if key(seen)[1] != value:
            raise RecordConflictError(
                f"cannot put {what} {key(seen)[1]!r} ({_where(seen)}) and {value!r} "
                f"({_where(record)}) in one matrix; keep one of them under the records dir"
            )


def select_cells(
    records: list[dict[str, Any]],
    model_name: str | None = None,
    allow_mixed_models: bool = False,
    allow_mixed_versions: bool = False,
) -> list[dict[str, Any]]:
    """Check that records belong together and keep the newest record per (row, task).

    Raises RecordConflictError when records come from different model names (or from another
    model than `model_name`) or from different versions of one task, unless the user allowed
    it: mixed models get one row per (model, adapter), mixed versions share the task's column.
    """
    fix_models = "; or set analysis.allow_mixed_models=true to put them side by side"
    if model_name is not None and not allow_mixed_models:
        for record in records:
            if record["model"]["name"] != model_name:
                raise RecordConflictError(
                    f"record {_where(record)} is for model {record['model']['name']!r}, "
                    f"but the analysis is for model {model_name!r} (set model=...{fix_models})"
                )
    if not allow_mixed_models:
        _check_unique(records, "model", lambda r: (None, r["model"]["name"]))
    if not allow_mixed_versions:
        _check_unique(
            records,
            "task version",
            lambda r: (r["task"]["name"], f"{r['task']['name']} v{r['task'].get('version')}"),
        )
    mixed = len({r["model"]["name"] for r in records}) > 1
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        row = record["adapter"]["id"]
        if mixed:
            row = f"{record['model']['name']}{MODEL_SEP}{row}"
        record["_row"] = row
        cell = (row, record["task"]["name"])
        if cell not in newest or _created_at(record) > _created_at(newest[cell]):
            newest[cell] = record
    return [newest[cell] for cell in sorted(newest)]


def base_row(rows) -> str | None:
    """The base model's row among these matrix rows, or None."""
    return next((row for row in rows if is_base(row)), None)


def cell_row(cell: dict[str, Any]) -> str:
    """The matrix row of a cell record: its `_row` (<model>:<id> when models mix), else its adapter id."""
    return cell.get("_row", cell["adapter"]["id"])


def find_cell(cells: list[dict[str, Any]], row: str, task: str) -> dict[str, Any] | None:
    """The cell record of a matrix row (an adapter id, or <model>:<id> when models mix) and task."""
    return next((c for c in cells if c["task"]["name"] == task and cell_row(c) == row), None)


def is_base(row: str) -> bool:
    return row == BASE_ADAPTER_ID or row.endswith(f"{MODEL_SEP}{BASE_ADAPTER_ID}")


def base_of(row: str) -> str:
    """The base row an adapter row is compared with (its own model's, when models mix)."""
    model, sep, _ = row.rpartition(MODEL_SEP)
    return f"{model}{sep}{BASE_ADAPTER_ID}"


def _pivot(cells: list[dict[str, Any]], value) -> pd.DataFrame:
    rows = [(cell_row(r), r["task"]["name"], value(r)) for r in cells]
    frame = pd.DataFrame(rows, columns=["adapter", "task", "value"])
    table = frame.pivot(index="adapter", columns="task", values="value")
    order = sorted(table.index, key=lambda row: (not is_base(row), row))
    table = table.reindex(index=order, columns=sorted(table.columns))
    table.index.name, table.columns.name = "adapter", "task"
    return table


def score_matrix(cells: list[dict[str, Any]]) -> pd.DataFrame:
    """Primary score per (adapter, task); NaN where a cell has no record."""
    return _pivot(cells, primary_score).astype(float)


def count_matrix(cells: list[dict[str, Any]]) -> pd.DataFrame:
    """Number of evaluated examples (data.n) per cell; NaN where a cell has no record."""
    return _pivot(cells, lambda r: r.get("data", {}).get("n", np.nan)).astype(float)


def missing_cells(matrix: pd.DataFrame) -> list[tuple[str, str]]:
    return [(a, t) for a in matrix.index for t in matrix.columns if pd.isna(matrix.at[a, t])]


def apply_missing_policy(
    matrix: pd.DataFrame, policy: str = "error"
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Resolve cells without a record: `error` lists them, `drop_rows` drops adapters that
    lack any cell, `drop_columns` drops tasks that lack any cell, `impute_mean` fills a cell
    with its task's mean over the rows that have it. Returns the matrix and the imputed cells."""
    if policy not in MISSING_POLICIES:
        raise MissingCellsError(
            f"analysis.missing={policy!r} is not one of {', '.join(MISSING_POLICIES)}"
        )
    missing = missing_cells(matrix)
    if not missing:
        return matrix, []
    if policy == "error":
        listed = ", ".join(f"{a} x {t}" for a, t in missing)
        raise MissingCellsError(
            f"{len(missing)} cell(s) of the adapter x task matrix have no record: {listed}. "
            "Run `python evaluate.py` to fill them, or set analysis.missing=drop_rows "
            "(drop those adapters), analysis.missing=drop_columns (drop those tasks) or "
            "analysis.missing=impute_mean (fill them with the task's mean; the report lists them)"
        )
    if policy == "impute_mean":
        empty = [t for t in matrix.columns if matrix[t].isna().all()]
        if empty:
            raise MissingCellsError(
                f"analysis.missing=impute_mean cannot fill task(s) {', '.join(empty)}: no row "
                "has a score there; use analysis.missing=drop_columns"
            )
        return matrix.fillna(matrix.mean(axis=0)), missing
    axis = 0 if policy == "drop_rows" else 1
    kept = matrix.dropna(axis=axis, how="any")
    if kept.size == 0:
        raise MissingCellsError(f"analysis.missing={policy} left an empty matrix")
    return kept, []


def adapter_rows(matrix: pd.DataFrame) -> pd.DataFrame:
    """The matrix without the base row(s)."""
    return matrix.loc[[row for row in matrix.index if not is_base(row)]]


def delta_view(matrix: pd.DataFrame) -> pd.DataFrame:
    """Adapter rows minus the base row: the change each adapter makes on each task."""
    adapters = adapter_rows(matrix)
    bases = [base_of(row) for row in adapters.index]
    lacking = sorted({b for b in bases if b not in matrix.index})
    if lacking or not any(is_base(row) for row in matrix.index):
        raise MissingCellsError(
            f"the delta view needs the {', '.join(lacking) or BASE_ADAPTER_ID!r} row, which has "
            "no (complete) records; evaluate the base model with `python evaluate.py`, or set "
            "analysis.view=raw or analysis.missing=drop_columns"
        )
    base = matrix.loc[bases].to_numpy()
    return pd.DataFrame(adapters.to_numpy() - base, index=adapters.index, columns=matrix.columns)


def zscore_view(matrix: pd.DataFrame) -> pd.DataFrame:
    """Each task standardised over the rows shown: (score - task mean) / task std (ddof=0);
    a task where every row scores the same gets 0."""
    std = matrix.std(axis=0, ddof=0).replace(0.0, np.nan)
    return ((matrix - matrix.mean(axis=0)) / std).fillna(0.0).where(matrix.notna())


def stand_in_cells(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cells whose evaluation data, or whose adapter's training data, is an offline stand-in."""
    found = []
    for r in cells:
        train = r["adapter"].get("train_data") or {}
        eval_stand_in = bool(r.get("data", {}).get("stand_in"))
        if eval_stand_in or train.get("stand_in"):
            found.append(
                {
                    "adapter": r["adapter"]["id"],
                    "task": r["task"]["name"],
                    "eval_data": r["data"].get("source") if eval_stand_in else None,
                    "train_data": train.get("source") if train.get("stand_in") else None,
                }
            )
    return found


def adapter_sources(cells: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Matrix row -> what its adapter trained on: the source's name, its task's name, type and
    tags (from the adapter's recorded settings, else the same-named column's task); base excluded."""
    sources: dict[str, dict[str, Any]] = {}
    for r in cells:
        row = cell_row(r)
        if is_base(row) or row in sources:
            continue
        source = (r["adapter"].get("train_config") or {}).get("source_dataset") or {}
        task = source.get("task") or {}  # without settings (W&B): the adapter's source name
        name = task.get("name") or r["adapter"].get("source_dataset")
        column = next((c["task"] for c in cells if c["task"]["name"] == name), {})
        sources[row] = {"name": source.get("name") or r["adapter"].get("source_dataset"), "task": name,
                        "type": task.get("type") or column.get("type"),
                        "tags": list(task.get("tags") or column.get("tags") or [])}
    return sources


def pca_input(matrix: pd.DataFrame, delta: pd.DataFrame | None, view: str, excluded: list[str]) -> pd.DataFrame:
    """What the PCA reads: the delta view (or the raw adapter rows), without the excluded tasks."""
    data = delta if view == "delta" else adapter_rows(matrix)
    return data.drop(columns=excluded)


def chosen(name: str, selection: Mapping[str, Any]) -> bool:
    """Whether a row id or task name passes {include: [globs], exclude: [globs]} (no include: all)."""
    include, exclude = selection.get("include") or [], selection.get("exclude") or []
    return ((not include or any(fnmatch.fnmatchcase(name, g) for g in include))
            and not any(fnmatch.fnmatchcase(name, g) for g in exclude))


def select_rows_and_tasks(cells: list[dict[str, Any]], rows: Mapping[str, Any],
                          tasks: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cells whose row (the base always kept) and task pass analysis.rows / analysis.tasks."""
    kept = [c for c in cells
            if (is_base(cell_row(c)) or chosen(cell_row(c), rows))
            and chosen(c["task"]["name"], tasks)]
    if not any(not is_base(cell_row(c)) for c in kept):
        raise AnalysisError(f"analysis.rows={dict(rows)} and analysis.tasks={dict(tasks)} leave no adapter cell; "
                            "the rows are adapter ids such as imdb/lora_r8_s0 (globs: 'flipkart_*')")
    return kept

