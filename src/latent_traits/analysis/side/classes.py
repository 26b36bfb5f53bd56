"""Class distribution (PAPER.md side analyses 2 and 3).

1. Confusion matrices of every (row, classification target) on one grid figure (rows:
   reference label, columns: predicted label; colour: share of the reference label).
2. Predicted labels against the source data's label prior (the class distribution in the
   adapter's train_data provenance), over the labels the source and target share. Per cell the
   Jensen-Shannon distance (base 2) of the predictions to the prior, the base model's likewise;
   across cells, the pull toward the prior: for each shared label, Spearman's rho of
   (prior share - base's predicted share) with (adapter's predicted share - base's), with a
   seeded permutation p-value (without a base row the target's reference shares stand in).
3. Balanced vs imbalanced source variants: adapters whose training settings differ only in
   source_dataset.transforms.class_ratio (fallback without settings: `<x>_balanced` vs
   `<x>_imbalanced` ids); the more balanced member is the one whose training labels have the
   higher normalised entropy. Score difference per target, against the target's own balance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..stats import finite_or_none, js_distance, normalised_entropy, permutation_spearman, shares
from ._plots import grid, png_bytes, short
from ._variants import name_pairs, variant_groups
from .context import SideContext, SideResult

NAME = "classes"
TITLE = "Class distribution"


def confusion(ctx: SideContext, record: dict[str, Any]) -> tuple[list[str], np.ndarray] | None:
    """(labels, counts[reference, predicted]) from the record's metrics, else its predictions."""
    found = record["metrics"].get("confusion_matrix")
    if found:
        return list(found["labels"]), np.asarray(found["counts"], dtype=float)
    labels = list(record["task"].get("labels") or [])
    rows = ctx.predictions(record)
    if not labels or not rows:
        return None
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)))
    for r in rows:
        if r.get("reference") in index and r.get("parsed") in index:
            counts[index[r["reference"]], index[r["parsed"]]] += 1
    return labels, counts


