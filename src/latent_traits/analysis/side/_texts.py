"""Samples of the texts behind the matrix: source training inputs and target test inputs,
rebuilt from the task specs the records name."""

from __future__ import annotations

from typing import Any

import numpy as np

from latent_traits.analysis.side.context import SideContext
from latent_traits.data.catalog import load_task_spec, task_names
from latent_traits.data.load import load_examples
from latent_traits.errors import LatentTraitsError


def sample(texts: list[str], n: int, seed: int) -> list[str]:
    """n texts drawn without replacement with a seeded generator (all of them when fewer)."""
    if len(texts) <= n:
        return list(texts)
    chosen = np.random.default_rng(seed).choice(len(texts), size=n, replace=False)
    return [texts[i] for i in sorted(chosen)]


def target_texts(ctx: SideContext, record: dict[str, Any], n: int, seed: int) -> list[str]:
    """Inputs of the examples the cell evaluated (its predictions file's ids), n of them; without
    a predictions file, n of the task's test split as evaluation draws it by default."""
    rows = ctx.predictions(record)
    if rows:
        by_id = ctx.task_examples_by_id(record)
        ids = [str(row["id"]) for row in rows if str(row.get("id")) in by_id]
        if ids:
            return sample([by_id[i]["input"] for i in ids], n, seed)
    name = record["task"]["name"]
    source, local_path = ctx.record_source(record)
    examples, _ = load_examples(load_task_spec(name),
                                split=(record.get("data") or {}).get("split", "test"), n=n,
                                seed=seed, source=source, local_path=local_path)
    return [e["input"] for e in examples]


def source_texts(ctx: SideContext, record: dict[str, Any], n: int, seed: int) -> tuple[list[str], str]:
    """Training inputs of the record's adapter (rebuilt from its recorded settings), n of them,
    and where they came from. An adapter without recorded settings falls back to the train split
    of conf/tasks/<source dataset>.yaml, and says so."""
    examples = ctx.source_examples(record)
    if examples is not None:
        return sample([e["input"] for e in examples], n, seed), "the adapter's training data"
    name = (record.get("adapter") or {}).get("source_dataset")
    if not name or name not in task_names():
        raise LatentTraitsError(
            f"adapter {record['adapter']['id']!r} records neither its training settings nor a "
            "source dataset with a conf/tasks entry, so its training texts cannot be rebuilt")
    source, local_path = ctx.record_source(record)
    examples, _ = load_examples(load_task_spec(name), split="train", n=None, source=source,
                                local_path=local_path)
    return (sample([e["input"] for e in examples], n, seed),
            f"the train split of conf/tasks/{name}.yaml (the record has no training settings)")
