"""Side analyses on synthetic records in the real schema: each finds an effect planted in the
records and none in records without it; every figure decodes; failures stay in their section."""

from __future__ import annotations

import numpy as np
import pytest
from side_helpers import (
    SENTIMENT,
    analyse,
    class_rows,
    decodes,
    draw_labels,
    gen_rows,
    side_result,
    train_settings,
    write_cell,
)

from latent_traits.analysis.side.context import SideContext
from latent_traits.eval.records import BASE_ADAPTER_ID

GEN_TASKS = {"gen_short": 20, "gen_mid": 150, "gen_long": 900}  # reference length (characters)


def lognormal_lengths(rng, centre: float, n: int, spread: float = 0.15) -> list[int]:
    return [max(1, int(x)) for x in 10 ** (np.log10(centre) + spread * rng.normal(size=n))]


def write_length_study(eval_dir, planted: bool, seed: int = 0, n: int = 200) -> dict[str, int]:
    """8 adapters whose source targets have different lengths, on 3 generative targets. Planted:
    an adapter's outputs sit between the base's length (100) and its source's, and it gains
    where its source lengths are close to the target's references. Returns source lengths."""
    rng = np.random.default_rng(seed)
    sources = {f"src{k}/lora_r8_s0": int(L) for k, L in enumerate(rng.permutation(np.geomspace(10, 1000, 8)))}
    for task, ref_len in GEN_TASKS.items():
        refs = ["r" * x for x in lognormal_lengths(rng, ref_len, n)]
        write_cell(eval_dir, BASE_ADAPTER_ID, task,
                   gen_rows(list(rng.random(n) < 0.3), lognormal_lengths(rng, 100, n), refs))
        for adapter, src_len in sources.items():
            closeness = max(0.0, 1 - abs(np.log10(src_len) - np.log10(ref_len)))
            gain = 0.35 * closeness if planted else 0.35 * rng.random()
            outputs = lognormal_lengths(rng, 10 ** ((2 + np.log10(src_len)) / 2), n)
            write_cell(eval_dir, adapter, task, gen_rows(list(rng.random(n) < 0.3 + gain), outputs, refs))
    return sources


@pytest.fixture
def fake_sources(monkeypatch):
    """ctx.source_examples serves synthetic training targets of the lengths a test sets."""
    lengths: dict[str, int] = {}
    rng = np.random.default_rng(7)

    def source_examples(self, record):
        centre = lengths.get(record["adapter"]["id"])
        return None if centre is None else [{"target": "s" * x} for x in lognormal_lengths(rng, centre, 64)]

    monkeypatch.setattr(SideContext, "source_examples", source_examples)
    return lengths


@pytest.mark.parametrize("planted", [True, False])
def test_lengths_find_the_planted_length_effect_and_none_without_it(tmp_path, fake_sources, planted):
    fake_sources.update(write_length_study(tmp_path, planted))
    result = side_result(analyse(tmp_path, lengths={"references": "predictions",
                                                    "n_permutations": 500, "seed": 1}), "lengths")
    assert result.skipped is None and result.error is None
    test = result.summary["test"]
    assert test["n"] == 24 and test["n_permutations"] == 500
    if planted:
        assert test["rho"] < -0.6 and test["p_value"] < 0.01
        # outputs interpolate between the base's length habit and the source's
        assert 0.3 < result.summary["mean_interpolation"] < 0.7
    else:
        assert test["p_value"] > 0.05
    stats = result.tables["lengths_stats.csv"]
    assert set(stats["distribution"]) == {"source", "adapter", "base", "reference"}
    refs = stats[(stats["distribution"] == "reference") & (stats["task"] == "gen_long")]
    assert 700 < refs["median"].iloc[0] < 1200
    assert decodes(result.figures["lengths_kde.png"])[1] > 500


