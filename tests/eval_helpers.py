"""Helpers for the evaluation tests: fake finished adapters of the tiny model, records on disk."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import CACHE_DIR

from latent_traits.contracts import TRAIN_RESULT
from latent_traits.io import write_json
from latent_traits.model.factory import load_tokenizer_and_model


def make_adapter(adapters_dir: Path, tiny_model_cfg: dict, source: str, seed: int = 0,
                 trained_on: str = "tiny_llama") -> Path:
    """A random (non-zero) LoRA adapter of a fresh tiny model, with a complete train_result.json
    under adapters/<directory model>/<source>/lora_r4_s<seed>/ naming `trained_on` as its base."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed + 100)
    _, model = load_tokenizer_and_model(tiny_model_cfg, CACHE_DIR)  # fresh: peft wraps it in place
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    adapter_id = f"{source}/lora_r4_s{seed}"
    path = adapters_dir / "tiny_llama" / adapter_id
    peft.save_pretrained(str(path))
    write_json(path / TRAIN_RESULT, {
        "status": "complete", "adapter_id": adapter_id, "source_dataset": source,
        "model": {"name": trained_on}, "settings_hash": f"fake-{source}-{seed}", "settings": {"lora": {"r": 4}},
        "data": {"n": 0},
    })
    return path


def read_cells(eval_dir: Path) -> dict[str, tuple[dict, list[dict]]]:
    """{<adapter>/<task>: (record without run-specific fields, prediction rows)} of every cell."""
    out = {}
    for path in sorted(eval_dir.rglob("*.json")):
        record = json.loads(path.read_text())
        for key in ("timing", "created_at", "host", "git_sha", "versions"):
            record.pop(key, None)
        record["adapter"].pop("path", None)
        rows = [json.loads(line) for line in path.with_name(path.stem + ".predictions.jsonl").read_text().splitlines()]
        out[f"{record['adapter']['id']}/{record['task']['name']}"] = (record, rows)
    return out


# -- damaged artifacts (issue 16) ------------------------------------------------------------------

def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def write_cells(eval_dir: Path) -> None:
    """Records of base + 3 adapters x 2 tasks of the model test_analysis uses, each with a
    predictions file whose mean correctness is its score."""
    from test_analysis import MODEL, make_record

    from latent_traits.eval.records import predictions_path, record_path
    from latent_traits.io import write_jsonl

    for i, adapter in enumerate(["base", "a/lora_r4_s0", "b/lora_r4_s0", "c/lora_r4_s0"]):
        for j, task in enumerate(["imdb", "paws"]):
            correct = [(k + i + j) % 3 == 0 for k in range(6)]
            write_jsonl(predictions_path(eval_dir, MODEL, adapter, task),
                        [{"id": f"e{k}", "correct": c} for k, c in enumerate(correct)])
            write_json(record_path(eval_dir, MODEL, adapter, task), make_record(adapter, task, sum(correct) / 6))


def analyse(tmp_path: Path) -> Path:
    """The report of the records under tmp_path/eval (written to tmp_path/report)."""
    from test_analysis import MODEL

    from latent_traits.analysis.options import AnalysisOptions, BootstrapOptions, TransferOptions
    from latent_traits.analysis.run import run_analysis

    options = AnalysisOptions(bootstrap=BootstrapOptions(n_resamples=20), transfer=TransferOptions(enabled=False))
    return run_analysis(tmp_path / "eval" / MODEL, tmp_path / "report", options, MODEL)
