"""The results store: cell records from local artifacts or from W&B runs, one long table.

Both sources yield record dicts of the schema in ``latent_traits.eval.records`` with three
private keys added: ``_path`` (where the record came from: a file path or
``wandb:<entity>/<project>/<run id>``), ``_predictions`` (the local predictions file, or None)
and ``_source`` (``local`` | ``wandb``). `long_table` flattens them to one row per cell.

Shape of an evaluation run on W&B (what `records_from_runs` reads; evaluate.py's W&B logging,
latent_traits.eval.wandb_log, writes exactly this): one run per evaluation job::

    run.config = {
      "model": {"name": ..., "source": ...},           # as in the record
      "job": {...},                                      # the job's resolved config (not read here)
      "cells": [                                         # one entry per (adapter, task) cell
        {"adapter": {"id": "base" | "<source>/<lora>_r<r>_s<seed>", ...},
         "task": {...}, "data": {...}, "decoding": {...}, "settings_hash": str,
         "primary_metric": str, "n_invalid": int, "created_at": iso8601},
      ],
    }
    run.summary = {"eval/<adapter id>/<task>/<metric>": float, ...}   # every metric of every cell

Older runs held one adapter each (still read): ``config.adapter`` and ``config.cells`` as a
{task: cell} mapping, summary keys ``eval/<task>/<metric>``. A run that holds a single cell may
instead carry the record's fields at the top of its config (``model``, ``adapter``, ``task``,
``data``, ``primary_metric``, ...). A cell whose primary metric is not in the summary is skipped
with a warning (the run did not finish). ``created_at`` falls back to the run's.
Predictions are not read from W&B, so W&B cells get no bootstrap interval.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from latent_traits.eval.records import PREDICTIONS_SUFFIX, RECORD_SUFFIX, load_records

from .errors import AnalysisError, NoRecordsError

log = logging.getLogger(__name__)

SOURCES = ("local", "wandb")
METRIC_PREFIX = "eval/"
LONG_COLUMNS = [
    "model", "adapter", "task", "task_version", "metric", "score", "n", "created_at",
    "settings_hash", "source", "path", "predictions", "stand_in",
]


def local_records(records_dir: str | Path) -> list[dict[str, Any]]:
    """Complete cell records under records_dir, each with its predictions file when present."""
    records = load_records(records_dir)
    for record in records:
        path = str(record["_path"])
        predictions = Path(path[: -len(RECORD_SUFFIX)] + PREDICTIONS_SUFFIX)
        record["_predictions"] = str(predictions) if predictions.is_file() else None
        record["_source"] = "local"
    return records


def _plain(value: Any) -> Any:
    """W&B config/summary objects -> plain dicts and lists (they behave like mappings)."""
    if isinstance(value, Mapping) or hasattr(value, "items") and not isinstance(value, str):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _prefixed_metrics(summary: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """{metric: value} from the summary keys <prefix><metric> (metric names hold no '/')."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        metric = key[len(prefix):] if key.startswith(prefix) else ""
        if metric and "/" not in metric and isinstance(value, int | float) and not isinstance(value, bool):
            out[metric] = float(value)
    return out


