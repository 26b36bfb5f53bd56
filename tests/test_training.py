"""Training on the tiny random Llama: example encoding, LoRA updates, and train_adapter end to end
through the real composed config."""

from __future__ import annotations

import copy
import json

import lightning as L
import pytest
import torch
from conftest import CONF, compose_config
from omegaconf import OmegaConf
from safetensors import safe_open

from latent_traits.data.datamodule import (
    IGNORE_INDEX,
    SourceDataModule,
    collate_right_padded,
    encode_prompt,
    encode_target,
    encode_training_example,
)
from latent_traits.data.prompts import format_prompt
from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError
from latent_traits.io import read_json
from latent_traits.model.lora_module import LoRAFineTuner
from latent_traits.train.run import TRAIN_RESULT, train_adapter

TRAIN_OVERRIDES = [
    "model=tiny_llama", "logger=none", "source_dataset=goat", "trainer.max_steps=2",
    "data.train_n=8", "data.batch_size=4",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def task_spec(name: str) -> TaskSpec:
    return TaskSpec.from_config(OmegaConf.load(CONF / "tasks" / f"{name}.yaml"))


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_and_model):
    return tiny_tokenizer_and_model[0]


# -- prompt format and example encoding -----------------------------------------------------

def test_format_prompt_matches_the_paper():
    imdb, goat = task_spec("imdb"), task_spec("goat")
    assert format_prompt(imdb, "A fine film.") == (
        "What is the sentiment of the below sentence?\nA fine film.\nSentiment:\n"
    )
    assert goat.instruction is None
    assert format_prompt(goat, "What is 2 + 3?") == "What is 2 + 3?\nAnswer:\n"


@pytest.mark.parametrize(("task", "example"), [
    ("imdb", {"input": "A fine film.", "target": "1"}),
    ("goat", {"input": "What is 2 + 3?", "target": "2 + 3 = 5"}),
])
def test_training_sequence_is_instruction_input_cue_target_eos(tokenizer, task, example):
    spec = task_spec(task)
    encoded = encode_training_example(spec, example, tokenizer, max_length=256, max_input_tokens=160,
                                      loss_span="full")
    head = f"{spec.instruction}\n" if spec.instruction else ""
    expected = f"{head}{example['input']}\n{spec.cue}:\n{example['target']}{tokenizer.eos_token}"
    assert tokenizer.decode(encoded["input_ids"]) == expected
    assert encoded["input_ids"][-1] == tokenizer.eos_token_id
    # the prompt part is exactly what evaluation feeds the model
    prompt = encode_prompt(spec, example["input"], tokenizer, 160)
    assert encoded["input_ids"][: len(prompt)] == prompt


def test_loss_span_full_labels_every_token(tokenizer):
    encoded = encode_training_example(task_spec("imdb"), {"input": "Great!", "target": "1"}, tokenizer,
                                      256, 160, "full")
    assert encoded["labels"] == encoded["input_ids"]
    assert IGNORE_INDEX not in encoded["labels"]


