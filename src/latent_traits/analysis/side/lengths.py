"""Generation-length proclivity (PAPER.md side analysis 1).

For each (adapter, generative target): four character-length distributions (the adapter's
source training targets, the adapter's outputs, the base model's outputs, the target's
references), their summaries, and the distance between the source's and the references'
lengths: the Wasserstein-1 distance of log10(1 + characters), i.e. how many decades of
length apart the two distributions sit. Across cells, Spearman's rho of that distance with the
adapter's gain (delta) on the target, with a seeded permutation p-value: the study's finding
is that an adapter gains where its source data's lengths resemble the target's (rho < 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import gaussian_kde, wasserstein_distance

from ..stats import describe, finite_or_none, permutation_spearman
from ._plots import grid, png_bytes, short
from .context import SideContext, SideResult

NAME = "lengths"
TITLE = "Length proclivity"
REFERENCE_MODES = ("examples", "predictions")
MIN_BANDWIDTH = 0.04  # decades of length
COLOURS = {"source": "tab:green", "adapter": "tab:red", "base": "tab:gray", "reference": "tab:blue"}


def log_lengths(values: list[float]) -> np.ndarray:
    return np.log10(1.0 + np.asarray(values, dtype=float))


def log_distance(a: list[float] | None, b: list[float] | None) -> float:
    """Wasserstein-1 distance of log10(1 + characters): decades of length between a and b."""
    if not a or not b:
        return math.nan
    return float(wasserstein_distance(log_lengths(a), log_lengths(b)))


def interpolation(adapter: list[float], base: list[float] | None, source: list[float] | None) -> float:
    """Where the adapter's median log length sits between the base's (0) and the source's (1)."""
    if not adapter or not base or not source:
        return math.nan
    m_adapter, m_base, m_source = (float(np.median(log_lengths(x))) for x in (adapter, base, source))
    span = m_source - m_base
    return (m_adapter - m_base) / span if abs(span) > 0.05 else math.nan  # < 12% apart: undefined


def _outputs(ctx: SideContext, record: dict[str, Any] | None) -> list[float]:
    """Output lengths in characters (rows without output_chars fall back to raw_output)."""
    rows = ctx.predictions(record) if record else []
    return [float(r["output_chars"]) if "output_chars" in r else float(len(str(r["raw_output"])))
            for r in rows if "output_chars" in r or "raw_output" in r]


def _source(ctx: SideContext, record: dict[str, Any], notes: set[str]) -> list[float] | None:
    try:
        examples = ctx.source_examples(record)
    except Exception as error:  # noqa: BLE001 - e.g. hub data unreachable: that curve is left out
        notes.add(f"source data of {record['adapter']['id']} not re-read ({error})")
        return None
    if examples is None:
        notes.add(f"{record['adapter']['id']} records no training settings: no source curve")
        return None
    return [float(len(str(e.get("target") or ""))) for e in examples]


def _references(ctx: SideContext, record: dict[str, Any], mode: str, notes: set[str]) -> list[float]:
    rows = ctx.predictions(record)
    texts = ctx.reference_texts(record) if mode == "examples" else None
    if texts is not None and rows and all(str(r["id"]) in texts for r in rows):
        return [float(len(texts[str(r["id"])])) for r in rows]
    if mode == "examples":
        notes.add(f"{record['task']['name']}: reference lengths from the predictions' `reference` "
                  "field (the task's data could not be re-read; for numeric tasks this is only "
                  "the final number)")
    return [float(len(str(r.get("reference") or ""))) for r in rows]


def _kde(ax, values: list[float], kind: str) -> None:
    """The KDE of log10(1 + length), scaled to peak 1 so that a near-constant distribution
    (class labels as training targets) does not flatten the others; bandwidth >= 0.04 decades."""
    u = log_lengths(values)
    if u.size >= 2 and np.ptp(u) > 1e-9:
        kde = gaussian_kde(u)
        if kde.factor * u.std(ddof=1) < MIN_BANDWIDTH:
            kde.set_bandwidth(MIN_BANDWIDTH / u.std(ddof=1))
        grid_u = np.linspace(u.min() - 0.3, u.max() + 0.3, 120)
        density = kde(grid_u)
        ax.plot(grid_u, density / density.max(), color=COLOURS[kind], label=kind)
    elif u.size:  # one distinct length: a line where it sits
        ax.axvline(float(u[0]), color=COLOURS[kind], label=kind)


def _decade_ticks(ax, low: float, high: float) -> None:
    """A log axis drawn on log10(1 + length) values (matplotlib's log scale is several times
    slower to render on a grid of dozens of panels): ticks at 1 + length = 1, 10, 100, ..."""
    ticks = list(range(int(np.floor(low)), int(np.ceil(high)) + 1))
    ax.set_xticks(ticks, [f"{10 ** t:,}" if t < 4 else f"1e{t}" for t in ticks])
    ax.set_xlim(low - 0.2, high + 0.2)


