"""Checks that run before Hydra composes the config, because Hydra reports these with a traceback
or without the valid choices: a YAML syntax error in a config file (conf/ and any folder added
with hydra.searchpath or --config-dir, e.g. your own experiment), and an unknown option of a
config group (`target_task=[imdb,nope]`). Each becomes one line naming the file or the option and
the fix, and exit status 2, as the entry points' other user errors.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from latent_traits.errors import LatentTraitsError

CONFIG_DIR_FLAGS = ("--config-dir", "-cd")
SEARCHPATH = re.compile(r"^\+*hydra\.searchpath=\[?(.*?)\]?$")


def config_dirs(conf: Path, argv: Sequence[str]) -> list[Path]:
    """The entry point's conf/ plus the folders the command line adds."""
    dirs = [conf]
    for i, arg in enumerate(argv):
        if arg in CONFIG_DIR_FLAGS and i + 1 < len(argv):
            dirs.append(Path(argv[i + 1]))
        elif arg.startswith(tuple(f"{flag}=" for flag in CONFIG_DIR_FLAGS)):
            dirs.append(Path(arg.split("=", 1)[1]))
        elif match := SEARCHPATH.match(arg):
            for entry in match.group(1).split(","):
                entry = entry.strip().strip("'\"")
                if entry.startswith("file://"):
                    dirs.append(Path(entry.removeprefix("file://")))
    return [d for d in dirs if d.is_dir()]


def check_yaml_syntax(dirs: Sequence[Path]) -> None:
    for folder in dirs:
        for path in sorted(folder.rglob("*.yaml")):
            try:
                yaml.safe_load(path.read_text(encoding="utf-8"))
            except UnicodeDecodeError:
                raise LatentTraitsError(f"{path}: not UTF-8 text; save it as UTF-8") from None
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
                problem = getattr(err, "problem", None) or str(err).splitlines()[0]
                raise LatentTraitsError(
                    f"{path}{where}: not valid YAML: {problem}. Fix that line (common causes: an unclosed "
                    "[ or {, a tab for indentation, a missing space after ':')") from None


def group_options(dirs: Sequence[Path], group: str) -> set[str]:
    return {p.stem for d in dirs for p in (d / group).glob("*.yaml")} if group else set()


def _override_values(override) -> list[str]:
    if override.is_sweep_override():
        return [str(v) for v in override.sweep_string_iterator()]
    value = override.value()
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if v is not None]


def check_group_options(dirs: Sequence[Path], argv: Sequence[str], entry: str | None = None) -> None:
    """`group=option` (a list or a sweep too) names an existing file of that group, and an
    experiment preset is one written for this entry point."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    candidates = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except Exception:  # a malformed override: Hydra's own message is specific
        return
    for override in overrides:
        group = override.key_or_group
        if override.is_delete() or override.package or "." in group:
            continue
        options = group_options(dirs, group)
        if not options:
            continue
        try:
            values = _override_values(override)
        except Exception:
            continue
        unknown = [v for v in values if v not in options and v != "null"]
        if unknown:
            raise LatentTraitsError(f"{group}: no option named {', '.join(map(repr, unknown))}; valid options: "
                                    f"{', '.join(sorted(options))} (files in conf/{group}/)")
        if group == "experiment" and entry:
            for value in values:
                check_experiment_serves(dirs, value, entry)


def check_experiment_serves(dirs: Sequence[Path], name: str, entry: str) -> None:
    """A preset names the entry points it is written for (`experiment_stages`, default train)."""
    path = next((p for p in (d / "experiment" / f"{name}.yaml" for d in dirs) if p.is_file()), None)
    if path is None:
        return
    stages = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("experiment_stages") or ["train"]
    if entry not in stages:
        serving = sorted(p.stem for d in dirs for p in (d / "experiment").glob("*.yaml")
                         if entry in ((yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("experiment_stages")
                                      or ["train"]))
        raise LatentTraitsError(
            f"experiment={name} is a preset for {', '.join(f'{s}.py' for s in stages)}, not {entry}.py "
            f"({path}: experiment_stages); presets for {entry}.py: {', '.join(serving) or 'none'}")


def preflight(conf: str | Path, argv: Sequence[str] | None = None, entry: str | None = None) -> None:
    """Run the checks on this command line (of the entry point `entry`: train, evaluate, analyze);
    print the error and exit 2 on failure."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        dirs = config_dirs(Path(conf), argv)
        check_yaml_syntax(dirs)
        check_group_options(dirs, argv, entry)
    except LatentTraitsError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
