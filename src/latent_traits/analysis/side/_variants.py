"""Adapters that are variants of each other: equal training settings except named keys.

The rule, used by every ablation and comparison: two adapters form a variant group for keys
K when their recorded training settings (record.adapter.train_config, the settings hash
input of train.py) are equal after removing K and the keys that only name things
(source_dataset.name, source_dataset.pairs_with), and differ in K. Records without training settings (e.g. W&B runs
that did not log them) fall back to the adapter-id convention `<source>/<lora>_r<r>_s<seed>`
with source-name suffixes (`_mislabeled`, `_nums`, `_balanced`/`_imbalanced`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from latent_traits.analysis.matrix import cell_row

from .context import SideContext

NAMING_KEYS = ("source_dataset.name", "source_dataset.pairs_with")
ADAPTER_ID = re.compile(r"^(?P<source>[^/]+)/(?P<lora>.+)_r(?P<r>\d+)_s(?P<seed>\d+)(?P<tag>.*)$")


def flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{dotted key: JSON of the leaf value} of nested settings."""
    out: dict[str, str] = {}
    for key, value in settings.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = json.dumps(value, sort_keys=True, default=str)
    return out


def _under(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def adapter_settings(ctx: SideContext) -> dict[str, dict[str, str] | None]:
    """{adapter row: flattened training settings, or None where no record carries them}."""
    out: dict[str, dict[str, str] | None] = {}
    for row in ctx.adapters():
        settings = next(((r["adapter"].get("train_config")) for r in ctx.analysis.cells
                         if cell_row(r) == row
                         and r["adapter"].get("train_config")), None)
        out[row] = flatten(settings) if settings else None
    return out


def variant_groups(ctx: SideContext, varied: Iterable[str], ignore: Iterable[str] = (),
                   accept: Callable[[dict[str, dict[str, str]]], bool] | None = None,
                   ) -> list[dict[str, dict[str, str]]]:
    """Groups (>= 2 adapters) equal in every setting outside `varied` + `ignore` + naming keys
    and pairwise different in `varied`; each group is {adapter row: {varied key: value}}.
    `accept` may reject a group (e.g. one that does not contrast digit and word labels)."""
    varied, skip = tuple(varied), (*varied, *ignore, *NAMING_KEYS)
    buckets: dict[str, dict[str, dict[str, str]]] = {}
    for row, flat in adapter_settings(ctx).items():
        if flat is None:
            continue
        rest = json.dumps({k: v for k, v in flat.items() if not _under(k, skip)}, sort_keys=True)
        buckets.setdefault(rest, {})[row] = {k: v for k, v in flat.items() if _under(k, varied)}
    groups = []
    for members in buckets.values():
        distinct = {json.dumps(v, sort_keys=True) for v in members.values()}
        if len(members) >= 2 and len(distinct) == len(members) and (accept is None or accept(members)):
            groups.append(dict(sorted(members.items())))
    return sorted(groups, key=lambda g: list(g))


def name_pairs(ctx: SideContext, suffix_a: str, suffix_b: str) -> list[tuple[str, str]]:
    """Fallback for adapters without settings: (a, b) whose ids match `<x><suffix_a>/<rest>`
    and `<x><suffix_b>/<rest>` (same LoRA, rank, seed and tag)."""
    settings = adapter_settings(ctx)
    parsed = {row: ADAPTER_ID.match(row.rpartition(":")[2]) for row in ctx.adapters()
              if settings.get(row) is None}
    rows = {(m["source"], row.rpartition(":")[2].partition("/")[2]): row
            for row, m in parsed.items() if m}
    pairs = []
    for (source, rest), row in sorted(rows.items()):
        if not source.endswith(suffix_a) or (suffix_a and source == suffix_a):
            continue
        stem = source[: len(source) - len(suffix_a)] if suffix_a else source
        other = rows.get((stem + suffix_b, rest))
        if other is not None and other != row:
            pairs.append((row, other))
    return pairs


def rank_of(row: str, flat: Mapping[str, str] | None) -> int | None:
    if flat and "lora.r" in flat:
        return int(json.loads(flat["lora.r"]))
    match = ADAPTER_ID.match(row.rpartition(":")[2])
    return int(match["r"]) if match else None


def source_task(record: Mapping[str, Any]) -> str | None:
    """The task an adapter was trained on: its settings' source task, else its source name."""
    settings = record["adapter"].get("train_config") or {}
    task = (settings.get("source_dataset") or {}).get("task") or {}
    return task.get("name") or record["adapter"].get("source_dataset")


def source_name(record: Mapping[str, Any]) -> str | None:
    """The source dataset variant's name (e.g. flipkart_balanced)."""
    settings = record["adapter"].get("train_config") or {}
    return (settings.get("source_dataset") or {}).get("name") or record["adapter"].get("source_dataset")


def paired_task(record: Mapping[str, Any], targets: Iterable[str], aliases: Mapping[str, str] | None = None
                ) -> str | None:
    """The target task an adapter stands for in similarity and asymmetry, or None: `aliases`
    (source name -> task) first, then its recorded source_dataset.pairs_with (flipkart_balanced
    -> flipkart, metamathqa -> gsm8k, null for an ablation), else its source name where that is a
    target (records made before pairs_with existed)."""
    name, targets = source_name(record), set(targets)
    settings = (record["adapter"].get("train_config") or {}).get("source_dataset") or {}
    if aliases and name in aliases:
        task = aliases[name]
    elif "pairs_with" in settings:
        task = settings["pairs_with"]
    else:
        task = name
    return task if task in targets else None
