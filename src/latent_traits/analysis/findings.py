"""Findings: each claim of the study as a hypothesis tested on this matrix.

Every claim gets the test used, an estimate with its 95% interval where one exists, a p-value
where the test gives one, and a verdict: holds, contradicted, or inconclusive with what is
missing (an adapter not trained, a column at floor, the examples a decision would need). The
p-values of the claims are adjusted together by Holm's step-down method, which keeps the chance
of any false "holds" or "contradicted" at 5% over the whole family. Claims judged by an interval
(equivalence, a band) carry no p-value and decide on their interval alone.

Nothing here recomputes an analysis: it reads the matrix, the bootstrap replicates, the PCA and
the side analyses' summaries that the Analysis already holds (docs/FINDINGS.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from . import bootstrap as bs
from . import matrix as mx
from .render import slug

ALPHA = 0.05
Z_POWER = 1.96 + 0.84  # two-sided 5% test at 80% power
HOLDS, CONTRADICTED, INCONCLUSIVE = "holds", "contradicted", "inconclusive"
# the study's traits (../shared/PAPER.md): the tasks that load on each, and their sign
PAPER_TRAITS = {
    "trait_pc0_general_gain": ("PC0, general gain: gsm8k, goat, magicoder and flipkart load together",
                               {"gsm8k": 1, "goat": 1, "magicoder": 1, "flipkart": 1}),
    "trait_pc1_classification": ("PC1, classification: paws, pile, flipkart, amazon and imdb load together",
                                 {"paws": 1, "pile": 1, "flipkart": 1, "amazon": 1, "imdb": 1}),
    "trait_pc2_general_nlu": ("PC2, general NLU: gsm8k, magicoder and mnli load together",
                              {"gsm8k": 1, "magicoder": 1, "mnli": 1}),
    "trait_pc3_arithmetic": ("PC3, large-number arithmetic: goat and gsm8k load with opposite signs",
                             {"goat": 1, "gsm8k": -1}),
}
SECTIONS = {"matrix": "Change over the base model", "pca": "Latent traits (PCA)"}


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    test: str
    section: str  # the title of the report section with the detail
    estimate: float | None = None
    ci: tuple[float, float] | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    verdict: str = INCONCLUSIVE
    reason: str = ""
    direction: int = 1  # +1: the claim expects a positive estimate; -1: negative; 0: not directional

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- what the matrix holds ------------------------------------------------------------------------

def task_info(a: Any) -> dict[str, dict[str, Any]]:
    return {r["task"]["name"]: r["task"] for r in a.cells}


def source_of(a: Any) -> dict[str, dict[str, Any]]:
    """Per adapter row: its source task's name, type and tags (from its training settings, or
    from the target task of the same name)."""
    tasks, out = task_info(a), {}
    for r in a.cells:
        row = r["adapter"]["id"]
        if mx.is_base(row) or row in out:
            continue
        task = (((r["adapter"].get("train_config") or {}).get("source_dataset") or {}).get("task") or {})
        name = task.get("name") or r["adapter"].get("source_dataset") or row.split("/")[0]
        known = tasks.get(name, {})
        out[row] = {"name": name, "type": task.get("type") or known.get("type"),
                    "tags": list(task.get("tags") or known.get("tags") or [])}
    return out


def rows_with_source(a: Any, name: str) -> list[str]:
    return [row for row, src in source_of(a).items() if src["name"] == name and row in a.matrix.index]


def delta_statistic(a: Any, pairs: list[tuple[str, str]], weights: list[float] | None = None) -> Claim | None:
    """Mean (weighted) delta over (row, task) cells, its 95% interval and two-sided bootstrap p,
    as a partial Claim; None when the cells are not all in the delta view."""
    if a.delta is None or not pairs:
        return None
    weights = weights or [1.0 / len(pairs)] * len(pairs)
    estimate = float(sum(w * a.delta.at[r, t] for (r, t), w in zip(pairs, weights, strict=True)))
    reps = getattr(a, "replicates", None)
    if reps is None or not all(bool(reps.has_ci.at[r, t]) and bool(reps.has_ci.at[mx.base_of(r), t])
                               for r, t in pairs):
        return Claim("", "", "", "", estimate=estimate)
    rows, tasks = list(a.matrix.index), list(a.matrix.columns)
    values = np.zeros(reps.values.shape[0])
    for (r, t), w in zip(pairs, weights, strict=True):
        j = tasks.index(t)
        values += w * (reps.values[:, rows.index(r), j] - reps.values[:, rows.index(mx.base_of(r)), j])
    lo, hi = reps.interval(values)
    p = min(1.0, 2 * min(float((values <= 0).mean()), float((values >= 0).mean())))
    return Claim("", "", "", "", estimate=estimate, ci=(float(lo), float(hi)),
                 p_value=max(p, 1.0 / len(values)))


def needed_n(a: Any, pairs: list[tuple[str, str]], claim: Claim) -> str:
    """The examples per column that would make this effect size significant at 80% power."""
    if claim.ci is None or not claim.estimate:
        return "an effect this small needs far more examples to show"
    se = (claim.ci[1] - claim.ci[0]) / 3.92
    n_now = float(np.median([a.counts.at[r, t] for r, t in pairs]))
    return f"needs about n={int(np.ceil(n_now * (Z_POWER * se / abs(claim.estimate)) ** 2))} per column (now {n_now:.0f})"


def decide(claim: Claim, reason_missing: str = "") -> Claim:
    """The verdict of a directional test claim from its adjusted p-value."""
    if claim.p_adjusted is None:
        return replace(claim, verdict=INCONCLUSIVE, reason=claim.reason or reason_missing)
    significant = claim.p_adjusted < ALPHA
    sign = np.sign(claim.estimate or 0.0)
    if significant and (claim.direction == 0 or sign == claim.direction):
        return replace(claim, verdict=HOLDS)
    if significant:
        return replace(claim, verdict=CONTRADICTED)
    return replace(claim, verdict=INCONCLUSIVE)


# -- the claims -----------------------------------------------------------------------------------

def transfer_claim(a: Any, cid: str, statement: str, from_kind: str, to_kind: str, direction: int) -> Claim:
    """Adapters trained on one kind of task against targets of another: the mean change."""
    info, sources = task_info(a), source_of(a)

    def kind_of(tags: list[str], type_: str | None) -> str | None:
        if "math" in tags:
            return "math"
        return "classification" if type_ == "classification" else None

    rows = [r for r, s in sources.items() if kind_of(s["tags"], s["type"]) == from_kind]
    tasks = [t for t in a.matrix.columns if kind_of(list(info[t].get("tags") or []), info[t].get("type")) == to_kind
             and t not in getattr(a, "left_out", [])]
    base = Claim(cid, statement, f"mean change over the base model of {from_kind}-trained adapters on "
                 f"{to_kind} targets; paired bootstrap over test examples", SECTIONS["matrix"], direction=direction)
    if not rows:
        return replace(base, reason=f"no adapter trained on a {from_kind} source")
    if not tasks:
        flat = [t for t in getattr(a, "left_out", []) if kind_of(list(info[t].get("tags") or []),
                                                                    info[t].get("type")) == to_kind]
        return replace(base, reason=f"no {to_kind} target" + (f" off the floor/ceiling ({', '.join(flat)})"
                                                                  if flat else ""))
    pairs = [(r, t) for r in rows for t in tasks if r.split("/")[0] != t]
    stat = delta_statistic(a, pairs)
    if stat is None:
        return replace(base, reason="no base row, so no change over the base")
    claim = replace(base, estimate=stat.estimate, ci=stat.ci, p_value=stat.p_value)
    if stat.p_value is None:
        return replace(claim, reason="no predictions files to resample (e.g. records from W&B)")
    return replace(claim, reason=needed_n(a, pairs, claim))


def magicoder_goat_claim(a: Any) -> Claim:
    base = Claim("magicoder_beats_goat_on_gsm8k", "The Magicoder adapter gains more on GSM8K than the Goat "
                 "adapter (their output lengths resemble GSM8K's, Goat's are short)",
                 "change(magicoder adapter) minus change(goat adapter) on gsm8k; paired bootstrap",
                 SECTIONS["matrix"])
    magicoder, goat = rows_with_source(a, "magicoder"), rows_with_source(a, "goat")
    missing = [n for n, rows in (("magicoder", magicoder), ("goat", goat)) if not rows]
    if missing or "gsm8k" not in a.matrix.columns:
        what = [f"an adapter trained on {m}" for m in missing] + ([] if "gsm8k" in a.matrix.columns else ["gsm8k"])
        return replace(base, reason=f"needs {' and '.join(what)}")
    if "gsm8k" in getattr(a, "left_out", []):
        return replace(base, reason="gsm8k is at floor or ceiling")
    pairs = [(magicoder[0], "gsm8k"), (goat[0], "gsm8k")]
    stat = delta_statistic(a, pairs, [1.0, -1.0])
    if stat is None or stat.p_value is None:
        return replace(base, estimate=stat.estimate if stat else None,
                       reason="no base row or no predictions to resample")
    lengths = side_summary(a, "lengths").get("test") or {}
    why = f"; lengths: Spearman rho {lengths['rho']:+.2f} of length distance with gain" if lengths.get("rho") is not None else ""
    claim = replace(base, estimate=stat.estimate, ci=stat.ci, p_value=stat.p_value)
    return replace(claim, reason=needed_n(a, pairs, claim) + why)


def side_summary(a: Any, name: str) -> dict[str, Any]:
    side = next((s for s in getattr(a, "side", []) if s.name == name), None)
    if side is None or side.error or side.skipped:
        return {}
    return side.summary or {}


def side_title(a: Any, name: str, default: str) -> str:
    """The section of a side analysis; empty (no link) when the report has none."""
    side = next((s for s in getattr(a, "side", []) if s.name == name), None)
    return side.title if side is not None else ""


def rho_claim(a: Any, cid: str, statement: str, side: str, key: str, test: str, title: str) -> Claim:
    summary = side_summary(a, side)
    node = summary.get(key) or {}
    if key == "balance":
        node = node.get("trend") or {}
    base = Claim(cid, statement, test, side_title(a, side, title), direction=1)
    if node.get("rho") is None:
        why = "the analysis did not run" if not summary else (node.get("note") or "no pairs to test")
        return replace(base, reason=f"{side}: {why}")
    return replace(base, estimate=float(node["rho"]), p_value=node.get("p_value"),
                   reason=f"{node.get('n')} points, {node.get('n_permutations')} permutations")


def top4_claim(a: Any) -> Claim:
    base = Claim("top4_variance", "The top 4 latent traits explain about 75% of the variance (65-85%)",
                 "share of variance of the first 4 components; bootstrap interval over test examples; holds "
                 "when the interval lies inside 65-85%, contradicted when it lies outside", SECTIONS["pca"],
                 direction=0)
    if a.pca is None or len(a.pca.explained_variance_ratio) < 4:
        have = 0 if a.pca is None else len(a.pca.explained_variance_ratio)
        return replace(base, reason=f"needs 4 components (at least 5 adapters and 4 tasks); this matrix gives {have}")
    estimate = float(a.pca.explained_variance_ratio.iloc[:4].sum())
    reps = getattr(a, "replicates", None)
    if reps is None:
        return replace(base, estimate=estimate, reason="no predictions to resample: no interval")
    x = bs.view_replicates(reps.without(getattr(a, "left_out", [])), a.pca_matrix, a.options.view)
    _, ratios = bs.batched_pca(x, a.pca.center, a.pca.standardize)
    lo, hi = reps.interval(np.sort(ratios, axis=1)[:, ::-1][:, :4].sum(axis=1))
    claim = replace(base, estimate=estimate, ci=(float(lo), float(hi)))
    if 0.65 <= lo and hi <= 0.85:
        return replace(claim, verdict=HOLDS, reason="the interval lies inside 65-85%")
    if hi < 0.65 or lo > 0.85:
        return replace(claim, verdict=CONTRADICTED, reason="the interval lies outside 65-85%")
    return replace(claim, reason="the interval is wider than the band: more examples per cell or more adapters")


def trait_claim(a: Any, cid: str, statement: str, direction: dict[str, int], seed: int = 0,
                n_permutations: int = 2000) -> Claim:
    base = Claim(cid, statement, "largest |cosine| of the trait's task direction with the first 4 components; "
                 f"permutation test over task labels ({n_permutations} shuffles)", SECTIONS["pca"], direction=0)
    if a.pca is None:
        return replace(base, reason=f"no PCA: {a.pca_note}")
    tasks = list(a.pca.loadings.columns)
    present = {t: s for t, s in direction.items() if t in tasks}
    missing = sorted(set(direction) - set(present))
    if len(present) < 2:
        return replace(base, reason=f"needs the columns {', '.join(sorted(direction))}; missing {', '.join(missing)}")
    vector = np.array([present.get(t, 0) for t in tasks], dtype=float)
    comps = a.pca.loadings.to_numpy()[:4]

    def best(v: np.ndarray) -> float:
        return float(np.max(np.abs(comps @ v)) / np.linalg.norm(v))

    observed = best(vector)
    rng = np.random.default_rng(seed)
    null = np.array([best(rng.permutation(vector)) for _ in range(n_permutations)])
    p = float((1 + (null >= observed - 1e-12).sum()) / (1 + n_permutations))
    note = f"; columns missing: {', '.join(missing)}" if missing else ""
    return replace(base, estimate=observed, p_value=p, reason=f"{len(present)} of the trait's tasks present{note}")


def interpolation_claim(a: Any, seed: int = 0) -> Claim:
    base = Claim("length_interpolation", "Adapters' output lengths lie between the base model's and their "
                 "source data's", "mean interpolation (0 = base's median log length, 1 = source's) over "
                 "(adapter, generative target) cells; bootstrap over cells", side_title(a, "lengths", "Length proclivity"),
                 direction=0)
    side = next((s for s in getattr(a, "side", []) if s.name == "lengths" and not s.error and not s.skipped), None)
    table = side.tables.get("lengths_cells.csv") if side is not None else None
    values = table["interpolation"].dropna().to_numpy() if table is not None else np.array([])
    if len(values) < 3:
        return replace(base, reason="needs at least 3 (adapter, generative target) cells with outputs")
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(2000, len(values))).mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    claim = replace(base, estimate=float(values.mean()), ci=(float(lo), float(hi)))
    if 0 < lo and hi < 1:
        return replace(claim, verdict=HOLDS, reason=f"{len(values)} cells; the interval lies inside (0, 1)")
    if hi < 0 or lo > 1:
        return replace(claim, verdict=CONTRADICTED, reason=f"{len(values)} cells; the interval lies outside [0, 1]")
    return replace(claim, reason=f"{len(values)} cells; the interval reaches past 0 or 1")


def wrong_labels_claim(a: Any, margin: float = 0.05) -> Claim:
    base = Claim("wrong_labels_transfer", "Training on wrong labels transfers to other tasks about as well as "
                 f"correct labels (within +-{margin:.2f})", "mean difference (mislabeled minus correct) of the "
                 "change over the base on the other targets; paired bootstrap; equivalence: the interval inside the "
                 "margin", side_title(a, "ablations", "Ablations"), direction=0)
    groups = (side_summary(a, "ablations").get("label_noise") or {}).get("groups") or []
    pairs = [g for g in groups if len(g) == 2]
    if not pairs:
        return replace(base, reason="needs a pair of adapters differing only in label noise (e.g. amazon, amazon_mislabeled)")
    correct, wrong = pairs[0]
    own = source_of(a).get(correct, {}).get("name")
    tasks = [t for t in a.matrix.columns if t != own and t not in getattr(a, "left_out", [])]
    cells = [(wrong, t) for t in tasks] + [(correct, t) for t in tasks]
    stat = delta_statistic(a, cells, [1 / len(tasks)] * len(tasks) + [-1 / len(tasks)] * len(tasks))
    if stat is None or stat.ci is None:
        return replace(base, estimate=stat.estimate if stat else None, reason="no predictions to resample")
    claim = replace(base, estimate=stat.estimate, ci=stat.ci)
    lo, hi = stat.ci
    if -margin <= lo and hi <= margin:
        return replace(claim, verdict=HOLDS, reason=f"`{correct}` vs `{wrong}` on {len(tasks)} targets")
    if hi < -margin or lo > margin:
        return replace(claim, verdict=CONTRADICTED, reason=f"`{correct}` vs `{wrong}`: the interval lies outside the margin")
    return replace(claim, reason=f"`{correct}` vs `{wrong}`: the interval is wider than the margin")


def similarity_claim(a: Any) -> Claim:
    base = Claim("similarity_not_transfer", "Style and semantic similarity between datasets do not explain transfer",
                 "one-sided Mantel tests of each similarity against the transfer matrix; holds when neither is "
                 "significant and the test could have been (at least 5 datasets)",
                 side_title(a, "similarity", "Dataset similarity and transfer"), direction=0)
    summary = side_summary(a, "similarity")
    tests = {k: v for k, v in (summary.get("mantel") or {}).items() if v.get("p_value") is not None}
    if not tests:
        return replace(base, reason="needs datasets that are both source and target, and the similarity analysis")
    kind, test = min(tests.items(), key=lambda kv: kv[1]["p_value"])
    n = len(summary.get("datasets") or [])
    return replace(base, estimate=test.get("r"), p_value=float(test["p_value"]),
                   reason=f"{kind} Mantel r over {n} datasets (smallest p of {', '.join(sorted(tests))})")


def similarity_can_be_significant(a: Any) -> bool:
    """With n datasets the exact Mantel test's smallest p is 1/n!: below 0.05 needs n >= 5."""
    return len(side_summary(a, "similarity").get("datasets") or []) >= 5


