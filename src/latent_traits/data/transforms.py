"""Variants of a dataset without new code: class balance or ratio, seeded subsample, label noise.

Applied in a fixed order (class ratio, then subsample, then label noise) so that a config reads
the same way whatever order its keys are written in. Each transform reports what it did, and
that report travels into the provenance of every record made from the data.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any

from latent_traits.errors import LatentTraitsError

NOISE_MODES = ("wrong", "shuffle")


def subsample(examples: list[dict], n: int | None, seed: int) -> list[dict]:
    if n is None or n >= len(examples):
        return list(examples)
    if n <= 0:
        raise LatentTraitsError(f"subsample n={n}: use a positive number or null for all examples")
    return random.Random(seed).sample(examples, n)


def class_ratio(examples: list[dict], labels: list[str], ratio: dict[str, float] | str,
                seed: int, n: int | None = None) -> list[dict]:
    """Downsample to the given class ratio ('balanced' = equal shares), as large as the data
    allows, or exactly n examples when n is given and reachable."""
    if ratio == "balanced":
        ratio = {label: 1.0 for label in labels}
    ratio = {str(label): share for label, share in ratio.items()}  # {1: 0.1} on a command line names label "1"
    unknown = sorted(set(ratio) - set(labels))
    if unknown:
        raise LatentTraitsError(f"class ratio names labels {unknown} outside the label set {labels}")
    total = sum(float(v) for v in ratio.values())
    if total <= 0 or any(float(v) < 0 for v in ratio.values()):
        raise LatentTraitsError(f"class ratio {dict(ratio)} needs non-negative shares summing above 0")
    shares = {label: float(ratio.get(label, 0.0)) / total for label in labels}
    by_label: dict[str, list[dict]] = defaultdict(list)
    for example in examples:
        by_label[example["label"]].append(example)
    capacity = min(len(by_label[label]) / share for label, share in shares.items() if share > 0)
    size = int(capacity) if n is None else n
    if n is not None and n > capacity + 1e-9:
        raise LatentTraitsError(
            f"class ratio {dict(ratio)} with n={n} needs more examples than the data has "
            f"({dict(Counter(e['label'] for e in examples))}); lower n"
        )
    counts = largest_remainder({label: share * size for label, share in shares.items()})
    rng = random.Random(seed)
    chosen = []
    for label in labels:
        chosen += rng.sample(by_label[label], counts[label])
    rng.shuffle(chosen)
    if not chosen:
        raise LatentTraitsError(f"class ratio {dict(ratio)} leaves no examples")
    return chosen


def largest_remainder(quotas: dict[str, float]) -> dict[str, int]:
    """Round shares to integers that sum to the rounded total (Hamilton's method)."""
    counts = {k: int(v) for k, v in quotas.items()}
    leftover = round(sum(quotas.values())) - sum(counts.values())
    for key in sorted(quotas, key=lambda k: quotas[k] - counts[k], reverse=True)[:max(leftover, 0)]:
        counts[key] += 1
    return counts


def label_noise(examples: list[dict], labels: list[str], fraction: float, mode: str,
                seed: int) -> tuple[list[dict], int]:
    """Corrupt the labels of round(fraction * n) examples; return the data and how many changed.

    mode `wrong`: each chosen example gets a different label, uniformly at random (fraction 1.0
    makes every label wrong, as the study's Amazon-mislabeled). mode `shuffle`: the chosen
    examples' labels are permuted among themselves (class distribution kept; an example can
    draw its own label back, so at most the fraction changes)."""
    if mode not in NOISE_MODES:
        raise LatentTraitsError(f"label_noise.mode={mode!r} is not one of {NOISE_MODES}")
    if not 0.0 <= fraction <= 1.0:
        raise LatentTraitsError(f"label_noise.fraction={fraction} must lie in [0, 1]")
    if len(labels) < 2:
        raise LatentTraitsError("label noise needs at least two labels")
    rng = random.Random(seed)
    k = round(fraction * len(examples))
    chosen = sorted(rng.sample(range(len(examples)), k))
    out = [dict(e) for e in examples]
    if mode == "wrong":
        for i in chosen:
            out[i]["label"] = rng.choice([label for label in labels if label != out[i]["label"]])
    else:
        permuted = [out[i]["label"] for i in chosen]
        rng.shuffle(permuted)
        for i, label in zip(chosen, permuted, strict=True):
            out[i]["label"] = label
    changed = 0
    for before, after in zip(examples, out, strict=True):
        if after["label"] != before["label"]:
            after["original_label"] = before["label"]
            after["target"] = after["label"]
            changed += 1
    return out, changed


def check_transforms(transforms: dict[str, Any] | None, labels: list[str] | None) -> dict[str, Any]:
    transforms = dict(transforms or {})
    unknown = sorted(set(transforms) - {"class_ratio", "label_noise"})
    if unknown:
        raise LatentTraitsError(f"unknown transforms {unknown}; known: class_ratio, label_noise")
    if transforms.get("class_ratio") and not labels:
        raise LatentTraitsError("class_ratio applies to classification tasks only")
    noise = transforms.get("label_noise")
    if noise and float(noise.get("fraction", 0)) > 0 and not labels:
        raise LatentTraitsError("label_noise applies to classification tasks only")
    return transforms


def select_examples(examples: list[dict], labels: list[str] | None, transforms: dict[str, Any] | None,
                    n: int | None, seed: int) -> list[dict]:
    """The examples a run uses: the class ratio's, or a seeded subsample of n. Reads only each
    example's label, so it may run on light keys before the full rows are read (hub data)."""
    transforms = check_transforms(transforms, labels)
    if transforms.get("class_ratio"):
        return class_ratio(examples, labels or [], transforms["class_ratio"], seed, n=n)
    return subsample(examples, n, seed)


def add_label_noise(examples: list[dict], labels: list[str] | None, transforms: dict[str, Any] | None,
                    seed: int) -> tuple[list[dict], dict[str, Any]]:
    """The label-noise transform on the selected examples, and the report of every transform."""
    transforms = check_transforms(transforms, labels)
    report: dict[str, Any] = {"class_ratio": transforms["class_ratio"]} if transforms.get("class_ratio") else {}
    noise = transforms.get("label_noise")
    if noise and float(noise.get("fraction", 0)) > 0:
        examples, changed = label_noise(examples, labels or [], float(noise["fraction"]),
                                        noise.get("mode", "wrong"), seed)
        report["label_noise"] = {**dict(noise), "n_changed": changed}
    return examples, report


def apply_transforms(examples: list[dict], labels: list[str] | None, transforms: dict[str, Any] | None,
                     n: int | None, seed: int) -> tuple[list[dict], dict[str, Any]]:
    """Class ratio -> subsample n -> label noise; returns the examples and a report of each step."""
    return add_label_noise(select_examples(examples, labels, transforms, n, seed), labels, transforms, seed)
