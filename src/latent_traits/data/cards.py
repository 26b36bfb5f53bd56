"""Data cards: per task, where its data comes from (and whether that is a stand-in), its size
per split, label distribution, input and target lengths, its prompt and one formatted example.

    python -m latent_traits.data cards [--tasks a,b] [--out DIR] [--source offline]
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from latent_traits.data.catalog import load_task_spec, task_names, task_roles
from latent_traits.data.load import SPLITS, load_examples
from latent_traits.data.prompts import format_prompt
from latent_traits.data.spec import TaskSpec
from latent_traits.io import write_text

EXAMPLE_MAX_CHARS = 1500


def default_out_dir() -> Path:
    return Path(os.environ.get("LATENT_TRAITS_ARTIFACTS", "artifacts")) / "data_cards"


def length_stats(texts: list[str]) -> dict[str, float]:
    lengths = sorted(len(t) for t in texts)
    if not lengths:
        return {"mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0.0}
    p95 = lengths[min(len(lengths) - 1, int(round(0.95 * (len(lengths) - 1))))]
    return {"mean": round(statistics.fmean(lengths), 1), "median": float(statistics.median(lengths)),
            "p95": float(p95), "max": float(lengths[-1])}


def task_card_data(spec: TaskSpec, source: str = "offline", local_path: str | None = None,
                   test_fraction: float = 0.3) -> dict[str, Any]:
    """What a card shows, as data (the whole split: no subsample, no transforms)."""
    splits = {}
    for split in SPLITS:
        examples, provenance = load_examples(spec, split, n=None, source=source, local_path=local_path,
                                             test_fraction=test_fraction)
        splits[split] = {
            "n": len(examples), "hash": provenance["hash"], "origin": provenance["source"],
            "labels": dict(Counter(e["label"] for e in examples)) if spec.is_classification else None,
            "input_chars": length_stats([e["input"] for e in examples]),
            "target_chars": length_stats([str(e["target"]) for e in examples]),
            "example": examples[0],
        }
    stand_in = source == "offline" and spec.stand_in
    return {"spec": spec, "source": source, "stand_in": stand_in, "splits": splits}


def _labels_line(counts: dict[str, int], labels: tuple[str, ...]) -> str:
    total = sum(counts.values()) or 1
    return ", ".join(f"`{label}` {counts.get(label, 0)} ({100 * counts.get(label, 0) / total:.0f}%)"
                     for label in labels)


def render_card(data: dict[str, Any], roles: list[str]) -> str:
    spec: TaskSpec = data["spec"]
    source = data["source"]
    lines = [f"# Data card: {spec.name}", ""]
    if data["stand_in"]:
        why = str(spec.offline.get("description", "")).removeprefix("STAND-IN: ")
        lines += [f"> **STAND-IN.** The offline data of this task is not the study's {spec.name} data: "
                  f"{why}. Every result made from it is marked as a stand-in.", ""]
    lines += [
        f"- type: {spec.type}; scorer: `{spec.scorer}`; version {spec.version}; tags: {', '.join(spec.tags)}",
        f"- role in the study: {' and '.join(roles) or 'none (no source_dataset or target_task file)'}",
        f"- data source of this card: `{source}` ({data['splits']['train']['origin']})",
    ]
    if source == "offline":
        lines.append(f"- offline source: {spec.offline.get('description', spec.offline.get('loader'))}")
        lines.append(f"- stand-in: {'yes' if data['stand_in'] else 'no (real data)'}")
    if spec.hub:
        hub = spec.hub
        lines.append(f"- hub (the study's data): `{hub.get('id')}` subset `{hub.get('subset')}`, "
                     f"splits {dict(hub.get('splits') or {})}, columns {dict(hub.get('columns') or {})}")
    if spec.description:
        lines.append(f"- note: {spec.description}")
    lines += ["", "## Prompt", f"- instruction: {spec.instruction!r}" if spec.instruction else "- instruction: none",
              f"- cue: `{spec.cue}:`"]
    if spec.is_classification:
        lines.append(f"- labels: {', '.join(f'`{label}`' for label in spec.labels)}")
        if spec.label_map:
            lines.append(f"- label map (raw -> label): {dict(spec.label_map)}")
    lines += ["", "## Splits", "", "| split | n | content hash | labels |", "|---|---|---|---|"]
    for split, s in data["splits"].items():
        labels = _labels_line(s["labels"], spec.labels) if spec.is_classification else "-"
        lines.append(f"| {split} | {s['n']} | `{s['hash']}` | {labels} |")
    lines += ["", "## Lengths (characters)", "", "| split | field | mean | median | p95 | max |",
              "|---|---|---|---|---|---|"]
    for split, s in data["splits"].items():
        for field in ("input", "target"):
            st = s[f"{field}_chars"]
            lines.append(f"| {split} | {field} | {st['mean']} | {st['median']:.0f} | {st['p95']:.0f} "
                         f"| {st['max']:.0f} |")
    example = data["splits"]["train"]["example"]
    text = format_prompt(spec, example["input"]) + str(example["target"])
    if len(text) > EXAMPLE_MAX_CHARS:
        text = text[:EXAMPLE_MAX_CHARS] + f"\n... ({len(text) - EXAMPLE_MAX_CHARS} more characters)"
    lines += ["", f"## One training example, formatted (id `{example['id']}`)", "", "```", text, "```", ""]
    return "\n".join(lines)


def render_index(rows: list[dict[str, Any]], source: str) -> str:
    lines = ["# Data cards", "", f"Data source: `{source}`. One card per task; stand-ins are marked.", "",
             "| task | type | role | source | stand-in | train | test | labels |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        spec: TaskSpec = row["spec"]
        labels = "/".join(spec.labels) if spec.is_classification else "-"
        lines.append(
            f"| [{spec.name}]({spec.name}.md) | {spec.type} | {'+'.join(row['roles'])} | {row['origin']} | "
            f"{'**yes**' if row['stand_in'] else 'no'} | {row['train']} | {row['test']} | {labels} |")
    return "\n".join(lines) + "\n"


def write_cards(tasks: list[str] | None = None, out_dir: str | Path | None = None, source: str = "offline",
                local_path: str | None = None, test_fraction: float = 0.3) -> Path:
    """Write one Markdown card per task and an index (README.md); return the index path."""
    out = Path(out_dir) if out_dir else default_out_dir()
    names = tasks or task_names()
    rows = []
    for name in names:
        spec = load_task_spec(name)
        data = task_card_data(spec, source=source, local_path=local_path, test_fraction=test_fraction)
        roles = task_roles(name)
        write_text(out / f"{name}.md", render_card(data, roles))
        origin = spec.offline.get("loader") if source == "offline" else data["splits"]["train"]["origin"]
        rows.append({"spec": spec, "roles": roles, "origin": f"`{origin}`", "stand_in": data["stand_in"],
                     "train": data["splits"]["train"]["n"], "test": data["splits"]["test"]["n"]})
    index = out / "README.md"
    write_text(index, render_index(rows, source))
    return index
