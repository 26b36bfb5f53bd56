"""Damaged artifacts and failed cells (issue 16, items 4 and 6): a damaged adapter fails only its own
cells, named with the file and the fix, and every other cell (base included) is written; the job
then ends with a summary (exit status 2 at the entry point). A judge that fails keeps the decoded
predictions, and a rerun only judges."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import compose_config
from eval_helpers import analyse, edit_json, make_adapter, truncate, write_cells
from test_eval_judge import FakeChatServer, canned

import latent_traits.eval.runner as runner
from latent_traits.eval.failures import CellsFailedError
from latent_traits.eval.runner import evaluate_all

pytestmark = pytest.mark.usefixtures("one_thread")
EVAL = ["model=tiny_llama", "target_task=[imdb]", "eval.n=3", "eval.batch_size=3", "eval.decoding.max_new_tokens_cap=4"]
GREEDY_MIXED, CELL_BY_CELL = [], ["eval.mixed_adapter_batches=false"]


DAMAGE = {  # how an adapter folder gets damaged -> (what the error must name, the fix it must give)
    "truncated_weights": (lambda d: truncate(d / "adapter_model.safetensors"), "adapter_model.safetensors is damaged"),
    "deleted_adapter_config": (lambda d: (d / "adapter_config.json").unlink(), "adapter_config.json is missing"),
    "truncated_train_result": (lambda d: truncate(d / "train_result.json"), "train_result.json is damaged"),
    "truncated_adapter_config": (lambda d: truncate(d / "adapter_config.json"), "adapter_config.json is damaged"),
    "trained_for_no_step": (lambda d: edit_json(d / "train_result.json", lambda r: r.update(steps=0)),
                            "says it trained for 0 steps"),
    # passes the up-front checks, fails inside peft: caught when loading, the base model reloaded clean
    "config_of_another_kind": (lambda d: (d / "adapter_config.json").write_text('{"peft_type": "NOT_A_TYPE"}'),
                               "could not be loaded from"),
}


def record(artifacts: Path, adapter: str, task: str = "imdb") -> dict:
    return json.loads((artifacts / "eval" / "tiny_llama" / adapter / f"{task}.json").read_text())


@pytest.mark.parametrize("batching", [GREEDY_MIXED, CELL_BY_CELL], ids=["mixed", "cell_by_cell"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_adapter_fails_its_own_cells_and_the_others_are_written(damage, batching, tmp_path, tiny_model_cfg):
    adapters = tmp_path / "adapters"
    for source in ("goat", "imdb", "pile"):  # the damaged one is loaded first, between two good ones
        make_adapter(adapters, tiny_model_cfg, source)
    damaged = adapters / "tiny_llama" / "imdb" / "lora_r4_s0"
    damage_it, names = DAMAGE[damage]
    damage_it(damaged)
    before = {p: p.read_bytes() for p in damaged.iterdir()}
    with pytest.raises(CellsFailedError) as err:
        evaluate_all(compose_config("evaluate", [*EVAL, *batching], tmp_path))
    message = str(err.value)
    assert message.startswith("1 of 4 cells failed") and "imdb/lora_r4_s0 x imdb" in message
    assert names in message and ("delete the folder" in message and str(damaged) in message)
    assert "rerun the same evaluate.py command" in message
    for good in ("base", "goat/lora_r4_s0", "pile/lora_r4_s0"):  # base cells included
        assert record(tmp_path, good)["status"] == "complete", good
    failed = record(tmp_path, "imdb/lora_r4_s0")
    assert failed["status"] == "failed" and failed["failed_stage"] == "adapter" and names in failed["error"]
    assert {p: p.read_bytes() for p in damaged.iterdir()} == before  # the damaged files are left as they were


def test_good_adapters_score_the_same_beside_a_damaged_one(tmp_path, tiny_model_cfg):
    """The failed load of a first adapter must not leave the base model changed for the others."""
    for run in ("clean", "damaged"):
        for source in ("goat", "imdb"):
            make_adapter(tmp_path / run / "adapters", tiny_model_cfg, source)
    DAMAGE["config_of_another_kind"][0](tmp_path / "damaged/adapters/tiny_llama/goat/lora_r4_s0")
    evaluate_all(compose_config("evaluate", EVAL, tmp_path / "clean"))
    with pytest.raises(CellsFailedError):
        evaluate_all(compose_config("evaluate", EVAL, tmp_path / "damaged"))
    for good in ("base", "imdb/lora_r4_s0"):
        a, b = record(tmp_path / "clean", good), record(tmp_path / "damaged", good)
        assert a["metrics"] == b["metrics"], good
        rows = [(tmp_path / run / f"eval/tiny_llama/{good}/imdb.predictions.jsonl").read_text()
                for run in ("clean", "damaged")]
        assert rows[0] == rows[1], good


def test_a_failed_cell_is_evaluated_again_once_fixed_and_a_complete_one_is_never_replaced(tmp_path, tiny_model_cfg):
    adapters = tmp_path / "adapters"
    good = make_adapter(adapters, tiny_model_cfg, "imdb")
    evaluate_all(compose_config("evaluate", EVAL, tmp_path))
    finished = record(tmp_path, "imdb/lora_r4_s0")
    truncate(good / "train_result.json")  # its settings can no longer be read: the cell is pending again
    with pytest.raises(CellsFailedError, match="train_result.json is damaged"):
        evaluate_all(compose_config("evaluate", EVAL, tmp_path))
    assert record(tmp_path, "imdb/lora_r4_s0") == finished  # the good record stays
    (good / "train_result.json").unlink()
    make_adapter(adapters, tiny_model_cfg, "goat")
    DAMAGE["deleted_adapter_config"][0](adapters / "tiny_llama/goat/lora_r4_s0")
    with pytest.raises(CellsFailedError):
        evaluate_all(compose_config("evaluate", EVAL, tmp_path))
    assert record(tmp_path, "goat/lora_r4_s0")["status"] == "failed"
    make_adapter(adapters, tiny_model_cfg, "goat")  # retrained
    written = evaluate_all(compose_config("evaluate", EVAL, tmp_path))
    assert [p.parent.parent.name for p in written] == ["goat"]
    assert record(tmp_path, "goat/lora_r4_s0")["status"] == "complete"


def test_a_damaged_cell_record_is_evaluated_again_with_a_warning(tmp_path, tiny_model_cfg, caplog):
    make_adapter(tmp_path / "adapters", tiny_model_cfg, "imdb")
    cfg = compose_config("evaluate", EVAL, tmp_path)
    evaluate_all(cfg)
    damaged = tmp_path / "eval/tiny_llama/base/imdb.json"
    whole = json.loads(damaged.read_text())
    truncate(damaged)
    other = tmp_path / "eval/tiny_llama/imdb/lora_r4_s0/imdb.json"
    mtime = other.stat().st_mtime_ns
    written = evaluate_all(cfg)
    assert written == [damaged] and other.stat().st_mtime_ns == mtime
    assert json.loads(damaged.read_text())["metrics"] == whole["metrics"]
    assert any(str(damaged) in r.message and "evaluating the cell again" in r.message for r in caplog.records)


# -- the judge fails mid-run: the decoded cells are kept, a rerun only judges -----------------------

JUDGED = ["model=tiny_llama", "target_task=[goat,imdb]", "eval.n=3", "eval.decoding.max_new_tokens_cap=4",
          "+eval.allow_base_only=true", "judge=openai", "judge.model=j", "judge.api_key_env=LT_TEST_JUDGE_KEY",
          "judge.max_retries=1", "eval.judge_tasks=[goat]"]


def test_a_failed_judge_keeps_the_decoded_cells_and_a_rerun_only_judges(tmp_path, monkeypatch):
    monkeypatch.setenv("LT_TEST_JUDGE_KEY", "sk-test")
    monkeypatch.setattr("latent_traits.eval.judge.time.sleep", lambda s: None)  # no waits between retries
    down = {"now": True}

    def judge_replies(body):
        if down["now"]:
            raise ConnectionError("the judge is down")  # the handler drops the connection
        return canned(body)

    with FakeChatServer(judge_replies) as server:  # one server: the judge's url is part of a cell's settings
        url = f"judge.base_url={server.url}"
        with pytest.raises(CellsFailedError, match=r"1 of 2 cells failed.*base x goat: the judge failed") as err:
            evaluate_all(compose_config("evaluate", [*JUDGED, url], tmp_path))
        assert "a rerun only judges" in str(err.value)
        goat = tmp_path / "eval/tiny_llama/base/goat"
        failed = json.loads(goat.with_suffix(".json").read_text())
        assert failed["status"] == "failed" and failed["failed_stage"] == "judge"
        assert failed["metrics"]["flexible_extract"] is not None  # the deterministic scores are kept
        kept = [json.loads(line) for line in goat.with_suffix(".predictions.jsonl").read_text().splitlines()]
        assert len(kept) == 3 and all("raw_output" in r and "judge_verdict" not in r for r in kept)
        assert record(tmp_path, "base")["status"] == "complete"  # imdb is not judged

        def no_decoding(*args, **kwargs):
            raise AssertionError("a rerun after a judge failure must not decode again")

        monkeypatch.setattr(runner, "run_cell", no_decoding)
        monkeypatch.setattr(runner, "run_cells", no_decoding)
        down["now"], n_before = False, len(server.requests)
        written = evaluate_all(compose_config("evaluate", [*JUDGED, url], tmp_path))
        assert len(server.requests) - n_before == 3
    assert written == [goat.with_suffix(".json")]
    done = json.loads(goat.with_suffix(".json").read_text())
    assert done["status"] == "complete" and done["metrics"]["judge_n_valid"] == 3
    assert done["metrics"]["flexible_extract"] == failed["metrics"]["flexible_extract"]
    rows = [json.loads(line) for line in goat.with_suffix(".predictions.jsonl").read_text().splitlines()]
    assert [r["raw_output"] for r in rows] == [r["raw_output"] for r in kept]
    assert all(r["judge_verdict"] in (True, False) for r in rows)


# -- analysis reading failed cells (damaged ones: the bad-input table in tests/test_bad_inputs.py) -------

def test_analysis_skips_failed_cells_with_a_warning(tmp_path, caplog):
    from test_analysis import MODEL

    write_cells(tmp_path / "eval")
    edit_json(tmp_path / "eval" / MODEL / "c/lora_r4_s0/imdb.json",
              lambda r: r.update(status="failed", failed_stage="adapter", error="its weights are damaged"))
    edit_json(tmp_path / "eval" / MODEL / "c/lora_r4_s0/paws.json",
              lambda r: r.update(status="failed", failed_stage="adapter", error="its weights are damaged"))
    html = analyse(tmp_path)
    report = json.loads((html.parent / "report.json").read_text())
    assert {r["adapter"] for r in report["records"]} == {"base", "a/lora_r4_s0", "b/lora_r4_s0"}
    assert any("2 failed cell(s) skipped" in r.message and "c/lora_r4_s0 x imdb (its weights are damaged)" in r.message
               for r in caplog.records)


@pytest.mark.slow  # subprocesses: ~20 s
def test_at_the_entry_points_a_failed_cell_or_damaged_record_ends_in_exit_status_2(tmp_path, tiny_model_cfg):
    from pipeline import run

    artifacts = tmp_path / "artifacts"
    for source in ("goat", "imdb"):
        make_adapter(artifacts / "adapters", tiny_model_cfg, source)
    DAMAGE["truncated_weights"][0](artifacts / "adapters/tiny_llama/imdb/lora_r4_s0")
    proc = run("evaluate.py", EVAL, artifacts)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "error: 1 of 3 cells failed" in proc.stderr and "adapter_model.safetensors is damaged" in proc.stderr
    assert record(artifacts, "base")["status"] == record(artifacts, "goat/lora_r4_s0")["status"] == "complete"
    truncate(artifacts / "eval/tiny_llama/goat/lora_r4_s0/imdb.predictions.jsonl", 0.4)
    proc = run("analyze.py", ["model=tiny_llama", "analysis.bootstrap.n_resamples=10"], artifacts)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert re.search(r"error: .*goat/lora_r4_s0/imdb\.predictions\.jsonl:\d+ is damaged", proc.stderr)
    assert not (artifacts / "reports").exists()
