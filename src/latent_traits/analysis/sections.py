"""The report's sections as render blocks (see render.py), built from an Analysis."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .findings import table as findings_table
from .in_domain import in_domain_blocks
from .state import Analysis

TOP_TASKS = 3


def explained_table(a: Analysis) -> pd.DataFrame:
    table = a.pca.explained_variance_table()
    table.insert(0, "trait", a.traits)
    if a.pca_ci:
        table["low"], table["high"] = a.pca_ci["ratio_low"], a.pca_ci["ratio_high"]
    return table


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
    for (name, row), trait, given in zip(
        a.pca.loadings.iterrows(), a.traits, a.traits_given, strict=True
    ):
        order = row.sort_values()
        top = ", ".join(f"{t} ({v:+.2f})" for t, v in order[::-1][:TOP_TASKS].items() if v > 0)
        low = ", ".join(f"{t} ({v:+.2f})" for t, v in order[:TOP_TASKS].items() if v < 0)
        ratio = a.pca.explained_variance_ratio[name]
        ci = ""
        if a.pca_ci:
            ci = f", {a.options.bootstrap.level:.0%} CI {a.pca_ci['ratio_low'][name]:.1%}" \
                 f"-{a.pca_ci['ratio_high'][name]:.1%}"
        how = "given" if given else "suggested from task tags"
        lines.append(f"{name} `{trait}` ({how}; {ratio:.1%} of variance{ci}): "
                     f"high {top or '-'}; low {low or '-'}")
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


def task_table(a: Analysis) -> pd.DataFrame:
    rows = {}
    for r in a.cells:
        t, d = r["task"], r.get("data", {})
        rows.setdefault(t["name"], {
            "version": ", ".join(a.mixed_versions.get(t["name"], [str(t.get("version"))])),
            "type": t.get("type"), "metric": r["primary_metric"],
            "tags": ", ".join(t.get("tags") or []), "data": d.get("source"), "stand-in": "no",
        })
        if d.get("stand_in"):
            rows[t["name"]]["stand-in"] = "yes"
    frame = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    frame.index.name = "task"
    return frame


def _notes(a: Analysis) -> list[str]:
    policy = a.options.missing
    notes = []
    if a.missing:
        cells = ", ".join(f"{r} x {t}" for r, t in a.missing)
        notes.append(f"{len(a.missing)} cell(s) had no record ({cells}); "
                     f"handled by analysis.missing={policy}")
    notes += [f"dropped adapter {x} (missing cells)" for x in a.dropped["adapters"]]
    notes += [f"dropped task {x} (missing cells)" for x in a.dropped["tasks"]]
    notes += [f"imputed {r} x {t} with the task's mean (marked * in the figures)"
              for r, t in a.imputed]
    notes += [f"task {t} mixes versions {', '.join(v)} (analysis.allow_mixed_versions=true)"
              for t, v in a.mixed_versions.items()]
    notes += [f"ignored older duplicate `{p}`" for p in a.ignored]
    what = ("left out of the PCA (analysis.floor_ceiling=exclude)" if a.excluded
            else "kept in the PCA (analysis.floor_ceiling=keep)")
    notes += [f"task {t} {why}; {what}" for t, why in a.floor_ceiling.items()]
    return notes


def _figure(figs: dict[str, bytes], name: str, caption: str) -> list[tuple]:
    return [("figure", name, figs[name], caption)] if name in figs else []


def build_blocks(a: Analysis, meta: dict[str, Any], figs: dict[str, bytes]) -> list[tuple]:
    model = meta.get("model_name") or a.cells[0]["model"]["name"]
    level = a.options.bootstrap.level
    ci_text = (f" Brackets are {level:.0%} bootstrap intervals over evaluation examples "
               f"({a.options.bootstrap.n_resamples} resamples)." if a.intervals else "")
    b: list[tuple] = [
        ("h1", f"Latent traits report: {model}"),
        ("p", f"{len(a.cells)} cells from {meta.get('where') or meta['records_dir']}; "
              f"{len(a.matrix.index)} rows (base first) x {len(a.matrix.columns)} tasks. "
              f"Scores are each task's primary metric.{ci_text}"),
    ]
    b += findings_blocks(a)
    if a.stand_in:
        b += [("h2", "Offline stand-in data"),
              ("p", "These cells come from offline stand-in data, not the real datasets:"),
              ("list", _stand_in_lines(a))]
    if notes := _notes(a):
        b += [("h2", "Notes"), ("list", notes)]
    b += [("h2", "Tasks"), ("table", task_table(a), "{}"),
          ("h2", "Performance matrix"), ("table", a.matrix, "{:.3f}"),
          *_figure(figs, "matrix.png", f"Primary score per adapter and task.{ci_text}")]
    if a.delta is not None:
        b += [("h2", "Change over the base model"), ("table", a.delta, "{:+.3f}"),
              *_figure(figs, "delta.png", "Adapter score minus base score (paired bootstrap: "
                                          "base and adapter share each resampled test set).")]
        b += in_domain_blocks(a)
    b += [("h2", "Per-task z-scores"),
          *_figure(figs, "zscores.png", "Each task standardised over the rows shown: which "
                                        "adapters stand out on a task, whatever its scale.")]
    b.append(("h2", "Latent traits (PCA)"))
    if a.pca is None:
        b.append(("p", f"PCA did not run: {a.pca_note}"))
    else:
        b += [("p", _describe_pca(a)), ("list", _trait_summary(a)),
              ("table", explained_table(a), "{:.3f}"),
              *_figure(figs, "scree.png", "Explained variance ratio per component."),
              ("table", a.pca.loadings, "{:+.3f}"),
              *_figure(figs, "loadings.png", "Loadings: components x tasks."
                       + (" Bootstrap components are matched to these by |cosine|."
                          if a.pca_ci else "")),
              *_figure(figs, "biplot.png", "Adapters on the first two traits; arrows are tasks."),
              ("p", "Adapter projections (trait profiles):"),
              ("table", a.pca.projections, "{:+.3f}")]
    if a.bootstrap_note:
        b += [("p", f"Uncertainty: {a.bootstrap_note}.")]
    if a.seeds is not None:
        b += [("h2", "Spread across seeds"),
              ("p", "Adapters that differ only in their training seed:"),
              ("table", a.seeds.set_index("group"), "{:.3f}")]
    b.append(("h2", "Transfer prediction"))
    if a.transfer is None:
        b.append(("p", f"Not run: {a.transfer_note}."))
    else:
        b += [("p", f"Each task is held out in turn: {a.transfer_k} trait(s) are fitted on the "
                    "other tasks, the held-out task's scores are regressed on the adapters' "
                    "projections (leaving the predicted adapter out), and the error is compared "
                    "with predicting the task's mean. Skill > 0: the traits predict transfer "
                    "to a task they never saw." + (f" Note: {a.transfer_note}."
                                                   if a.transfer_note else "")),
              ("table", a.transfer, "{:.3f}"),
              *_figure(figs, "transfer.png", "Held-out RMSE per task.")]
    b += [("h2", "Examples per cell"), ("table", a.counts, "{:.0f}")]
    return b + side_blocks(a)


def findings_blocks(a: Analysis) -> list[tuple]:
    """The study's claims on this matrix: a compact table, then each claim's test and reason."""
    if not a.findings:
        return []
    level = a.options.bootstrap.level
    counts = {v: sum(c.verdict == v for c in a.findings) for v in ("holds", "contradicted", "inconclusive")}
    tested = sum(c.p_holm is not None for c in a.findings)
    return [
        ("h2", "Findings"),
        ("p", f"Each claim of the study tested on this matrix ({counts['holds']} hold, "
              f"{counts['contradicted']} contradicted, {counts['inconclusive']} inconclusive). "
              f"Estimates with {level:.0%} intervals. Family-wise error: the p-values of the "
              f"{tested} claim(s) that have one are Holm-adjusted together and judged at "
              f"{1 - level:.2g}; band claims are judged by their interval. Rules: docs/FINDINGS.md."),
        ("table", findings_table(a.findings), "{}"),
        ("list", [f"`{c.id}`: {c.statement} Test: {c.test}"
                  + (f"; p={c.p:.3g}, Holm p={c.p_holm:.3g}" if c.p_holm is not None else "")
                  + f". Verdict: {c.verdict} ({c.reason})." for c in a.findings]),
    ]


def side_blocks(a: Analysis) -> list[tuple]:
    """One h2 section per selected side analysis: its blocks, or why it did not run."""
    b: list[tuple] = []
    for side in a.side:
        b.append(("h2", side.title))
        if side.error:
            b.append(("p", f"This analysis failed and is left out: {side.error} (the log has "
                           "the traceback; the rest of the report is unaffected)."))
        elif side.skipped:
            b.append(("p", f"Not run: {side.skipped}."))
        else:
            b += side.blocks
    return b
