"""One process at a time per adapter and per cell: a second waits or skips, never redoes, and a
killed holder leaves no lock behind."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, compose_config
from eval_helpers import make_adapter
from pipeline import env_for
from test_eval_mixed import tiny_model_cfg_dict

from latent_traits.eval.records import record_path
from latent_traits.eval.runner import evaluate_all
from latent_traits.locks import exclusive, lock_path

HOLD = """
import sys, time
from pathlib import Path
from latent_traits.locks import exclusive
with exclusive(Path(sys.argv[1]), "test"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_in_another_process(target, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_told_busy_or_waits_until_the_first_is_done(tmp_path):
    target = tmp_path / "imdb.json"
    holder = hold_in_another_process(target, 1.5)
    with exclusive(target, "test", wait=False) as held:
        assert held is False
    started = time.monotonic()
    with exclusive(target, "test") as held:
        assert held is True
    assert time.monotonic() - started > 1.0  # waited for the holder's 1.5 s
    holder.wait()
    assert not lock_path(target).exists()  # held only while held
    assert list(tmp_path.iterdir()) == []


def test_a_killed_holder_leaves_no_lock(tmp_path):
    target = tmp_path / "adapter"
    holder = hold_in_another_process(target, 60)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with exclusive(target, "test", wait=False) as held:
        assert held is True


def test_a_lock_taken_makes_no_folders_that_outlive_it(tmp_path):
    target = tmp_path / "a" / "b" / "record.json"
    with exclusive(target, "test"):
        assert target.parent.is_dir()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("one_thread")
def test_evaluation_defers_cells_another_process_holds_and_decodes_each_once(tmp_path, caplog):
    make_adapter(tmp_path / "adapters", tiny_model_cfg_dict(), "imdb")
    cfg = compose_config("evaluate", ["model=tiny_llama", "target_task=[imdb,goat]", "eval.n=3",
                                      "eval.decoding.max_new_tokens_cap=4"], tmp_path)
    held_cell = record_path(cfg.paths.eval_dir, "tiny_llama", "base", "imdb")
    holder = hold_in_another_process(held_cell, 3)
    with caplog.at_level(logging.INFO, logger="latent_traits.locks"):
        written = evaluate_all(cfg)
    holder.wait()
    assert "Waiting for another process that is working on imdb cells" in caplog.text
    names = [f"{p.parent.name}/{p.name}" for p in written]
    assert sorted(names) == sorted({"base/imdb.json", "lora_r4_s0/imdb.json", "base/goat.json", "lora_r4_s0/goat.json"})
    assert names.index("base/goat.json") < names.index("base/imdb.json")  # the held task was left for last
    assert evaluate_all(cfg) == []  # and a second run finds every cell finished


@pytest.mark.slow  # two training processes on the tiny model
def test_two_trainings_of_one_adapter_at_once_train_it_once(tmp_path):
    artifacts = tmp_path / "artifacts"
    args = [sys.executable, str(REPO / "train.py"), "model=tiny_llama", "logger=none", "source_dataset=goat",
            "data.train_n=32", "data.batch_size=4", "trainer.max_steps=24"]
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env_for(artifacts), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    logs = [proc.communicate(timeout=600)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], logs
    trained = [log for log in logs if "Training goat/" in log]
    skipped = [log for log in logs if "Skipping" in log and "a finished adapter with the same settings" in log]
    assert len(trained) == 1 and len(skipped) == 1, logs
    assert "Waiting for another process that is working on adapter goat/" in skipped[0]
