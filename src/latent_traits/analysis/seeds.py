"""Spread across training seeds: adapters whose ids differ only in the seed
(``<source>/<lora>_r<r>_s<seed>``) form a group; per group and task, the mean and the
spread (standard deviation with ddof=1, min, max) of the scores over its seeds."""

from __future__ import annotations

import re

import pandas as pd

from . import matrix as mx

SEED_PATTERN = re.compile(r"^(?P<group>.+_r\d+)_s(?P<seed>\d+)$")


def seed_group(row: str) -> str | None:
    match = SEED_PATTERN.match(row)
    return match.group("group") if match else None


def seed_table(matrix: pd.DataFrame) -> pd.DataFrame | None:
    """Long table (group, task, n_seeds, mean, std, min, max) for groups of 2+ seeds."""
    adapters = mx.adapter_rows(matrix)
    groups = pd.Series({row: seed_group(row) for row in adapters.index}).dropna()
    sizes = groups.value_counts()
    multi = sizes[sizes >= 2].index
    if len(multi) == 0:
        return None
    rows = []
    for group in sorted(multi):
        members = adapters.loc[groups[groups == group].index]
        for task in adapters.columns:
            col = members[task].dropna()
            rows.append({
                "group": f"{group}_s*", "task": task, "n_seeds": len(col),
                "mean": col.mean(), "std": col.std(ddof=1), "min": col.min(), "max": col.max(),
            })
    return pd.DataFrame(rows)
