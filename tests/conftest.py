"""Shared fixtures: the real configs composed with Hydra, the tiny random Llama, its real tokenizer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

import latent_traits.config  # noqa: F401  (registers the resolvers the configs use)
from latent_traits.model.factory import load_tokenizer_and_model

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
CACHE_DIR = os.environ.get("LATENT_TRAITS_CACHE", str(Path.home() / ".cache" / "latent_traits"))


def compose_config(config_name: str, overrides: list[str] | None = None, artifacts: Path | None = None,
                   return_hydra: bool = False) -> DictConfig:
    """Compose a real top-level config as the entry point would (hydra:runtime resolved to tmp);
    return_hydra keeps the `hydra` node (sweeper params, searchpath)."""
    overrides = list(overrides or [])
    if artifacts is not None:
        overrides.append(f"paths.artifacts_dir={artifacts}")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=return_hydra)
    if artifacts is not None and "output_dir" in cfg.get("paths", {}):
        OmegaConf.set_struct(cfg, False)
        cfg.paths.output_dir = str(artifacts / "outputs")
        OmegaConf.set_struct(cfg, True)
    return cfg


@pytest.fixture(scope="module")
def one_thread():
    """The tiny model's matrices are far too small for threads: on a busy 2-core machine two
    OpenMP threads make each forward pass ~20x slower than one. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_cfg() -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF / "model" / "tiny_llama.yaml"))


@pytest.fixture(scope="session")
def tiny_tokenizer_and_model(tiny_model_cfg):
    tokenizer, model = load_tokenizer_and_model(tiny_model_cfg, CACHE_DIR)
    tokenizer.padding_side = "left"
    return tokenizer, model.eval()


def assert_lora_grads_close(grads: dict, reference: dict) -> None:
    """Every LoRA gradient non-zero and equal to the reference's up to fp32 summation order."""
    import torch

    assert set(grads) == set(reference)
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        scale = float(reference[name].abs().max())
        torch.testing.assert_close(grad, reference[name], rtol=1e-4, atol=1e-4 * scale)


# -- the hub's recorded rows (tests/fixtures/hub/, written from the datasets' public cards) --------------
FIXTURES = Path(__file__).parent / "fixtures" / "hub"
FIXTURE_OF = {"mnli_nums": "mnli"}  # the same hub rows


def fixture_rows(task: str) -> list[dict]:
    path = FIXTURES / f"{FIXTURE_OF.get(task, task)}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def hub(monkeypatch):
    """datasets.load_dataset serving a task's recorded rows (a split slice 'train[:n]' honoured);
    records each call's arguments."""
    calls = []

    def serve(rows):
        def load_dataset(path, name=None, split=None, revision=None, **kwargs):
            calls.append({"path": path, "name": name, "split": split, "revision": revision})
            limit = int(split.split("[:")[1].rstrip("]")) if split and "[:" in split else None
            return datasets.Dataset.from_list(rows[:limit])
        monkeypatch.setattr(datasets, "load_dataset", load_dataset)

    serve.calls = calls
    return serve
