"""Class labels of a classification task: verbalised, normalised and checked against its label set."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError

log = logging.getLogger(__name__)


def canonical_label(spec: TaskSpec, given: str) -> tuple[str, bool]:
    """(the task's label for a raw label, whether it differed only in surrounding whitespace or letter
    case). The raw label is verbalised by spec.label_map first; a label that still matches nothing is
    returned stripped, for check_labels to refuse."""
    tables = [dict(spec.label_map or {}), {label: label for label in spec.labels or ()}]
    for table in tables:
        if given in table:
            return table[given], False
    stripped = given.strip()
    for table in tables:
        if stripped in table:
            return table[stripped], True
        folded = [value for key, value in table.items() if key.casefold() == stripped.casefold()]
        if len(set(folded)) == 1:
            return folded[0], True
    return stripped, False


def normalise_all(spec: TaskSpec, raws: list[dict[str, Any]], origin: str) -> list[dict[str, Any]]:
    """normalise() each example. Labels that differ from the task's only in surrounding whitespace or
    letter case (' Positive ' for 'positive') are mapped to it, and a warning counts them."""
    examples, fixed = [], Counter()
    for raw in raws:
        example = dict(raw)
        if spec.is_classification:
            given = str(example.get("label", example.get("target", "")))
            label, differed = canonical_label(spec, given)
            if differed:
                fixed[(given, label)] += 1
            example["label"] = label
            example["target"] = label
        elif "answer" not in example:
            example["answer"] = None
        examples.append(example)
    if fixed and origin:
        shown = ", ".join(f"{g!r} -> {label!r} ({n})" for (g, label), n in fixed.most_common(5))
        log.warning("%s: %d labels of task %s differed from its labels only in whitespace or letter case and "
                    "were normalised: %s", origin, sum(fixed.values()), spec.name, shown)
    return examples


def check_labels(spec: TaskSpec, examples: list[dict[str, Any]], origin: str) -> None:
    if not spec.is_classification:
        return
    bad = Counter(e["label"] for e in examples if e["label"] not in spec.labels)
    if bad:
        raise LatentTraitsError(
            f"{origin}: labels outside the label set {list(spec.labels)} of task {spec.name!r}: "
            f"{dict(bad.most_common(10))} ({sum(bad.values())} examples)"
        )