def figure(curves: dict[tuple[str, str], dict[str, list[float] | None]], adapters: list[str],
           tasks: list[str]) -> bytes:
    every = [log_lengths(v) for dists in curves.values() for v in dists.values() if v]
    low = min(float(u.min()) for u in every) if every else 0.0
    high = max(float(u.max()) for u in every) if every else 3.0
    fig, axes = grid(len(adapters), len(tasks),
                     title="Character lengths (KDE of log10(1 + length), each scaled to peak 1)")
    for i, adapter in enumerate(adapters):
        for j, task in enumerate(tasks):
            ax = axes[i, j]
            for kind, values in curves.get((adapter, task), {}).items():
                if values:
                    _kde(ax, values, kind)
            _decade_ticks(ax, low, high)
            ax.set_title(f"{short(adapter)} → {task}", fontsize=8)
            ax.tick_params(labelsize=7)
            if i == len(adapters) - 1:
                ax.set_xlabel("1 + characters (log axis)", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8)
    return png_bytes(fig)


def run(ctx: SideContext, options: Mapping[str, Any]) -> SideResult:
    result = SideResult(NAME, TITLE)
    tasks = [t for t in ctx.analysis.matrix.columns if ctx.task_type(t) == "generation"]
    adapters, base = ctx.adapters(), ctx.base_row()
    if not tasks or not adapters:
        result.skipped = ("no generative target task among the records" if not tasks
                          else "no adapter rows")
        return result
    mode = str(options.get("references", "examples"))
    if mode not in REFERENCE_MODES:
        raise ValueError(f"analysis.lengths.references={mode!r} is not one of {', '.join(REFERENCE_MODES)}")
    delta = ctx.analysis.delta
    notes: set[str] = set()
    curves, stats, cells = {}, [], []
    for task in tasks:
        base_out = _outputs(ctx, ctx.record(base, task) if base else None)
        references = None
        for adapter in adapters:
            record = ctx.record(adapter, task)
            if record is None:
                continue
            if references is None:
                references = _references(ctx, record, mode, notes)
            source = _source(ctx, record, notes)
            dists = {"source": source, "adapter": _outputs(ctx, record), "base": base_out,
                     "reference": references}
            curves[(adapter, task)] = dists
            stats += [{"adapter": adapter, "task": task, "distribution": k, **describe(v or [])}
                      for k, v in dists.items()]
            cells.append({
                "adapter": adapter, "task": task,
                "source_reference_distance": log_distance(source, references),
                "adapter_reference_distance": log_distance(dists["adapter"], references),
                "base_reference_distance": log_distance(base_out, references),
                "interpolation": interpolation(dists["adapter"], base_out, source),
                "delta": float(delta.loc[adapter, task]) if delta is not None
                and adapter in delta.index else math.nan,
            })
    if not cells:
        result.skipped = "no (adapter, generative target) cell has a record"
        return result
    cell_table = pd.DataFrame(cells).set_index("adapter")
    test = permutation_spearman(cell_table["source_reference_distance"], cell_table["delta"],
                                int(options.get("n_permutations", 1000)), int(options.get("seed", 0)))
    result.tables = {"lengths_stats.csv": pd.DataFrame(stats).set_index("adapter"),
                     "lengths_cells.csv": cell_table}
    result.figures = {"lengths_kde.png": figure(curves, adapters, tasks)}
    result.summary = {"distance": "wasserstein-1 of log10(1 + characters)", "test": test,
                      "references": mode, "notes": sorted(notes),
                      "mean_interpolation": finite_or_none(cell_table["interpolation"].mean())}
    result.blocks = _blocks(result, test, cell_table, sorted(notes))
    return result


def _verdict(test: dict[str, Any]) -> str:
    if test["rho"] is None:
        return f"No correlation computed: {test.get('note')}."
    p = "" if test["p_value"] is None else f", permutation p = {test['p_value']:.3g} " \
        f"({test['n_permutations']} shuffles, seed {test['seed']})"
    return (f"Spearman rho of source-to-reference length distance with the adapter's gain: "
            f"{test['rho']:+.2f} over {test['n']} cells{p}. Negative: adapters gain where their "
            "training targets are as long as the target's references.")


def _blocks(result: SideResult, test: dict[str, Any], cells: pd.DataFrame,
            notes: list[str]) -> list[tuple]:
    stats = result.tables["lengths_stats.csv"]
    b: list[tuple] = [
        ("p", "Character lengths of four distributions per adapter and generative target: the "
              "adapter's source training targets, the adapter's outputs, the base model's "
              "outputs and the target's references. Distance: Wasserstein-1 between "
              "log10(1 + characters) distributions (in decades). Interpolation: where the "
              "adapter's median log length lies between the base's (0) and its source data's (1)."),
        ("p", _verdict(test)),
        ("figure", "lengths_kde.png", result.figures["lengths_kde.png"],
         "Length distributions on a log axis, each KDE scaled to peak 1 (green source, red "
         "adapter, grey base, blue references)."),
        ("table", cells, "{:+.3f}"),
        ("h3", "Length summaries (characters)"),
        ("table", stats, "{:.1f}"),
    ]
    if notes:
        b += [("list", notes)]
    return b
