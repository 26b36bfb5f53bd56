"""W&B logging for evaluation (python evaluate.py logger=wandb): offline unless the user says online.

An evaluation job logs one W&B run per adapter (the base model counts as one), all in one group
(``experiment_name``) with job_type ``evaluate``: this is the shape the analysis stage reads back
(latent_traits.analysis.store: ``run.config`` holds ``model``, ``adapter`` and ``cells``, the
summary holds ``eval/<task>/<metric>``). Each run also gets a predictions table per task
(``predictions/<task>``) and, for classification, a confusion-matrix plot
(``confusion_matrix/<task>``). Cells skipped because they were finished are logged from their
records on disk, so a resumed job's runs are complete. Nothing secret is logged: configs hold the
model, adapter and cell settings only (judge identities carry the name of the key's environment
variable at most, never a key).
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
CELL_KEYS = ("task", "data", "decoding", "settings_hash", "primary_metric", "n_invalid", "created_at",
             "judge", "n_invalid_verdicts", "code_scoring", "timing")
TABLE_COLUMNS = ("id", "reference", "raw_output", "parsed", "correct", "output_chars", "output_tokens",
                 "judge_verdict")
MAX_TABLE_TEXT = 2000


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


def _cell(text: Any) -> Any:
    return text[:MAX_TABLE_TEXT] if isinstance(text, str) else text


class EvalWandb:
    """One W&B run per adapter, switched as the job moves from adapter to adapter."""

    def __init__(self, project: str, group: str, mode: str = "offline", entity: str | None = None,
                 save_dir: str | None = None, tags: list[str] | None = None):
        import wandb

        if mode not in ("offline", "online", "disabled"):
            raise LatentTraitsError(f"W&B mode {mode!r}: use offline or online")
        self.wandb = wandb
        self.project, self.group, self.mode, self.entity = project, group, mode, entity
        self.save_dir, self.tags = save_dir, list(tags or [])
        self.run = None
        self.adapter_id: str | None = None
        self.cells: dict[str, Any] = {}
        self.run_dirs: list[str] = []

    @classmethod
    def from_config(cls, logger_cfg: Mapping[str, Any], experiment_name: str, model_name: str) -> EvalWandb:
        offline = logger_cfg.get("offline", True)
        if save_dir := logger_cfg.get("save_dir"):
            Path(save_dir).mkdir(parents=True, exist_ok=True)
        return cls(project=str(logger_cfg.get("project") or "latent-traits"), group=experiment_name,
                   mode="offline" if offline else "online", entity=logger_cfg.get("entity"),
                   save_dir=save_dir, tags=["evaluate", model_name])

    def _start(self, record: Mapping[str, Any]) -> None:
        self.finish()
        adapter = dict(record["adapter"])
        self.run = self.wandb.init(
            project=self.project, entity=self.entity, group=self.group, job_type="evaluate",
            name=adapter["id"], tags=self.tags, dir=self.save_dir, mode=self.mode,
            config=redact({"model": record["model"], "adapter": adapter, "cells": {}}),
            settings=self.wandb.Settings(silent=True, console="off"),
        )
        self.adapter_id, self.cells = adapter["id"], {}
        self.run_dirs.append(str(Path(self.run.dir).parent))

    def log_cell(self, record_path: str | Path, predictions_path: str | Path | None = None) -> None:
        record = read_json(record_path)
        if record["adapter"]["id"] != self.adapter_id:
            self._start(record)
        task = record["task"]["name"]
        self.cells[task] = {k: record[k] for k in CELL_KEYS if k in record}
        self.run.config.update(redact({"cells": self.cells}), allow_val_change=True)
        payload: dict[str, Any] = {f"eval/{task}/{k}": v for k, v in scalar_metrics(record["metrics"]).items()}
        rows = read_jsonl(predictions_path) if predictions_path and Path(predictions_path).is_file() else []
        if rows:
            table = self.wandb.Table(columns=list(TABLE_COLUMNS))
            for row in rows:
                table.add_data(*[_cell(row.get(c)) for c in TABLE_COLUMNS])
            payload[f"predictions/{task}"] = table
        labels = (record["task"].get("labels") or []) if record["task"].get("type") == "classification" else []
        if rows and labels:
            index = {label: i for i, label in enumerate(labels)}
            payload[f"confusion_matrix/{task}"] = self.wandb.plot.confusion_matrix(
                y_true=[index[r["reference"]] for r in rows], preds=[index[r["parsed"]] for r in rows],
                class_names=list(labels), title=f"{record['adapter']['id']} on {task}")
        self.run.log(payload)
        for key, value in payload.items():  # the analysis stage reads metrics from the summary
            if key.startswith("eval/"):
                self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run, self.adapter_id = None, None
