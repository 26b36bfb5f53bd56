"""Mixed adapter batches: a task's cells for several adapters decoded in shared batches give the
cells that decoding them one at a time gives, and a killed job still resumes cell by cell."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from conftest import compose_config
from eval_helpers import make_adapter, read_cells
from omegaconf import OmegaConf

import latent_traits.eval.runner as runner
from latent_traits.eval.runner import BASE, Adapter, Cell, cell_groups, evaluate_all

pytestmark = pytest.mark.usefixtures("one_thread")
SOURCES = ("imdb", "goat", "gsm8k")
# greedy: the mode that mixes; classification, and generation with a stop string and a cap
EVAL = ["model=tiny_llama", "target_task=[imdb,amazon,goat]", "eval.n=5", "eval.batch_size=4",
        "eval.decoding.max_new_tokens_cap=6"]


def make_adapters(root):
    for source in SOURCES:
        make_adapter(root / "adapters", tiny_model_cfg_dict(), source)


def tiny_model_cfg_dict() -> dict:
    from conftest import CONF

    return OmegaConf.to_container(OmegaConf.load(CONF / "model" / "tiny_llama.yaml"))


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory):
    root = tmp_path_factory.mktemp("unmixed")
    make_adapters(root)
    evaluate_all(compose_config("evaluate", [*EVAL, "eval.mixed_adapter_batches=false"], root))
    return read_cells(root / "eval")


def comparable(cells):
    """Per cell: what it found and the settings it counts as (not how its decoding was scheduled).
    Label log-probabilities are compared apart (assert_same_cells): another batch sums in
    another order, in the last bits."""
    return {cell: (record["settings_hash"], record["metrics"],
                   [{k: v for k, v in row.items() if k != "label_scores"} for row in rows])
            for cell, (record, rows) in cells.items()}


def assert_same_cells(got, want) -> None:
    assert comparable(got) == comparable(want)
    for cell, (_, rows) in want.items():
        for row, other in zip(rows, got[cell][1], strict=True):
            if row.get("label_scores") is not None:
                assert other["label_scores"] == pytest.approx(row["label_scores"], abs=2e-5), cell


@pytest.mark.parametrize("per_batch", [8, 2])
def test_mixed_batches_give_the_cells_one_at_a_time_gives(tmp_path, one_at_a_time, per_batch):
    make_adapters(tmp_path)
    written = evaluate_all(compose_config("evaluate", [*EVAL, f"eval.max_adapters_per_batch={per_batch}"], tmp_path))
    assert len(written) == 12  # base + 3 adapters, x 3 tasks
    mixed = read_cells(tmp_path / "eval")
    assert_same_cells(mixed, one_at_a_time)
    assert all(record["eval_config"]["eval"]["mixed_adapter_batches"] for record, _ in mixed.values())
    together = sorted(json.loads(p.read_text())["timing"]["cells_decoded_together"]
                      for p in (tmp_path / "eval").rglob("*.json"))
    # per task: base + 3 adapters in one group; or base + 2 adapters, then the third alone
    assert together == ([4] * 12 if per_batch == 8 else [1] * 3 + [3] * 9)


@pytest.mark.parametrize("share", [True, False])
def test_the_shared_prompt_prefix_changes_no_cell(tmp_path, one_at_a_time, monkeypatch, share):
    """With eval.share_prompt_prefix (the default) the tokens all of a task's prompts start with
    (amazon's instruction) run once per group of adapters; false runs every prompt whole. Both give
    the cells one at a time gives."""
    import latent_traits.eval.cells as cells

    real, prefixes = cells.SharedPrefix, []

    def spy(model, ids, names):
        prefixes.append((len(ids), names))
        return real(model, ids, names)

    monkeypatch.setattr(cells, "SharedPrefix", spy)
    make_adapters(tmp_path)
    evaluate_all(compose_config("evaluate", [*EVAL, f"eval.share_prompt_prefix={str(share).lower()}"], tmp_path))
    assert_same_cells(read_cells(tmp_path / "eval"), one_at_a_time)
    if share:  # amazon's and imdb's instructions, once for the base model and the three adapters
        assert len(prefixes) == 2 and all(n >= 10 and len(names) == 4 for n, names in prefixes), prefixes
    else:
        assert prefixes == []


@pytest.mark.parametrize("batching", [["eval.pass_cost_tokens=0", "eval.decode_rows=16"],
                                      ["eval.pass_cost_tokens=1000", "eval.decode_rows=null"]])
def test_prompt_passes_and_the_decode_pool_change_no_cell(tmp_path, one_at_a_time, batching):
    """Passes cut at every length change and a pool of all of a task's rows, or full passes and a
    pool of batch_size rows: the cells one at a time gives."""
    make_adapters(tmp_path)
    evaluate_all(compose_config("evaluate", [*EVAL, *batching], tmp_path))
    assert_same_cells(read_cells(tmp_path / "eval"), one_at_a_time)


def test_batching_settings_follow_the_config_and_the_device(tiny_tokenizer_and_model):
    import torch

    _, model = tiny_tokenizer_and_model  # on the CPU, one thread (the one_thread fixture)
    default = runner.batching(compose_config("evaluate", EVAL), model)
    assert default == {"batch_size": 4, "share_prefix": True, "pass_cost": runner.PASS_COST_TOKENS["cpu"],
                       "decode_rows": 128}
    torch.set_num_threads(2)  # each token's compute shared by two threads: a pass's own cost weighs double
    try:
        cost = runner.batching(compose_config("evaluate", EVAL), model)["pass_cost"]
        assert cost == 2 * runner.PASS_COST_TOKENS["cpu"]
    finally:
        torch.set_num_threads(1)
    on_gpu = SimpleNamespace(parameters=lambda: iter([SimpleNamespace(device=torch.device("cuda", 0))]))
    assert runner.batching(compose_config("evaluate", EVAL), on_gpu)["pass_cost"] == runner.PASS_COST_TOKENS["gpu"]
    chosen = runner.batching(compose_config("evaluate", [*EVAL, "eval.pass_cost_tokens=7", "eval.decode_rows=null",
                                                         "eval.share_prompt_prefix=false"]), model)
    assert chosen == {"batch_size": 4, "share_prefix": False, "pass_cost": 7, "decode_rows": 4}


def test_a_job_killed_between_groups_resumes_cell_by_cell(tmp_path, one_at_a_time, monkeypatch):
    make_adapters(tmp_path)
    real, calls = runner.run_cells, []

    class Killed(BaseException):  # a kill, not a cell error (those are recorded and the job goes on)
        pass

    def dies_on_the_second_group(*args, **kwargs):
        if calls:
            raise Killed
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_cells", dies_on_the_second_group)
    with pytest.raises(Killed):
        evaluate_all(compose_config("evaluate", EVAL, tmp_path))
    eval_dir = tmp_path / "eval"
    assert len(list(eval_dir.rglob("*.json"))) == 4  # the first task's four cells, each whole
    before = {p: p.stat().st_mtime_ns for p in eval_dir.rglob("*") if p.is_file()}
    monkeypatch.setattr(runner, "run_cells", real)
    assert len(evaluate_all(compose_config("evaluate", EVAL, tmp_path))) == 8
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    assert_same_cells(read_cells(eval_dir), one_at_a_time)


def cell(adapter: Adapter, task: str, finished: bool = False) -> Cell:
    return Cell(adapter, SimpleNamespace(name=task), [], {}, {}, finished)


@pytest.mark.parametrize(("overrides", "expected"), [
    # per task: the finished cell alone, then the pending ones in groups of at most 2 adapters + base
    ([], [["base/t1"], ["a0/t1", "a1/t1"], ["a2/t1"], ["base/t2", "a0/t2", "a1/t2"], ["a2/t2"]]),
    # sampled cells draw per-cell seeds: one cell at a time, in the grid's order
    (["eval.decoding.do_sample=true"], None),
    (["eval.mixed_adapter_batches=false"], None),
])
def test_cell_groups(overrides, expected):
    adapters = [BASE, *(Adapter(f"a{i}", None, None) for i in range(3))]
    adapters[1:] = [Adapter(a.id, "somewhere", None) for a in adapters[1:]]  # not the base
    cells = [cell(a, t, finished=(a.is_base and t == "t1")) for a in adapters for t in ("t1", "t2")]
    cfg = compose_config("evaluate", ["eval.max_adapters_per_batch=2", *overrides])
    groups = [[f"{c.adapter.id}/{c.spec.name}" for c in g] for g in cell_groups(cfg, cells)]
    assert groups == (expected or [[f"{c.adapter.id}/{c.spec.name}"] for c in cells])
