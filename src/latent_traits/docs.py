"""Documentation generated from the code, so it cannot drift from it.

    python -m latent_traits.docs config-reference            # writes docs/CONFIGURATION.md from conf/
    python -m latent_traits.docs config-reference --check    # exit 1 if that file is stale

The configuration reference walks every config group and file under conf/: per entry point its
primary config and defaults list, per group its options, and per file its keys with their
default values and the comments that explain them (read by latent_traits.yaml_comments).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from latent_traits.config import RULES, Rule
from latent_traits.io import write_text
from latent_traits.yaml_comments import ConfigDoc, read_config

REGENERATE = "python -m latent_traits.docs config-reference"
ENTRY_POINTS = ("train", "evaluate", "analyze")  # first, in this order; other top-level files follow
MAX_VALUE_CHARS = 90
COMMANDS = ("python", "torchrun", "vllm", "make", "srun", "wandb")  # a comment line starting so is a command


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS - 3] + "..."
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{_cell(text)}{pad}{fence}"


def _inline(value: Any) -> str:
    """A constructed value in YAML flow style, on one line."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip().removesuffix("\n...")


def rule_for(key: str) -> Rule | None:
    """The validation rule (config.RULES) of a full config key, whichever entry point checks it."""
    return next((rules[key] for rules in RULES.values() if key in rules), None)


def _keys_table(doc: ConfigDoc, package: str = "") -> list[str]:
    """Each key with its default, the values check_config allows (config.RULES: the one source of
    allowed values) and its comment."""
    if not doc.keys:
        return []
    rows = ["| key | default | allowed | what it does |", "|---|---|---|---|"]
    for key in doc.keys:
        value = "" if key.is_mapping else _code(key.source if key.source is not None else _inline(key.value))
        rule = rule_for(f"{package}.{key.key}" if package else key.key)
        rows.append(f"| `{key.key}` | {value} | {_cell(rule.describe()) if rule else ''} | {_cell(key.comment)} |")
    return rows + [""]


def _defaults_table(doc: ConfigDoc) -> list[str]:
    if not doc.defaults:
        return []
    rows = ["Defaults list (in composition order):", "", "| entry | note |", "|---|---|"]
    rows += [f"| {_code(item.entry)} | {_cell(item.comment)} |" for item in doc.defaults]
    return rows + [""]


def _description(lines: list[str]) -> list[str]:
    """A file's leading comment: command lines as a shell block, the rest as one paragraph each run."""
    out: list[str] = []
    prose: list[str] = []
    commands: list[str] = []

    def flush() -> None:
        if prose:
            out.extend([" ".join(prose), ""])
            prose.clear()
        if commands:
            out.extend(["```", *commands, "```", ""])
            commands.clear()

    for line in lines:
        text = line.strip()
        command = text.removeprefix("e.g. ")
        if command.split(" ", 1)[0] in COMMANDS:
            if prose:
                flush()
            commands.append(line.removeprefix("e.g. ").rstrip())
        elif text:
            if commands:
                flush()
            prose.append(text)
        else:
            flush()
    flush()
    return out


def _read(path: Path) -> ConfigDoc:
    try:
        return read_config(path.read_text())
    except (yaml.YAMLError, ValueError) as err:
        raise SystemExit(f"error: cannot read {path}: {err}") from None


def _package(doc: ConfigDoc, group: str) -> str:
    """Where a group file's keys land in the composed config ('' for _global_)."""
    package = doc.package or group.replace("/", ".")
    return "" if package == "_global_" else package


def _package_line(doc: ConfigDoc, group: str) -> str:
    package = doc.package or group.replace("/", ".")
    if package == "_global_":
        return "Package `_global_`: its keys override the top-level config (paths as written)."
    return f"Package `{package}`: its keys land under `{package}.`"


def _groups(conf: Path) -> dict[str, list[Path]]:
    """Config group (a folder under conf/, '/'-separated) -> its option files, sorted."""
    groups: dict[str, list[Path]] = {}
    for path in sorted(conf.rglob("*.yaml")):
        if path.parent != conf:
            groups.setdefault(path.parent.relative_to(conf).as_posix(), []).append(path)
    return dict(sorted(groups.items()))


