"""kill -9 during training, evaluation and analysis, then the same command again: no corrupt or
partial file is left, finished work is not redone, and the end result equals an uninterrupted run.

Real processes of the real entry points on the tiny model; tests/pause_then_run.py only picks the
moment of the kill (inside an atomic write, after its temporary file is written, before the rename).
"""

from __future__ import annotations

import json

import pytest
import torch
from pipeline import (
    ANALYZE,
    EVALUATE,
    N_CELLS,
    TRAIN,
    assert_every_json_parses,
    assert_same_adapters,
    cells,
    differences,
    kill_inside_write,
    mtimes,
    report_numbers,
    run_ok,
    temp_entries,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    artifacts = tmp_path_factory.mktemp("whole") / "artifacts"
    for script, args in (("train.py", TRAIN), ("evaluate.py", EVALUATE), ("analyze.py", ANALYZE)):
        run_ok(script, args, artifacts)
    return artifacts


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """Artifacts of the run that gets killed, stage by stage (the tests run in file order)."""
    return tmp_path_factory.mktemp("killed") / "artifacts"


def test_training_killed_mid_checkpoint_resumes_to_the_same_adapters(uninterrupted, killed):
    # 4 checkpoints per adapter: the 6th is goat's at step 4 of 8, imdb is finished by then
    kill_inside_write("latent_traits.train.checkpoints", 6, "last.ckpt", "train.py", TRAIN, killed)
    adapters = killed / "adapters" / "tiny_llama"
    assert (adapters / "imdb/lora_r8_s0/train_result.json").is_file()
    assert not (adapters / "goat/lora_r8_s0").exists()  # nothing where the unfinished adapter goes
    checkpoints = adapters / "goat/lora_r8_s0.checkpoints"
    assert [p.name for p in checkpoints.iterdir() if not p.name.startswith(".")] == ["last.ckpt"]
    step = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    assert step == 2  # the previous checkpoint, whole; the killed write is only a temporary
    assert len(temp_entries(checkpoints)) == 1
    finished = mtimes(adapters / "imdb")

    out = run_ok("train.py", TRAIN, killed)
    assert out.count("Skipping") == 1 and "Resuming from" in out
    assert mtimes(adapters / "imdb") == finished  # the finished adapter is not redone
    result = json.loads((adapters / "goat/lora_r8_s0/train_result.json").read_text())
    assert result["status"] == "complete" and result["steps"] == 8 and result["resumed_from"]
    assert not checkpoints.exists() and not temp_entries(killed)
    assert_every_json_parses(killed)
    assert_same_adapters(uninterrupted, killed)


def test_evaluation_killed_mid_cell_resumes_to_the_same_records(uninterrupted, killed):
    # inside the 3rd cell's predictions write: two cells are finished, the third is a temporary
    kill_inside_write("latent_traits.io", 3, ".predictions.jsonl", "evaluate.py", EVALUATE, killed)
    eval_dir = killed / "eval"
    assert len(list(eval_dir.rglob("*.json"))) == 2 and len(temp_entries(eval_dir)) == 1
    assert_every_json_parses(eval_dir)
    finished = mtimes(eval_dir)

    out = run_ok("evaluate.py", EVALUATE, killed)
    assert f"{N_CELLS - 2} of {N_CELLS} cells to evaluate" in out
    assert {k: v for k, v in mtimes(eval_dir).items() if k in finished} == finished
    assert not temp_entries(killed)
    assert_every_json_parses(killed)
    got, want = cells(killed), cells(uninterrupted)
    assert len(want) == N_CELLS and got.keys() == want.keys()
    for cell in want:
        # metrics, settings, sampling seeds and predictions
        assert got[cell] == want[cell], (cell, differences(got[cell][0], want[cell][0]))


def test_analysis_killed_mid_report_keeps_the_old_report_and_rewrites_it(uninterrupted, killed):
    reports = killed / "reports" / "tiny_llama"
    run_ok("analyze.py", [*ANALYZE, "analysis.n_components=1"], killed)  # an older report
    old = (reports / "report.json").read_text()
    kill_inside_write("latent_traits.analysis.report", 1, "tiny_llama", "analyze.py", ANALYZE, killed)
    assert (reports / "report.json").read_text() == old  # the old report stands, whole
    assert len(temp_entries(reports.parent)) == 1  # the killed rewrite, never renamed into place

    run_ok("analyze.py", ANALYZE, killed)
    assert not temp_entries(killed)
    assert_every_json_parses(killed)
    got, want = report_numbers(killed), report_numbers(uninterrupted)
    assert got == want, differences(got, want)
    assert json.loads((reports / "report.json").read_text())["options"]["n_components"] != 1

