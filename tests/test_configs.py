"""Every config file under conf/ composes and resolves. Files and groups are discovered by globbing
conf/, so a new file (or group) is covered without touching this test."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from conftest import CONF, compose_config
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from latent_traits.config import target_specs
from latent_traits.data.catalog import load_task_spec
from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError

TOP_LEVEL = sorted(p.stem for p in CONF.glob("*.yaml"))
# groups that are not selected from the command line: task specs are pulled into source_dataset
# and target_task files (/tasks@task), and hydra/ configures Hydra itself
NOT_SELECTED = {"tasks", "hydra"}


def defaults_of(config_name: str) -> dict[str, object]:
    """The top-level config's defaults list as {group: default choice}."""
    out = {}
    for entry in OmegaConf.load(CONF / f"{config_name}.yaml").get("defaults", []):
        if isinstance(entry, str):  # _self_
            continue
        for key, value in entry.items():
            out[key.removeprefix("override ").removeprefix("optional ").strip()] = value
    return out


GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
USERS = {group: [top for top in TOP_LEVEL if group in defaults_of(top)] for group in GROUPS}
def serves(group: str, path: Path, top: str) -> bool:
    """An experiment preset is composed only for the entry points it names (experiment_stages)."""
    if group != "experiment":
        return True
    return top in ((yaml.safe_load(path.read_text()) or {}).get("experiment_stages") or ["train"])


MEMBERS = [
    (group, path.stem, top)
    for group in GROUPS if group not in NOT_SELECTED
    for path in sorted((CONF / group).glob("*.yaml"))
    for top in USERS[group] if serves(group, path, top)
]


def selection(group: str, member: str, top: str) -> str:
    is_list = isinstance(defaults_of(top)[group], list)
    return f"{group}=[{member}]" if is_list else f"{group}={member}"


def resolved(config_name: str, overrides: list[str], tmp_path: Path) -> tuple[DictConfig, dict]:
    """Compose, resolve every interpolation, and check every _target_ names a real object."""
    cfg = compose_config(config_name, overrides, artifacts=tmp_path)
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert plain["paths"]["output_dir"] == str(tmp_path / "outputs")
    for target in find_targets(plain):
        module, _, attr = target.rpartition(".")
        assert hasattr(importlib.import_module(module), attr), f"_target_ {target} does not exist"
    return cfg, plain


def find_targets(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["_target_"]] if "_target_" in node else []
        return found + [t for v in node.values() for t in find_targets(v)]
    if isinstance(node, list):
        return [t for v in node for t in find_targets(v)]
    return []


def test_discovery_found_the_configs():
    assert {"train", "evaluate", "analyze"} <= set(TOP_LEVEL)
    assert {"model", "source_dataset", "target_task", "lora", "trainer", "logger", "analysis"} <= set(GROUPS)
    assert len(MEMBERS) >= 20


@pytest.mark.parametrize("group", sorted(set(GROUPS) - NOT_SELECTED))
def test_every_group_is_used_by_a_top_level_config(group):
    assert USERS[group], f"conf/{group}/ is in no top-level config's defaults list"


@pytest.mark.parametrize("config_name", TOP_LEVEL)
def test_top_level_config_composes_with_defaults(config_name, tmp_path):
    _, plain = resolved(config_name, [], tmp_path)
    assert plain["paths"]["artifacts_dir"] == str(tmp_path)


@pytest.mark.parametrize(("group", "member", "top"), MEMBERS, ids=[f"{t}-{g}={m}" for g, m, t in MEMBERS])
def test_every_group_member_composes(group, member, top, tmp_path):
    cfg, plain = resolved(top, [selection(group, member, top)], tmp_path)
    if group == "source_dataset":
        assert plain["source_dataset"]["name"] == member
        assert TaskSpec.from_config(cfg.source_dataset.task).name == plain["source_dataset"]["task"]["name"]
    elif group == "target_task":
        assert list(plain["target_task"]) == [member]
        if TaskSpec.from_config(cfg.target_task[member].task).scorable:
            assert [spec.name for spec, _ in target_specs(cfg)] == [member]
        else:  # scorer none: refused by name, not evaluated blindly
            with pytest.raises(LatentTraitsError, match=member):
                target_specs(cfg)
    elif group == "model":
        assert plain["model"]["name"] == member
    elif group == "lora":
        from latent_traits.model.lora_module import build_lora_config

        build_lora_config(plain["lora"])  # every key is a peft LoraConfig argument


@pytest.mark.parametrize("path", sorted(CONF.glob("tasks/*.yaml")), ids=lambda p: p.stem)
def test_task_spec_parses(path):
    spec = load_task_spec(path.stem, CONF)  # composed: a spec may extend another (mnli_nums)
    assert spec.name == path.stem
    if spec.is_classification:
        assert spec.labels and len(set(spec.labels)) == len(spec.labels)


def test_evaluate_defaults_give_every_target_task_a_spec(tmp_path):
    cfg = compose_config("evaluate", [], artifacts=tmp_path)
    specs = target_specs(cfg)
    assert specs and [s.name for s, _ in specs] == sorted(cfg.target_task)


def test_unknown_source_dataset_lists_the_valid_options(tmp_path):
    with pytest.raises(HydraException) as err:
        compose_config("train", ["source_dataset=no_such_dataset"], artifacts=tmp_path)
    message = str(err.value)
    assert "no_such_dataset" in message
    for option in (p.stem for p in CONF.glob("source_dataset/*.yaml")):
        assert option in message
    assert "imdb" in message and "goat" in message


def test_unknown_target_task_is_an_error(tmp_path):
    with pytest.raises(HydraException, match="no_such_task"):
        compose_config("evaluate", ["target_task=[imdb,no_such_task]"], artifacts=tmp_path)


def test_typo_in_a_key_fails(tmp_path):
    """Struct mode: overriding a key that does not exist is an error, not a silent new key."""
    with pytest.raises(HydraException, match="trian_n"):
        compose_config("train", ["data.trian_n=3"], artifacts=tmp_path)
