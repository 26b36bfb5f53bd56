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
GENERATION_N = {"goat": 32, "gsm8k": 32, "magicoder": 32}


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
    assert [(s.name, e["n"]) for s, e in target_specs(narrowed)] == [("goat", 32)]


def test_the_study_names_its_tasks_also_inside_the_running_hydra_app(tmp_path):
    """evaluate.py composes each eval.tasks spec while its own Hydra app holds the global
    instance (this once failed: 'GlobalHydra is already initialized'); the app's is kept."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    cfg = compose_config("evaluate", ["experiment=study"], tmp_path)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        running = GlobalHydra.instance().hydra
        assert [spec.name for spec, _ in target_specs(cfg)] == TARGETS
        assert GlobalHydra.instance().hydra is running
        assert compose(config_name="evaluate").task_name == "evaluate"  # the app's search path still works


def test_every_study_source_fits_its_max_length_as_the_preset_says(tmp_path, tiny_tokenizer_and_model):
    """Sources whose answers exceed data.max_length (magicoder's whole code solutions) are left
    out by data.overlong=drop, never cut; the others keep every example."""
    from latent_traits.data.datamodule import fit_answers

    tokenizer = tiny_tokenizer_and_model[0]
    dropped = {}
    for source in SOURCES:
        cfg = compose_config("train", ["experiment=study", f"source_dataset={source}"], tmp_path)
        spec = TaskSpec.from_config(cfg.source_dataset.task)
        examples, _ = load_examples(spec, "train", n=cfg.source_dataset.n, seed=0,
                                    transforms=to_plain(cfg.source_dataset.get("transforms")))
        kept, dropped[source] = fit_answers(spec, examples, tokenizer, cfg.data.max_length, cfg.data.overlong)
        # each kept example is seen at most twice
        assert len(kept) >= cfg.trainer.max_steps * cfg.data.batch_size / 2, source
    assert [s for s, n in dropped.items() if n] == ["magicoder"]


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
    with pytest.raises(LatentTraitsError, match=r"experiment=rank_sweep is a preset for train\.py, not evaluate\.py.*"
                                                r"presets for evaluate\.py: paper, study"):
        check_group_options(dirs, ["experiment=rank_sweep"], "evaluate")
