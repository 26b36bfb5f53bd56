"""The paper's three commands (experiment=paper for train.py, evaluate.py and analyze.py) run end
to end on CPU with the tiny random Llama (the paper model's layer names: q, k, v, o, gate, up,
down), offline data and a handful of steps, so the presets compose and fit together. What the
dry run swaps out of the paper's setup is exactly the overrides below; everything else (LoRA
r=64/alpha=32 on every projection, the full-sequence loss, sampled generation, whole test splits
narrowed here by eval.task_n) comes from the preset."""

from __future__ import annotations

import json

import pytest
from pipeline import run_ok

pytestmark = pytest.mark.slow

# the paper's model, data source, GPU trainer and sizes swapped for a CPU dry run
SMALL = ["model=tiny_llama", "data.source=offline", "trainer=cpu", "trainer.precision=32-true"]
TRAIN = ["-m", "experiment=paper", *SMALL, "logger=none", "source_dataset=imdb,goat", "trainer.max_steps=2",
         "trainer.accumulate_grad_batches=1", "data.train_n=8", "data.batch_size=4", "data.max_length=256"]
EVALUATE = ["experiment=paper", *SMALL, "eval.tasks=[imdb,goat]", "eval.n=4",
            "eval.decoding.max_new_tokens_cap=6"]
ANALYZE = ["experiment=paper", *SMALL]


def test_the_papers_three_commands_run_end_to_end(tmp_path):
    artifacts = tmp_path / "artifacts"
    run_ok("train.py", TRAIN, artifacts)
    adapters = artifacts / "adapters" / "tiny_llama"
    results = {p.parent.parent.name: json.loads(p.read_text()) for p in adapters.glob("*/*/train_result.json")}
    assert sorted(results) == ["goat", "imdb"]
    for result in results.values():  # the preset's LoRA and loss, the dry run's sizes
        settings = result["settings"]
        assert (settings["lora"]["r"], settings["lora"]["lora_alpha"]) == (64, 32)
        assert settings["data"]["loss_span"] == "full" and result["steps"] == 2
    assert sorted(p.name for p in adapters.glob("*/*")) == ["lora_r64_s0", "lora_r64_s0"]

    run_ok("evaluate.py", EVALUATE, artifacts)
    records = {p.relative_to(artifacts / "eval" / "tiny_llama").as_posix(): json.loads(p.read_text())
               for p in (artifacts / "eval" / "tiny_llama").rglob("*.json")}
    assert sorted(records) == ["base/goat.json", "base/imdb.json", "goat/lora_r64_s0/goat.json",
                               "goat/lora_r64_s0/imdb.json", "imdb/lora_r64_s0/goat.json", "imdb/lora_r64_s0/imdb.json"]
    goat = records["base/goat.json"]
    assert goat["decoding"]["do_sample"] is True and goat["decoding"]["temperature"] == 0.7
    assert goat["decoding"]["top_p"] == 0.95 and goat["data"]["n"] == 4

    out = run_ok("analyze.py", ANALYZE, artifacts)
    matrix = (artifacts / "reports" / "tiny_llama" / "matrix.csv").read_text()
    rows = [line.split(",")[0] for line in matrix.splitlines()]
    assert rows == ["adapter", "base", "goat/lora_r64_s0", "imdb/lora_r64_s0"]  # the preset's row selection
    report = artifacts / "reports" / "tiny_llama"
    assert (report / "report.html").is_file() and "## Findings" in (report / "report.md").read_text()
    assert "report.html" in out
