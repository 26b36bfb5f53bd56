"""In-domain gains: each classification adapter on the target task it was trained for (the
matrix's diagonal), its change over the base with its interval, and, where the interval holds
0, the numbers that say why: the test split's majority label and how often the base and the
adapter answer it (an adapter that learned its training prior answers the majority label as
the base already did)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from . import matrix as mx
from .state import Analysis


def _answer_share(record: dict[str, Any], label: str) -> float | None:
    counts = (record.get("metrics") or {}).get("predicted_distribution") or {}
    total = sum(counts.values())
    return counts.get(label, 0) / total if total else None


def why_unresolved(a: Analysis, row: str, task: str) -> str:
    """The label shares behind an in-domain change whose interval holds 0."""
    base = mx.base_row(a.matrix.index)
    mine_cell = mx.find_cell(a.cells, row, task) or {}
    test = ((mine_cell.get("data") or {}).get("class_distribution")) or {}
    if not test or base is None:
        return "no class distribution recorded"
    majority = max(test, key=test.get)
    share = test[majority] / sum(test.values())
    mine = _answer_share(mine_cell, majority)
    theirs = _answer_share(mx.find_cell(a.cells, base, task) or {}, majority)
    if mine is None or theirs is None:
        return f"the test split is {share:.0%} `{majority}`; no predicted distribution recorded"
    return (f"the test split is {share:.0%} `{majority}`; the base answers `{majority}` on {theirs:.0%} "
            f"of it, the adapter on {mine:.0%}")


def in_domain_table(a: Analysis) -> pd.DataFrame | None:
    """One row per classification adapter whose source task is a column; None without a base row."""
    if a.delta is None:
        return None
    low, high = a.intervals.get("delta", (None, None))
    base = mx.base_row(a.matrix.index)  # there is one: the delta view is taken against it
    rows = []
    for row, source in mx.adapter_sources(a.cells).items():
        task = source["task"]
        if source["type"] != "classification" or task not in a.delta.columns or row not in a.delta.index:
            continue
        entry = {"adapter": row, "task": task, "base": float(a.matrix.loc[base, task]),
                 "adapter score": float(a.matrix.loc[row, task]), "change": float(a.delta.loc[row, task])}
        if low is not None:
            entry["low"], entry["high"] = float(low.loc[row, task]), float(high.loc[row, task])
            resolved = entry["low"] > 0 or entry["high"] < 0
            entry["outside the interval"] = "yes" if resolved else "no"
            entry["why not"] = "" if resolved else why_unresolved(a, row, task)
        rows.append(entry)
    return pd.DataFrame(rows).set_index("adapter") if rows else None


def in_domain_blocks(a: Analysis) -> list[tuple]:
    table = in_domain_table(a)
    if table is None:
        return []
    level = a.options.bootstrap.level
    text = ("Each classification adapter on the target task it was trained for: its change over the base"
            + (f" with the {level:.0%} paired bootstrap interval; where the interval holds 0, the label "
               "shares say why." if "low" in table else " (no intervals: the bootstrap did not run)."))
    shown = table.copy()
    for column, fmt in (("base", "{:.3f}"), ("adapter score", "{:.3f}"), ("change", "{:+.3f}"),
                        ("low", "{:+.3f}"), ("high", "{:+.3f}")):
        if column in shown:
            shown[column] = [fmt.format(v) for v in shown[column]]
    return [("h2", "In-domain gains"), ("p", text), ("table", shown, "{}")]
