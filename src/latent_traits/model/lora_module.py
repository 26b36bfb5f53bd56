"""The LightningModule: a peft LoRA-adapted causal LM, AdamW and a warmup + cosine schedule."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import torch
from peft import LoraConfig, get_peft_model
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

from latent_traits.data.collate import batch_examples, batch_tokens
from latent_traits.errors import LatentTraitsError
from latent_traits.model.fused_loss import causal_lm_loss, fused_loss_unsupported
from latent_traits.model.padding_free import enable_padding_free

log = logging.getLogger(__name__)
PEFT_TASK_TYPE = "CAUSAL_LM"
NON_PEFT_KEYS = ("name",)


def build_lora_config(lora_cfg: dict[str, Any]) -> LoraConfig:
    kwargs = {k: v for k, v in lora_cfg.items() if k not in NON_PEFT_KEYS}
    try:
        return LoraConfig(task_type=PEFT_TASK_TYPE, **kwargs)
    except TypeError as err:
        raise LatentTraitsError(f"lora config: {err}; see conf/lora/default.yaml for valid keys") from err


class LoRAFineTuner(L.LightningModule):
    def __init__(self, base_model, lora_cfg: dict[str, Any], optim_cfg: dict[str, Any],
                 gradient_checkpointing: bool = False, quantized: bool = False,
                 fused_loss: bool = True, padding_free: bool = False):
        super().__init__()
        if quantized:  # QLoRA: fp32 norms and head inputs for stable k-bit training
            from peft import prepare_model_for_kbit_training

            base_model = prepare_model_for_kbit_training(
                base_model, use_gradient_checkpointing=gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False})
        elif gradient_checkpointing:
            # non-reentrant checkpointing: with the reentrant variant and a frozen base, no input
            # of a checkpointed block requires grad, so LoRA weights silently get no gradient
            base_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            base_model.enable_input_require_grads()
            base_model.config.use_cache = False
        if padding_free:  # the data module collates padding-free batches (padding_free.py)
            enable_padding_free(base_model)
        self.model = get_peft_model(base_model, build_lora_config(lora_cfg))
        self.fused_loss = fused_loss
        if fused_loss and (why := fused_loss_unsupported(self.model.get_base_model())):
            log.info("Using the model's own loss (train.fused_loss does not apply: %s)", why)
            self.fused_loss = False
        self.strict_loading = False  # checkpoints hold the adapter only, not the frozen base
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps modules' modes
        self.optim_cfg = dict(optim_cfg)
        self.tokens_seen = 0
        self.last_loss: float | None = None
        self._step_started = time.perf_counter()

    def forward(self, **batch):
        return self.model(**batch)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.fused_loss:
            return causal_lm_loss(self.model.get_base_model(), batch)
        return self.model(**batch).loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        if not torch.isfinite(loss):
            raise LatentTraitsError(
                f"training loss became {loss.item()} at step {self.global_step}; lower optim.lr or "
                "check the data (an empty answer span gives NaN with loss_span=response)"
            )
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "sampler"):
            datamodule.sampler.consumed += 1  # the data position a checkpoint resumes from
        tokens = batch_tokens(batch)
        self.tokens_seen += tokens
        now = time.perf_counter()
        tokens_per_s = tokens / max(now - self._step_started, 1e-9)
        self._step_started = now
        self.last_loss = float(loss.detach())
        self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=batch_examples(batch))
        self.log("train/tokens_per_s", tokens_per_s, prog_bar=True, on_step=True)
        return loss

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Lightning's FSDP precision plugin refuses norm clipping; the FSDP module clips its
        sharded gradients by their global norm itself."""
        from lightning.pytorch.strategies import FSDPStrategy

        if (gradient_clip_val and gradient_clip_algorithm in (None, "norm")
                and isinstance(self.trainer.strategy, FSDPStrategy)):
            self.trainer.model.clip_grad_norm_(gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only trainable (LoRA) tensors: a checkpoint never holds frozen base weights."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint["tokens_seen"] = self.tokens_seen

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokens_seen = int(checkpoint.get("tokens_seen", 0))

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.optim_cfg["lr"],
                                      weight_decay=self.optim_cfg.get("weight_decay", 0.0))
        total = self.trainer.estimated_stepping_batches
        warmup = self.optim_cfg.get("warmup_steps", 0)
        scheduler_name = self.optim_cfg.get("scheduler", "cosine")
        if scheduler_name == "cosine":
            scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total)
        elif scheduler_name == "constant":
            scheduler = get_constant_schedule_with_warmup(optimizer, warmup)
        else:
            raise LatentTraitsError(f"optim.scheduler={scheduler_name!r}: use cosine or constant")
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
