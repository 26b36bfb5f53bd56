"""W&B logging of an evaluation job: offline runs in tmp, per-task metrics, tables, confusion
matrices, nothing secret, and the shape the analysis stage reads back."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from conftest import compose_config
from eval_helpers import make_adapter

from latent_traits.analysis.store import records_from_run
from latent_traits.errors import LatentTraitsError
from latent_traits.eval import wandb_log
from latent_traits.eval.runner import evaluate_all
from latent_traits.eval.wandb_log import EvalWandb, logger_kind

pytestmark = pytest.mark.usefixtures("one_thread")
FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"  # 40 characters, like a real key
EVAL = ["model=tiny_llama", "target_task=[imdb,goat]", "eval.n=4", "eval.decoding.max_new_tokens_cap=4",
        "logger=wandb", "experiment_name=wbtest"]


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb_dir").mkdir()
    return tmp_path


def test_logger_kinds():
    assert logger_kind(None) == "none" and logger_kind({}) == "none"
    assert logger_kind({"_target_": "lightning.pytorch.loggers.WandbLogger"}) == "wandb"
    with pytest.raises(LatentTraitsError, match="W&B only"):
        logger_kind({"_target_": "lightning.pytorch.loggers.CSVLogger"})


def test_evaluation_logs_one_offline_run_readable_by_the_analysis(offline_wandb, tiny_model_cfg, monkeypatch):
    tmp_path = offline_wandb
    make_adapter(tmp_path / "adapters", tiny_model_cfg, "imdb")
    seen = []  # (config, summary, exit code, id, name, group) of each run, captured before it finishes
    finish = EvalWandb.finish

    def capture(self, exit_code=0):
        if self.run is not None:
            summary = {k: v if isinstance(v, int | float | str) else "<media>"
                       for k, v in dict(self.run.summary).items()}
            seen.append((json.loads(json.dumps(dict(self.run.config))), summary, exit_code,
                         self.run.id, self.run.name, self.run.group))
        finish(self, exit_code)

    monkeypatch.setattr(EvalWandb, "finish", capture)
    cfg = compose_config("evaluate", EVAL, tmp_path)
    written = evaluate_all(cfg)
    assert len(written) == 4 and len(seen) == 1  # one run for the whole job (base and adapter), finished
    config, summary, exit_code, run_id, name, group = seen[0]
    assert exit_code == 0 and group == "wbtest" and name == "evaluate-wbtest"
    assert config["job"]["eval"]["n"] == 4 and config["job"]["model"]["name"] == "tiny_llama"  # resolved config
    assert config["model"] == {"name": "tiny_llama", "source": "tiny_random"}

    save_dir = tmp_path / "outputs" / "wandb"  # logger.save_dir: the job's output folder
    runs = sorted(save_dir.glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
    for path in save_dir.rglob("*"):  # no API key anywhere in what W&B wrote
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path

    cells = {(c["adapter"]["id"], c["task"]["name"]) for c in config["cells"]}
    assert cells == {("base", "imdb"), ("base", "goat"), ("imdb/lora_r4_s0", "imdb"), ("imdb/lora_r4_s0", "goat")}
    for adapter in ("base", "imdb/lora_r4_s0"):  # tables per cell, confusion matrices for classification
        assert f"predictions/{adapter}/imdb" in summary and f"confusion_matrix/{adapter}/imdb_table" in summary
        assert f"predictions/{adapter}/goat" in summary and f"confusion_matrix/{adapter}/goat_table" not in summary
    assert "eval/imdb/lora_r4_s0/imdb/accuracy" in summary and "eval/base/goat/flexible_extract" in summary

    local = {(r["adapter"]["id"], r["task"]["name"]): r for r in map(lambda p: json.loads(p.read_text()), written)}
    run = SimpleNamespace(config=config, summary=summary, id=run_id, name=name, group=group, tags=[], created_at=None)
    read = {(r["adapter"]["id"], r["task"]["name"]): r for r in records_from_run(run, "me/proj/")}
    assert set(read) == set(local)
    for key, cell in read.items():
        record = local[key]
        assert cell["settings_hash"] == record["settings_hash"] and cell["model"]["name"] == "tiny_llama"
        assert cell["metrics"][record["primary_metric"]] == pytest.approx(record["metrics"][record["primary_metric"]])
        assert cell["metrics"]["mean_output_chars"] == pytest.approx(record["metrics"]["mean_output_chars"])
        assert cell["_path"] == f"wandb:me/proj/{run_id}/{key[0]}/{key[1]}"

    # a rerun skips every cell but still logs them, from the records on disk, into its one run
    seen.clear()
    assert evaluate_all(compose_config("evaluate", EVAL, tmp_path)) == []
    assert len(seen) == 1 and len(seen[0][0]["cells"]) == 4


def test_a_failing_job_still_finishes_its_run(offline_wandb, monkeypatch):
    tmp_path = offline_wandb
    finished = []
    monkeypatch.setattr(EvalWandb, "finish", lambda self, exit_code=0: finished.append(exit_code))
    import latent_traits.eval.runner as runner
    from latent_traits.eval.failures import CellsFailedError

    def boom(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(runner, "run_cell", boom)
    cfg = compose_config("evaluate", [*EVAL, "+eval.allow_base_only=true"], tmp_path)
    with pytest.raises(CellsFailedError, match="RuntimeError: killed"):  # each cell recorded as failed, then
        evaluate_all(cfg)
    assert finished == [1]
    finished.clear()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_cell", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate_all(cfg)
    assert finished == [1]


def test_default_evaluate_logs_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(wandb_log, "EvalWandb", None)  # would fail if used
    cfg = compose_config("evaluate", ["model=tiny_llama"], tmp_path)
    assert logger_kind(cfg.get("logger")) == "none"
