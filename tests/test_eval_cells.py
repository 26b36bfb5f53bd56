"""A whole cell (prompts, length-sorted batches, scoring) gives the same greedy predictions batched
as one example at a time."""

from __future__ import annotations

import itertools
import random

import pytest
from conftest import compose_config

from latent_traits.config import target_specs
from latent_traits.data.load import load_examples
from latent_traits.eval.cells import Rows, padding_aware_cuts, run_cell

pytestmark = pytest.mark.usefixtures("one_thread")

BATCHINGS = [  # run_cell keywords: passes of up to batch_size rows, a decode pool of decode_rows
    {"batch_size": 6},
    {"batch_size": 2, "pass_cost": 0, "decode_rows": 5},  # passes cut at every length change, pool > a pass
    {"batch_size": 4, "pass_cost": 1000, "decode_rows": 2},  # a pass larger than the pool runs in parts
    {"batch_size": 6, "pass_cost": 8, "decode_rows": 3},
]


@pytest.mark.parametrize("task", ["imdb", "goat"])
def test_batched_cell_equals_batch_of_one(tiny_tokenizer_and_model, tmp_path, task):
    tokenizer, model = tiny_tokenizer_and_model
    cfg = compose_config("evaluate", ["model=tiny_llama", f"target_task=[{task}]"], tmp_path)
    ((spec, _),) = target_specs(cfg)
    examples, _ = load_examples(spec, split="test", n=6, seed=0)

    def run(**batching):
        rows, metrics, _, _ = run_cell(model, tokenizer, spec, examples, max_input_tokens=64,
                                       decoding={"classification": "constrained", "max_new_tokens_cap": 6}, **batching)
        return rows, metrics

    single, m_single = run(batch_size=1)
    for batching in BATCHINGS:
        batched, m_batched = run(**batching)
        for b, s in zip(batched, single, strict=True):
            scores_b, scores_s = dict(b).pop("label_scores", {}), dict(s).pop("label_scores", {})
            assert {k: v for k, v in b.items() if k != "label_scores"} == {
                k: v for k, v in s.items() if k != "label_scores"}, batching
            assert scores_b == pytest.approx(scores_s, abs=1e-4)
        assert m_batched == m_single, batching


def brute_force_cost(lengths: list[int], max_rows: int, pass_cost: int) -> int:
    """The cheapest cost over every partition of the order into consecutive passes."""
    n, best = len(lengths), None
    for cut_set in itertools.product([False, True], repeat=n - 1):
        cuts = [0, *(i + 1 for i, cut in enumerate(cut_set) if cut), n]
        if any(end - first > max_rows for first, end in zip(cuts[:-1], cuts[1:], strict=True)):
            continue
        cost = sum(pass_cost + (end - first) * lengths[first] for first, end in zip(cuts[:-1], cuts[1:], strict=True))
        best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_padding_aware_cuts_are_the_cheapest_partition(seed):
    rng = random.Random(seed)
    lengths = sorted((rng.choice([rng.randint(3, 12), rng.randint(30, 70)]) for _ in range(rng.randint(2, 10))),
                     reverse=True)
    for max_rows in (1, 3, len(lengths)):
        for pass_cost in (0, 5, 40, 10_000):
            cuts = padding_aware_cuts(lengths, max_rows, pass_cost)
            pieces = list(zip(cuts[:-1], cuts[1:], strict=True))
            assert cuts[0] == 0 and cuts[-1] == len(lengths)
            assert all(0 < end - first <= max_rows for first, end in pieces)
            cost = sum(pass_cost + (end - first) * lengths[first] for first, end in pieces)
            assert cost == brute_force_cost(lengths, max_rows, pass_cost), (lengths, max_rows, pass_cost)
            if pass_cost == 0:  # no pass is worth a pad: each pass's rows are one length
                assert all(lengths[first] == lengths[end - 1] for first, end in pieces)
            if pass_cost == 10_000:  # passes dear: as few as the row limit allows
                assert len(pieces) == -(-len(lengths) // max_rows)


def test_passes_cover_every_row_once_each_adapters_rows_together():
    rng = random.Random(0)
    prompts = [[1] * rng.randint(2, 40) for _ in range(7)]
    table = Rows(["__base__", "a", "b"], prompts, batch_size=4)
    fixed = table.passes(None)  # every batch_size rows of the longest-first order, as `batches`
    assert [sorted(p) for p in fixed] == [list(range(i, min(i + 4, 21))) for i in range(0, 21, 4)]
    for pass_cost in (None, 0, 32):
        passes = table.passes(pass_cost)
        assert sorted(p for positions in passes for p in positions) == list(range(21))
        for positions in passes:
            entries = [table.order[p] for p in positions]
            assert len(entries) <= 4 and entries == sorted(entries)  # adapter-major: each adapter's rows adjacent
            lengths = [len(prompts[table.entries[k][1]]) for k in entries]
            if pass_cost == 0:
                assert len(set(lengths)) == 1


def test_evaluation_does_not_import_lightning():
    """evaluate.py's modules leave Lightning out (its import alone took about 4 s of each job)."""
    import subprocess
    import sys

    code = ("import sys, latent_traits.eval.runner; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lightning'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
