"""Adapter-only Lightning checkpoints beside the adapter directory, and resuming from them."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

log = logging.getLogger(__name__)
LAST = "last.ckpt"


def checkpoint_dir(adapter_dir: Path) -> Path:
    """<adapter dir>.checkpoints: kept apart so an unfinished job never looks like an adapter."""
    return adapter_dir.with_name(adapter_dir.name + ".checkpoints")


class SettingsStamp(Callback):
    """Writes the job's settings hash into every checkpoint, so a resume never mixes settings."""

    def __init__(self, settings_hash: str):
        self.settings_hash = settings_hash

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        checkpoint["latent_traits_settings_hash"] = self.settings_hash


def checkpoint_callbacks(directory: Path, every_n_steps: int | None, settings_hash: str) -> list[Callback]:
    if not every_n_steps:
        return [SettingsStamp(settings_hash)]
    saver = ModelCheckpoint(dirpath=str(directory), filename=Path(LAST).stem, every_n_train_steps=every_n_steps,
                            save_top_k=1, enable_version_counter=False, save_on_train_epoch_end=False)
    return [SettingsStamp(settings_hash), saver]


def resumable_checkpoint(directory: Path, settings_hash: str) -> str | None:
    """The last checkpoint of an interrupted job with the same settings; stale ones are removed."""
    path = directory / LAST
    if not path.is_file():
        return None
    try:
        stamp = torch.load(path, map_location="cpu", weights_only=False).get("latent_traits_settings_hash")
    except Exception as err:  # a damaged file: start over rather than fail
        log.warning("Ignoring unreadable checkpoint %s (%s)", path, err)
        stamp = None
    if stamp != settings_hash:
        log.warning("Removing checkpoints of other settings in %s", directory)
        shutil.rmtree(directory, ignore_errors=True)
        return None
    log.info("Resuming from %s", path)
    return str(path)
