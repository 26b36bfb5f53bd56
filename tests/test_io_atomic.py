"""Atomic writes under faults, in-process: a full disk or an unwritable folder is an OutputWriteError
naming the path and the fix, with nothing left behind; a killed writer's leftovers are cleared by
the next write of the same target; rerun command lines narrow a job to one cell."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from latent_traits.errors import OutputWriteError, exit_on_user_error
from latent_traits.io import atomic_path, ensure_writable, read_json, write_json
from latent_traits.rerun import cell_command, train_command


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_names_the_target_and_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "new" / "deeper" / "record.json"
    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OutputWriteError) as err:
        write_json(target, {"a": 1})
    message = str(err.value)
    assert str(target) in message and "disk is full" in message and "paths.artifacts_dir=" in message
    assert list(tmp_path.iterdir()) == []  # not even the folders made for it


def test_a_full_disk_inside_a_folder_write_names_the_folder(tmp_path, monkeypatch):
    report = tmp_path / "reports" / "model"
    with pytest.raises(OutputWriteError, match=f"cannot write {report}: the disk is full"):
        with atomic_path(report) as tmp:
            tmp.mkdir()
            monkeypatch.setattr(Path, "write_text", disk_full)
            write_json(tmp / "report.json", {})  # nested: the error names the outer target
    assert list(tmp_path.iterdir()) == []


def test_a_file_where_a_folder_belongs_is_named(tmp_path):
    blocker = tmp_path / "artifacts"
    blocker.write_text("")
    with pytest.raises(OutputWriteError, match=f"{blocker} is a file, where a folder is needed"):
        write_json(blocker / "eval" / "x.json", {})
    with pytest.raises(OutputWriteError, match=f"cannot write to {blocker / 'adapters'}"):
        ensure_writable(blocker / "adapters")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod; test_faults_disk.py mounts a read-only tmpfs")
def test_a_read_only_folder_is_named(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(OutputWriteError, match="Make that folder writable"):
            ensure_writable(tmp_path / "eval")
    finally:
        tmp_path.chmod(0o700)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_writers_temporaries_are_cleared_by_the_next_write(tmp_path):
    target = tmp_path / "cell.json"
    stale = tmp_path / f".cell.json.{dead_pid()}.abc123.tmp"
    (stale / "cell.json").parent.mkdir()
    (stale / "cell.json").write_text('{"half')
    live = tmp_path / f".cell.json.{os.getppid()}.def456.tmp"  # a writer that still runs
    live.mkdir()
    other = tmp_path / f".cell.json.more.{dead_pid()}.abc.tmp"  # another target's temporary
    other.mkdir()
    write_json(target, {"ok": True})
    assert read_json(target) == {"ok": True}
    assert not stale.exists() and live.exists() and other.exists()


def test_a_folder_swap_killed_halfway_gets_its_old_version_back(tmp_path):
    report = tmp_path / "report"
    old = tmp_path / f".report.{dead_pid()}.old.tmp"  # killed between the two renames
    old.mkdir()
    (old / "report.json").write_text("{}")
    with atomic_path(tmp_path / "report.sibling") as tmp:  # another target: the old one stays put
        tmp.write_text("")
    assert old.exists() and not report.exists()
    with atomic_path(report) as tmp:
        assert (report / "report.json").is_file()  # restored before the new version is written
        tmp.mkdir()
        (tmp / "report.json").write_text('{"new": 1}')
    assert read_json(report / "report.json") == {"new": 1} and not old.exists()


def test_a_library_writers_full_disk_exits_with_the_message(capsys):
    @exit_on_user_error
    def checkpoint():
        raise OSError(errno.ENOSPC, "No space left on device", "/ckpt/last.ckpt")

    with pytest.raises(SystemExit) as exit_info:
        checkpoint()
    assert exit_info.value.code == 2
    assert "cannot write /ckpt/last.ckpt: the disk is full" in capsys.readouterr().err


def test_rerun_commands_narrow_the_job_to_one_cell():
    job = ["model=tiny_llama", "target_task=[imdb,goat]", "target_task.goat.n=5", "target_task.imdb.n=7",
           "eval.adapters=all", "eval.n=3"]
    assert train_command(["source_dataset=goat", "lora.r=4"]) == "python train.py source_dataset=goat lora.r=4"
    assert cell_command(job, "goat/lora_r8_s0", "imdb", is_base=False) == (
        "python evaluate.py model=tiny_llama target_task.imdb.n=7 eval.n=3 'target_task=[imdb]' "
        "'eval.adapters=[goat/lora_r8_s0]' eval.include_base=false")
    base = cell_command(job, "base", "goat", is_base=True)
    assert base.endswith("'target_task=[goat]' 'eval.adapters=[]' eval.include_base=true +eval.allow_base_only=true")
    assert cell_command(None, "base", "goat", is_base=True) is None  # called from Python, not a command



def raising(err: Exception):
    def train_adapter(cfg):
        raise err
    return train_adapter


def test_an_output_error_stops_a_sweep_where_other_errors_do_not(tmp_path, monkeypatch):
    from conftest import compose_config

    from latent_traits.train import jobs

    cfg = compose_config("train", ["model=tiny_llama", "logger=none"], artifacts=tmp_path)
    monkeypatch.setattr(jobs, "in_multirun", lambda: True)
    monkeypatch.setattr(jobs, "train_adapter", raising(OutputWriteError("cannot write x: the disk is full")))
    with pytest.raises(OutputWriteError):  # every later job of the sweep would fail the same way
        jobs.run_training_job(cfg)
    monkeypatch.setattr(jobs, "train_adapter", raising(ValueError("bad data")))
    assert jobs.run_training_job(cfg) is None  # recorded as failed; the sweep goes on
