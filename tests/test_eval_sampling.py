"""Sampled generation as the study did it (temperature 0.7, top_p 0.95), seeded per cell."""

from __future__ import annotations

import json

import pytest
from conftest import compose_config

from latent_traits.config import target_specs
from latent_traits.data.load import load_examples
from latent_traits.eval.cells import run_cell
from latent_traits.eval.decoding import Sampling, generate
from latent_traits.eval.runner import cell_seed, decoding_settings, evaluate_all

pytestmark = pytest.mark.usefixtures("one_thread")
SAMPLED = {"temperature": 0.7, "top_p": 0.95}


def prompts(tokenizer) -> list[list[int]]:
    texts = ["What is 12345 + 678?\nAnswer:\n", "Natalia sold clips to 48 friends.\nAnswer:\n",
             "def add(a, b):\n", "Is the following sentence toxic?\nhello\nToxicity:\n"]
    return [tokenizer(t)["input_ids"] for t in texts]


def test_same_seed_same_samples_other_seed_other_samples(tiny_tokenizer_and_model):
    tokenizer, model = tiny_tokenizer_and_model
    batch = prompts(tokenizer)
    first = generate(model, tokenizer, batch, max_new_tokens=12, stop=[], sampling=Sampling(**SAMPLED, seed=11))
    # a call with another seed in between moves the RNG
    generate(model, tokenizer, batch, max_new_tokens=12, stop=[], sampling=Sampling(**SAMPLED, seed=99))
    again = generate(model, tokenizer, batch, max_new_tokens=12, stop=[], sampling=Sampling(**SAMPLED, seed=11))
    other = generate(model, tokenizer, batch, max_new_tokens=12, stop=[], sampling=Sampling(**SAMPLED, seed=12))
    greedy = generate(model, tokenizer, batch, max_new_tokens=12, stop=[])
    assert first == again
    assert other != first
    assert first != greedy  # really sampled


def test_cell_seed_is_stable_and_distinct():
    assert cell_seed(0, "imdb/lora_r8_s0", "gsm8k") == cell_seed(0, "imdb/lora_r8_s0", "gsm8k")
    seeds = {cell_seed(s, a, t) for s in (0, 1) for a in ("base", "imdb/lora_r8_s0") for t in ("goat", "gsm8k")}
    assert len(seeds) == 8 and all(0 <= s < 2**31 for s in seeds)


def test_seed_only_in_sampled_decoding_settings(tmp_path):
    greedy = compose_config("evaluate", ["model=tiny_llama"], tmp_path)
    assert "seed" not in decoding_settings(greedy, "base", "goat")
    sampled = compose_config("evaluate", ["model=tiny_llama", "eval.decoding.do_sample=true",
                                          "eval.decoding.temperature=0.7", "eval.decoding.top_p=0.95"], tmp_path)
    settings = decoding_settings(sampled, "base", "goat")
    assert settings["seed"] == cell_seed(0, "base", "goat") and settings["temperature"] == 0.7


def test_sampled_cell_twice_gives_identical_rows(tiny_tokenizer_and_model, tmp_path):
    tokenizer, model = tiny_tokenizer_and_model
    cfg = compose_config("evaluate", ["model=tiny_llama", "target_task=[goat]"], tmp_path)
    ((spec, entry),) = target_specs(cfg)
    examples, _ = load_examples(spec, split="test", n=6, seed=0)
    decoding = {"do_sample": True, **SAMPLED, "max_new_tokens_cap": 8}

    def run(seed):
        rows, *_ = run_cell(model, tokenizer, spec, examples, batch_size=4, max_input_tokens=64,
                            decoding={**decoding, "seed": seed})
        return [r["raw_output"] for r in rows]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_sampled_evaluation_records_its_seed_and_reruns_identically(tmp_path):
    overrides = ["model=tiny_llama", "target_task=[goat]", "eval.n=4", "eval.decoding.max_new_tokens_cap=6",
                 "+eval.allow_base_only=true", "eval.decoding.do_sample=true", "eval.decoding.temperature=0.7",
                 "eval.decoding.top_p=0.95"]
    outputs = []
    for run in ("a", "b"):
        cfg = compose_config("evaluate", overrides, tmp_path / run)
        (path,) = evaluate_all(cfg)
        record = json.loads(path.read_text())
        assert record["decoding"]["seed"] == cell_seed(0, "base", "goat")
        assert record["decoding"]["do_sample"] is True and record["decoding"]["top_p"] == 0.95
        outputs.append(path.with_name("goat.predictions.jsonl").read_text())
    assert outputs[0] == outputs[1]
