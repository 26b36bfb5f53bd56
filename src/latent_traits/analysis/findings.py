"""The study's claims (../shared/PAPER.md) tested on the matrix at hand: numbers in, claims out.

Each claim is a hypothesis with a test, an estimate, its interval at the analysis' level, a
two-sided p-value and a verdict: `holds`, `contradicted` or `inconclusive` (with what is
missing). The engine reads what the analysis already computed (the matrix and its bootstrap
replicates, the PCA and its intervals, the side analyses' summaries and tables); it imports
only downward and never the Analysis object (see docs/FINDINGS.md for every rule).

Family-wise error: the p-values of all claims that have one are Holm-adjusted together; a
directional claim holds when its adjusted p < alpha and its estimate has the claimed sign,
and is contradicted when adjusted p < alpha with the opposite sign. Band claims (a share
near 75%, an interpolation between 0 and 1) are judged by their interval against the band
and carry no p-value. Otherwise the verdict is inconclusive, and the reason gives the sample
size that would decide it (80% power at the Bonferroni level alpha / #claims, scaling the
standard error as 1 / sqrt(n)).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest, norm

from .matrix import base_of
from .render import anchor
from .stats import holm

log = logging.getLogger(__name__)
VERDICTS = ("holds", "contradicted", "inconclusive")
POWER = 0.8
EQUIVALENCE_MARGIN = 0.03  # wrong vs right labels: "about the same" = within 3 points
TOP4_BAND = (0.65, 0.85)  # "about 75%"
WEAK_CORRELATION = 0.5  # similarity "does not explain" transfer: |r| below this
PCA_SECTION, DELTA_SECTION = "Latent traits (PCA)", "Change over the base model"
# the study's traits: component, {task: sign}
TRAITS = {
    "trait_general_gain": (0, "general gain", {"gsm8k": 1, "goat": 1, "magicoder": 1, "flipkart": 1}),
    "trait_classification": (1, "classification", {"paws": 1, "pile": 1, "flipkart": 1, "amazon": 1,
                                                   "imdb": 1}),
    "trait_general_nlu": (2, "general NLU", {"gsm8k": 1, "magicoder": 1, "mnli": 1}),
    "trait_large_number_arithmetic": (3, "large-number arithmetic", {"goat": 1, "gsm8k": -1}),
}


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    test: str
    estimate: float | None = None
    ci: tuple[float, float] | None = None
    p: float | None = None  # two-sided, before adjustment
    p_holm: float | None = None
    verdict: str = "inconclusive"
    reason: str = ""
    section: str | None = None  # title of the report section with the detail


@dataclass
class Evidence:
    """What the findings read; run.py fills it from the analysis (read-only)."""

    matrix: pd.DataFrame
    delta: pd.DataFrame | None
    counts: pd.DataFrame
    level: float = 0.95
    replicates: np.ndarray | None = None  # (B, rows, tasks) on the matrix's axes
    has_ci: pd.DataFrame | None = None  # cells resampled from their own predictions
    explained: pd.Series | None = None  # PCA explained-variance ratio per component
    loadings: pd.DataFrame | None = None
    pca_ci: Mapping[str, Any] = field(default_factory=dict)
    pca_note: str | None = None
    pca_tasks: Sequence[str] = ()
    floor: Mapping[str, str] = field(default_factory=dict)  # task -> why at floor/ceiling
    sources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # row -> name, task, tags
    task_tags: Mapping[str, Sequence[str]] = field(default_factory=dict)
    task_types: Mapping[str, str | None] = field(default_factory=dict)
    side: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> title, summary, tables, skipped

    @property
    def alpha(self) -> float:
        return 1.0 - self.level


@dataclass(frozen=True)
class Draft:
    """A claim before the Holm step: an estimate and how to judge it, or why it cannot be."""

    estimate: float | None = None
    ci: tuple[float, float] | None = None
    p: float | None = None
    se: float | None = None
    direction: int = 1  # +1 / -1: the claimed sign; 0: the claim is "no difference"
    band: tuple[float, float] | None = None  # judged by the interval against this band
    n: float | None = None  # the sample size the standard error scales with
    unit: str = "examples per column"
    missing: str | None = None  # why it cannot be tested here


def _z(level: float) -> float:
    return float(norm.ppf(0.5 + level / 2))


def _p_from(estimate: float, se: float) -> float | None:
    if not (se and math.isfinite(se) and se > 0):
        return None
    return float(2 * norm.sf(abs(estimate / se)))


# ---- cell contrasts: linear combinations of matrix cells with paired bootstrap intervals ----

def contrast(ev: Evidence, weights: Mapping[tuple[str, str], float]) -> Draft:
    """Sum of weight * score over cells; interval from the bootstrap replicates where every
    cell has them, else from binomial standard errors at each cell's n (cells independent)."""
    rows, tasks = list(ev.matrix.index), list(ev.matrix.columns)
    for row, task in weights:
        if row not in rows:
            return Draft(missing=f"no row {row}")
        if task not in tasks or pd.isna(ev.matrix.at[row, task]):
            return Draft(missing=f"no cell {row} x {task}")
    estimate = float(sum(w * ev.matrix.at[r, t] for (r, t), w in weights.items()))
    ns = [float(ev.counts.at[r, t]) if t in ev.counts and r in ev.counts.index else math.nan
          for r, t in weights]
    n = min(ns) if ns and all(math.isfinite(x) for x in ns) else None
    if ev.replicates is not None and ev.has_ci is not None and all(
            bool(ev.has_ci.at[r, t]) for r, t in weights):
        reps = sum(w * ev.replicates[:, rows.index(r), tasks.index(t)] for (r, t), w in weights.items())
        tail = (1 - ev.level) / 2
        lo, hi = (float(np.quantile(reps, q)) for q in (tail, 1 - tail))
        se = float(np.std(reps, ddof=1))
    elif n is not None:
        var = 0.0
        for (r, t), w in weights.items():
            m = float(ev.counts.at[r, t])
            p = min(max(float(ev.matrix.at[r, t]), 0.5 / m), 1 - 0.5 / m)  # no zero variance at 0/1
            var += w * w * p * (1 - p) / m
        se = math.sqrt(var)
        lo, hi = estimate - _z(ev.level) * se, estimate + _z(ev.level) * se
    else:
        return Draft(estimate=estimate, missing="no predictions files and no n per cell, so no interval")
    return Draft(estimate=estimate, ci=(lo, hi), p=_p_from(estimate, se), se=se, n=n)


