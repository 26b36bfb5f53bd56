"""Asymmetry of transfer (PAPER.md side analysis 6: classification helps math, math hurts
classification).

For datasets that are both a source and a target: S[i, j] = change over base of the adapter
trained on dataset i, evaluated on dataset j. An adapter stands for dataset i when its source
dataset is i itself (variants such as i_mislabeled or i_balanced do not); several such adapters
(seeds, ranks) are averaged, and the summary lists them. The figure shows S, its transpose and
S - S^T; the table lists the pairs with the largest |S[i, j] - S[j, i]|, each with a z-test
from the predictions files (per-example paired differences adapter - base, so the standard
error of each delta is that of a paired mean) and Holm-adjusted p-values over all pairs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..stats import finite_or_none, holm, two_sided_z
from ._plots import grid, png_bytes, signed_heatmap
from ._variants import paired_task
from .context import SideContext, SideResult

NAME = "asymmetry"
TITLE = "Asymmetry of transfer"


def dataset_adapters(ctx: SideContext, aliases: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """{dataset that is also a target: [adapter rows that stand for it]} (_variants.paired_task)."""
    targets = set(ctx.analysis.matrix.columns)
    out: dict[str, list[str]] = {}
    for row in ctx.adapters():
        record = ctx.row_record(row)
        task = paired_task(record, targets, aliases) if record is not None else None
        if task is not None:
            out.setdefault(task, []).append(row)
    return dict(sorted(out.items()))


def _correct(ctx: SideContext, record: dict[str, Any] | None) -> dict[str, float]:
    if record is None:
        return {}
    return {str(r.get("id", i)): float(bool(r["correct"]))
            for i, r in enumerate(ctx.predictions(record)) if r.get("correct") is not None}


def cell_delta(ctx: SideContext, rows: list[str], task: str) -> tuple[float, float]:
    """(mean delta over `rows`, its standard error from paired per-example differences; NaN
    without predictions)."""
    scores = ctx.analysis.delta if ctx.analysis.delta is not None else ctx.analysis.matrix
    value = float(np.mean([scores.loc[row, task] for row in rows]))
    per_adapter = [_correct(ctx, ctx.record(row, task)) for row in rows]
    base = ctx.base_row()
    base_correct = _correct(ctx, ctx.record(base, task)) if base and ctx.analysis.delta is not None else None
    ids = set.intersection(*(set(c) for c in per_adapter)) if all(per_adapter) else set()
    if base_correct is not None:
        ids &= set(base_correct)
    if len(ids) < 2:
        return value, math.nan
    diffs = np.array([np.mean([c[i] for c in per_adapter]) - (base_correct[i] if base_correct else 0.0)
                      for i in sorted(ids)])
    return value, float(diffs.std(ddof=1) / math.sqrt(len(diffs)))


def run(ctx: SideContext, options: Mapping[str, Any]) -> SideResult:
    result = SideResult(NAME, TITLE)
    datasets = dataset_adapters(ctx, dict(options.get("aliases") or {}))
    if len(datasets) < 2:
        result.skipped = (f"needs at least 2 datasets that are both a source and a target; found "
                          f"{len(datasets)} ({', '.join(datasets) or 'none'})")
        return result
    names = list(datasets)
    values = pd.DataFrame(np.nan, index=pd.Index(names, name="source"),
                          columns=pd.Index(names, name="target"))
    errors = values.copy()
    for i in names:
        for j in names:
            values.loc[i, j], errors.loc[i, j] = cell_delta(ctx, datasets[i], j)
    pairs = []
    for a, i in enumerate(names):
        for j in names[a + 1:]:
            diff = values.loc[i, j] - values.loc[j, i]
            se = math.hypot(errors.loc[i, j], errors.loc[j, i])
            z = diff / se if se > 0 else math.nan
            pairs.append({"pair": f"{i} -> {j} vs {j} -> {i}", "i_on_j": values.loc[i, j],
                          "j_on_i": values.loc[j, i], "difference": diff, "z": z,
                          "p_value": two_sided_z(z) if math.isfinite(z) else math.nan})
    table = pd.DataFrame(pairs).set_index("pair")
    tested = table["p_value"].notna()
    table["p_holm"] = np.nan
    if tested.any():
        table.loc[tested, "p_holm"] = holm(table.loc[tested, "p_value"].tolist())
    table = table.reindex(table["difference"].abs().sort_values(ascending=False).index)
    level, top_k = float(options.get("level", 0.05)), int(options.get("top_k", 10))
    significant = table.index[table["p_holm"] < level].tolist()
    off = ~np.eye(len(names), dtype=bool)
    s = values.to_numpy()
    energy = float(np.nansum(s[off] ** 2))
    index = float(np.nansum(((s - s.T) / 2)[off] ** 2) / energy) if energy > 0 else math.nan
    by_type = type_blocks(ctx, values)
    result.tables = {"asymmetry_matrix.csv": values, "asymmetry_pairs.csv": table,
                     "asymmetry_types.csv": by_type}
    result.figures = {"asymmetry_matrix.png": _figure(values)}
    result.summary = {"datasets": {k: v for k, v in datasets.items()},
                      "asymmetry_index": finite_or_none(index), "significant_pairs": significant,
                      "level": level, "largest": table.index[0] if len(table) else None}
    what = "change over base" if ctx.analysis.delta is not None else "raw score (no base row)"
    result.blocks = [
        ("p", f"S[i, j]: {what} of the adapter trained on dataset i, on target j. Asymmetry index "
              f"(share of the off-diagonal variation that is antisymmetric; 0 symmetric, 1 "
              f"antisymmetric): {_index_text(index)}. Pairs asymmetric at family-wise level {level} "
              f"(Holm): {', '.join(significant) or 'none'}."),
        ("figure", "asymmetry_matrix.png", result.figures["asymmetry_matrix.png"],
         "The matrix, its transpose and their difference."),
        ("p", f"Largest asymmetric pairs (top {top_k}; z from paired per-example differences):"),
        ("table", table.head(top_k), "{:+.3f}"),
        ("list", [f"{d}: {', '.join(rows)}" for d, rows in datasets.items() if len(rows) > 1]
         or ["one adapter per dataset"]),
        ("p", "Mean off-diagonal S by task type, source type (rows) to target type (columns), "
              "e.g. whether classification helps generation (math) while generation hurts "
              "classification:"),
        ("table", by_type, "{:+.3f}"),
    ]
    return result


def type_blocks(ctx: SideContext, values: pd.DataFrame) -> pd.DataFrame:
    """Mean off-diagonal S[i, j] per (type of dataset i, type of dataset j)."""
    types = {name: ctx.task_type(name) or "?" for name in values.index}
    cells = [(types[i], types[j], values.loc[i, j]) for i in values.index for j in values.columns
             if i != j]
    frame = pd.DataFrame(cells, columns=["source type", "target type", "s"])
    table = frame.pivot_table(index="source type", columns="target type", values="s", aggfunc="mean")
    return table.rename_axis(index="source type", columns="target type")


def _index_text(index: float) -> str:
    return f"{index:.2f}" if math.isfinite(index) else "undefined (no off-diagonal transfer)"


def _figure(values: pd.DataFrame) -> bytes:
    fig, axes = grid(1, 3, panel=(0.9 + 0.6 * len(values), 0.8 + 0.5 * len(values)),
                     title="Transfer S (source x target), its transpose and S - S^T")
    bound = float(np.nanmax(np.abs(values.to_numpy()))) or 1.0
    signed_heatmap(axes[0, 0], values, "S", bound)
    signed_heatmap(axes[0, 1], values.T.rename_axis(index="target", columns="source"), "S^T", bound)
    signed_heatmap(axes[0, 2], values - values.T.to_numpy(), "S - S^T")
    return png_bytes(fig)
