"""Trait names: suggested from the task tags of each component's highest-loading tasks, or
given by the user (``analysis.trait_names``; the first names replace the first components').

A tag scores the sum of the signed loadings of the component's top tasks (by |loading|) that
carry it; the name is the best positive tag, followed by ``vs <tag>`` when a tag on the
negative side weighs at least half as much. Tags that every task carries say nothing about a
direction and are ignored. A name already taken by an earlier component gets its index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from .errors import AnalysisError

TOP_TASKS = 3


def task_tags(cells: Sequence[Mapping]) -> dict[str, list[str]]:
    tags: dict[str, list[str]] = {}
    for record in cells:
        tags.setdefault(record["task"]["name"], list(record["task"].get("tags") or []))
    return tags


def _tag_scores(loading: pd.Series, tags: Mapping[str, Sequence[str]], common: set[str]):
    top = loading.abs().sort_values(ascending=False).index[:TOP_TASKS]
    scores: dict[str, float] = {}
    for task in top:
        for tag in tags.get(task, []):
            if tag not in common:
                scores[tag] = scores.get(tag, 0.0) + float(loading[task])
    return scores


def suggest_names(loadings: pd.DataFrame, tags: Mapping[str, Sequence[str]]) -> list[str]:
    """One suggested name per component (row of `loadings`)."""
    present = [set(tags.get(t, [])) for t in loadings.columns]
    common = set.intersection(*present) if present and len(present) > 1 else set()
    names: list[str] = []
    for i, (_, loading) in enumerate(loadings.iterrows()):
        scores = _tag_scores(loading, tags, common)
        pos = max(((v, t) for t, v in scores.items() if v > 0), default=None)
        neg = min(((v, t) for t, v in scores.items() if v < 0), default=None)
        if pos is None:  # no tags: name by the top task
            name = str(loading.abs().idxmax())
        else:
            name = pos[1]
            if neg is not None and -neg[0] >= 0.5 * pos[0]:
                name = f"{name} vs {neg[1]}"
        names.append(name if name not in names else f"{name} ({i})")
    return names


def trait_names(
    loadings: pd.DataFrame, tags: Mapping[str, Sequence[str]], given: Sequence[str] | None = None
) -> tuple[list[str], list[bool]]:
    """Names per component and whether each was given by the user (else suggested)."""
    given = list(given or [])
    if len(given) > len(loadings):
        raise AnalysisError(
            f"analysis.trait_names has {len(given)} names but the PCA has {len(loadings)} "
            "component(s); give at most that many"
        )
    suggested = suggest_names(loadings, tags)
    return given + suggested[len(given):], [True] * len(given) + [False] * (
        len(loadings) - len(given)
    )
