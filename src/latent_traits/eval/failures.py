"""Damaged adapters and failed cells: evaluation records a failed cell and goes on with the others.

A failed cell is a record with ``status: failed``, the ``error`` and the ``failed_stage``
(``adapter``: its files are damaged; ``decoding``; ``judge``: decoded and scored, but the judge
failed, so its predictions are kept and a rerun only judges). Analysis skips failed records with
a warning; a rerun of evaluate.py evaluates them again. The job ends with CellsFailedError (exit
status 2) listing them, after every other cell is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latent_traits.errors import CorruptArtifactError, LatentTraitsError
from latent_traits.io import read_json

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