def _delta_weights(ev: Evidence, rows: Sequence[str], task: str, sign: float = 1.0) -> dict:
    """Weights of the mean over `rows` of (row - its base) on `task`."""
    out: dict[tuple[str, str], float] = {}
    for row in rows:
        for cell, w in (((row, task), 1.0), ((base_of(row), task), -1.0)):
            out[cell] = out.get(cell, 0.0) + sign * w / len(rows)
    return out


def _add(*parts: Mapping) -> dict:
    out: dict = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out.get(k, 0.0) + v
    return out


def standing_for(ev: Evidence, dataset: str) -> list[str]:
    """Adapter rows trained on `dataset` itself (not a variant such as dataset_mislabeled)."""
    return [row for row, s in ev.sources.items() if s.get("name") == dataset == s.get("task")]


def _needs(ev: Evidence, tasks: Sequence[str], rows: Mapping[str, Sequence[str]] = ()) -> str | None:
    """Why the claim cannot be tested: a task not in the matrix or at floor, an adapter not trained."""
    gaps = [f"task {t} not in the matrix" for t in tasks if t not in ev.matrix.columns]
    gaps += [f"task {t} {ev.floor[t].split(':')[0]}" for t in tasks if t in ev.floor]
    gaps += [f"no {d} adapter trained" for d, found in dict(rows).items() if not found]
    return "; ".join(gaps) or None


def _no_delta(ev: Evidence) -> Draft | None:
    return None if ev.delta is not None else Draft(missing="no base-model row, so no change over base")


# ---- the claims ----