def test_lengths_read_real_source_and_reference_data(tmp_path):
    """The real path: training examples rebuilt from recorded settings (offline goat and gsm8k),
    reference texts re-read from the target task's data by example id."""
    from latent_traits.data.catalog import load_task_spec
    from latent_traits.data.load import load_examples

    examples, _ = load_examples(load_task_spec("gsm8k"), "test", n=8, seed=0)
    ids, rng = [e["id"] for e in examples], np.random.default_rng(0)
    numbers = [str(e.get("answer")) for e in examples]  # what predictions' `reference` holds
    write_cell(tmp_path, BASE_ADAPTER_ID, "gsm8k", gen_rows([False] * 8, [120] * 8, numbers, ids),
               data_source="offline:reasoning_gym_gsm")
    for source in ("goat", "gsm8k"):
        settings = train_settings(source, "data.train_n=12")
        write_cell(tmp_path, f"{source}/lora_r8_s0", "gsm8k",
                   gen_rows(list(rng.random(8) < 0.5), [60] * 8, numbers, ids),
                   train_config=settings, data_source="offline:reasoning_gym_gsm")
    result = side_result(analyse(tmp_path, lengths={}), "lengths")
    assert result.error is None, result.error
    stats = result.tables["lengths_stats.csv"].set_index("distribution", append=True)
    goat, gsm = stats.loc[("goat/lora_r8_s0", "source")], stats.loc[("gsm8k/lora_r8_s0", "source")]
    assert goat["n"] == 12 and gsm["n"] == 12
    assert goat["median"] < 40 < gsm["median"]  # "a - b = c" vs worked solutions
    reference = stats.loc[("goat/lora_r8_s0", "reference")]
    assert reference["n"] == 8 and reference["median"] > 80  # the worked solution, not the number
    assert result.summary["notes"] == []


def write_class_study(eval_dir, planted: bool, seed: int = 0, n: int = 300) -> dict[str, list[float]]:
    """6 adapters with different source label priors on two 3-way sentiment targets; the base
    predicts 40/35/25. Planted: an adapter's predictions mix the base's habit (30%) with its
    source prior (70%); without: with an unrelated distribution. Plus a balanced/imbalanced
    Flipkart pair with their real training settings."""
    rng = np.random.default_rng(seed)
    base_dist = [0.4, 0.35, 0.25]
    priors = {f"src{k}/lora_r8_s0": list(rng.dirichlet([1, 1, 1])) for k in range(6)}
    priors["flipkart_balanced/lora_r8_s0"] = [1 / 3] * 3
    priors["flipkart_imbalanced/lora_r8_s0"] = [0.8, 0.14, 0.06]
    for task in ("senti_a", "senti_b"):
        refs = draw_labels(rng, [1, 1, 1], n)
        write_cell(eval_dir, BASE_ADAPTER_ID, task, class_rows(refs, draw_labels(rng, base_dist, n)),
                   labels=SENTIMENT)
        for adapter, prior in priors.items():
            pull = prior if planted else rng.dirichlet([1, 1, 1])
            mixed = 0.3 * np.asarray(base_dist) + 0.7 * np.asarray(pull)
            source = adapter.split("/")[0]
            settings = train_settings(source) if source.startswith("flipkart") else None
            counts = {label: int(round(300 * p)) for label, p in zip(SENTIMENT, prior, strict=True)}
            write_cell(eval_dir, adapter, task, class_rows(refs, draw_labels(rng, mixed, n)),
                       labels=SENTIMENT, train_config=settings,
                       train_data={"source": "offline:synthetic", "class_distribution": counts})
    return priors