def _confusion_figure(cms: dict[tuple[str, str], tuple[list[str], np.ndarray]], rows: list[str],
                      tasks: list[str]) -> bytes:
    fig, axes = grid(len(rows), len(tasks), panel=(2.3, 2.1),
                     title="Confusion matrices (rows: reference, columns: predicted)")
    for i, row in enumerate(rows):
        for j, task in enumerate(tasks):
            ax = axes[i, j]
            ax.set_title(f"{short(row, 22)} → {task}", fontsize=7)
            if (row, task) not in cms:
                ax.axis("off")
                continue
            labels, counts = cms[(row, task)]
            share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
            ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
            ticks = [short(label, 6) for label in labels]
            ax.set_xticks(range(len(labels)), ticks, fontsize=6, rotation=90)
            ax.set_yticks(range(len(labels)), ticks, fontsize=6)
            if len(labels) <= 6:
                for (a, b), value in np.ndenumerate(counts):
                    ax.text(b, a, f"{value:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if share[a, b] > 0.6 else "black")
    return png_bytes(fig)


def _prior_cells(ctx: SideContext, cms, tasks: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    base = ctx.base_row()
    cells, points = [], []
    for task in tasks:
        base_cm = cms.get((base, task)) if base else None
        for adapter in ctx.adapters():
            record = ctx.record(adapter, task)
            prior = ((record or {}).get("adapter", {}).get("train_data") or {}).get("class_distribution")
            if record is None or (adapter, task) not in cms or not prior:
                continue
            labels, counts = cms[(adapter, task)]
            shared = [label for label in labels if label in prior]
            if len(shared) < 2:
                continue
            predicted = shares(dict(zip(labels, counts.sum(axis=0), strict=True)), shared)
            reference = shares(dict(zip(labels, counts.sum(axis=1), strict=True)), shared)
            baseline = (shares(dict(zip(base_cm[0], base_cm[1].sum(axis=0), strict=True)), shared)
                        if base_cm else reference)
            prior_shares = shares(prior, shared)
            cells.append({"adapter": adapter, "task": task, "shared_labels": " ".join(shared),
                          "js_predicted_prior": js_distance(predicted, prior_shares, shared),
                          "js_baseline_prior": js_distance(baseline, prior_shares, shared),
                          "js_predicted_reference": js_distance(predicted, reference, shared)})
            cells[-1]["toward_prior"] = cells[-1]["js_baseline_prior"] - cells[-1]["js_predicted_prior"]
            points += [{"adapter": adapter, "task": task, "label": label,
                        "prior_pull": prior_shares[label] - baseline[label],
                        "predicted_shift": predicted[label] - baseline[label]} for label in shared]
    frame = pd.DataFrame(cells)
    return (frame.set_index("adapter") if len(frame) else frame), pd.DataFrame(points)


def balance_pairs(ctx: SideContext) -> list[tuple[str, str]]:
    """(more balanced, less balanced) adapter pairs; see the module docstring for the rule."""
    def entropy(row: str) -> float:
        record = ctx.row_record(row)
        dist = ((record or {}).get("adapter", {}).get("train_data") or {}).get("class_distribution")
        return normalised_entropy(dict(dist)) if dist else math.nan

    pairs = []
    for group in variant_groups(ctx, ["source_dataset.transforms.class_ratio"]):
        ranked = sorted(group, key=lambda row: -np.nan_to_num(entropy(row), nan=-1.0))
        pairs.append((ranked[0], ranked[-1]))
    return pairs + name_pairs(ctx, "_balanced", "_imbalanced")


def _balance_table(ctx: SideContext, pairs, cms) -> pd.DataFrame:
    scores = ctx.analysis.delta if ctx.analysis.delta is not None else ctx.analysis.matrix
    target_balance = {}
    for task in scores.columns:
        cm = next((v for (row, t), v in cms.items() if t == task), None)
        target_balance[task] = (normalised_entropy(dict(zip(cm[0], cm[1].sum(axis=1), strict=True)))
                                if cm else math.nan)
    rows = []
    for balanced, imbalanced in pairs:
        for task in scores.columns:
            b, i = float(scores.loc[balanced, task]), float(scores.loc[imbalanced, task])
            rows.append({"task": task, "balanced": balanced, "imbalanced": imbalanced,
                         "balanced_score": b, "imbalanced_score": i, "difference": b - i,
                         "target_balance": target_balance[task]})
    return pd.DataFrame(rows).set_index("task")


def _balance_figure(table: pd.DataFrame, what: str) -> bytes:
    pairs = list(dict.fromkeys(zip(table["balanced"], table["imbalanced"], strict=True)))
    fig, axes = grid(len(pairs), 1, panel=(max(4.0, 0.7 * table.index.nunique()), 2.6),
                     title=f"Balanced vs imbalanced source ({what})")
    for ax, (b, i) in zip(axes[:, 0], pairs, strict=True):
        part = table[(table["balanced"] == b) & (table["imbalanced"] == i)]
        x = np.arange(len(part))
        ax.bar(x - 0.2, part["balanced_score"], 0.4, label=short(b, 40), color="tab:blue")
        ax.bar(x + 0.2, part["imbalanced_score"], 0.4, label=short(i, 40), color="tab:orange")
        ax.set_xticks(x, list(part.index), rotation=45, ha="right", fontsize=8)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.legend(fontsize=7)
    return png_bytes(fig)


def run(ctx: SideContext, options: Mapping[str, Any]) -> SideResult:
    result = SideResult(NAME, TITLE)
    tasks = [t for t in ctx.analysis.matrix.columns if ctx.task_type(t) == "classification"]
    rows = list(ctx.analysis.matrix.index)
    cms = {(row, task): cm for row in rows for task in tasks
           if (record := ctx.record(row, task)) is not None and (cm := confusion(ctx, record))}
    n_perm, seed = int(options.get("n_permutations", 1000)), int(options.get("seed", 0))
    b: list[tuple] = []
    if cms:
        result.figures["classes_confusion.png"] = _confusion_figure(cms, rows, tasks)
        result.tables["classes_confusion.csv"] = pd.DataFrame(
            [{"row": row, "task": task, "reference": labels[a], "predicted": labels[p], "count": c}
             for (row, task), (labels, counts) in cms.items()
             for (a, p), c in np.ndenumerate(counts)]).set_index("row")
        b += [("h3", "Confusion matrices"),
              ("figure", "classes_confusion.png", result.figures["classes_confusion.png"],
               "Per (row, classification target); colour: share of the reference label, "
               "numbers: counts.")]
    else:
        b += [("p", "No classification target with a confusion matrix among the records.")]
    cells, points = _prior_cells(ctx, cms, tasks)
    test = permutation_spearman(points["prior_pull"], points["predicted_shift"], n_perm, seed) \
        if len(points) else {"rho": None, "note": "no adapter's source labels overlap a target's"}
    result.summary["prior_test"] = test
    b += [("h3", "Predicted labels against the source prior"), ("p", _prior_text(test))]
    if len(cells):
        result.tables["classes_prior.csv"] = cells
        result.tables["classes_prior_points.csv"] = points.set_index("adapter")
        b += [("table", cells, "{:.3f}")]
    pairs = balance_pairs(ctx)
    b.append(("h3", "Balanced vs imbalanced source data"))
    if pairs:
        what = "delta over base" if ctx.analysis.delta is not None else "score"
        table = _balance_table(ctx, pairs, cms)
        trend = permutation_spearman(table["target_balance"], table["difference"], n_perm, seed)
        result.summary["balance"] = {"pairs": [list(p) for p in pairs], "trend": trend,
                                     "mean_difference": finite_or_none(table["difference"].mean())}
        result.tables["classes_balance.csv"] = table
        result.figures["classes_balance.png"] = _balance_figure(table, what)
        b += [("p", f"Pairs (more balanced, less balanced): {', '.join(f'`{x}` vs `{y}`' for x, y in pairs)}. "
                    f"Scores are the {what}; target_balance is the normalised entropy of the "
                    "target's reference labels (1 = balanced). Spearman of the difference with "
                    f"target balance: {_rho(trend)}."),
              ("table", table, "{:+.3f}"),
              ("figure", "classes_balance.png", result.figures["classes_balance.png"],
               "Per target, the two source variants side by side.")]
    else:
        b.append(("p", "No pair of adapters differing only in "
                       "source_dataset.transforms.class_ratio (nor `<x>_balanced`/`<x>_imbalanced`)."))
    result.summary["n_confusion_matrices"] = len(cms)
    result.blocks = b
    if not cms and not pairs:
        result.skipped = "no classification target and no balanced/imbalanced adapter pair"
    return result


def _rho(test: dict[str, Any]) -> str:
    if test.get("rho") is None:
        return f"not computed ({test.get('note')})"
    p = f", permutation p = {test['p_value']:.3g}" if test.get("p_value") is not None else ""
    return f"rho {test['rho']:+.2f} over {test['n']} points{p}"


def _prior_text(test: dict[str, Any]) -> str:
    return ("Per adapter and classification target sharing labels with its source data: the "
            "Jensen-Shannon distance (base 2) of predicted labels to the source prior, and the "
            "base's (toward_prior > 0: the adapter moved toward its prior). Pull test, per shared "
            "label, (prior share - base's predicted share) vs (adapter's predicted share - "
            f"base's): {_rho(test)}. A positive, significant rho: predictions follow the source prior.")
