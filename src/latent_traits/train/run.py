"""One training job: a LoRA adapter for (model, source dataset, LoRA config, seed)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from latent_traits.config import check_against_model, model_record, model_settings, to_plain
from latent_traits.contracts import TRAIN_RESULT
from latent_traits.data.datamodule import SourceDataModule
from latent_traits.data.load import describe_examples, load_examples
from latent_traits.data.spec import PromptFormat, TaskSpec
from latent_traits.errors import LatentTraitsError
from latent_traits.io import (
    atomic_path,
    ensure_writable,
    provenance,
    read_json,
    stable_hash,
    write_json,
)
from latent_traits.locks import exclusive
from latent_traits.model.factory import load_tokenizer_and_model
from latent_traits.model.lora_module import LoRAFineTuner
from latent_traits.model.padding_free import padding_free_unsupported
from latent_traits.model.transformers_shims import loaded_commit
from latent_traits.redact import redact
from latent_traits.rerun import task_overrides, train_command
from latent_traits.safe_paths import check_name, check_replaceable, inside
from latent_traits.train.checkpoints import (
    checkpoint_callbacks,
    checkpoint_dir,
    checkpoint_plugins,
    remove_checkpoints,
    resumable_checkpoint,
)

log = logging.getLogger(__name__)
# what an adapter folder holds (peft's files and the result), so a rerun may replace it
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "README.md", TRAIN_RESULT)


def adapter_id(cfg: DictConfig) -> str:
    """<source>/<lora name>_r<r>_s<seed>[_<tag>]: stable, readable, one per sweep point."""
    name = f"{check_name(cfg.lora.name, 'lora.name')}_r{cfg.lora.r}_s{cfg.seed}"
    if cfg.get("tag"):
        name += f"_{check_name(cfg.tag, 'tag')}"
    return f"{check_name(cfg.source_dataset.name, 'source_dataset.name')}/{name}"


def adapter_dir(cfg: DictConfig) -> Path:
    """paths.adapters_dir/<model>/<adapter id>, every name checked and the whole kept inside."""
    return inside(cfg.paths.adapters_dir, check_name(cfg.model.name, "model.name"), *adapter_id(cfg).split("/"))


def training_settings(cfg: DictConfig) -> dict[str, Any]:
    """Everything that changes the trained weights; its hash decides whether a job is done."""
    trainer = to_plain(cfg.trainer)
    data = to_plain(cfg.data)
    if data.get("overlong") == "refuse":  # the default changes no weights: adapters trained before it stay done
        data.pop("overlong")
    if PromptFormat.from_config(data.get("prompt")).is_default:  # likewise the default prompt format
        data.pop("prompt", None)
    return {
        "model": model_settings(cfg.model), "source_dataset": to_plain(cfg.source_dataset),
        "lora": to_plain(cfg.lora), "optim": to_plain(cfg.optim), "data": data,
        "seed": cfg.seed, "fused_loss": bool(cfg.train.get("fused_loss", True)),
        "trainer": {k: trainer.get(k) for k in ("max_steps", "max_epochs", "accumulate_grad_batches",
                                                "gradient_clip_val", "precision")},
    }


def finished_result(out_dir: Path, settings_hash: str, overwrite: bool) -> dict[str, Any] | None:
    result_path = out_dir / TRAIN_RESULT
    if overwrite or not result_path.is_file():
        return None
    result = read_json(result_path, fix=f"delete the folder {out_dir} and rerun train.py to train that adapter "
                                        "again (or restore the file from a copy)")
    if result.get("status") != "complete":
        return None
    if result.get("settings_hash") != settings_hash:
        raise LatentTraitsError(
            f"{out_dir} already holds an adapter trained with other settings "
            f"(settings hash {result.get('settings_hash')} vs {settings_hash}); keep both with "
            "tag=<name>, or replace it with train.overwrite=true"
        )
    return result


def build_logger(cfg: DictConfig):
    logger_cfg = cfg.get("logger")
    if not logger_cfg or "_target_" not in logger_cfg:
        return None
    logger = instantiate(logger_cfg)
    logger.log_hyperparams(redact(to_plain(cfg)))
    return logger


def finish_logger(logger) -> None:
    if logger is not None and type(logger).__name__ == "WandbLogger":
        import wandb

        wandb.finish()


def train_adapter(cfg: DictConfig) -> dict[str, Any]:
    """Train (or skip, when finished) one adapter; return its train_result. A second process on
    the same adapter waits for the first, then finds it finished and skips it."""
    rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
    if rank != 0:  # the ranks of one distributed job train together: rank 0 holds the lock
        return train_unlocked(cfg)
    with exclusive(adapter_dir(cfg), f"adapter {adapter_id(cfg)}"):
        return train_unlocked(cfg)


def settings_hash_of(settings: dict[str, Any]) -> str:
    """The hash that decides whether an adapter is done: its settings less source_dataset.pairs_with,
    which only tells the analysis what the adapter stands for (adapters trained before it stay done)."""
    source = {k: v for k, v in settings["source_dataset"].items() if k != "pairs_with"}
    return stable_hash({**settings, "source_dataset": source})


def train_unlocked(cfg: DictConfig) -> dict[str, Any]:
    settings = training_settings(cfg)
    settings_hash = settings_hash_of(settings)
    out_dir = adapter_dir(cfg)
    done = finished_result(out_dir, settings_hash, bool(cfg.train.overwrite))
    if done is not None:
        log.info("Skipping %s: a finished adapter with the same settings exists", out_dir)
        return done
    # the finished adapter replaces this folder whole: only one of this project's own
    check_replaceable(out_dir, "the adapter folder", ADAPTER_FILES, fix="train this adapter under another tag=<name>")
    ensure_writable(out_dir.parent)  # the adapter and its checkpoints go here: fail before any work

    spec = TaskSpec.from_config(cfg.source_dataset.task).with_prompt_format(cfg.data.get("prompt"))
    examples, data_provenance = load_examples(
        spec, split=cfg.source_dataset.split, n=cfg.source_dataset.n, seed=cfg.seed,
        source=cfg.data.source, local_path=cfg.data.local_path, test_fraction=cfg.data.test_fraction,
        transforms=to_plain(cfg.source_dataset.get("transforms")),
    )
    tokenizer, base_model = load_tokenizer_and_model(to_plain(cfg.model), cfg.paths.cache_dir)
    check_against_model(cfg, base_model)  # rank, lengths and target modules against the real model
    # seeded after loading: a first-time model conversion draws random numbers, and the LoRA
    # initialisation and data order must not depend on whether the cache was warm
    L.seed_everything(cfg.seed, workers=True)
    padding_free = bool(cfg.data.get("padding_free", True))
    if padding_free and (why := padding_free_unsupported(base_model)):
        log.info("Training on right-padded batches (data.padding_free does not apply: %s)", why)
        padding_free = False
    datamodule = SourceDataModule(
        spec, examples, tokenizer, batch_size=cfg.data.batch_size, max_length=cfg.data.max_length,
        max_input_tokens=cfg.data.max_input_tokens, loss_span=cfg.data.loss_span, seed=cfg.seed,
        num_workers=cfg.data.num_workers, group_by_length=bool(cfg.data.group_by_length),
        packing=bool(cfg.data.get("packing", False)), padding_free=padding_free,
        overlong=cfg.data.get("overlong", "refuse"),
    )
    examples = datamodule.examples
    if datamodule.dropped:  # data.overlong=drop: the adapter's record names the examples it trained on
        data_provenance = {**data_provenance, **describe_examples(spec, examples),
                           "dropped_overlong": datamodule.dropped}
    module = LoRAFineTuner(base_model, to_plain(cfg.lora), to_plain(cfg.optim),
                           gradient_checkpointing=bool(cfg.train.gradient_checkpointing),
                           quantized=bool(cfg.model.get("quantization")),
                           fused_loss=bool(cfg.train.get("fused_loss", True)), padding_free=padding_free)
    trainable, total = module.model.get_nb_trainable_parameters()
    log.info("Training %s on %d examples (%d tokens); %d of %d parameters trainable",
             adapter_id(cfg), len(examples), datamodule.n_tokens, trainable, total)

    ckpt_dir = checkpoint_dir(out_dir)
    resume_from = resumable_checkpoint(ckpt_dir, settings_hash)
    logger = build_logger(cfg)
    started = time.perf_counter()
    try:
        trainer = instantiate(
            cfg.trainer, logger=logger if logger is not None else False,
            default_root_dir=cfg.paths.output_dir,
            callbacks=checkpoint_callbacks(ckpt_dir, cfg.train.checkpoint_every_n_steps, settings_hash),
            plugins=checkpoint_plugins(str(cfg.trainer.get("strategy", "auto"))),
        )
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
        if trainer.global_step == 0:  # e.g. max_epochs over no batch: never call that adapter complete
            raise LatentTraitsError(f"training {adapter_id(cfg)} ran no optimizer step (trainer.max_steps="
                                    f"{cfg.trainer.max_steps}, trainer.max_epochs={cfg.trainer.get('max_epochs')}, "
                                    f"{len(examples)} examples): give it steps, e.g. trainer.max_steps=16")
        wall_time = time.perf_counter() - started
        result = train_result(cfg, spec, settings, settings_hash, data_provenance, module, trainer,
                              wall_time, resumed_from=resume_from)
        if trainer.is_global_zero:
            with atomic_path(out_dir) as tmp:
                module.model.save_pretrained(str(tmp))
                write_json(tmp / TRAIN_RESULT, result)
            remove_checkpoints(ckpt_dir)
            if cfg.train.get("log_adapter_artifact") and logger is not None:
                log_adapter_artifact(logger, out_dir, result)
    finally:
        finish_logger(logger)
    log.info("Adapter written to %s (final loss %.4f, %.1f s)", out_dir, module.last_loss or float("nan"), wall_time)
    return result


def train_result(cfg, spec, settings, settings_hash, data_provenance, module, trainer, wall_time,
                 resumed_from) -> dict[str, Any]:
    trainable, total = module.model.get_nb_trainable_parameters()
    return redact({  # written and logged: no secret may reach it (latent_traits.redact)
        "status": "complete",
        "adapter_id": adapter_id(cfg),
        "model": {**model_record(cfg.model), "loaded_commit": loaded_commit(module.model)},
        "source_dataset": spec.name,
        "task": spec.to_record(),
        "settings_hash": settings_hash,
        "settings": settings,
        "config": to_plain(cfg),  # the whole resolved job config, to rerun it exactly
        "rerun": train_command(task_overrides()),  # the command line that recreates this adapter
        "data": data_provenance,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "steps": int(trainer.global_step),
        "world_size": int(trainer.world_size),  # DDP/FSDP ranks: each step saw batch_size x this
        "tokens_seen": module.tokens_seen,  # on this rank (rank 0 writes the result)
        "final_loss": module.last_loss,
        "wall_time_s": round(wall_time, 2),
        "tokens_per_s": round(module.tokens_seen / max(wall_time, 1e-9), 1),
        "resumed_from": resumed_from,
        **provenance(),
    })


def log_adapter_artifact(logger, out_dir: Path, result: dict[str, Any]) -> None:
    if type(logger).__name__ != "WandbLogger":
        return
    import wandb

    artifact = wandb.Artifact(name=result["adapter_id"].replace("/", "-"), type="lora-adapter",
                              metadata={k: result[k] for k in ("settings_hash", "data", "steps", "final_loss")})
    artifact.add_dir(str(out_dir))
    logger.experiment.log_artifact(artifact)
