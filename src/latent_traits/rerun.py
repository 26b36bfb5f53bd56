"""The command line that recreates a result, from the Hydra overrides of the job that made it.

A train_result.json carries ``python train.py <the job's overrides>``; a cell record carries
``python evaluate.py <the job's overrides, narrowed to that one adapter and task>``. Paths are left
out (they say where, not what): run the command from the same folder with the same
LATENT_TRAITS_ARTIFACTS, or add paths.* overrides. A finished result is skipped, so to recompute
one in place delete it first (or add train.overwrite=true for an adapter).
"""

from __future__ import annotations

import shlex

# evaluate.py overrides that choose which cells run, not how a cell is computed
CELL_SELECTION = ("target_task", "eval.tasks", "eval.adapters", "eval.include_base", "eval.allow_base_only")


def task_overrides() -> list[str] | None:
    """The command-line overrides of the running Hydra job (in a sweep: this job's own values),
    or None outside a Hydra app (a function called from Python)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return list(HydraConfig.get().overrides.task)


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def command(script: str, overrides: list[str]) -> str:
    return " ".join(["python", script, *(shlex.quote(o) for o in overrides)])


def train_command(overrides: list[str] | None) -> str | None:
    return None if overrides is None else command("train.py", overrides)


def cell_command(overrides: list[str] | None, adapter_id: str, task: str, is_base: bool,
                 by_name: bool = False) -> str | None:
    """evaluate.py with the job's overrides, restricted to the cell (adapter or base) x task
    (through eval.tasks when the job chose its tasks by name, so eval.task_n still applies)."""
    if overrides is None:
        return None
    kept = []
    for override in overrides:
        key = override_key(override)
        if key in CELL_SELECTION:
            continue
        if key.startswith("target_task.") and key.split(".")[1] != task:
            continue  # settings of another task, which the narrowed task list no longer holds
        kept.append(override)
    kept.append(f"eval.tasks=[{task}]" if by_name else f"target_task=[{task}]")
    if is_base:
        kept += ["eval.adapters=[]", "eval.include_base=true", "+eval.allow_base_only=true"]
    else:
        kept += [f"eval.adapters=[{adapter_id}]", "eval.include_base=false"]
    return command("evaluate.py", kept)
