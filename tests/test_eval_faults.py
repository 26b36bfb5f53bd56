"""Evaluation faults: a killed job resumes to the same records; a wrong-base adapter is refused."""

from __future__ import annotations

import pytest
from conftest import compose_config
from eval_helpers import make_adapter, read_cells

import latent_traits.eval.runner as runner
from latent_traits.errors import LatentTraitsError
from latent_traits.eval.runner import discover_adapters, evaluate_all

pytestmark = pytest.mark.usefixtures("one_thread")
# sampled generation too: a resumed job must draw the same samples as an uninterrupted one
EVAL = ["model=tiny_llama", "target_task=[imdb,goat]", "eval.n=4", "eval.batch_size=3",
        "eval.decoding.max_new_tokens_cap=5", "eval.decoding.do_sample=true", "eval.decoding.temperature=0.7",
        "eval.decoding.top_p=0.95"]


class Killed(BaseException):  # a kill, not a cell error (those are recorded and the job goes on)
    pass


def test_a_resumed_evaluation_gives_the_same_records(tmp_path, tiny_model_cfg, monkeypatch):
    for run in ("whole", "cut"):
        for source in ("imdb", "goat"):
            make_adapter(tmp_path / run / "adapters", tiny_model_cfg, source)
    whole = evaluate_all(compose_config("evaluate", EVAL, tmp_path / "whole"))
    assert len(whole) == 6  # base + 2 adapters, x 2 tasks

    real_run_cell, calls = runner.run_cell, []

    def dies_after_two(*args, **kwargs):
        if len(calls) == 2:
            raise Killed
        calls.append(kwargs["desc"])
        return real_run_cell(*args, **kwargs)

    monkeypatch.setattr(runner, "run_cell", dies_after_two)
    with pytest.raises(Killed):
        evaluate_all(compose_config("evaluate", EVAL, tmp_path / "cut"))
    eval_dir = tmp_path / "cut" / "eval"
    assert len(list(eval_dir.rglob("*.json"))) == 2  # two finished cells, nothing half-written
    assert not [p for p in eval_dir.rglob("*") if p.is_file() and p.name.startswith(".")]
    before = {p: p.stat().st_mtime_ns for p in eval_dir.rglob("*") if p.is_file()}

    monkeypatch.setattr(runner, "run_cell", real_run_cell)
    resumed = evaluate_all(compose_config("evaluate", EVAL, tmp_path / "cut"))
    assert len(resumed) == 4  # only the unfinished cells
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # finished cells untouched
    got, want = read_cells(eval_dir), read_cells(tmp_path / "whole" / "eval")
    assert set(got) == set(want) and len(got) == 6
    for cell in want:
        assert got[cell] == want[cell], cell  # same metrics, settings, seeds and predictions


def test_an_adapter_of_another_base_model_is_refused(tmp_path, tiny_model_cfg):
    adapters = tmp_path / "adapters"
    make_adapter(adapters, tiny_model_cfg, "imdb")
    make_adapter(adapters, tiny_model_cfg, "goat", trained_on="smollm2_135m")  # in tiny_llama's folder
    with pytest.raises(LatentTraitsError) as err:
        discover_adapters(adapters, "tiny_llama")
    message = str(err.value)
    assert "goat/lora_r4_s0" in message and "'smollm2_135m'" in message and "'tiny_llama'" in message
    with pytest.raises(LatentTraitsError, match="smollm2_135m"):  # before any model is loaded
        evaluate_all(compose_config("evaluate", ["model=tiny_llama", "target_task=[imdb]"], tmp_path))
    assert not (tmp_path / "eval").exists()
