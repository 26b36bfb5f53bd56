"""The three entry points run as a user runs them (subprocesses), on the tiny model; a rerun skips all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["model=tiny_llama", "logger=none"]
TRAIN = ["-m", *TINY, "source_dataset=imdb,goat", "trainer.max_steps=2", "data.train_n=8", "data.batch_size=4"]
EVALUATE = ["model=tiny_llama", "eval.n=6", "target_task=[imdb,goat]", "eval.decoding.max_new_tokens_cap=8"]
ANALYZE = ["model=tiny_llama"]
ADAPTERS = ("imdb/lora_r8_s0", "goat/lora_r8_s0")


def run(script: str, args: list[str], cwd: Path, artifacts: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LATENT_TRAITS_ARTIFACTS": str(artifacts), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def mtimes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    work = tmp_path_factory.mktemp("study")
    artifacts = work / "artifacts"
    results = {}
    for script, args in (("train.py", TRAIN), ("evaluate.py", EVALUATE), ("analyze.py", ANALYZE)):
        proc = run(script, args, work, artifacts)
        assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        results[script] = proc
    return work, artifacts, results


def test_training_writes_one_adapter_directory_per_job(study):
    _, artifacts, _ = study
    expected = set()
    for adapter in ADAPTERS:
        for name in ("adapter_config.json", "adapter_model.safetensors", "train_result.json", "README.md"):
            expected.add(f"tiny_llama/{adapter}/{name}")
    assert files_under(artifacts / "adapters") == expected
    result = json.loads((artifacts / "adapters/tiny_llama/imdb/lora_r8_s0/train_result.json").read_text())
    assert result["status"] == "complete" and result["data"]["n"] == 8 and result["steps"] == 2


def test_evaluation_writes_a_record_and_predictions_per_cell(study):
    _, artifacts, _ = study
    expected = {f"tiny_llama/{adapter}/{task}{suffix}"
                for adapter in ("base", *ADAPTERS) for task in ("imdb", "goat")
                for suffix in (".json", ".predictions.jsonl")}
    assert files_under(artifacts / "eval") == expected
    record = json.loads((artifacts / "eval/tiny_llama/imdb/lora_r8_s0/imdb.json").read_text())
    assert record["adapter"]["id"] == "imdb/lora_r8_s0" and record["primary_metric"] == "accuracy"
    assert record["data"]["n"] == 6 and record["data"]["hash"] and record["versions"]["torch"]
    rows = [json.loads(line) for line in
            (artifacts / "eval/tiny_llama/imdb/lora_r8_s0/imdb.predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["parsed"] in ("0", "1") for r in rows)
    assert set(rows[0]) >= {"id", "reference", "raw_output", "parsed", "correct", "output_chars",
                            "output_tokens", "label_scores"}


def test_analysis_writes_the_report(study):
    _, artifacts, results = study
    report = artifacts / "reports" / "tiny_llama"
    assert {"report.md", "report.html", "matrix.csv", "matrix.png"} <= files_under(report)
    assert "report.html" in results["analyze.py"].stdout + results["analyze.py"].stderr


def test_rerun_skips_all_finished_work(study):
    work, artifacts, _ = study
    before = mtimes(artifacts / "adapters") | mtimes(artifacts / "eval")
    train = run("train.py", TRAIN, work, artifacts)
    evaluate = run("evaluate.py", EVALUATE, work, artifacts)
    assert train.returncode == 0 and evaluate.returncode == 0
    assert (mtimes(artifacts / "adapters") | mtimes(artifacts / "eval")) == before
    assert (train.stdout + train.stderr).count("Skipping") == 2
    assert "0 of 6 cells to evaluate" in evaluate.stdout + evaluate.stderr


def test_bad_input_fails_clearly_and_writes_nothing(tmp_path):
    artifacts = tmp_path / "artifacts"
    unknown = run("train.py", [*TINY, "source_dataset=nope"], tmp_path, artifacts)
    assert unknown.returncode != 0 and "imdb" in unknown.stderr and "goat" in unknown.stderr
    no_adapters = run("evaluate.py", ["model=tiny_llama"], tmp_path, artifacts)
    assert no_adapters.returncode != 0 and "python train.py" in no_adapters.stderr
    no_records = run("analyze.py", ANALYZE, tmp_path, artifacts)
    assert no_records.returncode != 0 and "evaluate.py" in no_records.stderr
    assert not artifacts.exists() or files_under(artifacts) == set()
