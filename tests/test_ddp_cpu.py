"""Real multi-process DDP on the CPU (gloo): train.py with trainer=ddp launches a second rank,
the ranks train on their own shares of the batches, and rank 0 alone writes the adapter."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO
from safetensors.torch import load_file

from latent_traits.io import read_json


@pytest.mark.slow
def test_two_cpu_ranks_train_one_adapter(tmp_path):
    args = ["model=tiny_llama", "logger=none", "source_dataset=goat", "data.train_n=16",
            "data.batch_size=2", "trainer.max_steps=3", "trainer=ddp", "trainer.accelerator=cpu",
            "trainer.devices=2", f"paths.artifacts_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting with 2 processes" in done.stdout + done.stderr
    out = tmp_path / "adapters" / "tiny_llama" / "goat" / "lora_r8_s0"
    result = read_json(out / "train_result.json")
    assert result["status"] == "complete" and result["world_size"] == 2 and result["steps"] == 3
    tensors = load_file(str(out / "adapter_model.safetensors"))
    assert tensors and all("lora_" in k for k in tensors)
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporaries
