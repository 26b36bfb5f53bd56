"""Padding-free training batches: the batch's examples in one row, attention per example, with the
loss and LoRA gradients of the right-padded batch."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from conftest import assert_lora_grads_close, compose_config
from safetensors.torch import load_file

from latent_traits.contracts import IGNORE_INDEX
from latent_traits.data.collate import batch_examples, collate_padding_free, collate_right_padded
from latent_traits.model.lora_module import LoRAFineTuner
from latent_traits.model.padding_free import (
    ATTENTION_NAME,
    padding_free_unsupported,
    varlen_sdpa_attention,
)
from latent_traits.train.run import train_adapter

pytestmark = pytest.mark.usefixtures("one_thread")
LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, bias="none",
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def examples() -> list[dict[str, list[int]]]:
    """Three examples of different lengths, one with a prompt that carries no loss."""
    torch.manual_seed(3)
    out = []
    for n, masked in ((9, 0), (4, 0), (13, 5)):
        ids = torch.randint(3, 1000, (n,)).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * masked + ids[masked:]})
    return out


def test_collate_lays_examples_end_to_end_with_restarting_positions():
    batch = examples()
    packed = collate_padding_free(batch)
    assert packed["input_ids"].tolist() == [batch[0]["input_ids"] + batch[1]["input_ids"] + batch[2]["input_ids"]]
    assert packed["position_ids"].tolist() == [list(range(9)) + list(range(4)) + list(range(13))]
    assert packed["cu_seq_lens_q"].tolist() == packed["cu_seq_lens_k"].tolist() == [0, 9, 13, 26]
    assert packed["cu_seq_lens_q"].dtype == torch.int32  # what flash-attention kernels take
    assert packed["max_length_q"] == packed["max_length_k"] == 13
    assert batch_examples(packed) == 3
    labels = packed["labels"][0].tolist()
    # each example's first label is dropped (the previous example's last token must not predict it)
    assert labels[0] == labels[9] == labels[13] == IGNORE_INDEX
    assert labels[1:9] == batch[0]["labels"][1:] and labels[10:13] == batch[1]["labels"][1:]
    assert labels[14:] == batch[2]["labels"][1:]
    assert "attention_mask" not in packed  # no pad position anywhere


def loss_and_grads(model, batch, padding_free: bool, fused: bool, checkpointing: bool = False):
    torch.manual_seed(0)  # the same LoRA initialisation every time
    module = LoRAFineTuner(copy.deepcopy(model), LORA, {"lr": 1e-3}, fused_loss=fused,
                           padding_free=padding_free, gradient_checkpointing=checkpointing)
    module.model.train()
    for name, p in module.named_parameters():  # lora_B starts at zero: give it values
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    loss = module.loss(batch)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad}, module


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_padding_free_batch_gives_the_padded_batchs_loss_and_lora_gradients(tiny_tokenizer_and_model, fused,
                                                                             checkpointing):
    tokenizer, model = tiny_tokenizer_and_model
    batch = examples()
    ref_loss, ref_grads, ref_module = loss_and_grads(model, collate_right_padded(batch, tokenizer.pad_token_id),
                                                     False, fused)
    assert ref_module.model.get_base_model().config._attn_implementation != ATTENTION_NAME
    loss, grads, module = loss_and_grads(model, collate_padding_free(batch), True, fused, checkpointing)
    assert module.model.get_base_model().config._attn_implementation == ATTENTION_NAME
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert_lora_grads_close(grads, ref_grads)


def test_examples_do_not_attend_to_each_other(tiny_tokenizer_and_model):
    """Changing one example's tokens leaves the other examples' hidden states as they were."""
    _, model = tiny_tokenizer_and_model
    model = copy.deepcopy(model)
    from latent_traits.model.padding_free import enable_padding_free

    enable_padding_free(model)
    batch = examples()

    def hidden(b):
        packed = collate_padding_free(b)
        with torch.no_grad():
            return model.model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                               cu_seq_lens_q=packed["cu_seq_lens_q"], cu_seq_lens_k=packed["cu_seq_lens_k"],
                               max_length_q=packed["max_length_q"], max_length_k=packed["max_length_k"],
                               use_cache=False).last_hidden_state[0]

    before = hidden(batch)
    changed = copy.deepcopy(batch)
    changed[0]["input_ids"] = [t + 1 for t in changed[0]["input_ids"]]
    after = hidden(changed)
    assert not torch.allclose(before[:9], after[:9])
    torch.testing.assert_close(before[9:], after[9:], rtol=0, atol=1e-6)
    alone = hidden([batch[1]])  # the second example by itself: the same states
    torch.testing.assert_close(before[9:13], alone, rtol=1e-5, atol=1e-5)


def test_varlen_attention_without_segments_is_a_clear_error():
    q = torch.zeros(1, 2, 4, 8)
    with pytest.raises(RuntimeError, match="cu_seq_lens_q"):
        varlen_sdpa_attention(SimpleNamespace(training=True), q, q, q, None)


@pytest.mark.parametrize(("implementation", "supported"), [
    ("sdpa", True), ("eager", True), ("flash_attention_2", True), ("flex_attention", False)])
def test_which_attention_implementations_take_padding_free_batches(implementation, supported):
    model = SimpleNamespace(config=SimpleNamespace(_attn_implementation=implementation),
                            set_attn_implementation=lambda name: None)
    reason = padding_free_unsupported(model)
    assert (reason is None) == supported
    if not supported:
        assert implementation in reason


def test_train_py_adapter_is_the_same_with_and_without_padding(tmp_path):
    """The real composed config, end to end: the same batches, so the same adapter up to fp32
    summation order (a mix of lengths: goat answers are short, inputs vary)."""
    overrides = ["model=tiny_llama", "logger=none", "source_dataset=goat", "trainer.max_steps=3",
                 "data.train_n=12", "data.batch_size=4", "data.max_input_tokens=null"]
    adapters = {}
    for padding_free in (True, False):
        cfg = compose_config("train", [*overrides, f"data.padding_free={str(padding_free).lower()}"],
                             artifacts=tmp_path / str(padding_free))
        result = train_adapter(cfg)
        assert result["status"] == "complete"
        assert result["settings"]["data"]["padding_free"] is padding_free
        adapters[padding_free] = load_file(
            str(tmp_path / str(padding_free) / "adapters/tiny_llama/goat/lora_r8_s0/adapter_model.safetensors"))
    assert set(adapters[True]) == set(adapters[False])
    # not bit-identical: the padding-free path really ran (another order of fp32 sums)
    assert any(not torch.equal(w, adapters[False][k]) for k, w in adapters[True].items())
    for name, weight in adapters[True].items():
        torch.testing.assert_close(weight, adapters[False][name], rtol=1e-4, atol=1e-5)
