"""Ablation tables (PAPER.md side analysis 7 and the study's variants), each only where the
records hold adapters that differ in just that setting (rule: side/_variants.py):

- labels: correct vs wrong training labels (source_dataset.transforms.label_noise), in the
  layout of the study's table: rows base and adapters, columns targets, scores in %;
- loss span: label-only vs full-sequence (vs response) loss (data.loss_span);
- label words: word vs digit labels (the source task's label set, e.g. mnli vs mnli_nums);
- rank: LoRA rank curves per target (lora.r), as a table and a figure of score vs rank.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ._plots import grid, png_bytes, short
from ._variants import ADAPTER_ID, adapter_settings, name_pairs, rank_of, variant_groups
from .context import SideContext, SideResult

NAME = "ablations"
TITLE = "Ablations"
LABELS = "source_dataset.task.labels"


def _is_digits(values: Mapping[str, str]) -> bool:
    labels = json.loads(values.get(LABELS, "null")) or []
    return bool(labels) and all(str(x).isdigit() for x in labels)


def _words_vs_digits(members: dict[str, dict[str, str]]) -> bool:
    return len(members) == 2 and sorted(_is_digits(v) for v in members.values()) == [False, True]


def _describe(values: Mapping[str, str], key: str) -> str:
    picked = {k.removeprefix(key).lstrip(".") or key.rpartition(".")[2]: json.loads(v)
              for k, v in values.items()}
    return ", ".join(f"{k}={'none' if v is None else v}" for k, v in sorted(picked.items())) or "default"


def _noise_free(values: Mapping[str, str]) -> bool:
    fraction = values.get("source_dataset.transforms.label_noise.fraction")
    return fraction is None or float(json.loads(fraction) or 0) == 0


# title; varied and ignored settings; accept(group); id-suffix fallback; first(values): the
# reference member (listed first, the difference is the other minus it)
KINDS: dict[str, dict[str, Any]] = {
    "labels": {"title": "Correct vs wrong labels", "varied": ["source_dataset.transforms.label_noise"],
               "fallback": ("", "_mislabeled"), "first": _noise_free},
    "loss_span": {"title": "Loss span", "varied": ["data.loss_span"]},
    "label_words": {"title": "Word vs digit labels", "varied": [LABELS],
                    "ignore": ["source_dataset.task.name", "source_dataset.task.label_map",
                               "source_dataset.task.tags"],
                    "accept": _words_vs_digits, "fallback": ("", "_nums"),
                    "first": lambda v: not _is_digits(v)},
}


def _groups(ctx: SideContext, kind: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """[[(adapter, variant description), ...], ...], the reference member first."""
    out = []
    for group in variant_groups(ctx, kind["varied"], kind.get("ignore", ()), kind.get("accept")):
        first = kind.get("first", lambda v: False)
        ordered = sorted(group.items(), key=lambda item: (not first(item[1]), item[0]))
        out.append([(row, _describe(v, kind["varied"][0])) for row, v in ordered])
    if "fallback" in kind:
        out += [[(a, "by name"), (b, "by name")] for a, b in name_pairs(ctx, *kind["fallback"])]
    return out


def ablation_table(ctx: SideContext, groups: list[list[tuple[str, str]]], scale: float) -> pd.DataFrame:
    """Rows: base, then each group's adapters and (pairs) their difference; columns: targets."""
    matrix = ctx.analysis.matrix * scale
    rows, index = [], []
    base = ctx.base_row()
    if base is not None:
        rows.append({"variant": "base model", **matrix.loc[base].to_dict()})
        index.append(base)
    for group in groups:
        for row, variant in group:
            rows.append({"variant": variant, **matrix.loc[row].to_dict()})
            index.append(row)
        if len(group) == 2:
            (a, _), (b, _) = group
            rows.append({"variant": "difference", **(matrix.loc[b] - matrix.loc[a]).to_dict()})
            index.append(f"{b} - {a}")
    return pd.DataFrame(rows, index=pd.Index(index, name="adapter"))


