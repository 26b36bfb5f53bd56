"""The findings engine on synthetic matrices and predictions with planted effects: each verdict
reached, missing rows and columns named, floor columns left out, Holm applied, the table linked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_analysis import records_from
from test_analysis_stats import write_predictions

from latent_traits.analysis.findings import (
    CONTRADICTED,
    HOLDS,
    INCONCLUSIVE,
    holm,
    trait_claim,
)
from latent_traits.analysis.options import AnalysisOptions, BootstrapOptions
from latent_traits.analysis.report import write_report
from latent_traits.analysis.run import analyze_records
from latent_traits.eval.records import BASE_ADAPTER_ID

GSM8K = {"type": "generation", "tags": ["math", "word_problems"]}


def with_math(records: list[dict]) -> list[dict]:
    """gsm8k as the math generation task it is."""
    for r in records:
        if r["task"]["name"] == "gsm8k":
            r["task"].update(GSM8K, labels=None)
    return records


def study_records(frame: pd.DataFrame, tmp_path, n: int, seed: int = 0) -> list[dict]:
    """Records of `frame` (gsm8k a math task) with per-example predictions drawn at each score."""
    records = with_math(records_from(frame, n=n))
    write_predictions(records, tmp_path, np.random.default_rng(seed), n=n)
    return records


def claims_of(records, **options) -> dict:
    analysis = analyze_records(records, AnalysisOptions(bootstrap=BootstrapOptions(n_resamples=400), **options))
    return {c.id: c for c in analysis.findings}


def sentiment_rows(math_score: float, base_math: float = 0.10) -> pd.DataFrame:
    rows = {BASE_ADAPTER_ID: [0.50, 0.50, base_math]}
    for source in ("imdb", "amazon", "pile"):
        rows[f"{source}/lora_r8_s0"] = [0.60, 0.55, math_score]
    return pd.DataFrame.from_dict(rows, orient="index", columns=["imdb", "amazon", "gsm8k"])


def test_classification_helps_math_holds_when_planted(tmp_path):
    claim = claims_of(study_records(sentiment_rows(0.25), tmp_path, n=800))["classification_helps_math"]
    assert claim.verdict == HOLDS, claim
    assert claim.estimate == pytest.approx(0.15, abs=0.04) and claim.ci[0] > 0 and claim.p_adjusted < 0.05


def test_classification_helps_math_is_contradicted_when_the_opposite_is_planted(tmp_path):
    claim = claims_of(study_records(sentiment_rows(0.02, base_math=0.20), tmp_path, n=800))["classification_helps_math"]
    assert claim.verdict == CONTRADICTED and claim.ci[1] < 0, claim


def test_a_small_effect_on_few_examples_is_inconclusive_with_the_n_it_needs(tmp_path):
    claim = claims_of(study_records(sentiment_rows(0.20), tmp_path, n=30, seed=1))["classification_helps_math"]
    assert claim.verdict == INCONCLUSIVE, claim
    assert "needs about n=" in claim.reason and "(now 30)" in claim.reason


def test_missing_rows_and_columns_are_named(tmp_path):
    claims = claims_of(study_records(sentiment_rows(0.25), tmp_path, n=200))
    assert claims["math_hurts_classification"].reason == "no adapter trained on a math source"
    assert "needs an adapter trained on magicoder and an adapter trained on goat" in \
        claims["magicoder_beats_goat_on_gsm8k"].reason
    assert claims["top4_variance"].verdict == INCONCLUSIVE and "needs 4 components" in claims["top4_variance"].reason
    assert "missing" in claims["trait_pc1_classification"].reason or \
        claims["trait_pc1_classification"].verdict == INCONCLUSIVE


def test_a_math_column_at_floor_makes_the_math_claims_inconclusive(tmp_path):
    frame = sentiment_rows(0.0, base_math=0.0)  # a 135M model: gsm8k is 0 for every row
    claims = claims_of(with_math(records_from(frame, n=40)))
    claim = claims["classification_helps_math"]
    assert claim.verdict == INCONCLUSIVE and "off the floor/ceiling (gsm8k)" in claim.reason


def test_records_without_predictions_are_inconclusive_not_guessed():
    claims = claims_of(with_math(records_from(sentiment_rows(0.25), n=800)))  # as from W&B: no predictions
    claim = claims["classification_helps_math"]
    assert claim.verdict == INCONCLUSIVE and claim.estimate == pytest.approx(0.15)
    assert "no predictions files to resample" in claim.reason


def test_wrong_labels_transfer_like_right_ones_within_the_margin(tmp_path):
    rows = {BASE_ADAPTER_ID: [0.30, 0.50, 0.10],
            "amazon/lora_r8_s0": [0.70, 0.55, 0.12],
            "amazon_mislabeled/lora_r8_s0": [0.05, 0.55, 0.12]}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["amazon", "imdb", "gsm8k"])
    records = study_records(frame, tmp_path, n=4000, seed=2)
    claims = claims_of(records, side={"ablations": {}})
    claim = claims["wrong_labels_transfer"]
    assert claim.verdict == HOLDS, claim
    assert -0.05 <= claim.ci[0] and claim.ci[1] <= 0.05 and "amazon/lora_r8_s0" in claim.reason


def test_a_trait_that_a_component_carries_holds_and_a_random_one_does_not():
    tasks = [f"t{i}" for i in range(8)]

    class Fit:  # the parts of a PCA result a trait claim reads
        loadings = pd.DataFrame([[0.5, 0.5, 0.5, 0.5, 0, 0, 0, 0], [0, 0, 0, 0, 0.5, -0.5, 0.5, -0.5]],
                                index=["PC0", "PC1"], columns=tasks)

    class Analysis:
        pca, pca_note = Fit(), None

    carried = trait_claim(Analysis(), "x", "x", {"t0": 1, "t1": 1, "t2": 1, "t3": 1})
    assert carried.estimate == pytest.approx(1.0) and carried.p_value < 0.05
    mixed = trait_claim(Analysis(), "x", "x", {"t0": 1, "t4": 1, "t1": -1, "t7": 1})
    assert mixed.estimate < 0.6 and mixed.p_value > 0.2


def test_holm_adjusts_the_family():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5] and holm([0.02, 0.02]) == [0.04, 0.04]


def test_the_report_opens_with_the_findings_table_linked_to_sections(tmp_path):
    analysis = analyze_records(study_records(sentiment_rows(0.25), tmp_path, n=200))
    write_report(analysis, tmp_path / "r", meta={"records_dir": "x"})
    md, html = (tmp_path / "r" / "report.md").read_text(), (tmp_path / "r" / "report.html").read_text()
    assert md.index("## Findings") < md.index("## Performance matrix")
    assert "[Adapters trained on classification raise math scores](#change-over-the-base-model)" in md
    assert '<a href="#change-over-the-base-model">' in html and '<h2 id="change-over-the-base-model">' in html
    assert "Holm" in md
    import json

    findings = json.loads((tmp_path / "r" / "report.json").read_text())["findings"]
    assert {f["id"] for f in findings} >= {"top4_variance", "classification_helps_math", "wrong_labels_transfer"}
    assert all(f["verdict"] in (HOLDS, CONTRADICTED, INCONCLUSIVE) for f in findings)
