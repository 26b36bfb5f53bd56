"""A full disk or an unwritable output folder: each stage stops with a clear error (the path, the
cause, the fix; exit status 2, no traceback) and leaves nothing half-written behind.

Real processes on the tiny model. Unwritable: a path whose parent is a regular file (fails even
for root, which chmod does not stop) and a read-only tmpfs; full: a tmpfs filled to the brim.
The tmpfs cases need `mount` (root); elsewhere they are skipped, and tests/test_io_atomic.py
covers the same errors in-process.
"""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from pipeline import run, run_ok, temp_entries

pytestmark = pytest.mark.slow
TRAIN = ["model=tiny_llama", "logger=none", "source_dataset=goat", "trainer.max_steps=2", "data.train_n=4",
         "data.batch_size=2", "train.checkpoint_every_n_steps=2"]
EVALUATE = ["model=tiny_llama", "eval.n=2", "target_task=[imdb,goat]", "eval.decoding.max_new_tokens_cap=4"]
FILLER = "filler"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A trained adapter and its cell records, in a healthy folder."""
    artifacts = tmp_path_factory.mktemp("inputs") / "artifacts"
    run_ok("train.py", TRAIN, artifacts)
    run_ok("evaluate.py", EVALUATE, artifacts)
    return artifacts


@contextmanager
def tmpfs(mount_point: Path, options: str):
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); test_io_atomic.py covers this in-process")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], capture_output=True)


@contextmanager
def bad_place(kind: str, tmp_path: Path):
    """Yield (a folder to write outputs under, what the error must say)."""
    if kind == "file_in_the_way":
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where the output folder should be\n")
        yield blocker / "artifacts", f"{blocker} is a file, where a folder is needed"
    elif kind == "read_only":
        with tmpfs(tmp_path / "ro", "ro,size=1m") as mount_point:
            yield mount_point / "artifacts", "Read-only file system"
    else:  # full
        with tmpfs(tmp_path / "full", "size=256k") as mount_point:
            with open(mount_point / FILLER, "wb", buffering=0) as f, pytest.raises(OSError, match="No space left"):
                while True:
                    f.write(b"\0" * 4096)
            yield mount_point / "artifacts", "the disk is full"


def stage_args(stage: str, inputs: Path, out: Path) -> list[str]:
    """Each stage reads healthy inputs and writes its outputs under `out`."""
    if stage == "train.py":
        return [*TRAIN, f"paths.artifacts_dir={out}"]
    if stage == "evaluate.py":
        return [*EVALUATE, f"paths.adapters_dir={inputs / 'adapters'}", f"paths.eval_dir={out / 'eval'}"]
    return ["model=tiny_llama", f"records_dir={inputs / 'eval' / 'tiny_llama'}",
            f"report_dir={out / 'reports' / 'tiny_llama'}"]


@pytest.mark.parametrize("kind", ["file_in_the_way", "read_only", "full"])
@pytest.mark.parametrize("stage", ["train.py", "evaluate.py", "analyze.py"])
def test_an_unwritable_or_full_output_folder_is_a_clear_error(stage, kind, inputs, tmp_path):
    with bad_place(kind, tmp_path) as (out, cause):
        proc = run(stage, stage_args(stage, inputs, out), tmp_path / "work" / "artifacts")
        message = proc.stderr
        assert proc.returncode == 2, message[-3000:]
        assert "Traceback" not in message, message[-3000:]
        error = next(line for line in message.splitlines() if line.startswith("error: "))
        assert f"cannot write to {out}" in error or f"cannot write {out}" in error, error
        assert cause in error and "paths.artifacts_dir=" in error, error
        root = out.parent
        if root.is_file():  # the file in the way is left as it was
            assert root.read_text().startswith("a file where")
            return
        assert not temp_entries(root)  # nothing half-written, no temporaries
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        assert files in ([], [FILLER]), files
