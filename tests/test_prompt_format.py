"""data.prompt: the BOS token and the empty instruction's newline, the default or the authors'
(a literal BOS before the tokenizer's; "\\n" before an input without instruction), spelled the
same in training and evaluation and recorded only when not the default."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import compose_config

from latent_traits.config import target_specs
from latent_traits.data.catalog import load_task_spec
from latent_traits.data.datamodule import encode_training_example
from latent_traits.data.prompts import encode_prompt, format_prompt
from latent_traits.data.spec import PromptFormat
from latent_traits.errors import LatentTraitsError
from latent_traits.train.run import training_settings

AUTHORS = {"bos": "literal_plus_tokenizer", "empty_instruction_newline": True}


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_and_model):
    return tiny_tokenizer_and_model[0]


def test_the_empty_instruction_newline_only_where_asked_and_only_without_instruction():
    goat, imdb = load_task_spec("goat"), load_task_spec("imdb")
    assert format_prompt(goat, "What is 2 + 3?") == "What is 2 + 3?\nAnswer:\n"
    assert format_prompt(goat.with_prompt_format(AUTHORS), "What is 2 + 3?") == "\nWhat is 2 + 3?\nAnswer:\n"
    assert format_prompt(imdb.with_prompt_format(AUTHORS), "Fine.") == format_prompt(imdb, "Fine.")


def test_bos_modes(tokenizer):
    spec = load_task_spec("imdb")
    text = format_prompt(spec, "Fine.")
    plain = tokenizer(text, add_special_tokens=True)["input_ids"]
    ids = {mode: encode_prompt(spec.with_prompt_format({"bos": mode}), "Fine.", tokenizer, None)
           for mode in ("tokenizer", "literal_plus_tokenizer", "none")}
    assert ids["tokenizer"] == plain
    assert ids["literal_plus_tokenizer"] == [tokenizer.bos_token_id, *plain]
    assert ids["none"] == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_training_sequences_start_with_the_prompt_evaluation_feeds(tokenizer):
    spec = load_task_spec("goat").with_prompt_format(AUTHORS)
    example = {"input": "What is 2 + 3?", "target": "2 + 3 = 5"}
    encoded = encode_training_example(spec, example, tokenizer, max_length=64, max_input_tokens=None,
                                      loss_span="full")
    prompt = encode_prompt(spec, example["input"], tokenizer, None)
    assert encoded["input_ids"][:len(prompt)] == prompt and prompt[0] == tokenizer.bos_token_id
    assert tokenizer.decode(prompt[1:]).endswith("\nWhat is 2 + 3?\nAnswer:\n")


def test_bad_settings_are_refused_naming_the_key():
    with pytest.raises(LatentTraitsError, match=r"data.prompt.bos='double' is not one of"):
        PromptFormat.from_config({"bos": "double"})
    with pytest.raises(LatentTraitsError, match=r"data.prompt: unknown keys \['newline'\]"):
        PromptFormat.from_config({"newline": True})
    with pytest.raises(LatentTraitsError, match="data.prompt.bos=tokenizer"):
        encode_prompt(load_task_spec("imdb").with_prompt_format({"bos": "literal_plus_tokenizer"}), "x",
                      type("NoBos", (), {"bos_token_id": None, "__call__": lambda self, t, **k: {"input_ids": [1]}})(),
                      None)


def test_records_and_hashes_carry_the_format_only_when_not_the_default():
    default = compose_config("train", ["source_dataset=goat"])
    authors = compose_config("train", ["source_dataset=goat", "data.prompt.bos=literal_plus_tokenizer",
                                       "data.prompt.empty_instruction_newline=true"])
    assert "prompt" not in training_settings(default)["data"]  # adapters trained before the option stay done
    assert training_settings(authors)["data"]["prompt"] == AUTHORS
    spec = load_task_spec("goat")
    assert "prompt_format" not in spec.to_record()
    assert spec.with_prompt_format(AUTHORS).to_record()["prompt_format"] == AUTHORS
    evaluated = compose_config("evaluate", ["target_task=[goat]", "data.prompt.bos=none"])
    [(target, _)] = target_specs(evaluated)
    assert dataclasses.asdict(target.prompt_format) == {"bos": "none", "empty_instruction_newline": False}


def test_the_paper_preset_spells_prompts_as_the_authors():
    for stage in ("train", "evaluate"):
        cfg = compose_config(stage, ["experiment=paper"])
        assert dict(cfg.data.prompt) == AUTHORS, stage
