"""Load a task's examples from the hub, local files or the offline default, then split and subsample.

Every call returns the examples and a provenance dict (source, split, n, class distribution,
content hash) that travels into every training and evaluation record.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from latent_traits.data.offline import load_offline
from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError
from latent_traits.io import stable_hash

SPLITS = ("train", "test")
DATA_SOURCES = ("offline", "hub", "local")


def in_test_split(example_id: str, test_fraction: float) -> bool:
    """A stable split by id: the same example lands in the same split on every machine."""
    bucket = int(hashlib.sha256(example_id.encode()).hexdigest()[:8], 16) % 10_000
    return bucket < test_fraction * 10_000


def normalise(spec: TaskSpec, raw: dict[str, Any]) -> dict[str, Any]:
    """Fill `target` from the label for classification and check labels against the label set."""
    example = dict(raw)
    if spec.is_classification:
        label = str(example.get("label", example.get("target", ""))).strip()
        example["label"] = label
        example["target"] = label
    elif "answer" not in example:
        example["answer"] = None
    return example


def check_labels(spec: TaskSpec, examples: list[dict[str, Any]], origin: str) -> None:
    if not spec.is_classification:
        return
    bad = Counter(e["label"] for e in examples if e["label"] not in spec.labels)
    if bad:
        raise LatentTraitsError(
            f"{origin}: labels outside the label set {list(spec.labels)} of task {spec.name!r}: "
            f"{dict(bad.most_common(10))} ({sum(bad.values())} examples)"
        )


def load_hub(spec: TaskSpec, split: str) -> list[dict[str, Any]]:
    if not spec.hub:
        raise LatentTraitsError(f"task {spec.name!r} has no hub source; use data.source=offline")
    hub = spec.hub
    hub_split = (hub.get("splits") or {}).get(split, split)
    try:
        import datasets

        table = datasets.load_dataset(hub["id"], hub.get("subset"), split=hub_split)
    except Exception as err:  # network, auth and missing-dataset errors all land here
        raise LatentTraitsError(
            f"could not load {hub['id']} (subset {hub.get('subset')}, split {hub_split}) from the "
            f"hub: {type(err).__name__}: {err}. Without network use data.source=offline"
        ) from err
    columns = hub.get("columns") or {}
    present = list(table.column_names)
    for field_name, column in columns.items():
        for col in [column] if isinstance(column, str) else column:
            if col not in present:
                raise LatentTraitsError(
                    f"{hub['id']}: column {col!r} (for {field_name}) is missing; columns present: {present}"
                )
    examples = []
    for i, row in enumerate(table):
        example = {"id": f"{spec.name}-{hub_split}-{row.get(hub.get('id_column', ''), i)}"}
        for field_name, column in columns.items():
            values = [row[column]] if isinstance(column, str) else [row[c] for c in column]
            example[field_name] = "\n".join(str(v) for v in values)
        examples.append(example)
    return examples


def load_local(path: str | Path) -> list[dict[str, Any]]:
    """A jsonl, csv or parquet file with columns id (optional), input, and label or target."""
    path = Path(path)
    if not path.is_file():
        raise LatentTraitsError(f"local data file {path} does not exist")
    if path.suffix == ".jsonl":
        rows = []
        for line_no, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise LatentTraitsError(f"{path}:{line_no}: not valid JSON ({err.msg})") from err
    elif path.suffix in (".csv", ".parquet"):
        import pandas as pd

        frame = pd.read_csv(path, dtype=str) if path.suffix == ".csv" else pd.read_parquet(path)
        rows = frame.to_dict("records")
    else:
        raise LatentTraitsError(f"local data file {path}: use .jsonl, .csv or .parquet")
    if rows and "input" not in rows[0]:
        raise LatentTraitsError(f"{path}: needs an `input` column; columns present: {sorted(rows[0])}")
    return [{"id": str(r.get("id", f"{path.stem}-{i}")), **{k: v for k, v in r.items() if k != "id"}}
            for i, r in enumerate(rows)]


def load_examples(
    spec: TaskSpec, split: str, n: int | None = None, seed: int = 0, source: str = "offline",
    local_path: str | None = None, test_fraction: float = 0.3,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if split not in SPLITS:
        raise LatentTraitsError(f"split {split!r} is not one of {SPLITS}")
    if source == "offline":
        pool = load_offline(dict(spec.offline))
        origin = f"offline:{spec.offline.get('loader')}"
        examples = [e for e in pool if in_test_split(e["id"], test_fraction) == (split == "test")]
    elif source == "hub":
        examples, origin = load_hub(spec, split), f"hub:{spec.hub['id'] if spec.hub else None}"
    elif source == "local":
        if not local_path:
            raise LatentTraitsError("data.source=local needs data.local_path=<file>")
        examples, origin = load_local(local_path), f"local:{local_path}"
    else:
        raise LatentTraitsError(f"data.source={source!r} is not one of {DATA_SOURCES}")
    examples = [normalise(spec, e) for e in examples]
    check_labels(spec, examples, origin)
    if n is not None and n < len(examples):
        examples = random.Random(seed).sample(examples, n)
    if not examples:
        raise LatentTraitsError(f"task {spec.name!r}: no examples in split {split!r} from {origin}")
    provenance = {
        "source": origin,
        "stand_in": source == "offline" and spec.stand_in,
        "split": split,
        "n": len(examples),
        "seed": seed,
        "hash": stable_hash([(e["id"], e["input"], e["target"]) for e in examples]),
        "class_distribution": dict(sorted(Counter(e["label"] for e in examples).items()))
        if spec.is_classification else None,
    }
    return examples, provenance
