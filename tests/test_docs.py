"""The configuration reference is generated from conf/ and the committed copy is current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from latent_traits.docs import REGENERATE, config_reference
from latent_traits.yaml_comments import read_config

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "docs" / "CONFIGURATION.md"
CONF_FILES = sorted((REPO / "conf").rglob("*.yaml"))


def test_committed_reference_matches_conf():
    fresh = config_reference(REPO / "conf")
    assert REFERENCE.is_file(), f"docs/CONFIGURATION.md is missing: generate it with `{REGENERATE}`"
    assert REFERENCE.read_text() == fresh, (
        f"docs/CONFIGURATION.md is stale (conf/ changed): regenerate it with `{REGENERATE}` and commit it")


def _flatten(data: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value, for every key and every nested key of block and flow mappings."""
    flat: dict[str, object] = {}
    for key, value in data.items():
        flat[prefix + str(key)] = value
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


@pytest.mark.parametrize("path", CONF_FILES, ids=lambda p: p.relative_to(REPO / "conf").as_posix())
def test_every_key_of_every_file_is_documented(path):
    """The comment reader misses no key and reads every default as YAML does."""
    text = path.read_text()
    data = yaml.safe_load(text) or {}
    data.pop("defaults", None)
    doc = read_config(text)
    documented = [k.key for k in doc.keys]
    # flow mappings ({a: 1}) stay one row; block mappings get one row per key
    flat = _flatten(data)
    assert set(documented) <= set(flat)
    flow_rows = {k.key for k in doc.keys if not k.is_mapping}
    for key in flat:  # each key has its own row, or sits inside a flow value that has one
        assert key in documented or any(key.startswith(row + ".") for row in flow_rows), key
    assert [k for k in documented if k in data] == list(data)
    for key in doc.keys:
        if not key.is_mapping:
            assert key.value == flat[key.key], key.key
    if path.parent == REPO / "conf":
        assert doc.defaults, f"{path.name} has no defaults list"
        assert f"### {path.name}" in config_reference(REPO / "conf")


def test_comment_reader_attaches_comments_where_they_belong():
    doc = read_config(
        "# @package _global_\n"
        "# python train.py x=1\n"
        "# what this file is\n"
        "defaults:\n"
        "  - model: tiny   # the small one\n"
        "  - _self_\n"
        "\n"
        "# above a\n"
        "a: 1      # after a\n"
        "          # wrapped after a\n"
        "b: 'x # not a comment'   # after b\n"
        "nest:     # about nest\n"
        "  # above c\n"
        "  c: [1, 2]\n"
        "  d: {e: f}\n"
        "g: null\n"
    )
    assert doc.package == "_global_"
    assert doc.description == ["python train.py x=1", "what this file is"]
    assert [(d.group, d.option, d.comment) for d in doc.defaults] == [
        ("model", "tiny", "the small one"), (None, "_self_", "")]
    got = {k.key: (k.value, k.source, k.comment) for k in doc.keys}
    assert got["a"] == (1, "1", "above a after a wrapped after a")
    assert got["b"] == ("x # not a comment", "'x # not a comment'", "after b")
    assert got["nest"][2] == "about nest" and got["nest.c"] == ([1, 2], "[1, 2]", "above c")
    assert got["nest.d"] == ({"e": "f"}, "{e: f}", "") and got["g"] == (None, "null", "")


def test_check_mode_names_the_command(tmp_path):
    stale = tmp_path / "CONFIGURATION.md"
    stale.write_text("old\n")
    proc = subprocess.run([sys.executable, "-m", "latent_traits.docs", "config-reference", "--conf",
                           str(REPO / "conf"), "--out", str(stale), "--check"], capture_output=True, text=True)
    assert proc.returncode == 1 and REGENERATE in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "latent_traits.docs", "config-reference", "--conf",
                           str(REPO / "conf"), "--out", str(stale)], capture_output=True, text=True)
    assert proc.returncode == 0 and stale.read_text() == config_reference(REPO / "conf")


def _listed_choices(comment: str) -> set[str]:
    """The words a comment lists as alternatives: `a (why) | b | c`."""
    import re

    before = re.findall(r"(\w+)\s*(?:\([^()]*\))?\s*\|", comment)
    after = re.findall(r"\|\s*(\w+)", comment)
    return set(before + after)


def test_a_comment_that_lists_a_keys_values_lists_exactly_the_allowed_ones():
    """config.RULES is the one source of allowed values (the reference's `allowed` column); a
    comment in conf/ that lists alternatives for a key must list those, no more, no fewer."""
    from latent_traits.config import RULES
    from latent_traits.docs import rule_for

    checked, wrong = 0, []
    for path in [REPO / "conf" / f"{name}.yaml" for name in RULES]:
        for key in read_config(path.read_text()).keys:
            rule = rule_for(key.key)
            if rule is None or rule.kind != "choice" or "|" not in key.comment:
                continue
            checked += 1
            if _listed_choices(key.comment) != set(rule.choices):
                wrong.append((path.name, key.key, sorted(_listed_choices(key.comment)), rule.choices))
    assert checked >= 5 and wrong == []


def test_the_reference_shows_the_allowed_values_of_each_checked_key():
    text = REFERENCE.read_text()
    assert "| `data.overlong` | `refuse` | one of refuse, drop |" in text
    assert "| `max_steps` | `16` | an integer >= 1 or -1 |" in text  # conf/trainer/default.yaml
