"""What each adapter stands for in similarity and asymmetry: source_dataset.pairs_with
(flipkart_balanced -> flipkart, metamathqa -> gsm8k, null for the mislabeled ablation),
recorded with the adapter's settings but outside its settings hash."""

from __future__ import annotations

from eval_helpers import edit_json
from side_helpers import train_settings
from side_records import MODEL, adapter_id, context, write_cell

from latent_traits.analysis.side import asymmetry, similarity
from latent_traits.analysis.side._variants import paired_task
from latent_traits.eval.records import BASE_ADAPTER_ID, record_path
from latent_traits.train.run import settings_hash_of

TARGETS = ["amazon", "flipkart", "gsm8k", "imdb", "mnli"]


def record(source: str, settings: dict | None) -> dict:
    return {"adapter": {"id": adapter_id(source), "source_dataset": source, "train_config": settings}}


def without_pairs_with(settings: dict) -> dict:
    """Settings as recorded before pairs_with existed."""
    return {**settings, "source_dataset": {k: v for k, v in settings["source_dataset"].items() if k != "pairs_with"}}


def test_each_source_pairs_with_the_target_it_declares():
    declared = {source: paired_task(record(source, train_settings(source)), TARGETS)
                for source in ("amazon", "amazon_mislabeled", "flipkart_balanced", "flipkart_imbalanced",
                               "metamathqa", "mnli", "mnli_nums")}
    assert declared == {"amazon": "amazon", "amazon_mislabeled": None, "flipkart_balanced": "flipkart",
                        "flipkart_imbalanced": "flipkart", "metamathqa": "gsm8k", "mnli": "mnli",
                        "mnli_nums": None}  # mnli_nums is its own task, not among these targets
    mislabeled = record("amazon_mislabeled", train_settings("amazon_mislabeled"))
    assert paired_task(mislabeled, TARGETS, {"amazon_mislabeled": "amazon"}) == "amazon"  # an alias wins


def test_records_without_pairs_with_pair_by_their_source_name():
    old = {s: record(s, without_pairs_with(train_settings(s))) for s in ("imdb", "flipkart_balanced", "metamathqa")}
    assert [paired_task(r, TARGETS) for r in old.values()] == ["imdb", None, None]
    assert paired_task(record("imdb", None), TARGETS) == "imdb"  # no settings at all (a W&B run)
    assert paired_task(old["metamathqa"], TARGETS, {"metamathqa": "gsm8k"}) == "gsm8k"


def test_pairs_with_leaves_the_settings_hash_as_it_was():
    """Adapters trained before the key existed stay done; pairs_with changes no weights."""
    settings = train_settings("flipkart_balanced")
    other = {**settings, "source_dataset": {**settings["source_dataset"], "pairs_with": "imdb"}}
    assert settings_hash_of(settings) == settings_hash_of(without_pairs_with(settings)) == settings_hash_of(other)
    assert settings_hash_of(settings) != settings_hash_of(train_settings("flipkart_imbalanced"))


def test_asymmetry_and_similarity_count_metamathqa_as_gsm8k(tmp_path):
    datasets = ["gsm8k", "imdb", "mnli"]
    rows = [BASE_ADAPTER_ID, adapter_id("metamathqa"), adapter_id("imdb"), adapter_id("mnli")]
    for row in rows:
        for task in datasets:
            write_cell(tmp_path, row, task, None, 0.5)
    for task in datasets:  # the settings as train.py records them now
        edit_json(record_path(tmp_path, MODEL, adapter_id("metamathqa"), task),
                  lambda r: r["adapter"]["train_config"]["source_dataset"].update(pairs_with="gsm8k"))
    ctx = context(tmp_path)
    assert asymmetry.dataset_adapters(ctx) == {"gsm8k": [adapter_id("metamathqa")], "imdb": [adapter_id("imdb")],
                                               "mnli": [adapter_id("mnli")]}
    _, members = similarity.paired_datasets(ctx, {})
    assert members == {"gsm8k": [adapter_id("metamathqa")], "imdb": [adapter_id("imdb")],
                       "mnli": [adapter_id("mnli")]}
