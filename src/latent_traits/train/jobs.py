"""A training job inside a sweep: failures are recorded and the sweep goes on; DDP is launched safely."""

from __future__ import annotations

import logging
import os
import traceback
from typing import Any

from omegaconf import DictConfig

from latent_traits.errors import (
    ConfigError,
    CorruptArtifactError,
    LatentTraitsError,
    OutputWriteError,
)
from latent_traits.io import provenance, read_json, write_json
from latent_traits.redact import redact
from latent_traits.train.run import TRAIN_RESULT, adapter_dir, adapter_id, train_adapter

log = logging.getLogger(__name__)


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def refuse_ddp_relaunch_in_multirun(cfg: DictConfig) -> None:
    """Lightning's DDP launcher re-executes the command line: inside a Hydra multirun each rank
    would re-run the whole sweep. Ranks must come from outside (torchrun, srun) or ddp_spawn."""
    trainer = cfg.trainer
    strategy = str(trainer.get("strategy", "auto"))
    devices = trainer.get("devices", 1)
    several = devices in (-1, "auto") or (str(devices).isdigit() and int(devices) > 1)
    launched_outside = "LOCAL_RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1
    if in_multirun() and several and strategy.startswith(("ddp", "fsdp")) and "spawn" not in strategy \
            and not launched_outside:
        raise LatentTraitsError(
            f"trainer.strategy={strategy} with {devices} devices inside a Hydra multirun would re-run "
            "the whole sweep on every rank; launch ranks outside the script (torchrun --nproc_per_node=N "
            "train.py -m ..., or srun) or use trainer.strategy=ddp_spawn"
        )


def pin_gpu_per_job(cfg: DictConfig) -> None:
    """launcher=local_gpus: parallel job k trains on GPU k mod #GPUs."""
    if not cfg.train.get("pin_gpu_per_job"):
        return
    import torch
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    n_gpus = torch.cuda.device_count()
    if n_gpus == 0:
        raise LatentTraitsError("launcher=local_gpus pins one GPU per job, but no CUDA device is visible")
    job_num = HydraConfig.get().job.num if HydraConfig.initialized() else 0
    with open_dict(cfg):
        cfg.trainer.accelerator = "gpu"
        cfg.trainer.devices = [job_num % n_gpus]


def record_failure(cfg: DictConfig, err: BaseException) -> None:
    """Write status=failed (with the error) unless a finished adapter already lives there."""
    result_path = adapter_dir(cfg) / TRAIN_RESULT
    if result_path.is_file() and read_json(result_path).get("status") == "complete":
        return
    write_json(result_path, redact({  # the error text may quote a config value
        "status": "failed", "adapter_id": adapter_id(cfg),
        "model": {"name": cfg.model.name, "source": cfg.model.source},
        "source_dataset": cfg.source_dataset.name,
        "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=20),
        **provenance(),
    }))


def run_training_job(cfg: DictConfig) -> dict[str, Any] | None:
    """Train one adapter. In a sweep a failure is recorded and the next job runs
    (train.fail_fast=true stops instead); a single run fails loudly."""
    try:
        refuse_ddp_relaunch_in_multirun(cfg)
        pin_gpu_per_job(cfg)
        return train_adapter(cfg)
    except Exception as err:
        try:
            # a config error writes nothing (README "Errors"); a damaged result is left for the user
            if not isinstance(err, ConfigError | CorruptArtifactError):
                record_failure(cfg, err)
        except OutputWriteError as write_err:  # a full disk or unwritable folder: report the first error
            log.error("Could not record the failure: %s", write_err)
        # a full disk or an unwritable folder would fail every later job of the sweep the same way
        if cfg.train.fail_fast or not in_multirun() or isinstance(err, OutputWriteError):
            raise
        where = "not recorded" if isinstance(err, ConfigError | CorruptArtifactError) \
            else f"recorded in {adapter_dir(cfg) / TRAIN_RESULT}"
        log.error("Job %s failed (%s); the sweep goes on: %s", adapter_id(cfg), where, err)
        return None