@pytest.mark.parametrize("planted", [True, False])
def test_classes_find_the_planted_prior_effect_and_none_without_it(tmp_path, planted):
    write_class_study(tmp_path, planted)
    result = side_result(analyse(tmp_path, classes={"n_permutations": 500}), "classes")
    assert result.skipped is None and result.error is None
    test = result.summary["prior_test"]
    assert test["n"] == 8 * 2 * 3  # adapters x targets x shared labels
    if planted:
        assert test["rho"] > 0.5 and test["p_value"] < 0.01
        assert (result.tables["classes_prior.csv"]["toward_prior"] > 0).mean() > 0.8
    else:
        assert test["p_value"] > 0.05
    assert result.summary["n_confusion_matrices"] == 9 * 2  # base + 8 adapters, 2 targets
    confusion = result.tables["classes_confusion.csv"]
    assert confusion.loc[BASE_ADAPTER_ID]["count"].sum() == 2 * 300
    # the balanced member is picked by the entropy of its training labels, not by its name
    assert result.summary["balance"]["pairs"] == [["flipkart_balanced/lora_r8_s0",
                                                   "flipkart_imbalanced/lora_r8_s0"]]
    balance = result.tables["classes_balance.csv"]
    assert list(balance.index) == ["senti_a", "senti_b"]
    np.testing.assert_allclose(balance["difference"],
                               balance["balanced_score"] - balance["imbalanced_score"])
    for name in ("classes_confusion.png", "classes_balance.png"):
        assert min(decodes(result.figures[name])) > 100


def write_symmetric_pairs(eval_dir, deltas: dict[tuple[str, str], float], n: int = 400, seed: int = 0):
    """Datasets imdb, pile, paws, each a source and a target; adapter i on task j scores
    base + deltas[(i, j)] (0 where absent), per example drawn independently."""
    rng = np.random.default_rng(seed)
    names = ["imdb", "pile", "paws"]
    for task in names:
        refs = list(rng.choice(["0", "1"], size=n))

        def answers(accuracy: float, refs=refs) -> list[str]:
            return [r if rng.random() < accuracy else ("1" if r == "0" else "0") for r in refs]

        write_cell(eval_dir, BASE_ADAPTER_ID, task, class_rows(refs, answers(0.5)), labels=["0", "1"])
        for source in names:
            write_cell(eval_dir, f"{source}/lora_r8_s0", task,
                       class_rows(refs, answers(0.5 + deltas.get((source, task), 0.0))), labels=["0", "1"])


@pytest.mark.parametrize("planted", [True, False])
def test_asymmetry_finds_the_planted_pair_and_none_without_it(tmp_path, planted):
    write_symmetric_pairs(tmp_path, {("imdb", "pile"): 0.2, ("pile", "imdb"): -0.1} if planted else {})
    result = side_result(analyse(tmp_path, asymmetry={"top_k": 2}), "asymmetry")
    assert result.error is None and result.skipped is None
    pairs = result.tables["asymmetry_pairs.csv"]
    assert len(pairs) == 3 and pairs["p_holm"].notna().all()
    if planted:
        assert result.summary["significant_pairs"] == ["imdb -> pile vs pile -> imdb"]
        assert pairs.iloc[0]["difference"] > 0.15  # planted 0.3, each delta +-0.05 noise
        assert result.summary["asymmetry_index"] > 0.5
    else:
        assert result.summary["significant_pairs"] == []
    matrix = result.tables["asymmetry_matrix.csv"]
    assert list(matrix.index) == list(matrix.columns) == ["imdb", "paws", "pile"]
    off_diagonal = matrix.to_numpy()[~np.eye(3, dtype=bool)]
    types = result.tables["asymmetry_types.csv"]
    assert types.loc["classification", "classification"] == pytest.approx(off_diagonal.mean())
    assert min(decodes(result.figures["asymmetry_matrix.png"])) > 100


def test_asymmetry_skips_without_shared_datasets(tmp_path):
    write_length_study(tmp_path, planted=True, n=20)
    result = side_result(analyse(tmp_path, asymmetry={}), "asymmetry")
    assert result.skipped.startswith("needs at least 2 datasets that are both a source and a target")


ABLATION_ADAPTERS = {  # adapter id -> (source, train.py overrides), settings as train.py records them
    "amazon/lora_r8_s0": ("amazon", ()),
    "amazon_mislabeled/lora_r8_s0": ("amazon_mislabeled", ()),
    "mnli/lora_r8_s0": ("mnli", ()),
    "mnli_nums/lora_r8_s0": ("mnli_nums", ()),
    "imdb/lora_r8_s0": ("imdb", ()),
    "imdb/lora_r8_s0_full": ("imdb", ("data.loss_span=full",)),
    "imdb/lora_r8_s0_label": ("imdb", ("data.loss_span=label",)),
    "imdb/lora_r4_s0": ("imdb", ("lora.r=4",)),
    "imdb/lora_r16_s0": ("imdb", ("lora.r=16",)),
}