def _created(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _run_cells(config: Mapping[str, Any]) -> list[tuple[dict, dict, str, dict, str]] | None:
    """(model, adapter, task, cell, metric prefix) of each cell a run's config describes, or None
    where it describes none."""
    cells = config.get("cells")
    if isinstance(cells, list):  # one run per evaluation job: each cell names its adapter
        return [(config.get("model"), cell.get("adapter"), cell["task"]["name"], cell,
                 f"{METRIC_PREFIX}{(cell.get('adapter') or {}).get('id')}/{cell['task']['name']}/")
                for cell in cells if isinstance(cell, Mapping) and "task" in cell]
    if isinstance(cells, Mapping):  # older runs: one adapter per run
        return [(config.get("model"), config.get("adapter"), task, cell, f"{METRIC_PREFIX}{task}/")
                for task, cell in cells.items()]
    if "task" in config:  # a single cell at the top of the config
        task = config["task"]["name"]
        return [(config.get("model"), config.get("adapter"), task, config, f"{METRIC_PREFIX}{task}/")]
    return None


def records_from_run(run: Any, where: str = "") -> list[dict[str, Any]]:
    """The cell records one W&B evaluation run holds (see the module docstring for its shape)."""
    config, summary = _plain(run.config), _plain(run.summary)
    ident = f"wandb:{where}{run.id}" if where else f"wandb:{run.id}"
    cells = _run_cells(config)
    if cells is None:
        log.warning("W&B run %s (%s) has no cell config; skipped", run.id, run.name)
        return []
    one_job = isinstance(config.get("cells"), list)
    records = []
    for model, adapter, task, cell, prefix in cells:
        if not model or not adapter:
            log.warning("W&B run %s (%s) lacks model/adapter for cell %s; skipped", run.id, run.name, task)
            continue
        record = {k: v for k, v in cell.items() if k not in ("cells", "metrics", "job")}
        record["task"] = {**(record.get("task") or {}), "name": task}
        record["model"], record["adapter"] = model, adapter
        record["metrics"] = _prefixed_metrics(summary, prefix)
        where_in_run = f"{adapter['id']}/{task}" if one_job else task
        primary = record.get("primary_metric")
        if primary not in record["metrics"]:
            log.warning("W&B run %s: no %s%s in its summary; cell skipped", ident, prefix, primary)
            continue
        record.setdefault("schema_version", 1)
        record.setdefault("status", "complete")
        record["created_at"] = record.get("created_at") or _created(run.created_at)
        record.setdefault("data", {})
        record.update(_path=f"{ident}/{where_in_run}", _predictions=None, _source="wandb",
                      _run={"id": run.id, "name": run.name, "group": run.group,
                            "tags": list(run.tags or [])})
        records.append(record)
    return records


def records_from_runs(runs: Iterable[Any], where: str = "") -> list[dict[str, Any]]:
    return [record for run in runs for record in records_from_run(run, where)]


def wandb_runs(project: str, entity: str | None = None, group: str | None = None,
               tags: list[str] | None = None, api: Any = None) -> list[Any]:
    """Evaluation runs of a W&B project, filtered server-side by group and (all of the) tags."""
    if not project:
        raise AnalysisError("analysis.source=wandb needs analysis.wandb.project=<project name>")
    if api is None:
        import wandb

        api = wandb.Api()
    path = f"{entity}/{project}" if entity else project
    filters: dict[str, Any] = {"state": "finished"}
    if group:
        filters["group"] = group
    if tags:
        filters["$and"] = [{"tags": {"$in": [tag]}} for tag in tags]
    return list(api.runs(path, filters=filters))


def load_from_wandb(wandb_cfg: Mapping[str, Any], api: Any = None) -> list[dict[str, Any]]:
    project, entity = wandb_cfg.get("project"), wandb_cfg.get("entity")
    runs = wandb_runs(project, entity, wandb_cfg.get("group"), wandb_cfg.get("tags"), api)
    records = records_from_runs(runs, f"{entity}/{project}/" if entity else f"{project}/")
    if not records:
        raise NoRecordsError(
            f"no evaluation cells in W&B project {project!r} (group={wandb_cfg.get('group')}, "
            f"tags={wandb_cfg.get('tags')}; {len(runs)} finished run(s) matched). Check "
            "analysis.wandb.project/entity/group/tags, or use analysis.source=local"
        )
    return records


def long_table(
    records: list[dict[str, Any]], kept: list[dict[str, Any]] | None = None
) -> pd.DataFrame:
    """One row per cell record; `kept` says which records the matrix took (the newest)."""
    rows = []
    for r in records:
        metric = r["primary_metric"]
        rows.append({
            "model": r["model"]["name"],
            "adapter": r["adapter"]["id"],
            "task": r["task"]["name"],
            "task_version": r["task"].get("version"),
            "metric": metric,
            "score": float(r["metrics"][metric]),
            "n": (r.get("data") or {}).get("n"),
            "created_at": r.get("created_at"),
            "settings_hash": r.get("settings_hash"),
            "source": r.get("_source", "local"),
            "path": r.get("_path"),
            "predictions": r.get("_predictions"),
            "stand_in": bool((r.get("data") or {}).get("stand_in")),
        })
    frame = pd.DataFrame(rows, columns=LONG_COLUMNS)
    if kept is not None:
        chosen = {id(r) for r in kept}
        frame["kept"] = [id(r) in chosen for r in records]
    return frame.sort_values(["model", "adapter", "task", "created_at"]).reset_index(drop=True)
