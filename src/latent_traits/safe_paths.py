"""Names that become paths, and the folders the project may replace.

Every name a user or a file can set and that becomes part of a path (a tag, a source, task or
model name, an adapter id read from train_result.json) is checked here to be one plain path
component, and every path built from such names is resolved inside its root. A folder the
project replaces wholesale (a report) carries a marker file; one without it is never replaced.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from latent_traits.errors import LatentTraitsError

# letters, digits and . _ + = , - ; never starting with a dot (hidden, ".", "..")
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+=,-]{0,199}")
MARKER = ".latent_traits_output"  # written into every folder the project owns and may replace


def check_name(value: object, what: str) -> str:
    """`value` as one safe path component, or an error naming `what` and the rule."""
    text = str(value)
    if not NAME.fullmatch(text):
        raise LatentTraitsError(
            f"{what}={text!r} cannot be used in a path: use letters, digits and . _ + = , - "
            "(not starting with a dot, no '/' or '..', at most 200 characters)"
        )
    return text


def check_adapter_id(adapter_id: object, what: str = "adapter id") -> str:
    """`<source>/<name>`: two safe components."""
    parts = str(adapter_id).split("/")
    if len(parts) != 2:
        raise LatentTraitsError(f"{what}={adapter_id!r} is not of the form <source>/<name>")
    for part in parts:
        check_name(part, what)
    return str(adapter_id)


def inside(root: str | os.PathLike, *parts: str) -> Path:
    """root/parts..., refused if it resolves outside root (through '..' or a symbolic link)."""
    base = Path(root)
    path = base.joinpath(*parts)
    resolved_root, resolved = base.resolve(), path.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise LatentTraitsError(f"{path} resolves to {resolved}, outside {resolved_root}; "
                                "use names without '..' or links that lead elsewhere")
    return path


def mark_owned(folder: Path) -> None:
    (folder / MARKER).write_text("written by latent-traits: this folder may be replaced by its next run\n")


def check_replaceable(folder: str | os.PathLike, key: str, written: Iterable[str] = (), fix: str = "") -> None:
    """A folder the project will replace must be absent, empty, or its own: marked, and holding
    nothing but what its previous run wrote (`written`, read from that run's manifest). A user's
    file put into it is not deleted: the run is refused instead."""
    folder = Path(folder)
    named = f"{key} {folder}" if " " in key else f"{key}={folder}"  # a description, or a config key
    fix = fix or f"choose another {key}"
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise LatentTraitsError(f"{named} is a file or a link, not a folder latent-traits wrote; "
                                f"{fix}")
    entries = {entry.name for entry in folder.iterdir()} if folder.is_dir() else set()
    if not entries:
        return
    written = set(written)
    if MARKER not in entries and not written:  # a report of an earlier version has its list only
        raise LatentTraitsError(
            f"{named} is a folder that latent-traits did not write (no {MARKER} in it); writing "
            f"there would replace its contents: {fix}")
    foreign = sorted(entries - written - {MARKER})
    if foreign:
        raise LatentTraitsError(
            f"{named} holds files latent-traits did not write ({', '.join(foreign[:5])}); "
            f"writing there would delete them: move them out, or {fix}")