def top4_variance(ev: Evidence) -> Draft:
    if ev.explained is None:
        return Draft(missing=f"PCA did not run ({ev.pca_note})")
    if len(ev.explained) <= 4:
        return Draft(missing=f"the PCA has {len(ev.explained)} component(s), so 4 carry all the "
                             "variance by construction; needs at least 6 adapters and 5 tasks")
    share = float(ev.explained.iloc[:4].sum())
    cum = ev.pca_ci.get("cumulative_low"), ev.pca_ci.get("cumulative_high")
    if cum[0] is None:
        return Draft(estimate=share, missing="no bootstrap interval (no predictions files)")
    return Draft(estimate=share, ci=(float(cum[0].iloc[3]), float(cum[1].iloc[3])), band=TOP4_BAND)


def trait(ev: Evidence, component: int, signs: Mapping[str, int]) -> Draft:
    if ev.loadings is None:
        return Draft(missing=f"PCA did not run ({ev.pca_note})")
    if gap := _needs(ev, list(signs)):
        return Draft(missing=gap + (" (excluded from the PCA)" if any(t in ev.floor for t in signs)
                                    else ""))
    gone = [t for t in signs if t not in ev.loadings.columns]
    if gone:
        return Draft(missing=f"task(s) {', '.join(gone)} not in the PCA")
    if component >= len(ev.loadings):
        return Draft(missing=f"the PCA has {len(ev.loadings)} component(s); PC{component} needs "
                             f"at least {component + 2} adapters")
    row = ev.loadings.iloc[component]
    orient = 1.0 if sum(s * row[t] for t, s in signs.items()) >= 0 else -1.0  # a component's sign is arbitrary
    if not ev.pca_ci:
        worst = min(orient * s * row[t] for t, s in signs.items())
        return Draft(estimate=float(worst), missing="no bootstrap interval of the loadings")
    lo, hi = ev.pca_ci["loadings_low"].iloc[component], ev.pca_ci["loadings_high"].iloc[component]
    z = _z(ev.level)
    drafts = []
    for t, s in signs.items():
        k = orient * s
        est, a, b = k * row[t], k * lo[t], k * hi[t]
        se = abs(b - a) / (2 * z)
        drafts.append(Draft(estimate=float(est), ci=(float(min(a, b)), float(max(a, b))),
                            p=_p_from(est, se), se=se, n=float(ev.counts[t].min())))
    return min(drafts, key=lambda d: d.estimate)  # all must hold: the weakest task decides


def classification_helps_math(ev: Evidence) -> Draft:
    if d := _no_delta(ev):
        return d
    rows = [r for r, s in ev.sources.items() if s.get("type") == "classification"
            and s.get("name") == s.get("task")]
    if gap := _needs(ev, ["gsm8k"], {"classification": rows}):
        return Draft(missing=gap)
    return contrast(ev, _delta_weights(ev, rows, "gsm8k"))


def math_hurts_classification(ev: Evidence) -> Draft:
    if d := _no_delta(ev):
        return d
    rows = [r for r, s in ev.sources.items() if "math" in (s.get("tags") or ())
            and s.get("name") == s.get("task")]
    targets = [t for t in ev.matrix.columns if ev.task_types.get(t) == "classification"
               and t not in ev.floor]
    if not rows or not targets:
        return Draft(missing="no math adapter trained" if not rows
                     else "no classification target above floor")
    parts = [_delta_weights(ev, rows, t, 1.0 / len(targets)) for t in targets]
    return replace(contrast(ev, _add(*parts)), direction=-1)


def magicoder_beats_goat(ev: Evidence) -> Draft:
    code, goat = standing_for(ev, "magicoder"), standing_for(ev, "goat")
    if gap := _needs(ev, ["gsm8k"], {"magicoder": code, "goat": goat}):
        return Draft(missing=gap)
    w = _add({(r, "gsm8k"): 1 / len(code) for r in code}, {(r, "gsm8k"): -1 / len(goat) for r in goat})
    return contrast(ev, w)


def _correlation(test: Mapping[str, Any] | None, direction: int, level: float, unit: str) -> Draft:
    if not test or test.get("rho") is None:
        return Draft(missing=f"no correlation computed ({(test or {}).get('note', 'no cells')})")
    rho, n = float(test["rho"]), int(test["n"])
    if n < 4:
        return Draft(estimate=rho, missing=f"only {n} points; needs at least 4")
    se = 1.0 / math.sqrt(n - 3)  # Fisher z
    zc = _z(level) * se
    ci = (math.tanh(math.atanh(min(max(rho, -0.999), 0.999)) - zc),
          math.tanh(math.atanh(min(max(rho, -0.999), 0.999)) + zc))
    p = test.get("p_value")
    return Draft(estimate=rho, ci=ci, p=None if p is None else float(p), se=se, n=n,
                 direction=direction, unit=unit)


