"""Synthetic cell records for the side-analysis tests, written in the real record schema
(eval/records.py) with metrics from eval/metrics.py, and read back through the local store."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import numpy as np

from latent_traits.analysis.run import (
    AnalysisOptions,
    BootstrapOptions,
    TransferOptions,
    analyze_records,
)
from latent_traits.analysis.store import local_records
from latent_traits.eval.metrics import classification_metrics, numeric_metrics
from latent_traits.eval.records import BASE_ADAPTER_ID, predictions_path, record_path
from latent_traits.io import write_json, write_jsonl

MODEL = "smollm2_135m"
SENTIMENT = ["positive", "negative", "neutral"]


@functools.cache
def train_settings(source: str, *overrides: str) -> dict[str, Any]:
    """The settings train.py records for `python train.py source_dataset=<source> <overrides>`."""
    from conftest import compose_config

    from latent_traits.train.run import training_settings

    return training_settings(compose_config("train", [f"source_dataset={source}", *overrides]))


def class_rows(references: list[str], predicted: list[str]) -> list[dict[str, Any]]:
    return [{"id": f"x{i}", "reference": r, "raw_output": p, "parsed": p, "correct": r == p,
             "output_chars": len(p), "output_tokens": 1}
            for i, (r, p) in enumerate(zip(references, predicted, strict=True))]


def gen_rows(correct: list[bool], output_chars: list[int], references: list[str],
             ids: list[str] | None = None) -> list[dict[str, Any]]:
    ids = ids or [f"g{i}" for i in range(len(correct))]
    return [{"id": i, "reference": ref, "raw_output": "y" * n, "parsed": "1", "correct": bool(c),
             "strict_correct": bool(c), "flexible_correct": bool(c), "output_chars": int(n),
             "output_tokens": max(1, int(n) // 4)}
            for i, c, n, ref in zip(ids, correct, output_chars, references, strict=True)]


def write_cell(eval_dir: Path, adapter: str, task: str, rows: list[dict[str, Any]], *,
               labels: list[str] | None = None, source_dataset: str | None = None,
               train_config: dict | None = None, train_data: dict | None = None,
               data_source: str = "offline:synthetic") -> None:
    """One cell record + predictions file under eval_dir/<MODEL>/<adapter>/<task>.*"""
    if labels:
        metrics, primary, ttype, scorer = classification_metrics(rows, labels), "accuracy", \
            "classification", "exact_label"
    else:
        metrics, primary, ttype, scorer = numeric_metrics(rows), "flexible_extract", \
            "generation", "numeric"
    base = adapter == BASE_ADAPTER_ID
    record = {
        "schema_version": 1, "status": "complete",
        "model": {"name": MODEL, "source": "offline_gguf"},
        "adapter": {"id": adapter, "path": None if base else f"/adapters/{adapter}",
                    "source_dataset": None if base else (source_dataset or adapter.split("/")[0]),
                    "train_config": train_config, "train_data": train_data},
        "task": {"name": task, "version": "1", "type": ttype, "tags": [], "labels": labels,
                 "scorer": scorer},
        "data": {"source": data_source, "stand_in": False, "split": "test", "n": len(rows),
                 "hash": "h", "class_distribution": None},
        "decoding": {"mode": "choice" if labels else "greedy"},
        "settings_hash": f"h-{adapter}-{task}", "metrics": metrics, "primary_metric": primary,
        "n_invalid": 0, "timing": {"seconds": 1.0, "examples_per_second": 1.0},
        "versions": {}, "git_sha": "x", "host": "test", "created_at": "2026-01-01T00:00:00+00:00",
    }
    write_jsonl(predictions_path(eval_dir, MODEL, adapter, task), rows)
    write_json(record_path(eval_dir, MODEL, adapter, task), record)


def draw_labels(rng: np.random.Generator, dist, n: int, labels=SENTIMENT) -> list[str]:
    return list(rng.choice(labels, size=n, p=np.asarray(dist) / np.sum(dist)))


def analyse(eval_dir: Path, **side: dict) -> Any:
    """analyze_records on the records under eval_dir with only the given side analyses."""
    options = AnalysisOptions(bootstrap=BootstrapOptions(0), transfer=TransferOptions(False),
                              side=side)
    return analyze_records(local_records(eval_dir / MODEL), options)


def side_result(analysis, name: str):
    return next(s for s in analysis.side if s.name == name)


def decodes(png: bytes) -> tuple[int, int]:
    """(height, width) of a PNG, decoded by matplotlib (raises on bad bytes)."""
    from matplotlib import image

    pixels = image.imread(io.BytesIO(png), format="png")
    return pixels.shape[0], pixels.shape[1]
