"""Damaged adapters and failed cells: evaluation records a failed cell and goes on with the others.

A failed cell is a record with ``status: failed``, the ``error`` and the ``failed_stage``
(``adapter``: its files are damaged; ``decoding``; ``judge``: decoded and scored, but the judge
failed, so its predictions are kept and a rerun only judges). Analysis skips failed records with
a warning; a rerun of evaluate.py evaluates them again. The job ends with CellsFailedError (exit
status 2) listing them, after every other cell is written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from latent_traits.config import model_record
from latent_traits.errors import CorruptArtifactError, LatentTraitsError
from latent_traits.eval.records import SCHEMA_VERSION, predictions_path, record_path
from latent_traits.io import provenance, read_json, read_jsonl, write_json
from latent_traits.redact import redact
from latent_traits.rerun import cell_command, task_overrides

log = logging.getLogger(__name__)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
STAGES = ("adapter", "decoding", "judge")


class CellsFailedError(LatentTraitsError):
    """Some cells failed; every other cell was evaluated and written."""


def retrain_hint(path: Path, train_result: dict[str, Any] | None) -> str:
    rerun = (train_result or {}).get("rerun") or "python train.py source_dataset=<source> ..."
    return f"delete the folder {path} and rerun `{rerun}` to train it again"


def adapter_problem(path: Path, train_result: dict[str, Any] | None) -> str | None:
    """What is wrong with an adapter folder's files (checked before any model loads), or None."""
    config = path / ADAPTER_CONFIG
    weights = path / ADAPTER_WEIGHTS
    if (train_result or {}).get("steps") == 0:  # trainer.max_steps=0, before it was refused
        return f"{path / 'train_result.json'} says it trained for 0 steps; {retrain_hint(path, train_result)}"
    if not config.is_file():
        return f"{config} is missing; {retrain_hint(path, train_result)}"
    try:
        if not isinstance(read_json(config, fix=retrain_hint(path, train_result)), dict):
            return f"{config} does not hold a JSON object; {retrain_hint(path, train_result)}"
    except CorruptArtifactError as err:
        return str(err)
    if not weights.is_file():
        return f"{weights} is missing; {retrain_hint(path, train_result)}"
    from safetensors import safe_open

    try:
        with safe_open(str(weights), "pt") as handle:  # reads the header: a cut file fails here
            handle.keys()
    except Exception as err:  # safetensors raises its own error type
        return f"{weights} is damaged (truncated?): {err}; {retrain_hint(path, train_result)}"
    return None


def summary(failed: list[tuple[str, str, str]], n_cells: int) -> str:
    """One message for the end of the job: which cells failed, why, and what to do."""
    lines = "; ".join(f"{adapter} x {task}: {error}" for adapter, task, error in failed)
    return (f"{len(failed)} of {n_cells} cells failed (recorded with status failed; the others were written): "
            f"{lines}. Fix the cause and rerun the same evaluate.py command: finished cells are skipped, "
            "failed ones evaluated again")


def existing_record(path: Path) -> dict[str, Any] | None:
    """The record at `path`, or None: absent, or damaged (then logged, and the cell evaluated again)."""
    if not path.is_file():
        return None
    try:
        record = read_json(path, fix="evaluating the cell again")
    except CorruptArtifactError as err:
        log.warning("%s", err)
        return None
    return record if isinstance(record, dict) else None


def unjudged_record(path: Path, predictions: Path, settings_hash: str) -> dict[str, Any] | None:
    """A failed record of these settings whose cell was decoded and scored before the judge failed
    (its predictions kept): a rerun only judges it."""
    record = existing_record(path)
    if (not record or record.get("status") != "failed" or record.get("failed_stage") != "judge"
            or record.get("settings_hash") != settings_hash or not predictions.is_file()):
        return None
    return record


def record_failed_cell(cfg: DictConfig, state: dict[str, Any], cell: Any, stage: str, error: str,
                       extra: dict[str, Any] | None = None) -> None:
    """Write a record with status failed (never over a complete one), with `extra` fields (what a
    failed judge leaves: the scores; a traceback), and list the cell in state["failed"]."""
    adapter, spec = cell.adapter, cell.spec
    state["failed"].append((adapter.id, spec.name, error))
    log.error("%s x %s failed (%s): %s", adapter.id, spec.name, stage, error)
    path = record_path(cfg.paths.eval_dir, cfg.model.name, adapter.id, spec.name)
    previous = existing_record(path)
    if previous and previous.get("status") == "complete":  # an earlier good result stays
        return
    write_json(path, redact({
        "schema_version": SCHEMA_VERSION, "status": "failed", "failed_stage": stage, "error": error,
        "model": model_record(cfg.model),
        "adapter": {"id": adapter.id, "path": str(adapter.path) if adapter.path else None},
        "task": spec.to_record(), "data": cell.data_prov, "settings_hash": cell.settings["hash"],
        "rerun": cell_command(task_overrides(), adapter.id, spec.name, adapter.is_base),
        **(extra or {}), **provenance(),
    }))


def decoded_from_record(cfg: DictConfig, cell: Any) -> tuple:
    """(rows, metrics, primary, n_invalid, seconds) of a cell decoded before its judge failed."""
    record = cell.unjudged
    rows = read_jsonl(predictions_path(cfg.paths.eval_dir, cfg.model.name, cell.adapter.id, cell.spec.name),
                      fix="delete it and its record, then rerun evaluate.py to decode the cell again")
    log.info("%s x %s: judging the kept predictions of a cell whose judge failed", cell.adapter.id, cell.spec.name)
    return (rows, record["metrics"], record["primary_metric"], record["n_invalid"], record["timing"]["seconds"])