def _side(ev: Evidence, name: str) -> tuple[Mapping[str, Any] | None, str | None]:
    found = ev.side.get(name)
    if found is None:
        return None, f"the {name} side analysis was not selected (add it: `analysis=[pca,...,{name}]`)"
    if found.get("skipped") or found.get("error"):
        return None, f"the {name} side analysis did not run: {found.get('skipped') or found.get('error')}"
    return found, None


def _trained_pairs(ev: Evidence, side: str, section: str, key: str, none_trained: str) -> tuple[list, Draft | None]:
    """The adapter pairs a side analysis found (its summary's section[key]), or why there are none."""
    found, why = _side(ev, side)
    if why:
        return [], Draft(missing=why)
    pairs = (found["summary"].get(section) or {}).get(key) or []
    return pairs, None if pairs else Draft(missing=none_trained)


def length_explains_gain(ev: Evidence) -> Draft:
    found, why = _side(ev, "lengths")
    if why:
        return Draft(missing=why)
    return _correlation(found["summary"].get("test"), -1, ev.level, "(adapter, generative target) cells")


def length_interpolation(ev: Evidence) -> Draft:
    found, why = _side(ev, "lengths")
    if why:
        return Draft(missing=why)
    cells = found["tables"].get("lengths_cells.csv")
    values = cells["interpolation"].dropna().to_numpy(float) if cells is not None else np.array([])
    if len(values) < 2:
        return Draft(missing=f"{len(values)} cell(s) with a defined interpolation (source and base "
                             "lengths must differ); needs at least 2")
    mean, se = float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))
    half = _z(ev.level) * se
    return Draft(estimate=mean, ci=(mean - half, mean + half), band=(0.0, 1.0), se=se,
                 n=len(values), unit="cells")


def class_prior_pull(ev: Evidence) -> Draft:
    found, why = _side(ev, "classes")
    if why:
        return Draft(missing=why)
    return _correlation(found["summary"].get("prior_test"), 1, ev.level, "(adapter, target, label) points")


def label_share(ev: Evidence, adapter_of: str, target: str, label: str, direction: int) -> Draft:
    """The adapter's predicted share of `label` on `target` minus the base's (two proportions)."""
    found, why = _side(ev, "classes")
    if why:
        return Draft(missing=why)
    rows = standing_for(ev, adapter_of)
    if gap := _needs(ev, [target], {adapter_of: rows}):
        return Draft(missing=gap)
    table = found["tables"].get("classes_confusion.csv")
    if table is None:
        return Draft(missing="no confusion matrices")
    table = table.reset_index()
    mine = table[table["task"] == target]

    def share(row: str) -> tuple[float, float]:
        part = mine[mine["row"] == row]
        total = float(part["count"].sum())
        return (float(part.loc[part["predicted"].astype(str) == label, "count"].sum()) / total
                if total else math.nan), total

    base = base_of(rows[0])
    (pa, na), (pb, nb) = share(rows[0]), share(base)
    if not (na and nb) or math.isnan(pa) or math.isnan(pb):
        return Draft(missing=f"no confusion matrix of {rows[0]} or the base on {target}")
    if label not in set(mine["predicted"].astype(str)):
        return Draft(missing=f"{target} has no label {label!r}")
    est = pa - pb
    se = math.sqrt(max(pa * (1 - pa), 0.25 / na) / na + max(pb * (1 - pb), 0.25 / nb) / nb)
    half = _z(ev.level) * se
    return Draft(estimate=est, ci=(est - half, est + half), p=_p_from(est, se), se=se,
                 n=min(na, nb), direction=direction)


