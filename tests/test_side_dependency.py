"""Dependency-relation side analysis: ratios and intervals on planted and shuffled outcomes,
then the analysis on synthetic records over real GSM8K-style questions parsed by spaCy."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from side_records import adapter_id, context, decodes_as_png, evaluated_examples, write_cell

from latent_traits.analysis.side import dependency
from latent_traits.analysis.side._ratios import relation_ratios
from latent_traits.eval.records import BASE_ADAPTER_ID
from latent_traits.io import write_jsonl

N_QUESTIONS = 160


def planted_outcomes(held: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Questions holding the feature: adapter right 90%, base 30%; elsewhere both 50%."""
    adapter = np.where(held, rng.random(len(held)) < 0.9, rng.random(len(held)) < 0.5)
    base = np.where(held, rng.random(len(held)) < 0.3, rng.random(len(held)) < 0.5)
    return adapter, base


def test_ratio_by_hand_and_interval_contains_it():
    presence = pd.DataFrame({"x": [True, True, True, False], "y": [True, False, False, True]})
    adapter, base = np.array([1, 1, 0, 0]), np.array([1, 0, 0, 1])
    table = relation_ratios(adapter, base, presence, n_resamples=200)
    assert table.loc["x", "ratio"] == 2.0 and table.loc["x", "n_questions"] == 3
    assert table.loc["y", "ratio"] == 0.5 and table.loc["y", "base_rate"] == 1.0
    assert table.loc["x", "overall_ratio"] == 1.0 and table.loc["x", "lift"] == 2.0
    assert (table["ratio_low"] <= table["ratio"]).all() and (table["ratio"] <= table["ratio_high"]).all()


def test_planted_feature_gives_ratio_above_one_and_shuffled_outcomes_do_not():
    rng = np.random.default_rng(0)
    presence = pd.DataFrame(rng.random((300, 12)) < 0.4, columns=[f"r{k}" for k in range(12)])
    adapter, base = planted_outcomes(presence["r0"].to_numpy(), rng)
    table = relation_ratios(adapter, base, presence, n_resamples=1000, seed=1)
    assert table.loc["r0", "ratio"] > 1.5 and table.loc["r0", "ratio_low"] > 1.0
    assert table.loc["r0", "lift_low"] > 1.0  # more gain on r0 than overall
    # shuffling which question got which outcome breaks the link to r0: its lift covers 1
    order = rng.permutation(len(adapter))
    shuffled = relation_ratios(adapter[order], base[order], presence, n_resamples=1000, seed=1)
    covers = (shuffled["lift_low"] <= 1) & (1 <= shuffled["lift_high"])
    assert covers["r0"] and covers.mean() >= 0.9
    # outcomes unrelated to any feature, the same rate for both: ratio intervals cover 1
    null = relation_ratios(rng.random(300) < 0.5, rng.random(300) < 0.5, presence, seed=2)
    assert ((null["ratio_low"] <= 1) & (1 <= null["ratio_high"])).mean() >= 0.9


def test_base_without_success_gives_infinite_ratio_not_a_crash():
    presence = pd.DataFrame({"x": [True] * 5 + [False] * 5})
    table = relation_ratios(np.ones(10), np.r_[np.zeros(5), np.ones(5)], presence, n_resamples=100)
    assert table.loc["x", "ratio"] == np.inf and table.loc["x", "ratio_high"] == np.inf


# -- the analysis on records ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def parsed_questions():
    pytest.importorskip("spacy")
    examples = evaluated_examples("gsm8k", N_QUESTIONS)
    relations = dependency.question_relations([e["input"] for e in examples], dependency.load_parser())
    return examples, relations


def planted_relation(relations: list[set[str]]) -> str:
    """A relation held by about 40% of the questions."""
    labels = sorted(set().union(*relations))
    share = {label: np.mean([label in found for found in relations]) for label in labels}
    return min(share, key=lambda label: abs(share[label] - 0.4))


def write_math_study(eval_dir, examples, adapter_ok, base_ok) -> None:
    ids = [e["id"] for e in examples]
    write_cell(eval_dir, BASE_ADAPTER_ID, "gsm8k", dict(zip(ids, base_ok, strict=True)))
    write_cell(eval_dir, adapter_id("imdb"), "gsm8k", dict(zip(ids, adapter_ok, strict=True)))
    for row in (BASE_ADAPTER_ID, adapter_id("imdb")):  # a classification target: not parsed
        write_cell(eval_dir, row, "imdb", None, 0.5)


