"""A whole cell (prompts, length-sorted batches, scoring) gives the same greedy predictions batched
as one example at a time."""

from __future__ import annotations

import pytest
from conftest import compose_config

from latent_traits.config import target_specs
from latent_traits.data.load import load_examples
from latent_traits.eval.cells import run_cell

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("task", ["imdb", "goat"])
def test_batched_cell_equals_batch_of_one(tiny_tokenizer_and_model, tmp_path, task):
    tokenizer, model = tiny_tokenizer_and_model
    cfg = compose_config("evaluate", ["model=tiny_llama", f"target_task=[{task}]"], tmp_path)
    ((spec, _),) = target_specs(cfg)
    examples, _ = load_examples(spec, split="test", n=6, seed=0)

    def run(batch_size):
        rows, metrics, _, _ = run_cell(model, tokenizer, spec, examples, batch_size=batch_size, max_input_tokens=64,
                                       decoding={"classification": "constrained", "max_new_tokens_cap": 6})
        return rows, metrics

    (batched, m_batched), (single, m_single) = run(6), run(1)
    for b, s in zip(batched, single, strict=True):
        scores_b, scores_s = b.pop("label_scores", {}), s.pop("label_scores", {})
        assert b == s
        assert scores_b == pytest.approx(scores_s, abs=1e-4)
    assert m_batched == m_single


def test_evaluation_does_not_import_lightning():
    """evaluate.py's modules leave Lightning out (its import alone took about 4 s of each job)."""
    import subprocess
    import sys

    code = "import sys, latent_traits.eval.runner; print(sorted(m for m in sys.modules if m.split('.')[0] == 'lightning'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
