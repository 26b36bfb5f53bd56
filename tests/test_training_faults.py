"""Training faults: resume after a kill, failure records in a sweep, NaN losses, checkpoint contents,
gradient checkpointing, and the DDP-inside-multirun guard."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import REPO, compose_config
from safetensors.torch import load_file

import latent_traits.train.run as run
from latent_traits.errors import LatentTraitsError
from latent_traits.model.lora_module import LoRAFineTuner
from latent_traits.train import jobs
from latent_traits.train.checkpoints import LAST, checkpoint_dir
from latent_traits.train.run import TRAIN_RESULT, adapter_dir, train_adapter

# 12 examples in batches of 4: 3 batches an epoch, so step 4 (the last checkpoint before the
# kill at step 5) lies mid-epoch
RESUMABLE = ["model=tiny_llama", "logger=none", "source_dataset=goat", "data.train_n=12",
             "data.batch_size=4", "trainer.max_steps=7", "train.checkpoint_every_n_steps=2"]
LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", target_modules=["q_proj", "v_proj"])


pytestmark = pytest.mark.usefixtures("one_thread")


class KillAtStep(L.Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            raise KeyboardInterrupt  # what a kill looks like to the training loop


def interrupt(cfg, step: int, monkeypatch) -> None:
    """Run train_adapter until a kill at `step`, leaving its checkpoints behind."""
    original = run.checkpoint_callbacks
    monkeypatch.setattr(run, "checkpoint_callbacks", lambda *a: original(*a) + [KillAtStep(step)])
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        train_adapter(cfg)
    monkeypatch.setattr(run, "checkpoint_callbacks", original)


def test_resumed_run_ends_with_the_same_adapter_as_an_uninterrupted_one(tmp_path, monkeypatch):
    whole = compose_config("train", RESUMABLE, artifacts=tmp_path / "whole")
    train_adapter(whole)

    cut = compose_config("train", RESUMABLE, artifacts=tmp_path / "cut")
    interrupt(cut, 5, monkeypatch)
    assert not adapter_dir(cut).exists()  # nothing half-written where the adapter goes
    assert (checkpoint_dir(adapter_dir(cut)) / LAST).is_file()

    result = train_adapter(cut)
    assert result["resumed_from"] and result["steps"] == 7
    assert not checkpoint_dir(adapter_dir(cut)).exists()  # cleaned up once the adapter is written
    a = load_file(str(adapter_dir(whole) / "adapter_model.safetensors"))
    b = load_file(str(adapter_dir(cut) / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_hold_the_adapter_only(tmp_path, monkeypatch):
    cfg = compose_config("train", RESUMABLE, artifacts=tmp_path)
    interrupt(cfg, 3, monkeypatch)
    checkpoint = torch.load(checkpoint_dir(adapter_dir(cfg)) / LAST, map_location="cpu", weights_only=True)
    keys = list(checkpoint["state_dict"])
    assert keys and all("lora_" in k for k in keys)
    assert checkpoint["latent_traits_settings_hash"]


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path, monkeypatch):
    cfg = compose_config("train", RESUMABLE, artifacts=tmp_path)
    interrupt(cfg, 3, monkeypatch)
    changed = compose_config("train", [*RESUMABLE, "optim.lr=1e-4"], artifacts=tmp_path)
    assert train_adapter(changed)["resumed_from"] is None


def test_gradient_checkpointing_still_trains_the_adapter(tiny_tokenizer_and_model):
    tokenizer, model = tiny_tokenizer_and_model
    batch = {"input_ids": torch.randint(0, 1000, (2, 16)), "attention_mask": torch.ones(2, 16, dtype=torch.long)}
    batch["labels"] = batch["input_ids"].clone()
    losses, grads = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)  # the same LoRA initialisation both times
        module = LoRAFineTuner(copy.deepcopy(model), LORA, {"lr": 1e-3}, gradient_checkpointing=checkpointing)
        for name, p in module.named_parameters():  # lora_B starts at zero: give it values
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.02)
        loss = module.loss(batch)  # the fused loss through checkpointed layers
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad})
    assert abs(losses[0] - losses[1]) < 1e-5
    assert all(g.abs().sum() > 0 for g in grads[1].values())  # every LoRA matrix got a gradient
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])


def test_a_non_finite_loss_stops_the_job_with_a_clear_message(tiny_tokenizer_and_model):
    _, model = tiny_tokenizer_and_model
    module = LoRAFineTuner(copy.deepcopy(model), LORA, {"lr": 1e-3})
    module.loss = lambda batch: torch.tensor(float("nan"))
    batch = {"input_ids": torch.ones(1, 4, dtype=torch.long), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with pytest.raises(LatentTraitsError, match="loss became nan"):
        module.training_step(batch, 0)


def run_sweep(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    # goat is a generation task, so class balancing fails for it; imdb trains normally
    args = ["-m", "model=tiny_llama", "logger=none", "source_dataset=goat,imdb",
            "source_dataset.transforms.class_ratio=balanced", "trainer.max_steps=1", "data.train_n=8",
            "data.batch_size=4", *extra]
    env = {**os.environ, "LATENT_TRAITS_ARTIFACTS": str(tmp_path / "artifacts")}
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_failed_job_leaves_a_failure_record_and_the_sweep_goes_on(tmp_path):
    proc = run_sweep(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    adapters = tmp_path / "artifacts/adapters/tiny_llama"
    failed = json.loads((adapters / "goat/lora_r8_s0" / TRAIN_RESULT).read_text())
    assert failed["status"] == "failed" and "classification tasks only" in failed["error"]
    assert json.loads((adapters / "imdb/lora_r8_s0" / TRAIN_RESULT).read_text())["status"] == "complete"


def test_fail_fast_stops_the_sweep(tmp_path):
    proc = run_sweep(tmp_path, "train.fail_fast=true")
    assert proc.returncode != 0
    assert not (tmp_path / "artifacts/adapters/tiny_llama/imdb").exists()


def test_ddp_inside_a_multirun_is_refused_unless_ranks_come_from_outside(tmp_path, monkeypatch):
    cfg = compose_config("train", ["model=tiny_llama", "trainer=ddp", "trainer.devices=4"], artifacts=tmp_path)
    monkeypatch.setattr(jobs, "in_multirun", lambda: True)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(LatentTraitsError, match="torchrun"):
        jobs.refuse_ddp_relaunch_in_multirun(cfg)
    monkeypatch.setenv("LOCAL_RANK", "0")  # launched by torchrun: fine
    jobs.refuse_ddp_relaunch_in_multirun(cfg)
    spawn = compose_config("train", ["model=tiny_llama", "trainer=ddp", "trainer.devices=4",
                                     "trainer.strategy=ddp_spawn"], artifacts=tmp_path)
    monkeypatch.delenv("LOCAL_RANK")
    jobs.refuse_ddp_relaunch_in_multirun(spawn)


def test_packing_fills_blocks_and_keeps_every_token():
    from latent_traits.data.datamodule import pack_examples

    encoded = [{"input_ids": list(range(i, i + n)), "labels": [-100] * 2 + list(range(i + 2, i + n))}
               for i, n in ((0, 5), (100, 7), (200, 3))]
    packed = pack_examples(encoded, max_length=6)
    assert [len(b["input_ids"]) for b in packed] == [6, 6, 3]
    assert [t for b in packed for t in b["input_ids"]] == [t for e in encoded for t in e["input_ids"]]
    assert [t for b in packed for t in b["labels"]] == [t for e in encoded for t in e["labels"]]


def test_quantization_without_a_gpu_is_a_clear_error():
    from latent_traits.model.factory import quantization_kwargs

    assert quantization_kwargs(None) == {}
    with pytest.raises(LatentTraitsError, match="4bit, 8bit or null"):
        quantization_kwargs("2bit")
    if not torch.cuda.is_available():
        with pytest.raises(LatentTraitsError, match="CUDA GPU"):
            quantization_kwargs("4bit")


class Payload:
    """A pickle that runs code when loaded without weights_only: it writes a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