def rank_groups(ctx: SideContext) -> list[dict[int, str]]:
    """[{rank: adapter}, ...] of adapters differing only in lora.r (ids as fallback)."""
    settings = adapter_settings(ctx)
    out = [{rank_of(row, settings[row]): row for row in g} for g in variant_groups(ctx, ["lora.r"])]
    by_id: dict[tuple, dict[int, str]] = {}
    for row in ctx.adapters():
        match = ADAPTER_ID.match(row.rpartition(":")[2])
        if settings[row] is None and match:
            key = (row.rpartition(":")[0], match["source"], match["lora"], match["seed"], match["tag"])
            by_id.setdefault(key, {})[int(match["r"])] = row
    out += [g for g in by_id.values() if len(g) >= 2]
    return [dict(sorted(g.items())) for g in out]


def _source_label(row: str) -> str:
    return row.rpartition(":")[2].partition("/")[0]


def rank_table(ctx: SideContext, groups: list[dict[int, str]], scale: float) -> pd.DataFrame:
    matrix = ctx.analysis.matrix * scale
    rows = [{"group": _source_label(next(iter(g.values()))), "rank": r, "adapter": row,
             **matrix.loc[row].to_dict()} for g in groups for r, row in g.items()]
    return pd.DataFrame(rows).set_index("group")


def rank_figure(ctx: SideContext, table: pd.DataFrame, scale: float) -> bytes:
    tasks = list(ctx.analysis.matrix.columns)
    n_cols = min(4, len(tasks))
    n_rows = math.ceil(len(tasks) / n_cols)
    fig, axes = grid(n_rows, n_cols, panel=(2.8, 2.2), title="Score vs LoRA rank per target")
    base = ctx.base_row()
    for k, ax in enumerate(axes.flat):
        if k >= len(tasks):
            ax.axis("off")
            continue
        task = tasks[k]
        for group, part in table.groupby(level=0):
            ax.plot(part["rank"], part[task], marker="o", label=short(str(group), 20))
        if base is not None:
            ax.axhline(float(ctx.analysis.matrix.loc[base, task]) * scale, color="gray",
                       linestyle="--", label="base")
        ax.set_xscale("log", base=2)
        ranks = sorted(table["rank"].unique())
        ax.set_xticks(ranks, [str(r) for r in ranks])
        ax.set_title(task, fontsize=9)
        ax.tick_params(labelsize=7)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(5, len(labels)), fontsize=8)
    return png_bytes(fig)


def run(ctx: SideContext, options: Mapping[str, Any]) -> SideResult:
    result = SideResult(NAME, TITLE)
    percent = bool(options.get("percent", True))
    scale, unit = (100.0, "%") if percent else (1.0, "score")
    fmt = "{:.2f}" if percent else "{:.3f}"
    b: list[tuple] = [("p", f"Primary scores ({unit}) of adapters whose training settings differ "
                            "only in the ablated setting (equal model, data size, seed, LoRA and "
                            "optimiser); other adapters are left out.")]
    found = 0
    for key, kind in KINDS.items():
        groups = _groups(ctx, kind)
        b.append(("h3", kind["title"]))
        if not groups:
            reason = f"no adapters differing only in {' / '.join(kind['varied'])}"
            result.summary[key] = {"skipped": reason}
            b.append(("p", f"Skipped: {reason}."))
            continue
        found += 1
        table = ablation_table(ctx, groups, scale)
        result.tables[f"ablations_{key}.csv"] = table
        result.summary[key] = {"groups": [[row for row, _ in g] for g in groups]}
        b.append(("table", table, fmt))
    b.append(("h3", "LoRA rank"))
    ranks = rank_groups(ctx)
    if ranks:
        found += 1
        table = rank_table(ctx, ranks, scale)
        result.tables["ablations_rank.csv"] = table
        result.figures["ablations_rank.png"] = rank_figure(ctx, table, scale)
        result.summary["rank"] = {"groups": [{str(r): row for r, row in g.items()} for g in ranks]}
        b += [("table", table, fmt),
              ("figure", "ablations_rank.png", result.figures["ablations_rank.png"],
               f"Score ({unit}) vs LoRA rank per target; dashed: the base model.")]
    else:
        result.summary["rank"] = {"skipped": "no adapters differing only in lora.r"}
        b.append(("p", "Skipped: no adapters differing only in lora.r."))
    result.blocks = b
    if not found:
        result.skipped = ("the records hold no ablation pairs (adapters differing only in label "
                          "noise, loss span, label words/digits or LoRA rank)")
    return result

