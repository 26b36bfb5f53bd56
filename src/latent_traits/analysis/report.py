"""Write the report folder: Markdown, self-contained HTML, PNG figures, CSV tables and a JSON
record of what went in. The folder is built in a temporary directory and renamed into place,
so a report is either whole or absent."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from latent_traits.io import atomic_path, provenance, write_json, write_text

from . import figures
from .render import to_html, to_markdown

if TYPE_CHECKING:
    from .run import Analysis

TOP_TASKS = 3


def _describe_pca(a: Analysis) -> str:
    o = a.options
    view = "the delta view (adapter minus base)" if o.view == "delta" else "the raw adapter rows"
    return (
        f"PCA of {view}: {len(a.pca_input)} adapters x {a.pca_input.shape[1]} tasks, "
        f"{'centred' if o.center else 'not centred'}, "
        f"{'standardised per task' if o.standardize else 'not standardised'}. Loadings are unit "
        "axes over tasks; each component is signed so its largest-|loading| task is positive."
    )


def _trait_summary(a: Analysis) -> list[str]:
    lines = []
    for name, row in a.pca.loadings.iterrows():
        order = row.sort_values()
        top = ", ".join(f"{t} ({v:+.2f})" for t, v in order[::-1][:TOP_TASKS].items() if v > 0)
        low = ", ".join(f"{t} ({v:+.2f})" for t, v in order[:TOP_TASKS].items() if v < 0)
        ratio = a.pca.explained_variance_ratio[name]
        lines.append(f"{name} ({ratio:.1%} of variance): high {top or '-'}; low {low or '-'}")
    return lines


def _stand_in_lines(a: Analysis) -> list[str]:
    """Stand-in cells grouped by task (evaluation data) and by adapter (training data)."""
    by_task: dict[tuple[str, str], list[str]] = {}
    by_adapter: dict[tuple[str, str], list[str]] = {}
    for c in a.stand_in:
        if c["eval_data"]:
            by_task.setdefault((c["task"], c["eval_data"]), []).append(c["adapter"])
        if c["train_data"]:
            by_adapter.setdefault((c["adapter"], c["train_data"]), []).append(c["task"])
    lines = []
    for (task, source), adapters in sorted(by_task.items()):
        rows = "all rows" if set(adapters) >= set(a.matrix.index) else ", ".join(sorted(adapters))
        lines.append(f"task {task} evaluated on stand-in data `{source}` ({rows})")
    for (adapter, source), _ in sorted(by_adapter.items()):
        lines.append(f"adapter {adapter} trained on stand-in data `{source}` (its whole row)")
    return lines


def _task_table(a: Analysis) -> pd.DataFrame:
    rows = {}
    for r in a.cells:
        t, d = r["task"], r.get("data", {})
        rows.setdefault(
            t["name"],
            {
                "version": t.get("version"),
                "type": t.get("type"),
                "metric": r["primary_metric"],
                "data": d.get("source"),
                "stand-in": "no",
            },
        )
        if d.get("stand_in"):
            rows[t["name"]]["stand-in"] = "yes"
    frame = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    frame.index.name = "task"
    return frame


def build_blocks(a: Analysis, meta: dict[str, Any], figs: dict[str, bytes]) -> list[tuple]:
    model = meta.get("model_name") or a.cells[0]["model"]["name"]
    b: list[tuple] = [
        ("h1", f"Latent traits report: {model}"),
        (
            "p",
            f"{len(a.cells)} cell records from `{meta['records_dir']}`; "
            f"{len(a.matrix.index)} rows (base first) x {len(a.matrix.columns)} tasks. "
            "Scores are each task's primary metric.",
        ),
    ]
    if a.stand_in:
        b += [
            ("h2", "Offline stand-in data"),
            ("p", "These cells come from offline stand-in data, not the real datasets:"),
            ("list", _stand_in_lines(a)),
        ]
    if a.dropped["adapters"] or a.dropped["tasks"] or a.ignored:
        notes = [f"dropped adapter {x} (missing cells)" for x in a.dropped["adapters"]]
        notes += [f"dropped task {x} (missing cells)" for x in a.dropped["tasks"]]
        notes += [f"ignored older duplicate `{p}`" for p in a.ignored]
        b += [("h2", "Notes"), ("list", notes)]
    b += [
        ("h2", "Tasks"),
        ("table", _task_table(a), "{}"),
        ("h2", "Performance matrix"),
        ("table", a.matrix, "{:.3f}"),
        ("figure", "matrix.png", figs["matrix.png"], "Primary score per adapter and task."),
    ]
    if a.delta is not None:
        b += [
            ("h2", "Change over the base model"),
            ("table", a.delta, "{:+.3f}"),
            ("figure", "delta.png", figs["delta.png"], "Adapter score minus base score."),
        ]
    b.append(("h2", "Latent traits (PCA)"))
    if a.pca is None:
        b.append(("p", f"PCA did not run: {a.pca_note}"))
    else:
        b += [
            ("p", _describe_pca(a)),
            ("list", _trait_summary(a)),
            ("table", a.pca.explained_variance_table(), "{:.3f}"),
            ("figure", "scree.png", figs["scree.png"], "Explained variance ratio."),
            ("table", a.pca.loadings, "{:+.3f}"),
            ("figure", "loadings.png", figs["loadings.png"], "Loadings: components x tasks."),
            ("p", "Adapter projections (trait profiles):"),
            ("table", a.pca.projections, "{:+.3f}"),
        ]
    b += [("h2", "Examples per cell"), ("table", a.counts, "{:.0f}")]
    return b


def render_figures(a: Analysis) -> dict[str, bytes]:
    figs = {"matrix.png": figures.heatmap_png(a.matrix, "Primary score", fmt="{:.2f}")}
    if a.delta is not None:
        figs["delta.png"] = figures.heatmap_png(
            a.delta, "Change over base", diverging=True, fmt="{:+.2f}"
        )
    if a.pca is not None:
        figs["scree.png"] = figures.scree_png(a.pca.explained_variance_table())
        figs["loadings.png"] = figures.heatmap_png(
            a.pca.loadings, "Loadings", diverging=True, fmt="{:+.2f}"
        )
    return figs


def tables(a: Analysis) -> dict[str, pd.DataFrame]:
    out = {"matrix.csv": a.matrix}
    if a.delta is not None:
        out["delta.csv"] = a.delta
    if a.pca is not None:
        out["explained_variance.csv"] = a.pca.explained_variance_table()
        out["loadings.csv"] = a.pca.loadings
        out["projections.csv"] = a.pca.projections
    return out


def _nan_to_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def report_json(a: Analysis, meta: dict[str, Any], config: dict | None, files: list[str]) -> dict:
    return {
        "provenance": provenance(),
        "config": config,
        **meta,
        "options": vars(a.options),
        "records": [
            {
                "path": r.get("_path"),
                "adapter": r["adapter"]["id"],
                "task": r["task"]["name"],
                "task_version": r["task"].get("version"),
                "settings_hash": r.get("settings_hash"),
                "created_at": r.get("created_at"),
                "n": r.get("data", {}).get("n"),
                "primary_metric": r["primary_metric"],
                "score": r["metrics"][r["primary_metric"]],
            }
            for r in a.cells
        ],
        "ignored_records": a.ignored,
        "dropped": a.dropped,
        "n_per_cell": {
            i: {t: _nan_to_none(v) for t, v in row.items()} for i, row in a.counts.iterrows()
        },
        "stand_in_cells": a.stand_in,
        "pca": None
        if a.pca is None
        else {
            "n_components": a.pca.n_components,
            "explained_variance_ratio": a.pca.explained_variance_ratio.to_dict(),
        },
        "pca_skipped": a.pca_note,
        "files": files,
    }


def write_report(
    a: Analysis, report_dir: str | Path, config: dict | None = None, meta: dict | None = None
) -> Path:
    """Write the report folder atomically (replacing an older one); return report.html's path."""
    meta = meta or {}
    report_dir = Path(report_dir)
    figs, csvs = render_figures(a), tables(a)
    blocks = build_blocks(a, meta, figs)
    files = sorted([*figs, *csvs, "report.md", "report.html", "report.json"])
    with atomic_path(report_dir) as tmp:
        tmp.mkdir()
        for name, png in figs.items():
            (tmp / name).write_bytes(png)
        for name, frame in csvs.items():
            write_text(tmp / name, frame.to_csv())
        write_text(tmp / "report.md", to_markdown(blocks))
        write_text(tmp / "report.html", to_html(blocks, title=blocks[0][1]))
        write_json(tmp / "report.json", report_json(a, meta, config, files))
    return report_dir / "report.html"
