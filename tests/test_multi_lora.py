"""Stacked adapters: each row through its own adapter, as peft's mixed adapter batches compute it."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from latent_traits.eval.multi_lora import BASE_ROW, MixedModel, StackedAdapters, unstackable

pytestmark = pytest.mark.usefixtures("one_thread")
# different ranks, scalings (rsLoRA) and target modules: the stacks must line up anyway
CONFIGS = {
    "a": LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    "b": LoraConfig(r=2, lora_alpha=16, use_rslora=True, target_modules=["v_proj", "down_proj"],
                    init_lora_weights=False),
    "c": LoraConfig(r=8, lora_alpha=4, target_modules=["q_proj", "k_proj", "o_proj", "up_proj"],
                    init_lora_weights=False),
}


@pytest.fixture(scope="module")
def peft_model(tiny_tokenizer_and_model):
    _, model = tiny_tokenizer_and_model
    torch.manual_seed(0)
    peft = None
    for name, config in CONFIGS.items():
        if peft is None:
            peft = get_peft_model(copy.deepcopy(model), config, adapter_name=name)
        else:
            peft.add_adapter(name, config)
    assert isinstance(peft, PeftModel)
    return peft.eval()


def test_stacked_rows_equal_peft_mixed_adapter_batches(peft_model):
    torch.manual_seed(1)
    input_ids = torch.randint(3, 1000, (6, 11))
    rows = ["a", "b", BASE_ROW, "c", "a", BASE_ROW]
    with torch.no_grad():
        want = peft_model(input_ids=input_ids, adapter_names=rows).logits
        with StackedAdapters(peft_model, list(CONFIGS)) as stacked:
            got = MixedModel(peft_model, stacked)(input_ids=input_ids, adapter_names=rows).logits
        with peft_model.disable_adapter():
            base = peft_model(input_ids=input_ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got[0], base[0], atol=1e-3)  # the adapters really change the rows
    torch.testing.assert_close(got[2], base[2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [["c", "c", "c"], ["b", "c", "b"], [BASE_ROW, BASE_ROW]])
def test_a_pass_runs_only_the_rank_columns_its_rows_use(peft_model, rows):
    """A batch of one adapter's rows (or the base model's only) runs that adapter's rank alone
    (or no LoRA product), and still gives peft's rows."""
    torch.manual_seed(2)
    input_ids = torch.randint(3, 1000, (len(rows), 7))
    used = [n for n in CONFIGS if n in rows]
    with torch.no_grad():
        want = peft_model(input_ids=input_ids, adapter_names=rows).logits
        with StackedAdapters(peft_model, list(CONFIGS)) as stacked:
            got = MixedModel(peft_model, stacked)(input_ids=input_ids, adapter_names=rows).logits
            order = list(CONFIGS)
            first, last = (order.index(used[0]), order.index(used[-1])) if used else (0, -1)
            spans = [(layer._stacked_span.stop - layer._stacked_span.start, sum(layer_widths[first:last + 1]))
                     for layer, layer_widths in zip(stacked.layers, stacked.widths, strict=True)]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert all(ran == should for ran, should in spans), spans
    assert sum(ran for ran, _ in spans) < sum(sum(w) for w in stacked.widths)  # fewer than all stacked


def test_layers_get_their_own_forward_back(peft_model):
    layer = next(m for m in peft_model.modules() if hasattr(m, "lora_A") and "a" in m.lora_A)
    with StackedAdapters(peft_model, ["a", "c"]):
        assert "forward" in vars(layer)
    assert "forward" not in vars(layer) and not hasattr(layer, "_stacked_a")


def test_a_row_routed_to_an_adapter_outside_the_group_is_refused(peft_model):
    with StackedAdapters(peft_model, ["a"]) as stacked, pytest.raises(ValueError, match=r"\['b'\]"):
        stacked.route(["a", "b"])


def test_dora_adapters_are_left_to_peft(tiny_tokenizer_and_model):
    _, model = tiny_tokenizer_and_model
    peft = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["q_proj"], use_dora=True),
                          adapter_name="d")
    assert "variant" in unstackable(peft, ["d"])


def lora_products(fn) -> dict[str, int]:
    """How many in-place (per adapter run) and fused (stacked, masked) LoRA products a call runs."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    counts = {e.key: e.count for e in prof.key_averages()}
    return {"per_run": counts.get("aten::addmm_", 0), "masked": counts.get("aten::addmm", 0)}


def stacked_against_peft(peft_model, input_ids, rows) -> dict[str, int]:
    """Assert the stacked adapters give peft's rows; the LoRA products they ran (lora_products)."""
    with torch.no_grad():
        want = peft_model(input_ids=input_ids, adapter_names=rows).logits
    with StackedAdapters(peft_model, list(CONFIGS)) as stacked:
        mixed = MixedModel(peft_model, stacked)
        got = mixed(input_ids=input_ids, adapter_names=rows).logits
        ran = lora_products(lambda: mixed(input_ids=input_ids, adapter_names=rows))
    torch.testing.assert_close(got.detach(), want, rtol=1e-4, atol=1e-4)
    return ran


@pytest.mark.parametrize("tokens", [9, 1])
@pytest.mark.parametrize("rows", [["a", "a", "b", BASE_ROW, "c", "c"], ["c", "a", "c", BASE_ROW, "a", "b"]])
def test_prompt_passes_and_decoding_steps_give_peft_rows(peft_model, tokens, rows):
    """A prompt pass (several tokens a row, no gradients) whose rows lie together by adapter runs
    each adapter's rows through its rank block alone; rows interleaved (a product per scattered
    row would cost more) and a decoding step (one token a row) run the masked stack. All give
    peft's rows."""
    torch.manual_seed(3)
    with torch.no_grad():
        ran = stacked_against_peft(peft_model, torch.randint(3, 1000, (len(rows), tokens)), rows)
    if tokens > 1 and rows[0] == rows[1]:  # the grouped order
        assert ran["per_run"] > 0 and ran["masked"] == 0, ran
    else:
        assert ran["per_run"] == 0 and ran["masked"] > 0, ran


def test_with_gradients_the_masked_stack_runs(peft_model):
    """The per-run products write into the base layer's output in place: only without gradients."""
    torch.manual_seed(4)
    ran = stacked_against_peft(peft_model, torch.randint(3, 1000, (3, 5)), ["a", "b", "c"])
    assert ran["per_run"] == 0 and ran["masked"] > 0, ran
