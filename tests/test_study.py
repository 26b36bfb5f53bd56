"""experiment=study composes for the three entry points with the sizes docs/STUDY.md derives, and
the offline pools are big enough for it (the study itself is a benchmark, never run in tests)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, compose_config

from latent_traits.config import check_config, target_specs, to_plain
from latent_traits.data.load import load_examples
from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError
from latent_traits.preflight import check_group_options

SOURCES = ["amazon", "amazon_mislabeled", "flipkart_balanced", "flipkart_imbalanced", "goat", "imdb", "magicoder",
           "metamathqa", "mnli", "mnli_nums", "paws", "pile"]
TARGETS = ["amazon", "flipkart", "goat", "gsm8k", "imdb", "magicoder", "mnli", "mnli_nums", "paws", "pile"]
GENERATION_N = {"goat": 40, "gsm8k": 40, "magicoder": 40}


def test_the_study_trains_every_source_and_variant(tmp_path):
    cfg = compose_config("train", ["experiment=study"], tmp_path)
    check_config(cfg)
    sweep = compose_config("train", ["experiment=study"], return_hydra=True)
    assert sweep.hydra.sweeper.params.source_dataset.split(",") == SOURCES
    assert (cfg.data.train_n, cfg.trainer.max_steps, cfg.data.batch_size) == (512, 64, 4)
    assert Path(sweep.paths.artifacts_dir).name == "study"  # apart from the demo's results


def test_the_study_evaluates_every_target_at_its_size(tmp_path):
    cfg = compose_config("evaluate", ["experiment=study"], tmp_path)
    check_config(cfg)
    chosen = {spec.name: entry["n"] for spec, entry in target_specs(cfg)}
    assert sorted(chosen) == TARGETS
    assert chosen == {t: GENERATION_N.get(t, 200) for t in TARGETS}
    narrowed = compose_config("evaluate", ["experiment=study", "eval.tasks=[goat]"], tmp_path)
    assert [(s.name, e["n"]) for s, e in target_specs(narrowed)] == [("goat", 40)]


def test_the_study_analyses_its_own_records(tmp_path):
    check_config(compose_config("analyze", ["experiment=study"], tmp_path))
    cfg = compose_config("analyze", ["experiment=study"])
    assert Path(cfg.records_dir).parts[-3:] == ("study", "eval", "smollm2_135m")


def test_each_training_source_has_what_the_study_draws(tmp_path):
    for source in SOURCES:
        cfg = compose_config("train", ["experiment=study", f"source_dataset={source}"], tmp_path)
        spec = TaskSpec.from_config(cfg.source_dataset.task)
        examples, provenance = load_examples(spec, "train", n=cfg.source_dataset.n, seed=0,
                                             transforms=to_plain(cfg.source_dataset.get("transforms")))
        assert len(examples) == 512, source
        if source == "flipkart_balanced":
            assert set(Counter(e["label"] for e in examples).values()) <= {170, 171}


def test_each_target_has_a_test_split_at_least_the_study_size(tmp_path):
    cfg = compose_config("evaluate", ["experiment=study"], tmp_path)
    short = {}
    for spec, entry in target_specs(cfg):
        examples, provenance = load_examples(spec, "test", n=None, seed=0)
        if len(examples) < entry["n"]:
            short[spec.name] = len(examples)
    assert short == {}, f"test splits smaller than the study's n: {short}"


def test_a_training_preset_is_refused_by_evaluate_naming_the_ones_that_serve_it():
    dirs = [REPO / "conf"]
    check_group_options(dirs, ["experiment=study"], "evaluate")
    with pytest.raises(LatentTraitsError, match=r"experiment=paper is a preset for train\.py, not evaluate\.py.*"
                                                r"presets for evaluate\.py: study"):
        check_group_options(dirs, ["experiment=paper"], "evaluate")
