"""The texts behind the matrix: a target task's evaluated questions, by example id, and samples
of source training inputs and target test inputs, rebuilt from the task specs the records name."""

from __future__ import annotations

from typing import Any

import numpy as np

from latent_traits.analysis.side import SideContext
from latent_traits.data.catalog import load_task_spec, task_names
from latent_traits.data.load import DATA_SOURCES, load_examples
from latent_traits.errors import LatentTraitsError


def record_source(ctx: SideContext, record: dict[str, Any]) -> tuple[str, str | None]:
    """Where the cell's examples came from (offline | hub | local, and a local file), as its
    record says (`data.source` = "<kind>:<where>"), else the context's defaults."""
    kind, _, where = str((record.get("data") or {}).get("source", "")).partition(":")
    if kind not in DATA_SOURCES:
        return ctx.data_source, ctx.local_path
    if kind == "local":
        return kind, ctx.local_path or where or None
    return kind, ctx.local_path


def task_examples_by_id(ctx: SideContext, record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every example of the cell's task and split that evaluation could have drawn, by id: the
    whole split before subsampling, and for sources split by a stable hash of the id (offline
    pools, shared hub splits, single local files) the whole pool, so that no evaluated id is
    missed whatever data.test_fraction evaluation ran with. Read once per context."""
    name = record["task"]["name"]
    split = (record.get("data") or {}).get("split", "test")
    source, local_path = record_source(ctx, record)
    key = (name, split, source, local_path)
    if key in ctx._task_cache:
        return ctx._task_cache[key]
    if name not in task_names():
        raise LatentTraitsError(
            f"target task {name!r} has no conf/tasks/{name}.yaml here, so its questions cannot be "
            "re-read; run the analysis from the repository that evaluated it")
    examples, _ = load_examples(load_task_spec(name), split=split, n=None, source=source,
                                local_path=local_path, test_fraction=1.0 if split == "test" else 0.0)
    ctx._task_cache[key] = {str(e["id"]): e for e in examples}
    return ctx._task_cache[key]


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
        by_id = task_examples_by_id(ctx, record)
        ids = [str(row["id"]) for row in rows if str(row.get("id")) in by_id]
        if ids:
            return sample([by_id[i]["input"] for i in ids], n, seed)
    name = record["task"]["name"]
    source, local_path = record_source(ctx, record)
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
    source, local_path = record_source(ctx, record)
    examples, _ = load_examples(load_task_spec(name), split="train", n=None, source=source,
                                local_path=local_path)
    return (sample([e["input"] for e in examples], n, seed),
            f"the train split of conf/tasks/{name}.yaml (the record has no training settings)")