def balanced_vs_imbalanced(ev: Evidence) -> Draft:
    pairs, none = _trained_pairs(ev, "classes", "balance", "pairs", "no balanced/imbalanced adapter pair trained "
                                                                  "(flipkart_balanced, flipkart_imbalanced)")
    if none:
        return none
    if d := _no_delta(ev):
        return d
    if gap := _needs(ev, ["pile", "imdb"]):
        return Draft(missing=gap)
    balanced, imbalanced = pairs[0]
    on_pile = contrast(ev, {(balanced, "pile"): 1.0, (imbalanced, "pile"): -1.0})
    on_imdb = contrast(ev, {(imbalanced, "imdb"): 1.0, (balanced, "imdb"): -1.0})
    if on_pile.missing or on_imdb.missing:
        return on_pile if on_pile.missing else on_imdb
    return min(on_pile, on_imdb, key=lambda d: d.estimate)  # both must hold


def wrong_labels(ev: Evidence) -> Draft:
    groups, none = _trained_pairs(ev, "ablations", "labels", "groups",
                                  "no correct/mislabeled adapter pair trained (amazon, amazon_mislabeled)")
    if none:
        return none
    right, wrong = groups[0][0], groups[0][1]
    own = (ev.sources.get(right) or {}).get("task")
    targets = [t for t in ev.matrix.columns if t != own and t not in ev.floor]
    if not targets:
        return Draft(missing="no out-of-domain target above floor")
    w = _add(*[{(wrong, t): 1 / len(targets), (right, t): -1 / len(targets)} for t in targets])
    return replace(contrast(ev, w), direction=0, band=(-EQUIVALENCE_MARGIN, EQUIVALENCE_MARGIN))


def similarity_not_transfer(ev: Evidence) -> Draft:
    found, why = _side(ev, "similarity")
    if why:
        return Draft(missing=why)
    tests = {k: v for k, v in (found["summary"].get("mantel") or {}).items()
             if v.get("r") is not None and math.isfinite(v["r"])}
    if not tests:
        return Draft(missing="no Mantel correlation computed")
    kind, test = max(tests.items(), key=lambda kv: kv[1]["r"])  # neither may explain it: the larger r decides
    n = int(test["n_items"])
    if n < 4:
        return Draft(estimate=test["r"], missing=f"{n} datasets; needs at least 4")
    r, se = float(test["r"]), 1.0 / math.sqrt(n - 3)  # n datasets: conservative effective n
    zr = math.atanh(min(max(r, -0.999), 0.999))
    ci = (math.tanh(zr - _z(ev.level) * se), math.tanh(zr + _z(ev.level) * se))
    p = min(1.0, 2 * float(test["p_value"]))  # one-sided Mantel p, doubled: two-sided
    return Draft(estimate=r, ci=ci, p=p, se=se, n=n, direction=0,
                 band=(-WEAK_CORRELATION, WEAK_CORRELATION), unit=f"datasets ({kind} similarity)")


def dependency_gains(ev: Evidence) -> Draft:
    found, why = _side(ev, "dependency")
    if why:
        return Draft(missing=why)
    table = found["tables"].get("dependency_ratios.csv")
    level = float(found["summary"].get("level", ev.level))
    if table is not None and "task" in table.columns:  # a target at floor has no gains to locate
        at_floor = sorted(set(table["task"]) & set(ev.floor))
        table = table[~table["task"].isin(ev.floor)]
        if table.empty and at_floor:
            return Draft(missing=f"the math targets are at floor or ceiling ({', '.join(at_floor)})")
    if table is None or table["ratio_low"].dropna().empty:
        return Draft(missing="no relation ratio with an interval")
    finite = table.dropna(subset=["ratio_low", "ratio_high"])
    above, m = int((finite["ratio_low"] > 1).sum()), len(finite)
    chance = (1 - level) / 2
    test = binomtest(above, m, chance)
    ci = test.proportion_ci(confidence_level=ev.level, method="wilson")
    return Draft(estimate=above / m - chance, ci=(ci.low - chance, ci.high - chance),
                 p=float(test.pvalue), n=m, unit="(adapter, relation) intervals",
                 se=math.sqrt(chance * (1 - chance) / m))


