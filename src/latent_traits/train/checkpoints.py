"""Adapter-only Lightning checkpoints beside the adapter directory, and resuming from them."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from latent_traits.errors import LatentTraitsError
from latent_traits.io import atomic_path

log = logging.getLogger(__name__)
LAST = "last.ckpt"


def checkpoint_dir(adapter_dir: Path) -> Path:
    """<adapter dir>.checkpoints: kept apart so an unfinished job never looks like an adapter."""
    return adapter_dir.with_name(adapter_dir.name + ".checkpoints")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written beside their target and renamed into place (Lightning's own writer goes
    through the system temp dir and copies across disks, so a kill could leave half a file), and a
    full disk named as such."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("storage_options are not supported by AtomicCheckpointIO")
        buffer = io.BytesIO()  # torch.save into a file reports a full disk as a RuntimeError
        torch.save(checkpoint, buffer)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())


    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        """Tensors and plain values only (never a pickle's arbitrary objects): a file planted in
        the checkpoint folder cannot run code."""
        return load_weights_only(Path(path))


def load_weights_only(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise LatentTraitsError(
            f"{path} is not a checkpoint latent-traits wrote (it holds more than tensors and plain values, or is "
            f"damaged: {type(err).__name__}); delete it yourself to start that training over") from err


def checkpoint_plugins(strategy: str) -> list:
    """FSDP writes (sharded) checkpoints its own way; every other strategy gets atomic files."""
    return [] if "fsdp" in strategy else [AtomicCheckpointIO()]


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
    """The last checkpoint of an interrupted job with the same settings. The project's own
    checkpoints of other settings are removed; a file it did not write is refused, never deleted."""
    path = directory / LAST
    if not path.is_file():
        return None
    checkpoint = load_weights_only(path)
    stamp = checkpoint.get("latent_traits_settings_hash") if isinstance(checkpoint, dict) else None
    if not isinstance(stamp, str):
        raise LatentTraitsError(f"{path} carries no latent-traits settings stamp, so this project did not write it; "
                                "move it away (or delete it yourself) to start that training over")
    if stamp != settings_hash:
        log.warning("Removing this project's checkpoints of other settings in %s", directory)
        remove_checkpoints(directory)
        return None
    log.info("Resuming from %s", path)
    return str(path)


def remove_checkpoints(directory: Path) -> None:
    """Delete what the checkpointing wrote (last.ckpt, its writes' temporaries), then the folder if
    that leaves it empty: a file someone else put there stays."""
    for entry in (directory / LAST, *directory.glob(f".{LAST}.*.tmp")):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    try:
        directory.rmdir()
    except OSError:
        pass
