"""W&B logging for evaluation (python evaluate.py logger=wandb): offline unless the user says online.

An evaluation job logs ONE W&B run (job_type ``evaluate``, group ``experiment_name``) holding every
(adapter, task) cell it evaluated or found finished. This is the shape the analysis stage reads back
(latent_traits.analysis.store)::

    run.config = {"model": {...}, "job": <the job's resolved config>,
                  "cells": [{"adapter": {...}, "task": {...}, "data": ..., "decoding": ...,
                             "settings_hash": ..., "primary_metric": ..., ...}, ...]}
    run.summary = {"eval/<adapter id>/<task>/<metric>": float, ...}

Adapter ids hold a '/' (``imdb/lora_r8_s0``); tasks and metric names never do, so a key splits
from the right. Per cell the run also gets a predictions table (``predictions/<adapter>/<task>``)
and, for classification, a confusion-matrix plot (``confusion_matrix/<adapter>/<task>``). Cells
skipped because they were finished are logged from their records on disk, so a resumed job's run is
complete. Nothing secret is logged: everything passes through ``latent_traits.redact`` (judge
identities carry the name of the key's environment variable at most, never a key).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latent_traits.errors import LatentTraitsError
from latent_traits.io import read_json, read_jsonl
from latent_traits.redact import redact

log = logging.getLogger(__name__)
CELL_KEYS = ("adapter", "task", "data", "decoding", "settings_hash", "primary_metric", "n_invalid",
             "created_at", "judge", "n_invalid_verdicts", "code_scoring", "timing")
TABLE_COLUMNS = ("id", "reference", "raw_output", "parsed", "correct", "output_chars", "output_tokens",
                 "judge_verdict")
MAX_TABLE_TEXT = 2000
METRIC_PREFIX = "eval/"


def logger_kind(logger_cfg: Mapping[str, Any] | None) -> str:
    """none | wandb from the shared `logger` group (conf/logger/*.yaml)."""
    if not logger_cfg:
        return "none"
    target = str(logger_cfg.get("_target_", ""))
    if target.endswith("WandbLogger"):
        return "wandb"
    raise LatentTraitsError(f"evaluate.py logs to W&B only: use logger=wandb or logger=none (got {target})")


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def metric_key(adapter_id: str, task: str, metric: str) -> str:
    return f"{METRIC_PREFIX}{adapter_id}/{task}/{metric}"


def _cell(text: Any) -> Any:
    return text[:MAX_TABLE_TEXT] if isinstance(text, str) else text


class EvalWandb:
    """One W&B run for a whole evaluation job; every cell is added to it as the job reaches it."""

    def __init__(self, project: str, group: str, model: Mapping[str, Any], job_config: Mapping[str, Any] | None = None,
                 mode: str = "offline", entity: str | None = None, save_dir: str | None = None,
                 tags: list[str] | None = None):
        import wandb

        if mode not in ("offline", "online", "disabled"):
            raise LatentTraitsError(f"W&B mode {mode!r}: use offline or online")
        self.wandb = wandb
        self.cells: list[dict[str, Any]] = []
        self.run = wandb.init(
            project=project, entity=entity, group=group, job_type="evaluate", name=f"evaluate-{group}",
            tags=list(tags or []), dir=save_dir, mode=mode,
            config=redact({"model": dict(model), "job": dict(job_config or {}), "cells": []}),
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.run_dir = str(Path(self.run.dir).parent)

    @classmethod
    def from_config(cls, logger_cfg: Mapping[str, Any], experiment_name: str, model: Mapping[str, Any],
                    job_config: Mapping[str, Any] | None = None) -> EvalWandb:
        offline = logger_cfg.get("offline", True)
        if save_dir := logger_cfg.get("save_dir"):
            Path(save_dir).mkdir(parents=True, exist_ok=True)
        return cls(project=str(logger_cfg.get("project") or "latent-traits"), group=experiment_name,
                   model=model, job_config=job_config, mode="offline" if offline else "online",
                   entity=logger_cfg.get("entity"), save_dir=save_dir, tags=["evaluate", str(model.get("name"))])

    def log_cell(self, record_path: str | Path, predictions_path: str | Path | None = None) -> None:
        record = read_json(record_path)
        adapter_id, task = record["adapter"]["id"], record["task"]["name"]
        cell = {k: record[k] for k in CELL_KEYS if k in record}
        self.cells = [c for c in self.cells if (c["adapter"]["id"], c["task"]["name"]) != (adapter_id, task)]
        self.cells.append(cell)
        self.run.config.update(redact({"cells": self.cells}), allow_val_change=True)
        payload: dict[str, Any] = {metric_key(adapter_id, task, k): v
                                   for k, v in scalar_metrics(record["metrics"]).items()}
        rows = read_jsonl(predictions_path) if predictions_path and Path(predictions_path).is_file() else []
        if rows:
            table = self.wandb.Table(columns=list(TABLE_COLUMNS))
            for row in rows:
                table.add_data(*[_cell(row.get(c)) for c in TABLE_COLUMNS])
            payload[f"predictions/{adapter_id}/{task}"] = table
        labels = (record["task"].get("labels") or []) if record["task"].get("type") == "classification" else []
        if rows and labels:
            index = {label: i for i, label in enumerate(labels)}
            payload[f"confusion_matrix/{adapter_id}/{task}"] = self.wandb.plot.confusion_matrix(
                y_true=[index[r["reference"]] for r in rows], preds=[index[r["parsed"]] for r in rows],
                class_names=list(labels), title=f"{adapter_id} on {task}")
        self.run.log(payload)
        for key, value in payload.items():  # the analysis stage reads metrics from the summary
            if key.startswith(METRIC_PREFIX):
                self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
