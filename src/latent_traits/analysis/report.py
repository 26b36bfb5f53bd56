"""Write the report folder: Markdown, self-contained HTML, PNG figures, CSV tables and a JSON
record of what went in. The folder is built in a temporary directory and renamed into place,
so a report is either whole or absent."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from latent_traits.io import atomic_path, provenance, write_json, write_text
from latent_traits.redact import redact
from latent_traits.safe_paths import MARKER, check_replaceable, mark_owned

from . import figures
from .bootstrap import long_intervals
from .render import to_html, to_markdown
from .sections import build_blocks, explained_table
from .state import Analysis


def _ci(a: Analysis, view: str) -> dict[str, Any]:
    if view not in a.intervals:
        return {}
    low, high = a.intervals[view]
    return {"low": low, "high": high}


def render_figures(a: Analysis) -> dict[str, bytes]:
    figs = {"matrix.png": figures.heatmap_png(
        a.matrix, "Primary score", fmt="{:.2f}", marked=a.imputed, **_ci(a, "matrix"))}
    if a.delta is not None:
        figs["delta.png"] = figures.heatmap_png(
            a.delta, "Change over base", diverging=True, fmt="{:+.2f}", marked=a.imputed,
            **_ci(a, "delta"))
    figs["zscores.png"] = figures.heatmap_png(
        a.zscores, "Per-task z-score", diverging=True, fmt="{:+.1f}", marked=a.imputed)
    if a.pca is not None:
        ci = a.pca_ci
        figs["scree.png"] = figures.scree_png(
            a.pca.explained_variance_table(), ci.get("ratio_low"), ci.get("ratio_high"),
            a.options.bootstrap.level)
        loadings = a.pca.loadings.copy()
        loadings.index = [f"{pc} {name}" for pc, name in zip(loadings.index, a.traits,
                                                             strict=True)]
        loadings.index.name = "component"
        low = ci["loadings_low"].set_axis(loadings.index) if ci else None
        high = ci["loadings_high"].set_axis(loadings.index) if ci else None
        figs["loadings.png"] = figures.heatmap_png(
            loadings, "Loadings", diverging=True, fmt="{:+.2f}", low=low, high=high)
        figs["biplot.png"] = figures.biplot_png(a.pca.projections, a.pca.loadings, a.traits)
    if a.transfer is not None:
        figs["transfer.png"] = figures.transfer_png(a.transfer, a.transfer_k)
    for side in a.side:
        figs.update(side.figures)
    return figs


def tables(a: Analysis) -> dict[str, pd.DataFrame]:
    out = {"cells.csv": a.long.set_index("model"), "matrix.csv": a.matrix,
           "zscores.csv": a.zscores}
    if "matrix" in a.intervals:
        out["matrix_ci.csv"] = long_intervals(a.matrix, *a.intervals["matrix"], "score")
    if a.delta is not None:
        out["delta.csv"] = a.delta
    if "delta" in a.intervals:
        out["delta_ci.csv"] = long_intervals(a.delta, *a.intervals["delta"], "delta")
    if a.missing:
        out["missing_cells.csv"] = pd.DataFrame(a.missing, columns=["row", "task"]).assign(
            policy=a.options.missing,
            imputed=[cell in set(a.imputed) for cell in a.missing]).set_index("row")
    if a.pca is not None:
        out["explained_variance.csv"] = explained_table(a)
        out["loadings.csv"] = a.pca.loadings
        out["projections.csv"] = a.pca.projections
        if a.pca_ci:
            out["loadings_ci.csv"] = long_intervals(
                a.pca.loadings, a.pca_ci["loadings_low"], a.pca_ci["loadings_high"], "loading")
    if a.seeds is not None:
        out["seeds.csv"] = a.seeds.set_index("group")
    if a.transfer is not None:
        out["transfer.csv"] = a.transfer
        out["transfer_predictions.csv"] = a.transfer_predictions.set_index("adapter")
    for side in a.side:
        out.update(side.tables)
    if a.findings:
        out["findings.csv"] = pd.DataFrame([asdict(c) for c in a.findings]).set_index("id")
    return out


def _nan_to_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def report_json(a: Analysis, meta: dict[str, Any], config: dict | None, files: list[str]) -> dict:
    return {
        "provenance": provenance(),
        "config": redact(config),  # no secret in the report (latent_traits.redact)
        **meta,
        "options": asdict(a.options),
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
            "trait_names": a.traits,
            "trait_names_given": a.traits_given,
        },
        "missing_cells": [list(c) for c in a.missing],
        "imputed_cells": [list(c) for c in a.imputed],
        "bootstrap": None if not a.intervals else asdict(a.options.bootstrap),
        "bootstrap_note": a.bootstrap_note,
        "transfer": None if a.transfer is None else {
            "k": a.transfer_k, "overall": a.transfer.loc["overall"].to_dict()},
        "transfer_note": a.transfer_note,
        "pca_skipped": a.pca_note,
        "floor_ceiling": {"policy": a.options.floor_ceiling, "tasks": a.floor_ceiling,
                          "excluded_from_pca": a.excluded},
        "findings": [{k: _nan_to_none(v) for k, v in asdict(c).items()} for c in a.findings],
        "findings_fwer": "Holm over the claims' p-values at 1 - analysis.bootstrap.level",
        "side_analyses": {
            s.name: {"title": s.title, "skipped": s.skipped, "error": s.error,
                     "seconds": s.seconds, "options": dict(a.options.side.get(s.name, {})),
                     "summary": s.summary, "figures": sorted(s.figures),
                     "tables": sorted(s.tables)}
            for s in a.side
        },
        "files": files,
    }


def previous_report_files(report_dir: Path) -> list[str]:
    """The files an earlier report in report_dir listed as its own (none if it has no readable list)."""
    try:
        files = json.loads((report_dir / "report.json").read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [f for f in files if isinstance(f, str)]


def write_report(
    a: Analysis, report_dir: str | Path, config: dict | None = None, meta: dict | None = None
) -> Path:
    """Write the report folder atomically (replacing an older one); return report.html's path."""
    meta = meta or {}
    report_dir = Path(report_dir)
    check_replaceable(report_dir, "report_dir", previous_report_files(report_dir))
    figs, csvs = render_figures(a), tables(a)
    blocks = build_blocks(a, meta, figs)
    files = sorted([*figs, *csvs, "report.md", "report.html", "report.json", MARKER])
    with atomic_path(report_dir) as tmp:
        tmp.mkdir()
        mark_owned(tmp)
        for name, png in figs.items():
            (tmp / name).write_bytes(png)
        for name, frame in csvs.items():
            write_text(tmp / name, frame.to_csv(index=not isinstance(frame.index, pd.RangeIndex)))
        write_text(tmp / "report.md", to_markdown(blocks))
        write_text(tmp / "report.html", to_html(blocks, title=blocks[0][1]))
        write_json(tmp / "report.json", report_json(a, meta, config, files))
    return report_dir / "report.html"