# id, statement, test, section (core title, or side name), function
CLAIMS: list[tuple[str, str, str, str, Any]] = [
    ("top4_variance", "The top 4 latent traits explain about 75% of the variance (65-85%).",
     "bootstrap interval of the top-4 cumulative explained-variance share against the band",
     PCA_SECTION, top4_variance),
    *[(cid, f"PC{k} is {name}: " + ", ".join(f"{t} {'+' if s > 0 else '-'}" for t, s in signs.items())
       + " (one sign, up to the component's arbitrary sign).",
       "bootstrap loading intervals; every named task must load with its sign (the weakest decides)",
       PCA_SECTION, (lambda ev, k=k, signs=signs: trait(ev, k, signs)))
      for cid, (k, name, signs) in TRAITS.items()],
    ("classification_helps_math", "Classification adapters raise GSM8K over the base.",
     "mean change over base of the classification adapters on gsm8k (paired bootstrap)",
     DELTA_SECTION, classification_helps_math),
    ("math_hurts_classification", "Math adapters lower classification scores (the asymmetry).",
     "mean change over base of the math adapters on the classification targets (paired bootstrap)",
     DELTA_SECTION, math_hurts_classification),
    ("magicoder_beats_goat", "The Magicoder adapter beats the Goat adapter on GSM8K.",
     "score difference magicoder - goat on gsm8k (paired bootstrap)", DELTA_SECTION,
     magicoder_beats_goat),
    ("length_explains_gain", "Adapters gain where their source lengths match the target's "
     "(why Magicoder beats Goat).", "Spearman rho of source-reference length distance with the "
     "gain (permutation p; Fisher interval)", "lengths", length_explains_gain),
    ("length_interpolation", "Output lengths interpolate between the base's and the source's "
     "(0 < position < 1).", "mean interpolation position over cells, normal interval, against (0, 1)",
     "lengths", length_interpolation),
    ("class_prior_pull", "Predicted labels are pulled toward the source data's label prior.",
     "Spearman rho of prior pull with predicted shift (permutation p; Fisher interval)", "classes",
     class_prior_pull),
    ("imdb_avoids_neutral", "The IMDB adapter avoids `neutral` on Flipkart (share below the base's).",
     "difference of predicted `neutral` shares, two-proportion z", "classes",
     lambda ev: label_share(ev, "imdb", "flipkart", "neutral", -1)),
    ("pile_overpredicts_neutral", "The Pile adapter over-predicts `neutral` on Flipkart.",
     "difference of predicted `neutral` shares, two-proportion z", "classes",
     lambda ev: label_share(ev, "pile", "flipkart", "neutral", 1)),
    ("balanced_vs_imbalanced", "Balanced Flipkart helps Pile; imbalanced Flipkart helps IMDB.",
     "score differences of the pair on pile and on imdb (paired bootstrap; the weaker decides)",
     "classes", balanced_vs_imbalanced),
    ("wrong_labels_transfer", "Wrong labels transfer like right ones out of domain (within "
     f"{EQUIVALENCE_MARGIN:.0%}).", "mean out-of-domain score difference mislabeled - correct "
     "(paired bootstrap) against the equivalence band", "ablations", wrong_labels),
    ("similarity_not_transfer", f"Dataset similarity does not explain transfer (|r| < "
     f"{WEAK_CORRELATION}).", "Mantel r of the more correlated similarity (style, semantic) with "
     "transfer; Fisher interval over datasets", "similarity", similarity_not_transfer),
    ("dependency_gains", "Adapters gain on specific dependency relations of the math questions.",
     "share of (adapter, relation) ratio intervals above 1 vs the share expected by chance "
     "(binomial test)", "dependency", dependency_gains),
]


def _sample_size(d: Draft, alpha: float, m: int) -> str:
    """The sample size at which the effect seen would be detected (or the band decided)."""
    if d.se is None or d.n is None or not d.estimate or not math.isfinite(d.se):
        return ""
    need = _z(1 - alpha / max(m, 1)) + float(norm.ppf(POWER))
    if d.band is not None and d.direction == 0:
        room = min(d.band[1] - d.estimate, d.estimate - d.band[0])
        if room <= 0:
            return ""
        ratio = (_z(1 - alpha) * d.se / room) ** 2
    else:
        ratio = (need * d.se / abs(d.estimate)) ** 2
    if ratio > 100:
        return "; the effect is too small to decide at any feasible size (over 100x this n)"
    against = d.direction != 0 and d.band is None and math.copysign(1, d.estimate) != d.direction
    return (f"; needs n≈{math.ceil(d.n * ratio):,} {d.unit}"
            + (" (to tell whether the opposite sign seen here is real)" if against else ""))