@pytest.mark.parametrize("task", ["imdb", "goat"])
def test_loss_span_response_masks_the_prompt(tokenizer, task):
    spec = task_spec(task)
    example = {"input": "Some input text here.", "target": "1" if task == "imdb" else "12 + 30 = 42"}
    encoded = encode_training_example(spec, example, tokenizer, 256, 160, "response")
    n_prompt = len(encode_prompt(spec, example["input"], tokenizer, 160))
    target = encode_target(example["target"], tokenizer)
    assert encoded["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert encoded["labels"][n_prompt:] == target == encoded["input_ids"][n_prompt:]
    assert target[-1] == tokenizer.eos_token_id


@pytest.mark.parametrize("task,example,label_text", [
    ("imdb", {"input": "Great film.", "target": "1"}, "1"),
    ("goat", {"input": "12 + 30", "target": "12 + 30 = 42", "answer": "42"}, "42"),
    ("gsm8k", {"input": "Tom has 2 apples...", "target": "He has 2+3=5 apples.\n#### 5", "answer": "5"}, "5"),
])
def test_label_and_all_but_label_spans_are_complements(tokenizer, task, example, label_text):
    spec = task_spec(task)
    label = encode_training_example(spec, example, tokenizer, 256, 160, "label")
    rest = encode_training_example(spec, example, tokenizer, 256, 160, "all_but_label")
    trained = [t for t in label["labels"] if t != IGNORE_INDEX]
    assert tokenizer.decode(trained).strip() == label_text  # the label alone, eos excluded
    for ids, a, b in zip(label["input_ids"], label["labels"], rest["labels"], strict=True):
        assert (a == IGNORE_INDEX) != (b == IGNORE_INDEX) and ids == (a if a != IGNORE_INDEX else b)
    assert rest["labels"][-1] == tokenizer.eos_token_id


def test_unknown_loss_span_is_a_user_error(tokenizer):
    with pytest.raises(LatentTraitsError, match="loss_span"):
        encode_training_example(task_spec("imdb"), {"input": "x", "target": "1"}, tokenizer, 64, None, "bogus")


@pytest.mark.parametrize("loss_span", ["full", "response"])
@pytest.mark.parametrize("max_input_tokens", [None, 160])
def test_overlong_example_keeps_the_answer_and_the_prompt_format(tokenizer, loss_span, max_input_tokens):
    spec = task_spec("gsm8k")
    example = {"input": " ".join(f"word{i}" for i in range(300)), "target": "Step one. Step two.\n#### 42"}
    max_length = 48
    encoded = encode_training_example(spec, example, tokenizer, max_length, max_input_tokens, loss_span)
    ids = encoded["input_ids"]
    target = encode_target(example["target"], tokenizer)
    assert len(ids) <= max_length
    assert ids[-len(target):] == target  # the whole answer and eos
    text = tokenizer.decode(ids)
    assert text.startswith("word0 word1")  # the input's tail is cut, not its head
    assert text.endswith(f"\n{spec.cue}:\n{example['target']}{tokenizer.eos_token}")  # cue kept
    if loss_span == "response":
        n_prompt = len(ids) - len(target)
        assert encoded["labels"] == [IGNORE_INDEX] * n_prompt + target


def test_answer_longer_than_max_length_still_fits(tokenizer):
    spec = task_spec("gsm8k")
    example = {"input": "A short question?", "target": " ".join(["step"] * 100) + "\n#### 42"}
    encoded = encode_training_example(spec, example, tokenizer, 32, 160, "response")
    assert len(encoded["input_ids"]) == len(encoded["labels"]) <= 32
    assert any(label != IGNORE_INDEX for label in encoded["labels"])


def test_collate_right_pads_with_ignored_labels():
    batch = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    out = collate_right_padded(batch, pad_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert out["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


# -- LoRA optimisation ----------------------------------------------------------------------

def test_lora_steps_change_only_lora_weights(tiny_tokenizer_and_model, tmp_path):
    tokenizer, shared_model = tiny_tokenizer_and_model
    base = copy.deepcopy(shared_model).train()  # get_peft_model edits modules in place
    lora_cfg = OmegaConf.to_container(OmegaConf.load(CONF / "lora" / "default.yaml"))
    module = LoRAFineTuner(base, lora_cfg, {"lr": 1e-2, "warmup_steps": 0, "scheduler": "constant"})
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    lora_names = [n for n in before if "lora_" in n]
    assert lora_names and any("lora_A" in n for n in lora_names) and any("lora_B" in n for n in lora_names)
    assert all(not before[n].any() for n in lora_names if "lora_B" in n)  # B starts at zero
    trainable = {n for n, p in module.model.named_parameters() if p.requires_grad}
    assert trainable == set(lora_names)

    examples = [{"id": str(i), "input": f"Review number {i} was {'good' if i % 2 else 'bad'}.",
                 "target": str(i % 2)} for i in range(6)]
    datamodule = SourceDataModule(task_spec("imdb"), examples, tokenizer, batch_size=2, max_length=64,
                                  max_input_tokens=32, loss_span="full", seed=0)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=3, logger=False, enable_checkpointing=False,
                        precision="32-true", enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 3
    assert module.tokens_seen > 0 and module.last_loss is not None

    after = dict(module.model.named_parameters())
    for name in lora_names:
        assert not torch.equal(before[name], after[name]), f"{name} did not change"
    base_names = [n for n in before if "lora_" not in n]
    assert base_names
    for name in base_names:
        assert torch.equal(before[name], after[name].detach()), f"base weight {name} changed"
    # the shared fixture model is untouched (no LoRA layers, same weights)
    assert not any("lora_" in n for n, _ in shared_model.named_parameters())


# -- train_adapter end to end ---------------------------------------------------------------

@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def trained(artifacts):
    cfg = compose_config("train", TRAIN_OVERRIDES, artifacts=artifacts)
    result = train_adapter(cfg)
    return cfg, result, artifacts / "adapters" / "tiny_llama" / "goat" / "lora_r8_s0"


def adapter_tensors(path) -> dict[str, torch.Tensor]:
    with safe_open(str(path / "adapter_model.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_train_adapter_writes_the_adapter_directory(trained):
    _, result, out_dir = trained
    assert out_dir.is_dir()
    files = {p.name for p in out_dir.iterdir()}
    assert files == {"adapter_config.json", "adapter_model.safetensors", "README.md", TRAIN_RESULT}
    # nothing but the adapter: no base weights anywhere in the directory
    assert not {"model.safetensors", "pytorch_model.bin"} & files
    tensors = adapter_tensors(out_dir)
    assert tensors and all("lora_" in k for k in tensors)
    assert sum(t.numel() for t in tensors.values()) == result["trainable_parameters"]
    assert result["trainable_parameters"] < result["total_parameters"] / 10
    assert json.loads((out_dir / "adapter_config.json").read_text())["r"] == 8
    # no temporary siblings left behind by the atomic write
    assert not [p.name for p in out_dir.parent.iterdir() if p.name.startswith(".")]


def test_train_result_contents(trained):
    _, result, out_dir = trained
    stored = read_json(out_dir / TRAIN_RESULT)
    assert stored == json.loads(json.dumps(result, default=str))
    assert stored["status"] == "complete"
    assert stored["adapter_id"] == "goat/lora_r8_s0"
    assert isinstance(stored["settings_hash"], str) and stored["settings_hash"]
    assert stored["data"]["n"] == 8 and stored["data"]["hash"]
    assert stored["data"]["split"] == "train"
    assert stored["steps"] == 2
    assert stored["settings"]["trainer"]["max_steps"] == 2
    assert stored["model"] == {"name": "tiny_llama", "source": "tiny_random", "revision": None, "loaded_commit": None}
    assert stored["settings"]["trainer"]["precision"] == "32-true"  # never bf16 on CPU
    assert stored["versions"]["torch"] and stored["versions"]["peft"]
    assert "git_sha" in stored
    assert stored["tokens_seen"] > 0 and stored["final_loss"] is not None


def test_finished_adapter_is_skipped(trained):
    _, result, out_dir = trained
    mtimes = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    again = train_adapter(compose_config("train", TRAIN_OVERRIDES, artifacts=out_dir.parents[3]))
    assert again == read_json(out_dir / TRAIN_RESULT)
    assert again["created_at"] == result["created_at"]
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == mtimes


def test_changed_setting_on_a_finished_adapter_is_refused(trained):
    _, _, out_dir = trained
    cfg = compose_config("train", [*TRAIN_OVERRIDES, "optim.lr=0.01"], artifacts=out_dir.parents[3])
    with pytest.raises(LatentTraitsError, match="tag=") as err:
        train_adapter(cfg)
    assert "train.overwrite" in str(err.value)


def test_rank_sweep_writes_distinct_adapters(trained, artifacts):
    _, _, r8_dir = trained
    cfg = compose_config("train", [*TRAIN_OVERRIDES, "lora.r=4"], artifacts=artifacts)
    result = train_adapter(cfg)
    r4_dir = artifacts / "adapters" / "tiny_llama" / "goat" / "lora_r4_s0"
    assert result["adapter_id"] == "goat/lora_r4_s0"
    assert sorted(p.name for p in r8_dir.parent.iterdir()) == ["lora_r4_s0", "lora_r8_s0"]
    r4, r8 = adapter_tensors(r4_dir), adapter_tensors(r8_dir)
    assert r4.keys() == r8.keys()
    for key in r4:
        assert r4[key].shape != r8[key].shape
        rank_dim = 0 if "lora_A" in key else 1
        assert r4[key].shape[rank_dim] == 4 and r8[key].shape[rank_dim] == 8
    assert result["settings_hash"] != read_json(r8_dir / TRAIN_RESULT)["settings_hash"]


def test_overlong_answers_are_refused_or_dropped_and_counted(tokenizer, tmp_path):
    """Only the input is ever cut: with data.overlong=drop the examples whose answer does not fit
    are left out, and the adapter's record counts them and hashes only what it trained on."""
    from latent_traits.data.datamodule import answer_tokens
    from latent_traits.data.load import load_examples

    cfg = compose_config("train", TRAIN_OVERRIDES, artifacts=tmp_path)
    spec = TaskSpec.from_config(cfg.source_dataset.task)
    examples, _ = load_examples(spec, "train", n=8, seed=0)
    needed = sorted(len(encode_prompt(spec, "", tokenizer, None)) + len(encode_target(e["target"], tokenizer))
                    for e in examples)
    max_length = needed[len(needed) // 2]  # about half the answers fit
    expected_kept = sum(answer_tokens(spec, tokenizer)(e) <= max_length for e in examples)
    assert 0 < expected_kept < 8
    with pytest.raises(LatentTraitsError, match=rf"{8 - expected_kept} of 8 examples do not fit.*data\.overlong=drop"):
        train_adapter(compose_config("train", [*TRAIN_OVERRIDES, f"data.max_length={max_length}"], artifacts=tmp_path))
    result = train_adapter(compose_config(
        "train", [*TRAIN_OVERRIDES, f"data.max_length={max_length}", "data.overlong=drop"], artifacts=tmp_path))
    assert result["data"]["n"] == expected_kept and result["data"]["dropped_overlong"] == 8 - expected_kept
    assert result["settings"]["data"]["overlong"] == "drop"


def test_the_default_overlong_setting_leaves_the_settings_hash_as_before():
    from latent_traits.train.run import training_settings

    cfg = compose_config("train", TRAIN_OVERRIDES)
    assert "overlong" not in training_settings(cfg)["data"]  # adapters trained before the option stay done


def test_a_pinned_model_revision_reaches_from_pretrained_and_the_settings(monkeypatch):
    """model.revision (a hub commit) is passed to both from_pretrained calls and enters the
    settings hash; unpinned (null) it is left out, so earlier adapters keep their hash."""
    import transformers

    from latent_traits.model.factory import load_tokenizer_and_model
    from latent_traits.train.run import training_settings

    calls = []

    class Stop(Exception):
        pass

    def tokenizer_from(location, **kwargs):
        calls.append(("tokenizer", location, kwargs.get("revision")))
        return type("Tokenizer", (), {"pad_token": "x", "eos_token": "x", "pad_token_id": 0})()

    def model_from(location, **kwargs):
        calls.append(("model", location, kwargs.get("revision")))
        raise Stop

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer_from)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model_from)
    pinned = compose_config("train", ["model=llama3_2_3b", "model.revision=13afe5124825b4f3751f836b40dafda64c1ed062"])
    with pytest.raises(Stop):
        load_tokenizer_and_model(OmegaConf.to_container(pinned.model), "/nonexistent-cache")
    assert calls == [("tokenizer", "meta-llama/Llama-3.2-3B", "13afe5124825b4f3751f836b40dafda64c1ed062"),
                     ("model", "meta-llama/Llama-3.2-3B", "13afe5124825b4f3751f836b40dafda64c1ed062")]
    assert training_settings(pinned)["model"]["revision"] == "13afe5124825b4f3751f836b40dafda64c1ed062"
    assert "revision" not in training_settings(compose_config("train", ["model=llama3_2_3b"]))["model"]
