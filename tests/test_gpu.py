"""The code paths that need a GPU: bf16 training and evaluation, the fused loss under autocast,
DDP and FSDP strategies, QLoRA. Marked gpu and skipped without CUDA (CI has none); run them with
`pytest -m gpu` on a GPU machine (BENCHMARKS.md says where they last ran)."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from conftest import CACHE_DIR, compose_config
from safetensors.torch import load_file

from latent_traits.io import read_json
from latent_traits.model.factory import load_tokenizer_and_model
from latent_traits.model.lora_module import LoRAFineTuner
from latent_traits.train.run import TRAIN_RESULT, adapter_dir, train_adapter

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
TINY = ["model=tiny_llama", "logger=none", "source_dataset=goat", "data.train_n=16",
        "data.batch_size=4", "trainer.max_steps=4", "train.checkpoint_every_n_steps=2"]
LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", target_modules=["q_proj", "v_proj", "down_proj"])


def trained_lora(cfg) -> dict[str, torch.Tensor]:
    result = train_adapter(cfg)
    assert result["status"] == "complete"
    out = adapter_dir(cfg)
    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert tensors and all("lora_" in k for k in tensors)  # the adapter only, no base weights
    assert all(torch.isfinite(t.float()).all() for t in tensors.values())
    assert any(t.abs().sum() > 0 for k, t in tensors.items() if "lora_B" in k)  # it trained
    return read_json(out / TRAIN_RESULT)


def test_one_gpu_trains_in_bf16(tmp_path):
    result = trained_lora(compose_config("train", TINY + ["trainer=gpu"], tmp_path))
    assert result["settings"]["trainer"]["precision"] == "bf16-mixed"
    assert result["final_loss"] is not None


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_distributed_strategy_presets_train_on_one_gpu(tmp_path, strategy):
    cfg = compose_config("train", TINY + [f"trainer={strategy}", "trainer.devices=1"], tmp_path)
    trained_lora(cfg)


def bf16_loss_and_grads(model, batch: dict, **module_kwargs) -> tuple[float, torch.Tensor]:
    """One bf16-autocast loss and its LoRA gradients (flattened), from a fixed LoRA initialisation."""
    torch.manual_seed(0)
    module = LoRAFineTuner(copy.deepcopy(model), LORA, {"lr": 1e-3}, **module_kwargs).cuda()
    for name, p in module.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = module.loss(batch)
    loss.backward()
    return loss.item(), torch.cat([p.grad.float().flatten() for p in module.parameters() if p.requires_grad])


def assert_close_in_bf16(a: tuple[float, torch.Tensor], b: tuple[float, torch.Tensor]) -> None:
    assert b[0] == pytest.approx(a[0], rel=1e-2)
    assert torch.nn.functional.cosine_similarity(a[1], b[1], dim=0) > 0.99


def test_fused_loss_matches_the_models_loss_under_bf16_autocast():
    cfg = compose_config("train", ["model=tiny_llama"]).model
    _, model = load_tokenizer_and_model(dict(cfg), CACHE_DIR)
    torch.manual_seed(0)
    batch = {"input_ids": torch.randint(3, 1000, (4, 64))}
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    batch["labels"] = batch["input_ids"].clone()
    batch["labels"][:, :10] = -100
    assert_close_in_bf16(bf16_loss_and_grads(model, batch, fused_loss=False),
                         bf16_loss_and_grads(model, batch, fused_loss=True))


def test_evaluation_runs_on_the_gpu(tmp_path):
    from latent_traits.eval.runner import evaluate_all

    cfg = compose_config("evaluate", ["model=tiny_llama", "target_task=[goat]", "eval.n=8",
                                      "+eval.allow_base_only=true"], tmp_path)
    written = evaluate_all(cfg)
    record = read_json(written[0])
    assert record["status"] == "complete" and record["data"]["n"] == 8


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="QLoRA needs bitsandbytes")
def test_qlora_trains_an_adapter_on_a_4bit_base(tmp_path):
    tokenizer, model = load_tokenizer_and_model(dict(compose_config("train", ["model=tiny_llama"]).model), CACHE_DIR)
    base = tmp_path / "tiny_base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    overrides = TINY + ["trainer=gpu", "model.source=local", f"+model.path={base}", "model.quantization=4bit"]
    result = trained_lora(compose_config("train", overrides, tmp_path))
    assert result["settings"]["model"]["quantization"] == "4bit"


def test_padding_free_batch_matches_the_padded_one_under_bf16_autocast():
    """The per-example SDPA on CUDA kernels: loss and LoRA gradients as the right-padded batch's."""
    from latent_traits.data.collate import collate_padding_free, collate_right_padded

    cfg = compose_config("train", ["model=tiny_llama"]).model
    tokenizer, model = load_tokenizer_and_model(dict(cfg), CACHE_DIR)
    torch.manual_seed(0)
    examples = [{"input_ids": ids, "labels": ids} for ids in
                (torch.randint(3, 1000, (n,)).tolist() for n in (40, 17, 64, 9))]
    assert_close_in_bf16(
        bf16_loss_and_grads(model, collate_right_padded(examples, tokenizer.pad_token_id), padding_free=False),
        bf16_loss_and_grads(model, collate_padding_free(examples), padding_free=True))


def test_mixed_adapter_batches_on_the_gpu(tmp_path):
    from eval_helpers import make_adapter

    from latent_traits.eval.runner import evaluate_all

    tiny = compose_config("train", ["model=tiny_llama"]).model
    for source in ("imdb", "goat"):
        make_adapter(tmp_path / "adapters", dict(tiny), source)
    written = evaluate_all(compose_config("evaluate", ["model=tiny_llama", "target_task=[imdb,goat]", "eval.n=6",
                                                       "eval.decoding.max_new_tokens_cap=8"], tmp_path))
    records = [read_json(p) for p in written]
    assert len(records) == 6 and all(r["timing"]["cells_decoded_together"] == 3 for r in records)
