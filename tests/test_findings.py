"""The findings engine on synthetic matrices with planted effects (no study run), floor columns,
Holm, and the Findings table of the report with working anchors."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from test_analysis import make_record

from latent_traits.analysis import findings as fd
from latent_traits.analysis.floors import floor_ceiling, noise_bound
from latent_traits.analysis.options import AnalysisOptions, BootstrapOptions
from latent_traits.analysis.report import write_report
from latent_traits.analysis.run import analyze_records
from latent_traits.analysis.stats import holm
from latent_traits.eval.records import BASE_ADAPTER_ID

TASKS = ["amazon", "flipkart", "gsm8k", "imdb", "pile"]
TYPES = {"gsm8k": "generation", **{t: "classification" for t in TASKS if t != "gsm8k"}}
SOURCES = {"imdb": ["sentiment"], "amazon": ["sentiment"], "goat": ["math"], "magicoder": ["code"],
           "amazon_mislabeled": ["sentiment"]}


def row(source: str) -> str:
    return f"{source}/lora_r4_s0"


def evidence(matrix: pd.DataFrame, n: int = 2000, side: dict | None = None, drop=()) -> fd.Evidence:
    sources = {row(s): {"name": s, "task": s.removesuffix("_mislabeled"),
                        "type": "generation" if s in ("goat", "magicoder") else "classification",
                        "tags": tags} for s, tags in SOURCES.items() if row(s) not in drop}
    matrix = matrix.drop(index=[r for r in drop if r in matrix.index])
    counts = pd.DataFrame(float(n), index=matrix.index, columns=matrix.columns)
    delta = matrix.drop(index=BASE_ADAPTER_ID) - matrix.loc[BASE_ADAPTER_ID]
    return fd.Evidence(matrix=matrix, delta=delta, counts=counts, sources=sources,
                       task_types=TYPES, floor=floor_ceiling(matrix, counts), side=side or {})


def planted(classification_on_gsm8k=0.15, math_on_classification=0.2, code_vs_goat=0.0,
            gsm8k_base=0.3) -> pd.DataFrame:
    base = {"amazon": 0.4, "flipkart": 0.5, "gsm8k": gsm8k_base, "imdb": 0.6, "pile": 0.5}
    rows = {BASE_ADAPTER_ID: base}
    for s in SOURCES:
        cells = dict(base)
        if s in ("imdb", "amazon", "amazon_mislabeled"):
            cells["gsm8k"] = gsm8k_base + classification_on_gsm8k
        else:
            cells.update({t: base[t] + math_on_classification for t in TASKS if t != "gsm8k"})
            cells["gsm8k"] = gsm8k_base + (code_vs_goat if s == "magicoder" else 0.0)
        rows[row(s)] = cells
    return pd.DataFrame(rows).T[TASKS]


def by_id(claims):
    return {c.id: c for c in claims}


ABLATIONS = {"ablations": {"title": "Ablations", "summary": {"labels": {"groups": [
    [row("amazon"), row("amazon_mislabeled")]]}}, "tables": {}, "skipped": None, "error": None}}


def test_planted_effects_reach_each_verdict():
    claims = by_id(fd.evaluate(evidence(planted(), side=ABLATIONS)))
    assert claims["classification_helps_math"].verdict == "holds"
    assert claims["classification_helps_math"].estimate == pytest.approx(0.15)
    low, high = claims["classification_helps_math"].ci
    assert low < 0.15 < high
    # math adapters planted to *help* classification: the claim is contradicted
    assert claims["math_hurts_classification"].verdict == "contradicted"
    # magicoder and goat planted equal: no difference, and no n makes a zero effect show
    assert claims["magicoder_beats_goat"].verdict == "inconclusive"
    # mislabeled and correct amazon planted equal out of domain: within the 3-point band
    assert claims["wrong_labels_transfer"].verdict == "holds"
    assert {c.verdict for c in claims.values()} == set(fd.VERDICTS)


def test_inconclusive_small_effect_names_the_sample_size_that_would_decide_it():
    claims = by_id(fd.evaluate(evidence(planted(code_vs_goat=0.03), n=200)))
    claim = claims["magicoder_beats_goat"]
    assert claim.verdict == "inconclusive"
    needed = int(re.search(r"needs n≈([\d,]+) examples per column", claim.reason)[1].replace(",", ""))
    assert needed > 200
    # at that size the same effect holds (binomial standard errors at each cell's n)
    bigger = by_id(fd.evaluate(evidence(planted(code_vs_goat=0.03), n=needed)))
    assert bigger["magicoder_beats_goat"].verdict == "holds"


def test_an_adapter_not_trained_makes_its_claims_inconclusive_naming_it():
    claims = by_id(fd.evaluate(evidence(planted(), drop=[row("goat")])))
    assert claims["magicoder_beats_goat"].verdict == "inconclusive"
    assert "no goat adapter trained" in claims["magicoder_beats_goat"].reason
    # a missing column too, and side analyses that were not selected
    no_gsm8k = evidence(planted().drop(columns="gsm8k"))
    claims = by_id(fd.evaluate(no_gsm8k))
    assert "task gsm8k not in the matrix" in claims["classification_helps_math"].reason
    assert "not selected" in claims["class_prior_pull"].reason
    assert claims["class_prior_pull"].section is None


def test_a_column_at_floor_is_flagged_and_its_claims_are_inconclusive():
    matrix = planted(gsm8k_base=0.0, classification_on_gsm8k=0.0, code_vs_goat=0.0)
    ev = evidence(matrix, n=100)
    assert list(ev.floor) == ["gsm8k"] and "at floor" in ev.floor["gsm8k"]
    claims = by_id(fd.evaluate(ev))
    assert claims["classification_helps_math"].verdict == "inconclusive"
    assert "gsm8k at floor" in claims["classification_helps_math"].reason


def test_the_noise_rule_follows_the_binomial_bound_at_n():
    assert noise_bound(32) == pytest.approx(1 - 0.025 ** (1 / 32))
    matrix = pd.DataFrame({"a": [0.0, 0.02, 0.05], "b": [0.0, 0.02, 0.2], "c": [1.0, 0.99, 0.97]},
                          index=[BASE_ADAPTER_ID, "x/l_r4_s0", "y/l_r4_s0"])
    flagged = floor_ceiling(matrix, pd.DataFrame(60.0, index=matrix.index, columns=matrix.columns))
    assert set(flagged) == {"a", "c"} and "ceiling" in flagged["c"]
    # at a larger n the same scores are no longer within noise of 0
    assert floor_ceiling(matrix, pd.DataFrame(1000.0, index=matrix.index, columns=matrix.columns)) == {}


def test_holm_is_applied_over_the_claims_with_a_p_value():
    claims = fd.evaluate(evidence(planted(code_vs_goat=0.02), side=ABLATIONS))
    tested = [c for c in claims if c.p_holm is not None]
    assert len(tested) >= 3
    assert [c.p_holm for c in tested] == pytest.approx(holm([c.p for c in tested]))
    assert all(c.p_holm >= c.p for c in tested)


# -- through the analysis and the report ---------------------------------------------------------


def records(matrix: pd.DataFrame, n: int = 500) -> list[dict]:
    out = []
    for adapter, scores in matrix.iterrows():
        for task, score in scores.items():
            r = make_record(adapter, task, score, n=n)
            r["task"]["type"] = TYPES[task]
            out.append(r)
    return out


def test_floor_column_left_out_of_the_pca_and_the_report_links_resolve(tmp_path):
    matrix = planted(gsm8k_base=0.0, classification_on_gsm8k=0.0)
    options = AnalysisOptions(bootstrap=BootstrapOptions(n_resamples=0))
    a = analyze_records(records(matrix), options)
    assert a.floor_ceiling.keys() == {"gsm8k"}
    assert "gsm8k" not in a.pca.loadings.columns
    kept = analyze_records(records(matrix), AnalysisOptions(
        floor_ceiling="keep", bootstrap=BootstrapOptions(n_resamples=0)))
    assert "gsm8k" in kept.pca.loadings.columns
    write_report(a, tmp_path / "report", meta={"records_dir": "x"})
    md = (tmp_path / "report" / "report.md").read_text()
    html = (tmp_path / "report" / "report.html").read_text()
    assert md.index("## Findings") < md.index("## Tasks")
    assert "task gsm8k at floor" in md and "left out of the PCA" in md
    links = re.findall(r'<a href="#([\w-]+)">', html)
    assert links and set(links) <= set(re.findall(r' id="([\w-]+)"', html))
    for anchor in set(re.findall(r"\]\(#([\w-]+)\)", md)):
        assert anchor in set(re.findall(r' id="([\w-]+)"', html))
    import json
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {c["id"] for c in saved["findings"]} == {c.id for c in a.findings}
    assert saved["floor_ceiling"]["excluded_from_pca"] == ["gsm8k"]


def test_bad_floor_policy_is_a_clear_error():
    with pytest.raises(Exception, match="analysis.floor_ceiling='drop' is not one of exclude, keep"):
        AnalysisOptions(floor_ceiling="drop")


def side(name: str, title: str, summary: dict, tables: dict | None = None) -> dict:
    return {name: {"title": title, "summary": summary, "tables": tables or {}, "skipped": None,
                   "error": None}}


def test_side_analysis_results_are_read_into_verdicts():
    lengths = pd.DataFrame({"interpolation": [0.4, 0.5, 0.45, 0.55, 0.5, 0.6]})
    ratios = pd.DataFrame({"ratio_low": [1.2] * 6 + [0.5] * 14, "ratio_high": [2.0] * 20})
    found = {
        **side("classes", "Class distribution", {"prior_test": {"rho": 0.9, "p_value": 0.001, "n": 30}}),
        **side("lengths", "Length proclivity", {"test": {"rho": 0.8, "p_value": 0.001, "n": 30}},
               {"lengths_cells.csv": lengths}),
        **side("similarity", "Dataset similarity and transfer", {"mantel": {
            "style": {"r": 0.9, "p_value": 0.001, "n_items": 10},
            "semantic": {"r": 0.1, "p_value": 0.4, "n_items": 10}}}),
        **side("dependency", "Dependency relations", {"level": 0.95},
               {"dependency_ratios.csv": ratios}),
    }
    claims = by_id(fd.evaluate(evidence(planted(), side=found)))
    assert claims["class_prior_pull"].verdict == "holds"
    assert claims["class_prior_pull"].section == "Class distribution"
    assert claims["length_explains_gain"].verdict == "contradicted"  # planted rho > 0, claimed < 0
    assert claims["length_interpolation"].verdict == "holds"
    assert claims["similarity_not_transfer"].verdict == "contradicted"  # style r 0.9 decides
    assert claims["dependency_gains"].verdict == "holds"  # 6 of 20 above 1 vs 2.5% by chance
    assert claims["dependency_gains"].estimate == pytest.approx(6 / 20 - 0.025)


def test_dependency_gains_on_a_math_target_at_floor_are_inconclusive():
    """On a matrix where gsm8k is 0 in every row (the demo's), relation ratios over zero successes
    say nothing: the claim names the floor column instead of a verdict."""
    matrix = planted()
    matrix["gsm8k"] = 0.0
    ratios = pd.DataFrame({"task": ["gsm8k"] * 20, "ratio_low": [1.2] * 20, "ratio_high": [2.0] * 20})
    found = side("dependency", "Dependency relations", {"level": 0.95}, {"dependency_ratios.csv": ratios})
    claim = by_id(fd.evaluate(evidence(matrix, side=found)))["dependency_gains"]
    assert claim.verdict == "inconclusive" and "at floor or ceiling (gsm8k)" in claim.reason


def test_traits_and_top4_read_the_pca_and_its_intervals():
    tasks = ["goat", "gsm8k", "magicoder", "flipkart", "paws"]
    comps = pd.Index([f"PC{k}" for k in range(5)], name="component")
    loadings = pd.DataFrame(0.0, index=comps, columns=tasks)
    loadings.loc["PC0", ["goat", "gsm8k", "magicoder", "flipkart"]] = -0.5  # sign is arbitrary
    loadings.loc["PC3", ["goat", "gsm8k"]] = [0.7, 0.7]  # same sign: the claim wants opposite
    margin = 0.1
    ev = evidence(planted())
    ev.matrix = pd.DataFrame(0.5, index=ev.matrix.index, columns=tasks)
    ev.counts = pd.DataFrame(500.0, index=ev.matrix.index, columns=tasks)
    ev.floor = {}
    ev.loadings = loadings
    ev.explained = pd.Series([0.4, 0.2, 0.1, 0.05, 0.25], index=comps)
    ev.pca_ci = {"loadings_low": loadings - margin, "loadings_high": loadings + margin,
                 "cumulative_low": pd.Series([0.3, 0.5, 0.6, 0.70, 1.0], index=comps),
                 "cumulative_high": pd.Series([0.5, 0.7, 0.8, 0.80, 1.0], index=comps)}
    claims = by_id(fd.evaluate(ev))
    assert claims["trait_general_gain"].verdict == "holds"
    assert claims["trait_large_number_arithmetic"].verdict == "contradicted"
    assert "task mnli not in the matrix" in claims["trait_general_nlu"].reason
    assert claims["top4_variance"].verdict == "holds"
    assert claims["top4_variance"].estimate == pytest.approx(0.75)
    ev.pca_ci = {}
    assert "no bootstrap interval" in by_id(fd.evaluate(ev))["trait_general_gain"].reason


def test_without_predictions_or_counts_cell_claims_say_why():
    ev = evidence(planted())
    ev.counts = ev.counts * float("nan")  # W&B runs that logged neither predictions nor n
    claim = by_id(fd.evaluate(ev))["classification_helps_math"]
    assert claim.verdict == "inconclusive" and "no predictions files and no n" in claim.reason


def test_at_tiny_n_a_column_is_within_noise_of_both_ends():
    matrix = pd.DataFrame({"a": [0.5, 0.52]}, index=[BASE_ADAPTER_ID, "x/l_r4_s0"])
    flagged = floor_ceiling(matrix, pd.DataFrame(5.0, index=matrix.index, columns=matrix.columns))
    assert flagged["a"].startswith("at floor and ceiling: n=5 is too small")


def test_bootstrap_replicates_give_the_paired_interval_and_a_broken_claim_stays_contained(monkeypatch):
    import numpy as np

    matrix = planted()
    ev = evidence(matrix)
    rng = np.random.default_rng(0)
    ev.replicates = matrix.to_numpy()[None] + rng.normal(0, 0.01, size=(400, *matrix.shape))
    ev.has_ci = pd.DataFrame(True, index=matrix.index, columns=matrix.columns)
    claim = by_id(fd.evaluate(ev))["magicoder_beats_goat"]
    rows = list(matrix.index)
    diff = ev.replicates[:, rows.index(row("magicoder")), 2] - ev.replicates[:, rows.index(row("goat")), 2]
    assert claim.ci == pytest.approx((np.quantile(diff, 0.025), np.quantile(diff, 0.975)))

    def broken(_):
        raise ValueError("odd matrix")

    monkeypatch.setattr(fd, "CLAIMS", [("x", "X.", "t", "Ablations", broken), *fd.CLAIMS[1:]])
    claims = by_id(fd.evaluate(ev))
    assert claims["x"].verdict == "inconclusive" and "ValueError: odd matrix" in claims["x"].reason
    assert claims["classification_helps_math"].verdict == "holds"
