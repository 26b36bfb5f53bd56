"""Cell metrics from prediction rows (torchmetrics for the classification ones)."""

from __future__ import annotations

from collections import Counter
from statistics import mean
from typing import Any

import torch
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)


def classification_metrics(rows: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    index = {label: i for i, label in enumerate(labels)}
    preds = torch.tensor([index[r["parsed"]] for r in rows])
    target = torch.tensor([index[r["reference"]] for r in rows])
    k = len(labels)
    return {
        "accuracy": float(MulticlassAccuracy(num_classes=k, average="micro")(preds, target)),
        "macro_f1": float(MulticlassF1Score(num_classes=k, average="macro")(preds, target)),
        "confusion_matrix": {
            "labels": labels,  # rows: reference, columns: prediction
            "counts": MulticlassConfusionMatrix(num_classes=k)(preds, target).tolist(),
        },
        "predicted_distribution": {label: Counter(r["parsed"] for r in rows).get(label, 0) for label in labels},
        **length_metrics(rows),
    }


def numeric_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "flexible_extract": mean(float(r["flexible_correct"]) for r in rows),
        "strict_match": mean(float(r["strict_correct"]) for r in rows),
        **length_metrics(rows),
    }


def code_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """code_match: parses and defines the reference's entry names (a proxy, no execution);
    execution_pass only where the sandbox ran the code (over the examples that have tests)."""
    recalls = [r["name_recall"] for r in rows if r.get("name_recall") is not None]
    metrics: dict[str, Any] = {
        "code_match": mean(float(r["correct"]) for r in rows),
        "parses": mean(float(r["parses"]) for r in rows),
        "name_recall": mean(recalls) if recalls else None,
    }
    if any("executed" in r for r in rows):
        executed = [r for r in rows if r.get("executed")]
        metrics["n_executed"] = len(executed)
        metrics["n_without_tests"] = sum(not r.get("executed") for r in rows)
        metrics["execution_pass"] = mean(float(r["execution_correct"]) for r in executed) if executed else None
    return {**metrics, **length_metrics(rows)}


def length_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "mean_output_chars": mean(r["output_chars"] for r in rows),
        "mean_output_tokens": mean(r["output_tokens"] for r in rows),
    }
