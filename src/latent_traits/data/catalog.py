"""The task catalogue: every task spec under conf/tasks/, composed with Hydra so that a spec
may extend another through its defaults list (mnli_nums extends mnli)."""

from __future__ import annotations

import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError


def conf_dir() -> Path:
    """The config root: the one the running Hydra app composed from (train.py, evaluate.py,
    analyze.py: their conf/), else $LATENT_TRAITS_CONF, else ./conf (the repository root)."""
    if GlobalHydra.instance().is_initialized():
        for source in GlobalHydra.instance().config_loader().get_sources():
            if source.provider == "main" and source.scheme() == "file":
                return Path(source.path)
    for candidate in (os.environ.get("LATENT_TRAITS_CONF"), "conf"):
        if candidate and (Path(candidate) / "tasks").is_dir():
            return Path(candidate)
    raise LatentTraitsError(
        "no conf/ folder with tasks/ found: run from the repository root or set LATENT_TRAITS_CONF=<repo>/conf")


def task_names(conf: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (conf or conf_dir()).glob("tasks/*.yaml"))


def task_roles(name: str, conf: Path | None = None) -> list[str]:
    """source and/or target: which of conf/source_dataset/ and conf/target_task/ use the task."""
    conf = conf or conf_dir()
    return [role for role, group in (("source", "source_dataset"), ("target", "target_task"))
            if (conf / group / f"{name}.yaml").is_file()]


def load_task_spec(name: str, conf: Path | None = None) -> TaskSpec:
    """Compose conf/tasks/<name>.yaml (its defaults list included) into a TaskSpec; also from
    inside a running Hydra app (evaluate.py with eval.tasks, analyze.py's side analyses)."""
    conf = conf or conf_dir()
    known = task_names(conf)
    if name not in known:
        raise LatentTraitsError(f"unknown task {name!r}; known tasks: {known}")
    # Hydra holds one global instance: a running app's is set aside for this compose, then restored
    running = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf.resolve()), version_base="1.3"):
            cfg = compose(config_name=f"tasks/{name}")
    finally:
        GlobalHydra.instance().clear()
        if running is not None:
            GlobalHydra.instance().initialize(running)
    return TaskSpec.from_config(cfg.tasks)
