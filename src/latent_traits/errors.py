"""User-facing errors: a message that names the problem and the fix, no traceback."""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("latent_traits")
F = TypeVar("F", bound=Callable)

# errors of writing an output: a full disk, a read-only or unwritable folder, a file where a
# folder is expected
DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST, errno.EISDIR}
WHERE = "write elsewhere with paths.artifacts_dir=<folder>{} (or the LATENT_TRAITS_ARTIFACTS variable)"


class LatentTraitsError(Exception):
    """Bad input or a missing prerequisite that the user can fix; the message says how."""


class OutputWriteError(LatentTraitsError):
    """An output could not be written (disk full, unwritable folder); nothing half-written is kept."""


class ConfigError(LatentTraitsError):
    """A config value that cannot work (found once the model or data is known): like check_config's
    errors it writes nothing, not even a failed train_result.json."""


class CorruptArtifactError(LatentTraitsError):
    """A file the project wrote earlier (a record, a train_result.json, predictions, an adapter) is
    damaged: the message names it and how to recreate it."""


def is_output_error(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in DISK_FULL | NOT_WRITABLE


def blocking_file(path: Path) -> Path | None:
    """The nearest ancestor of `path` (or itself) that exists but is not a folder."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def output_error(path: str | os.PathLike, err: OSError, is_folder: bool = False) -> OutputWriteError:
    """The error to show for a failed write of `path` (a file, or a folder to write into), naming
    the path, the cause and the fix."""
    path = Path(path)
    if err.errno in DISK_FULL:
        return OutputWriteError(
            f"cannot write {'to ' if is_folder else ''}{path}: the disk is full ({err.strerror}). "
            f"Free space on that disk, or {WHERE.format(' on a disk with room')}"
        )
    blocker = blocking_file(path if is_folder else path.parent)
    if blocker is not None:
        cause = f"{blocker} is a file, where a folder is needed"
        fix = f"move or delete that file, or {WHERE.format('')}"
    else:
        cause = err.strerror or str(err)
        fix = f"make that folder writable (it may be on a read-only disk), or {WHERE.format('')}"
    return OutputWriteError(f"cannot write {'to ' if is_folder else ''}{path}: {cause}. {fix[0].upper()}{fix[1:]}")


def exit_on_user_error(fn: F) -> F:
    """Turn a LatentTraitsError, or a full disk / read-only folder met by a library's own writer
    (e.g. Lightning's checkpoints), into a clear message and exit status 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (LatentTraitsError, OSError) as err:
            if isinstance(err, OSError):
                if err.errno not in DISK_FULL | {errno.EROFS}:
                    raise
                err = output_error(err.filename or "an output file", err)
            log.error("%s", err)
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
