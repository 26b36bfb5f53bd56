"""The fused, chunked causal-LM loss equals transformers' loss and gradients."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_lora_grads_close

from latent_traits.model.fused_loss import linear_cross_entropy
from latent_traits.model.lora_module import LoRAFineTuner

pytestmark = pytest.mark.usefixtures("one_thread")
LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", target_modules=["q_proj", "v_proj", "down_proj"])


def padded_batch() -> dict[str, torch.Tensor]:
    """Two rows, the second right-padded, with a masked prompt: labels -100 in several places."""
    torch.manual_seed(1)
    input_ids = torch.randint(3, 1000, (2, 12))
    attention_mask = torch.ones(2, 12, dtype=torch.long)
    attention_mask[1, 9:] = 0
    labels = input_ids.clone()
    labels[attention_mask == 0] = -100
    labels[:, :4] = -100  # a prompt without loss (loss_span=response)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def loss_and_grads(model, fused: bool, batch, chunk: int | None = None):
    torch.manual_seed(0)  # the same LoRA initialisation every time
    module = LoRAFineTuner(copy.deepcopy(model), LORA, {"lr": 1e-3}, fused_loss=fused)
    for name, p in module.named_parameters():  # lora_B starts at zero: give it values
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    if chunk is not None:
        from latent_traits.model import fused_loss

        causal_lm = module.model.get_base_model()
        hidden = causal_lm.model(input_ids=batch["input_ids"],
                                 attention_mask=batch["attention_mask"]).last_hidden_state
        loss = fused_loss.linear_cross_entropy(hidden, causal_lm.lm_head.weight, batch["labels"], chunk)
    else:
        loss = module.loss(batch)
    loss.backward()
    return module, loss.item(), {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("chunk", [None, 1, 5])
def test_fused_loss_and_lora_gradients_equal_the_models_own(tiny_tokenizer_and_model, chunk):
    _, model = tiny_tokenizer_and_model
    batch = padded_batch()
    module, reference, reference_grads = loss_and_grads(model, False, batch)
    assert not module.fused_loss
    fused_module, loss, grads = loss_and_grads(model, True, batch, chunk)
    assert fused_module.fused_loss
    assert loss == pytest.approx(reference, rel=1e-6)
    assert_lora_grads_close(grads, reference_grads)


def test_trainable_head_weight_gets_the_cross_entropy_gradient():
    torch.manual_seed(0)
    hidden = torch.randn(3, 6, 8, requires_grad=True)
    weight = torch.randn(11, 8, requires_grad=True)
    labels = torch.randint(0, 11, (3, 6))
    labels[0, 2:] = -100
    loss = linear_cross_entropy(hidden, weight, labels, chunk_tokens=4)
    loss.backward()
    hidden2, weight2 = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    logits = hidden2 @ weight2.T
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
    expected.backward()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(hidden.grad, hidden2.grad)
    torch.testing.assert_close(weight.grad, weight2.grad)


def test_no_labelled_position_gives_nan_as_transformers_does():
    hidden = torch.randn(1, 4, 8)
    labels = torch.full((1, 4), -100)
    assert torch.isnan(linear_cross_entropy(hidden, torch.randn(5, 8), labels))


def test_an_adapter_on_the_output_head_falls_back_to_the_models_loss(tiny_tokenizer_and_model):
    _, model = tiny_tokenizer_and_model
    lora = {**LORA, "target_modules": ["q_proj", "lm_head"]}
    module = LoRAFineTuner(copy.deepcopy(model), lora, {"lr": 1e-3}, fused_loss=True)
    assert not module.fused_loss
    assert torch.isfinite(module.loss(padded_batch()))