def _primary_configs(conf: Path) -> list[Path]:
    top = sorted(p for p in conf.glob("*.yaml"))
    first = [conf / f"{name}.yaml" for name in ENTRY_POINTS if (conf / f"{name}.yaml") in top]
    return first + [p for p in top if p not in first]


def _selections(docs: dict[Path, ConfigDoc], conf: Path) -> dict[str, list[str]]:
    """Group -> where a defaults list selects from it (file and entry)."""
    used: dict[str, list[str]] = {}
    for path, doc in docs.items():
        for item in doc.defaults:
            if item.group:
                where = path.relative_to(conf.parent).as_posix()
                used.setdefault(item.group, []).append(f"`{where}` ({_code(item.entry)})")
    return used


def _anchor(title: str) -> str:
    keep = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return keep.replace(" ", "-")


def config_reference(conf: str | Path = "conf") -> str:
    """The Markdown configuration reference of every file under `conf`."""
    conf = Path(conf)
    if not conf.is_dir():
        raise SystemExit(f"error: no config folder {conf}; run from the repository root or pass --conf DIR")
    primaries = _primary_configs(conf)
    groups = _groups(conf)
    docs = {path: _read(path) for path in [*primaries, *(p for files in groups.values() for p in files)]}
    used = _selections(docs, conf)
    rel = lambda path: path.relative_to(conf.parent).as_posix()  # noqa: E731

    out = [
        "# Configuration reference", "",
        f"Generated from `conf/` by `{REGENERATE}`; do not edit it by hand. "
        "`tests/test_docs.py` fails when it no longer matches conf/.", "",
        "Each entry point composes its primary config with [Hydra](https://hydra.cc): the defaults list "
        "picks one option (file) per config group; `group=option` on the command line picks another, "
        "`key=value` sets one value, `+key=value` adds a key the config does not have (struct mode: a "
        "misspelt key is an error). `python train.py --cfg job` prints the composed config. "
        "`${...}` values are interpolations, resolved when the job runs.", "",
        "## Contents", "",
        *(f"- [`{p.name}`](#{_anchor(p.name)})" for p in primaries),
        *(f"- group [`{g}`](#group-{_anchor(g)})" for g in groups), "",
        "## Entry points", "",
    ]
    for path in primaries:
        doc = docs[path]
        script = f"python {path.stem}.py" if path.stem in ENTRY_POINTS else path.name
        out += [f"### {path.name}", "", f"`{script}` reads `{rel(path)}`.", ""]
        out += _description(doc.description)
        out += _defaults_table(doc) + _keys_table(doc)

    out += ["## Config groups", ""]
    for group, files in groups.items():
        options = [p.stem for p in files]
        out += [f"### group {group}", "", f"Folder `conf/{group}/`; options: "
                + ", ".join(f"`{o}`" for o in options) + f". Select one with `{group}=<option>`.", ""]
        if group in used:
            out += ["Selected by: " + "; ".join(used[group]) + ".", ""]
        for path in files:
            doc = docs[path]
            out += [f"#### {group}={path.stem}", "", f"`{rel(path)}`. {_package_line(doc, group)}", ""]
            out += _description(doc.description)
            out += _defaults_table(doc) + _keys_table(doc, _package(doc, group))
    return "\n".join(out).rstrip() + "\n"


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latent_traits.docs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("config-reference", help="write the configuration reference generated from conf/")
    ref.add_argument("--conf", default="conf", help="the config folder (default: conf)")
    ref.add_argument("--out", default="docs/CONFIGURATION.md", help="where to write it")
    ref.add_argument("--check", action="store_true", help="do not write; exit 1 if --out is stale")
    args = parser.parse_args(list(argv) if argv is not None else None)

    text = config_reference(args.conf)
    out = Path(args.out)
    if args.check:
        if not out.is_file() or out.read_text() != text:
            print(f"{out} is stale: regenerate it with `{REGENERATE}`", file=sys.stderr)
            return 1
        print(f"{out} is current")
        return 0
    write_text(out, text)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