def test_analysis_finds_the_relation_that_drives_success(tmp_path, parsed_questions):
    examples, relations = parsed_questions
    relation = planted_relation(relations)
    held = np.array([relation in found for found in relations])
    rng = np.random.default_rng(3)
    adapter_ok, base_ok = planted_outcomes(held, rng)
    write_math_study(tmp_path / "planted", examples, adapter_ok, base_ok)
    result = dependency.run(context(tmp_path / "planted"), {"min_count": 10})
    assert result.skipped is None
    table = result.tables["dependency_ratios.csv"]
    assert set(table["task"]) == {"gsm8k"}  # imdb is not a math task
    row = table[(table["adapter"] == adapter_id("imdb")) & (table["relation"] == relation)].iloc[0]
    assert row["ratio"] > 1.3 and row["ratio_low"] > 1.0 and row["lift_low"] > 1.0
    assert [adapter_id("imdb"), relation] in result.summary["above_one"]["gsm8k"]
    assert [adapter_id("imdb"), relation] in result.summary["lift_above_one"]["gsm8k"]
    info = result.summary["tasks"]["gsm8k"]
    assert info["n_questions"] == N_QUESTIONS
    rare = [r for r, n in info["relation_counts"].items() if n < 10]
    assert info["relations_dropped"] == len(rare) and not set(rare) & set(table["relation"])
    assert set(result.figures) == {"dependency_gsm8k.png"}
    assert decodes_as_png(result.figures["dependency_gsm8k.png"])


def test_analysis_finds_no_relation_in_shuffled_records(tmp_path, parsed_questions):
    examples, relations = parsed_questions
    held = np.array([planted_relation(relations) in found for found in relations])
    rng = np.random.default_rng(3)
    adapter_ok, base_ok = planted_outcomes(held, rng)
    order = rng.permutation(len(examples))  # outcome pairs moved to other questions
    write_math_study(tmp_path, examples, adapter_ok[order], base_ok[order])
    table = dependency.run(context(tmp_path), {"min_count": 10}).tables["dependency_ratios.csv"]
    # 95% intervals: about one relation in twenty may miss 1 by chance
    covers = (table["lift_low"] <= 1) & (1 <= table["lift_high"])
    assert covers.mean() >= 0.9


def test_questions_are_matched_by_id(tmp_path, parsed_questions):
    examples, relations = parsed_questions
    ids = [e["id"] for e in examples]
    # the adapter's file lists the same questions in reverse order and misses the first ten
    write_cell(tmp_path, BASE_ADAPTER_ID, "gsm8k", {i: k % 2 == 0 for k, i in enumerate(ids)})
    write_cell(tmp_path, adapter_id("imdb"), "gsm8k",
               {i: k % 2 == 0 for k, i in reversed(list(enumerate(ids))) if k >= 10})
    result = dependency.run(context(tmp_path), {"min_count": 1, "n_resamples": 50})
    table = result.tables["dependency_ratios.csv"]
    assert np.allclose(table["ratio"].dropna(), 1.0)  # identical outcomes question by question
    held = sum(relations[k] >= {"nsubj"} for k in range(10, N_QUESTIONS))
    assert table.set_index("relation").loc["nsubj", "n_questions"] == held


def test_skips_without_spacy_or_math_task(tmp_path, monkeypatch):
    examples = evaluated_examples("gsm8k", 20)
    write_math_study(tmp_path, examples, [True] * 20, [False] * 20)
    ctx = context(tmp_path)
    dependency.load_parser.cache_clear()
    monkeypatch.setitem(sys.modules, "spacy", None)  # import spacy now raises ImportError
    result = dependency.run(ctx, {})
    assert "latent-traits[side]" in result.skipped and "spaCy" in result.skipped
    assert "no math target" in dependency.run(ctx, {"tasks": ["imdb_missing"]}).skipped
    assert dependency.run(ctx, {"enabled": False}).skipped.startswith("off")
    dependency.load_parser.cache_clear()


def test_judged_cells_use_the_verdict_and_drop_invalid_ones(tmp_path):
    ids = [e["id"] for e in evaluated_examples("gsm8k", 4)]
    write_cell(tmp_path, BASE_ADAPTER_ID, "gsm8k", dict.fromkeys(ids, False))
    ctx = context(tmp_path)
    record = ctx.records("gsm8k")[0]
    verdicts = [True, None, False, True]
    rows = [{"id": i, "correct": False, "judge_verdict": v} for i, v in zip(ids, verdicts, strict=True)]
    write_jsonl(Path(record["_path"]).with_name("gsm8k.predictions.jsonl"), rows)
    assert dependency.outcomes(ctx, record) == dict.fromkeys(ids, False)
    record["primary_metric"] = "judge_accuracy"
    assert dependency.outcomes(ctx, record) == {ids[0]: True, ids[2]: False, ids[3]: True}