def _judge(d: Draft, p_holm: float | None, alpha: float, m: int) -> tuple[str, str]:
    if d.missing:
        return "inconclusive", d.missing
    lo, hi = d.ci
    if d.band is not None and d.direction != 0:  # a band claim: judged by its interval alone
        a, b = d.band
        if a <= lo and hi <= b:
            return "holds", f"interval inside [{a:g}, {b:g}]"
        if hi < a or lo > b:
            return "contradicted", f"interval outside [{a:g}, {b:g}]"
        return "inconclusive", f"interval overlaps the band edge [{a:g}, {b:g}]" + _sample_size(
            replace(d, direction=0), alpha, m)
    if d.direction == 0:
        if p_holm is not None and p_holm < alpha and not (d.band[0] <= d.estimate <= d.band[1]):
            return "contradicted", f"a difference beyond the band (Holm p={p_holm:.3g})"
        if d.band[0] <= lo and hi <= d.band[1]:
            return "holds", f"interval inside [{d.band[0]:g}, {d.band[1]:g}]"
        return "inconclusive", "interval too wide to show equivalence" + _sample_size(d, alpha, m)
    if p_holm is None:
        return "inconclusive", "no p-value"
    if p_holm < alpha:
        same = math.copysign(1, d.estimate) == d.direction
        return ("holds" if same else "contradicted"), (
            f"Holm p={p_holm:.3g} < {alpha:g}, " + ("in the claimed direction" if same
                                                    else "opposite to the claim"))
    return "inconclusive", f"not significant after Holm (p={p_holm:.3g})" + _sample_size(d, alpha, m)


def _draft(fn: Any, ev: Evidence, cid: str) -> Draft:
    """One claim's draft; a claim whose test fails on odd input says so and the rest go on."""
    try:
        return fn(ev)
    except Exception as error:  # noqa: BLE001 - one claim must not stop the report
        log.exception("Finding %s could not be tested", cid)
        return Draft(missing=f"the test failed on this matrix ({type(error).__name__}: {error})")


def evaluate(ev: Evidence) -> list[Claim]:
    """Every claim of the study, judged on this evidence; p-values Holm-adjusted together."""
    drafts = [(cid, text, test, section, _draft(fn, ev, cid)) for cid, text, test, section, fn in CLAIMS]
    tested = [i for i, (*_, d) in enumerate(drafts) if d.missing is None and d.p is not None]
    adjusted = dict(zip(tested, holm([drafts[i][4].p for i in tested]), strict=True)) if tested else {}
    m = max(len(tested), 1)
    out = []
    for i, (cid, text, test, section, d) in enumerate(drafts):
        verdict, reason = _judge(d, adjusted.get(i), ev.alpha, m)
        if section in ev.side or section not in (PCA_SECTION, DELTA_SECTION):
            section = (ev.side.get(section) or {}).get("title")
        elif section == DELTA_SECTION and ev.delta is None:
            section = None
        out.append(Claim(cid, text, test, _finite(d.estimate), _finite_pair(d.ci),
                         None if d.missing else _finite(d.p), _finite(adjusted.get(i)), verdict,
                         reason, section))
    return out


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _finite_pair(ci: tuple[float, float] | None) -> tuple[float, float] | None:
    return None if ci is None or not all(math.isfinite(v) for v in ci) else (float(ci[0]), float(ci[1]))


def table(claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per claim: claim, estimate [CI], verdict (with reason), detail link."""
    rows = []
    for c in claims:
        est = "-" if c.estimate is None else f"{c.estimate:+.3f}"
        if c.ci is not None:
            est += f" [{c.ci[0]:+.3f}, {c.ci[1]:+.3f}]"
        verdict = c.verdict if c.verdict != "inconclusive" else f"inconclusive: {c.reason}"
        rows.append({"claim": c.statement, "estimate [CI]": est,
                     "verdict": verdict, "detail": f"[{c.section}](#{anchor(c.section)})" if c.section else "-"})
    return pd.DataFrame(rows).set_index("claim")


__all__ = ["Claim", "Evidence", "evaluate", "table", "VERDICTS"]
