"""Every command in README.md and docs/ (code blocks; docs/CONFIGURATION.md is generated from
conf/ and checked by test_docs.py) is checked as the entry point would check it before any
work: a Hydra command composes with its overrides (each value of a sweep), passes the preflight
and check_config; a `make` target exists; a module's command line parses. Commands that need a
GPU, the hub or a cluster are composed, not run; README's `make demo` and `make test` run in CI."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest
from conftest import REPO, compose_config

from latent_traits.config import check_config
from latent_traits.preflight import check_group_options

DOCS = [REPO / "README.md", *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "CONFIGURATION.md")]
ENTRY_POINTS = {"train.py": "train", "evaluate.py": "evaluate", "analyze.py": "analyze"}
STARTS = ("python ", "torchrun ", "make ", ".venv/bin/python ")


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for each command line in a code block, continuations joined, comments cut."""
    found = []
    for path in DOCS:
        in_block, pending = False, ""
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip().startswith("```"):
                in_block = not in_block
                continue
            if not in_block:
                continue
            text = pending + line.strip()
            if text.endswith("\\"):
                pending = text[:-1] + " "
                continue
            pending = ""
            command = re.split(r"\s#\s|\s#$", text)[0].strip()
            if command.startswith(STARTS):
                found.append((f"{path.name}:{number}", command))
    return found


COMMANDS = documented_commands()


def sweep_points(overrides: list[str]) -> list[list[str]]:
    """Each value of a comma sweep (`source_dataset=imdb,goat`) in turn, the others at their first."""
    swept = [(i, o.split("=", 1)[0], o.split("=", 1)[1].split(",")) for i, o in enumerate(overrides)
             if "=" in o and "," in o.split("=", 1)[1] and not re.search(r"[\[{]", o)]
    points = [list(overrides)]
    for i, key, values in swept:
        points = [[*p[:i], f"{key}={value}", *p[i + 1:]] for p in points for value in values[:1]] + [
            [*points[0][:i], f"{key}={value}", *points[0][i + 1:]] for value in values[1:]]
    return points


def hydra_parts(command: str) -> tuple[str, list[str]]:
    """(entry, overrides) of `python X.py ...` or `torchrun ... train.py ...`."""
    words = shlex.split(command)
    script = next(w for w in words if w in ENTRY_POINTS)
    args = [w for w in words[words.index(script) + 1:] if w not in ("-m", "--multirun")]
    args = [re.sub(r"<[^>]+>", "placeholder", a) for a in args]  # <partition>: the user's value
    return ENTRY_POINTS[script], args


def test_the_docs_hold_the_commands_a_user_runs():
    scripts = {c.split()[1] if c.startswith("python") else c for _, c in COMMANDS}
    assert {"train.py", "evaluate.py", "analyze.py"} <= scripts and len(COMMANDS) >= 30


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_each_documented_command_is_valid(where, command, tmp_path):
    words = shlex.split(command)
    if words[0] == "make":
        targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), flags=re.M))
        assert set(words[1:]) <= targets, f"{where}: no make target {words[1:]}"
        return
    if any(w in ENTRY_POINTS for w in words):
        entry, overrides = hydra_parts(command)
        check_group_options([REPO / "conf"], overrides, entry)
        for point in sweep_points(overrides):
            job = [o for o in point if not o.startswith(("hydra.", "+hydra."))]
            check_config(compose_config(entry, job, tmp_path))
            compose_config(entry, point, return_hydra=True)  # the launcher's settings compose too
        return
    if words[1:3] == ["-m", "pytest"]:
        assert all((REPO / w).is_file() for w in words if w.startswith("tests/")), where
        return
    if words[1:3] == ["-m", "latent_traits.data"]:
        from latent_traits.data.__main__ import parse_args

        args = [w.split("|")[0] for w in words[3:] if w not in ("[", "]")]
        args = [a.strip("[]") for a in args]
        args = [a if a != "DIR" else str(tmp_path) for a in args]
        assert isinstance(parse_args(args), argparse.Namespace)
        return
    pytest.fail(f"{where}: a command this check does not know: {command}")
