"""Synthetic cell records of the real schema on disk (record + predictions file), for the
similarity and dependency side analyses: adapters whose recorded training settings rebuild real
offline data, target tasks whose examples are real offline examples."""

from __future__ import annotations

import dataclasses
import functools
import io
from pathlib import Path

from test_analysis import MODEL, make_record

from latent_traits.analysis.options import AnalysisOptions, BootstrapOptions, TransferOptions
from latent_traits.analysis.run import analyze_records
from latent_traits.analysis.side.context import SideContext
from latent_traits.data.catalog import load_task_spec as _load_task_spec
from latent_traits.data.load import load_examples
from latent_traits.eval.records import BASE_ADAPTER_ID, load_records, predictions_path, record_path
from latent_traits.io import write_json, write_jsonl

load_task_spec = functools.lru_cache(maxsize=None)(_load_task_spec)  # Hydra compose is slow


def adapter_id(source: str) -> str:
    return f"{source}/default_r4_s0"


def train_config(source: str, n: int = 32) -> dict:
    """The settings training records, as much of them as rebuilding the data needs."""
    return {"source_dataset": {"name": source, "task": dataclasses.asdict(load_task_spec(source)),
                               "split": "train", "n": n, "transforms": None},
            "data": {"source": "offline", "test_fraction": 0.3}, "seed": 0}


def evaluated_examples(task: str, n: int) -> list[dict]:
    examples, _ = load_examples(load_task_spec(task), split="test", n=n, seed=0)
    return examples


def write_cell(eval_dir: Path, adapter: str, task: str, correct: dict[str, bool] | None,
               score: float | None = None, train_n: int = 32) -> None:
    """One cell: a record (score = mean correctness unless given) and, with `correct`
    ({example id: bool}), its predictions file."""
    spec = load_task_spec(task)
    if score is None:
        score = sum(correct.values()) / len(correct)
    record = make_record(adapter, task, score, n=len(correct or {}) or 16)
    record["task"] = spec.to_record()
    record["data"]["source"] = f"offline:{spec.offline['loader']}"
    if adapter != BASE_ADAPTER_ID:
        record["adapter"]["train_config"] = train_config(adapter.split("/")[0], train_n)
    if correct is not None:
        write_jsonl(predictions_path(eval_dir, MODEL, adapter, task),
                    [{"id": i, "correct": bool(c)} for i, c in correct.items()])
    write_json(record_path(eval_dir, MODEL, adapter, task), record)


def context(eval_dir: Path) -> SideContext:
    options = AnalysisOptions(bootstrap=BootstrapOptions(n_resamples=0),
                              transfer=TransferOptions(enabled=False))
    return SideContext(analyze_records(load_records(eval_dir), options))


def decodes_as_png(data: bytes) -> bool:
    from matplotlib.image import imread

    image = imread(io.BytesIO(data), format="png")
    return image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
