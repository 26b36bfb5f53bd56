"""The dependency ranges admit the versions CI pins, and the environment runs those versions."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
REPO = Path(__file__).resolve().parents[1]


def pinned_versions() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = pinned
    return pins


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["dev"] + extras["side"]]


def test_every_direct_dependency_has_a_tested_upper_bound():
    unbounded = [str(r) for r in project_requirements()
                 if not any(s.operator in ("<", "<=", "==") for s in r.specifier)]
    assert unbounded == []


def test_the_pinned_versions_lie_inside_the_declared_ranges():
    pins = pinned_versions()
    for requirement in project_requirements():
        name = canonicalize_name(requirement.name)
        if name == "torch":  # pinned by the Makefile's TORCH_SPEC, not by constraints.txt
            continue
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (requirement, pins[name])


def test_the_environment_runs_the_pinned_versions():
    """A drifted environment is how an untested release reaches the suite unnoticed."""
    drifted = {}
    for name, pinned in pinned_versions().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue  # extras this environment did not install (bench, vllm)
        if installed != pinned:
            drifted[name] = (installed, pinned)
    if drifted:
        pytest.fail(f"installed != constraints.txt: {drifted}; reinstall with `make install`")


@pytest.mark.parametrize("module", ["latent_traits.model.transformers_shims", "latent_traits.eval.multi_lora"])
def test_each_module_on_a_librarys_internals_names_the_pinned_version(module):
    """Where code relies on a library's private behaviour, its module says which release it was
    checked against: constraints.txt's pin, so a version bump makes someone re-check it."""
    import importlib

    name, _, checked = importlib.import_module(module).CHECKED_AGAINST.partition("==")
    assert pinned_versions()[canonicalize_name(name)] == checked
    assert checked in (importlib.import_module(module).__doc__ or "")
