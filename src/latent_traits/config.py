"""Config helpers shared by the entry points: resolvers and spec extraction."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError


def resolve_precision(choice: str = "auto") -> str:
    """bf16 where the GPU supports it, fp32 on CPU (bf16 matmuls are ~400x slower there)."""
    if choice != "auto":
        return choice
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("lt.precision"):
        OmegaConf.register_new_resolver("lt.precision", resolve_precision)


register_resolvers()


def to_plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def target_specs(cfg: DictConfig) -> list[tuple[TaskSpec, dict[str, Any]]]:
    """The selected target tasks in a stable order, each as (spec, its split/n settings)."""
    tasks = cfg.get("target_task") or {}
    out = []
    for key in sorted(tasks):
        entry = to_plain(tasks[key])
        spec = TaskSpec.from_config(entry.pop("task"))
        if not spec.scorable:
            raise LatentTraitsError(
                f"target task {spec.name!r} has no automatic scorer (scorer: none): leave it out of "
                f"target_task or give its task spec a scorer"
            )
        out.append((spec, entry))
    return out
