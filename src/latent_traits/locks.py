"""One process at a time per adapter and per evaluation cell.

A lock is an flock on a hidden file beside the result it guards (`.<name>.lock`). The kernel
releases it when its process dies, so a killed job never leaves a lock that blocks the next one.
The file exists only while held: the holder removes it before releasing, and a process that
locked a file since removed tries again on the new one.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from latent_traits.errors import is_output_error, output_error
from latent_traits.io import remove_empty

log = logging.getLogger(__name__)


def lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


def _try_open_locked(path: Path, wait: bool) -> int | None:
    """A descriptor holding the lock on `path` as it now is, or None when busy and not waiting."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder we waited for removed that file: lock the current one


@contextmanager
def exclusive(target: Path, what: str, wait: bool = True) -> Iterator[bool]:
    """Hold the lock of `target` for the block; yields False without waiting when `wait` is off
    and another process holds it. Blocking waits say so in the log once."""
    path = lock_path(target)
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]  # deepest first
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _try_open_locked(path, wait=False)
    except OSError as err:  # a full disk, a read-only folder, a file in the way: named, with the fix
        remove_empty(created)
        raise (output_error(path.parent, err, is_folder=True) if is_output_error(err) else err) from err
    if fd is None and wait:
        log.info("Waiting for another process that is working on %s (lock %s)", what, path)
        fd = _try_open_locked(path, wait=True)
    if fd is None:
        yield False
        return
    try:
        yield True
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
        remove_empty(created)  # a job that wrote nothing leaves no folders either


@contextmanager
def exclusive_all(targets: list[Path], what: str, wait: bool = True) -> Iterator[bool]:
    """The locks of several targets together (taken in sorted order, so two processes never wait
    on each other); False, holding none, when one is busy and `wait` is off."""
    with ExitStack() as stack:
        for target in sorted(targets):
            if not stack.enter_context(exclusive(target, what, wait)):
                stack.close()
                yield False
                return
        yield True
