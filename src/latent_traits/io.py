"""Atomic file writes and provenance shared by every stage.

Every result file is written to a temporary sibling and renamed into place, so a killed job
never leaves a half-written record: a file either exists whole or not at all.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from latent_traits.errors import (
    DISK_FULL,
    CorruptArtifactError,
    OutputWriteError,
    is_output_error,
    output_error,
)

TRACKED_PACKAGES = (
    "latent-traits", "torch", "transformers", "peft", "lightning", "hydra-core", "omegaconf",
    "torchmetrics", "wandb", "scikit-learn", "numpy", "pandas",
)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    Works for files and directories alike (an existing target directory is replaced). A full disk
    or an unwritable folder raises OutputWriteError naming `path` and the fix."""
    path = Path(path)
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]  # deepest first
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clear_stale_temps(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    except OSError as err:
        remove_empty(created)
        raise (output_error(path, err) if is_output_error(err) else err) from err
    target = tmp / path.name
    written = False
    try:
        yield target
        if path.is_dir() and target.is_dir():
            old = tmp.with_name(f".{path.name}.{os.getpid()}.old.tmp")
            os.replace(path, old)
            os.replace(target, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(target, path)
        written = True
    except OutputWriteError as err:  # from a write nested in this one: name this, the real target
        cause = err.__cause__
        raise (output_error(path, cause) if isinstance(cause, OSError) else err) from cause
    except OSError as err:
        # inside the block only unambiguous write errors: an EACCES there may come from a read
        if err.errno in DISK_FULL or err.errno == errno.EROFS:
            raise output_error(path, err) from err
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not written:  # a failed write leaves no trace, not even the folders made for it
            remove_empty(created)


def remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def clear_stale_temps(path: Path) -> None:
    """Remove the temporaries a killed writer of `path` left beside it (``.<name>.<pid>.<x>.tmp``
    of a process no longer running here); a killed directory swap gets its previous version back."""
    prefix = f".{path.name}."
    for entry in path.parent.iterdir():
        parts = entry.name[len(prefix):].split(".")
        if not entry.name.startswith(prefix) or len(parts) != 3 or parts[2] != "tmp" \
                or not parts[0].isdigit() or process_running(int(parts[0])):
            continue
        if parts[1] == "old" and not path.exists():
            os.replace(entry, path)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def process_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def ensure_writable(folder: str | os.PathLike) -> None:
    """Fail at once, before any work, when outputs cannot be written to `folder`. Leaves no trace:
    folders made for the probe are removed again (a run refused later wrote nothing)."""
    folder = Path(folder)
    created = [d for d in (folder, *folder.parents) if not d.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        if is_output_error(err):
            raise output_error(folder, err, is_folder=True) from err
        raise
    finally:
        remove_empty(created)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


RECREATE = "delete it and rerun the command that wrote it"


def read_json(path: str | os.PathLike, fix: str = RECREATE) -> Any:
    """The JSON in `path`; a damaged file (truncated, not UTF-8) raises CorruptArtifactError naming
    it and `fix` instead of a bare decoding traceback."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise corrupt(path, err, fix) from None


def read_jsonl(path: str | os.PathLike, fix: str = RECREATE) -> list[dict]:
    rows, number = [], 0
    with open(path, encoding="utf-8") as f:
        try:
            for line in f:
                number += 1
                if line.strip():
                    rows.append(json.loads(line))
        except UnicodeDecodeError as err:
            raise corrupt(f"{path}:{number + 1}", err, fix) from None
        except json.JSONDecodeError as err:
            raise corrupt(f"{path}:{number}", err, fix) from None
    return rows


def corrupt(where: str | os.PathLike, err: Exception, fix: str) -> CorruptArtifactError:
    cause = f"not valid JSON ({err.msg})" if isinstance(err, json.JSONDecodeError) else "not UTF-8 text"
    return CorruptArtifactError(f"{where} is damaged (truncated or edited?): {cause}; {fix}")


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of a JSON-serialisable object with sorted keys: equal content, equal hash."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_sha(cwd: str | os.PathLike | None = None) -> str | None:
    """The commit the code ran from, with '-dirty' when the tree had uncommitted changes."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def provenance() -> dict[str, Any]:
    return {
        "versions": package_versions(),
        "git_sha": git_sha(),
        "host": platform.node(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