def write_scores(eval_dir, scores: dict[str, dict[str, float]], settings: dict[str, dict] | None = None,
                 n: int = 200):
    """Cells scoring exactly the given accuracy (first k of n examples right)."""
    for adapter, row in scores.items():
        for task, score in row.items():
            k = round(score * n)
            write_cell(eval_dir, adapter, task, class_rows(["0"] * n, ["0"] * k + ["1"] * (n - k)),
                       labels=["0", "1"], train_config=(settings or {}).get(adapter))


def test_ablation_tables_pair_adapters_differing_in_one_setting(tmp_path):
    rng = np.random.default_rng(0)
    tasks = ["amazon", "imdb", "gsm8k"]
    scores = {a: {t: float(rng.integers(20, 180)) / 200 for t in tasks}
              for a in [BASE_ADAPTER_ID, *ABLATION_ADAPTERS]}
    settings = {a: train_settings(src, *o) for a, (src, o) in ABLATION_ADAPTERS.items()}
    write_scores(tmp_path, scores, settings)
    result = side_result(analyse(tmp_path, ablations={}), "ablations")
    assert result.error is None and result.skipped is None
    labels = result.tables["ablations_labels.csv"]
    assert list(labels.index) == [BASE_ADAPTER_ID, "amazon/lora_r8_s0", "amazon_mislabeled/lora_r8_s0",
                                  "amazon_mislabeled/lora_r8_s0 - amazon/lora_r8_s0"]
    assert labels.loc["amazon/lora_r8_s0", "imdb"] == pytest.approx(100 * scores["amazon/lora_r8_s0"]["imdb"])
    diff = labels.iloc[3][tasks].astype(float)
    np.testing.assert_allclose(diff, labels.iloc[2][tasks].astype(float) - labels.iloc[1][tasks].astype(float))
    spans = result.tables["ablations_loss_span.csv"]
    assert sorted(spans.index[1:]) == ["imdb/lora_r8_s0", "imdb/lora_r8_s0_full", "imdb/lora_r8_s0_label"]
    assert "difference" not in set(spans["variant"])  # three variants: no single difference
    words = result.tables["ablations_label_words.csv"]
    assert list(words.index[1:3]) == ["mnli/lora_r8_s0", "mnli_nums/lora_r8_s0"]  # words first
    rank = result.tables["ablations_rank.csv"]
    assert list(rank["rank"]) == [4, 8, 16] and set(rank.index) == {"imdb"}
    np.testing.assert_allclose(rank["gsm8k"], [100 * scores[a]["gsm8k"] for a in rank["adapter"]],
                               rtol=1e-6)  # torchmetrics accuracies are float32
    assert min(decodes(result.figures["ablations_rank.png"])) > 100


def test_ablations_by_adapter_id_without_settings_and_skipped_without_pairs(tmp_path):
    scores = {a: {"imdb": 0.5, "amazon": 0.4} for a in
              [BASE_ADAPTER_ID, "amazon/lora_r8_s0", "amazon_mislabeled/lora_r8_s0", "paws/lora_r8_s0",
               "paws/lora_r4_s0"]}
    write_scores(tmp_path / "a", scores)
    result = side_result(analyse(tmp_path / "a", ablations={"percent": False}), "ablations")
    assert result.summary["labels"]["groups"] == [["amazon/lora_r8_s0", "amazon_mislabeled/lora_r8_s0"]]
    assert result.summary["rank"]["groups"] == [{"4": "paws/lora_r4_s0", "8": "paws/lora_r8_s0"}]
    assert "skipped" in result.summary["loss_span"]
    write_scores(tmp_path / "b", {a: {"imdb": 0.5} for a in [BASE_ADAPTER_ID, "x/lora_r8_s0", "y/lora_r8_s0"]})
    result = side_result(analyse(tmp_path / "b", ablations={}), "ablations")
    assert result.skipped.startswith("the records hold no ablation pairs")
