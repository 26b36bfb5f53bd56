"""Check that a task's data loads and scores as its spec says: the columns its source block maps
are there, labels fall in the label set, ids are unique, and a numeric task's references parse.

    python -m latent_traits.data check --source hub [--tasks goat,flipkart] [--n 16]

With --source hub only the first n rows of each split are read (where a network exists); the
tests run the same checks on recorded rows of each hub dataset's schema (tests/fixtures/hub/).
"""

from __future__ import annotations

from typing import Any

from latent_traits.data.labels import check_labels, normalise_all
from latent_traits.data.load import check_unique_ids, hub_origin, load_examples, load_hub
from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError
from latent_traits.eval.scorers import reference_answer


def check_examples(spec: TaskSpec, examples: list[dict[str, Any]], origin: str) -> str:
    """Refuse what would load or score wrong; a one-line summary of what was checked."""
    if not examples:
        raise LatentTraitsError(f"{origin}: no rows")
    check_labels(spec, examples, origin)
    check_unique_ids(examples, origin, spec)
    empty = [e["id"] for e in examples if not str(e.get("input", "")).strip()]
    if empty:
        raise LatentTraitsError(f"{origin}: {len(empty)} example(s) of task {spec.name!r} have an empty input, "
                                f"e.g. {empty[:3]}: check the hub block's input column")
    if spec.scorer == "numeric":
        unparsed = [e["id"] for e in examples if reference_answer(e, spec.answer_forms) is None]
        if unparsed:
            raise LatentTraitsError(f"{origin}: the reference answer of {len(unparsed)} example(s) of task "
                                    f"{spec.name!r} does not parse, e.g. {unparsed[:3]}")
    labels = sorted({e["label"] for e in examples}) if spec.is_classification else None
    return f"{len(examples)} rows" + (f", labels {labels}" if labels else "")


def check_task(spec: TaskSpec, source: str = "hub", n: int = 16, local_path: str | None = None) -> list[str]:
    """One line per split checked; raises LatentTraitsError on the first problem."""
    lines = []
    for split in ("train", "test"):
        if source == "hub":
            origin = f"{hub_origin(spec)} ({split})"
            examples = normalise_all(spec, load_hub(spec, split, limit=n), origin)
        else:
            examples, provenance = load_examples(spec, split, n=n, source=source, local_path=local_path)
            origin = f"{provenance['source']} ({split})"
        lines.append(f"ok  {spec.name} {split}: {check_examples(spec, examples, origin)} from {origin}")
    return lines