def dependency_claim(a: Any) -> Claim:
    base = Claim("dependency_gains", "An adapter's gains on math questions concentrate on some dependency "
                 "relations (success ratio over the base above its overall ratio)",
                 "per relation: adapter / base successes on the questions holding it, lift over the overall ratio, "
                 "95% bootstrap interval over questions (not corrected for the many relations)",
                 side_title(a, "dependency", "Dependency relations of the math questions"), direction=0)
    summary = side_summary(a, "dependency")
    if not summary:
        return replace(base, reason="the dependency analysis did not run (needs a math target and spaCy)")
    lifted = [f"{adapter}: {relation}" for found in (summary.get("lift_above_one") or {}).values()
              for adapter, relation in found]
    if lifted:
        return replace(base, verdict=HOLDS, estimate=float(len(lifted)),
                       reason=f"lift interval above 1 for {', '.join(lifted[:5])}")
    return replace(base, reason="no relation's lift interval lies above 1")


# -- the family -----------------------------------------------------------------------------------

def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control)."""
    order = np.argsort(p_values)
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def assess(a: Any) -> list[Claim]:
    """Every claim of the study, tested on this Analysis, with Holm-adjusted verdicts."""
    claims = [top4_claim(a)]
    claims += [trait_claim(a, cid, statement, direction) for cid, (statement, direction) in PAPER_TRAITS.items()]
    claims += [
        transfer_claim(a, "classification_helps_math", "Adapters trained on classification raise math scores",
                       "classification", "math", 1),
        transfer_claim(a, "math_hurts_classification", "Adapters trained on math lower classification scores",
                       "math", "classification", -1),
        magicoder_goat_claim(a),
        interpolation_claim(a),
        rho_claim(a, "class_prior_pull", "Predicted labels are pulled toward the source data's label prior",
                  "classes", "prior_test", "Spearman of the prior's pull with the predicted shift; permutation p",
                  "Class distribution"),
        rho_claim(a, "balanced_vs_imbalanced", "Balanced source data helps balanced targets more than imbalanced "
                  "source data does (and the reverse)", "classes", "balance",
                  "Spearman of (balanced minus imbalanced) with target balance; permutation p", "Class distribution"),
        wrong_labels_claim(a),
        similarity_claim(a),
        dependency_claim(a),
    ]
    tested = [i for i, c in enumerate(claims) if c.p_value is not None and c.verdict == INCONCLUSIVE
              and c.id != "dependency_gains"]
    for i, p in zip(tested, holm([claims[i].p_value for i in tested]), strict=True):
        claims[i] = replace(claims[i], p_adjusted=p)
    out = []
    for c in claims:
        if c.id == "similarity_not_transfer" and c.p_adjusted is not None:
            if c.p_adjusted < ALPHA:
                c = replace(c, verdict=CONTRADICTED)
            elif similarity_can_be_significant(a):
                c = replace(c, verdict=HOLDS)
            else:
                c = replace(c, reason=c.reason + "; fewer than 5 datasets: p cannot reach 0.05")
            out.append(c)
        elif c.id.startswith("trait_") and c.p_adjusted is not None:
            out.append(replace(c, verdict=HOLDS) if c.p_adjusted < ALPHA else
                       replace(c, reason=c.reason + "; not distinguishable from a random assignment of tasks"))
        elif c.p_adjusted is not None:
            out.append(decide(c))
        else:
            out.append(c)
    return out


def findings_table(claims: list[Claim]) -> pd.DataFrame:
    rows = []
    for c in claims:
        estimate = "" if c.estimate is None else f"{c.estimate:+.3f}"
        if c.ci is not None:
            estimate += f" [{c.ci[0]:+.3f}, {c.ci[1]:+.3f}]"
        p = "" if c.p_value is None else f"{c.p_value:.3g}" + ("" if c.p_adjusted is None else f" ({c.p_adjusted:.3g})")
        claim = f"[{c.statement}](#{slug(c.section)})" if c.section else c.statement
        rows.append({"claim": claim, "estimate [95% CI]": estimate,
                     "p (Holm)": p, "verdict": c.verdict, "why": c.reason})
    return pd.DataFrame(rows).set_index("claim")