def test_a_planted_checkpoint_never_runs_code_and_is_not_deleted(tmp_path):
    cfg = compose_config("train", RESUMABLE, artifacts=tmp_path)
    planted = checkpoint_dir(adapter_dir(cfg)) / LAST
    planted.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"latent_traits_settings_hash": "x", "payload": Payload(str(marker))}, planted)
    with pytest.raises(LatentTraitsError, match=r"last\.ckpt is not a checkpoint latent-traits wrote"):
        train_adapter(cfg)
    assert not marker.exists()  # loaded weights-only: the payload never ran
    assert planted.is_file()  # and the file is left where it was


def test_a_checkpoint_without_the_projects_stamp_is_refused_not_deleted(tmp_path):
    cfg = compose_config("train", RESUMABLE, artifacts=tmp_path)
    foreign = checkpoint_dir(adapter_dir(cfg)) / LAST
    foreign.parent.mkdir(parents=True)
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    (foreign.parent / "notes.txt").write_text("mine")
    with pytest.raises(LatentTraitsError, match="carries no latent-traits settings stamp"):
        train_adapter(cfg)
    assert foreign.is_file() and (foreign.parent / "notes.txt").is_file()


def test_removing_checkpoints_keeps_a_file_someone_else_put_there(tmp_path, monkeypatch):
    cfg = compose_config("train", RESUMABLE, artifacts=tmp_path)
    interrupt(cfg, 3, monkeypatch)
    folder = checkpoint_dir(adapter_dir(cfg))
    (folder / "notes.txt").write_text("mine")
    train_adapter(cfg)  # resumes, finishes and cleans up its checkpoints
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_a_folder_of_someone_elses_where_the_adapter_goes_is_refused_not_replaced(tmp_path):
    cfg = compose_config("train", RESUMABLE, artifacts=tmp_path)
    folder = adapter_dir(cfg)
    folder.mkdir(parents=True)
    (folder / "notes.md").write_text("mine")
    with pytest.raises(LatentTraitsError,
                       match=r"the adapter folder .*lora_r8_s0 holds files latent-traits did not write "
                             r"\(notes\.md\).*tag=<name>"):
        train_adapter(cfg)
    assert [p.name for p in folder.iterdir()] == ["notes.md"]
