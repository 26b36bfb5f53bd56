"""The same command with the same seed gives bit-identical results on CPU, and every result
carries the command line that recreates it (train_result.json and each cell record: `rerun`)."""

from __future__ import annotations

import json
import shutil

import pytest
from pipeline import (
    ANALYZE,
    EVALUATE,
    TRAIN,
    adapter_tensors,
    assert_same_adapters,
    cells,
    differences,
    report_numbers,
    run_command_line,
    run_ok,
    without_run_specific,
)

pytestmark = pytest.mark.slow
GOAT = "adapters/tiny_llama/goat/lora_r8_s0"


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    """The whole study run twice, from scratch, into two folders."""
    runs = []
    for name in ("first", "second"):
        artifacts = tmp_path_factory.mktemp(name) / "artifacts"
        for script, args in (("train.py", TRAIN), ("evaluate.py", EVALUATE), ("analyze.py", ANALYZE)):
            run_ok(script, args, artifacts)
        runs.append(artifacts)
    return runs


def train_result(artifacts, adapter_dir=GOAT) -> dict:
    return json.loads((artifacts / adapter_dir / "train_result.json").read_text())


def test_the_same_commands_twice_give_bit_identical_results(twice):
    first, second = twice
    assert_same_adapters(first, second)
    a, b = without_run_specific(train_result(first)), without_run_specific(train_result(second))
    assert a == b, differences(a, b)  # losses, tokens, data hash, settings
    got, want = cells(second), cells(first)
    assert len(want) == 6 and got.keys() == want.keys()
    for cell in want:
        assert got[cell] == want[cell], (cell, differences(got[cell][0], want[cell][0]))
    got, want = report_numbers(second), report_numbers(first)
    assert got == want, differences(got, want)


def test_a_cell_record_carries_what_reruns_it(twice):
    record = json.loads((twice[0] / "eval/tiny_llama/goat/lora_r8_s0/imdb.json").read_text())
    evaluation = record["eval_config"]
    assert evaluation["seed"] == 0 and evaluation["eval"]["n"] == 3 and evaluation["eval"]["batch_size"] == 2
    assert evaluation["eval"]["decoding"]["do_sample"] is True and evaluation["data"]["max_input_tokens"]
    assert record["decoding"]["max_new_tokens_cap"] == 6 and record["data"]["hash"]
    train = record["adapter"]["train_config"]
    assert train["lora"]["r"] == 8 and train["trainer"]["max_steps"] == 8 and train["seed"] == 0
    assert record["adapter"]["train_data"]["hash"] and record["versions"]["torch"] and record["git_sha"]
    assert record["adapter"]["train_rerun"] == train_result(twice[0])["rerun"]
    assert record["rerun"].startswith("python evaluate.py ") and "'eval.adapters=[goat/lora_r8_s0]'" in record["rerun"]
    assert "'target_task=[imdb]'" in record["rerun"] and "eval.decoding.do_sample=true" in record["rerun"]


def test_the_recorded_train_command_recreates_the_adapter(twice, tmp_path):
    original = train_result(twice[0])
    assert original["rerun"].startswith("python train.py ") and "source_dataset=goat" in original["rerun"]
    assert " -m " not in original["rerun"]  # the one job of the sweep, not the sweep
    fresh = tmp_path / "artifacts"
    run_command_line(original["rerun"], fresh)
    a, b = adapter_tensors(twice[0], "goat/lora_r8_s0"), adapter_tensors(fresh, "goat/lora_r8_s0")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    recreated = without_run_specific(train_result(fresh))
    assert recreated == without_run_specific(original), differences(recreated, without_run_specific(original))
    assert not (fresh / "adapters/tiny_llama/imdb").exists()


def test_the_recorded_cell_command_recreates_the_cell(twice, tmp_path):
    fresh = tmp_path / "artifacts"
    shutil.copytree(twice[0] / "adapters", fresh / "adapters")
    wanted = ("goat/lora_r8_s0/imdb", "base/goat")
    for cell in wanted:
        record = json.loads((twice[0] / "eval/tiny_llama" / f"{cell}.json").read_text())
        run_command_line(record["rerun"], fresh)
    got, want = cells(fresh), cells(twice[0])
    assert set(got) == set(wanted)
    for cell in wanted:  # the same record (its `rerun` included) and predictions
        assert got[cell] == want[cell], (cell, differences(got[cell][0], want[cell][0]))
