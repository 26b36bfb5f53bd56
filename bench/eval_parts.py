"""The parts of evaluation speed that BENCHMARKS.md cites, on the embedded model (fp32, CPU):

1. a prompt pass's fixed cost in tokens (what eval.pass_cost_tokens defaults to per thread): one
   forward pass of 1 row and of 32 rows of 64 tokens, no adapters; a pass costs a + b x tokens;
2. the stacked LoRA term per module at a prompt pass of 2,208 tokens and four rank-8 adapters:
   the base product alone, the masked stack summed after the product (before), inside it
   (torch.addmm), and each adapter's rows through its own rank block (per run);
3. a decoding step at `--rows` rows with transformers' DynamicLayer (the whole cache concatenated
   every step) and with RoomyLayer (written in place).

Each figure is the median of `--repeats` timings after warm-up.

    python bench/eval_parts.py [--threads 1] [--rows 25] [--repeats 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def pass_cost(model, repeats: int) -> None:
    one, full = (timed(lambda r=rows: model(input_ids=torch.randint(100, 1000, (r, 64)), logits_to_keep=1), repeats)
                 for rows in (1, 32))
    per_token = (full - one) / (31 * 64)
    per_pass = one - 64 * per_token
    print(f"prompt pass: 1x64 tokens {one:.3f} s, 32x64 {full:.3f} s: {per_token * 1e3:.2f} ms a token, "
          f"{per_pass * 1e3:.0f} ms a pass = {per_pass / per_token:.0f} tokens")


def lora_term(d_in: int, d_out: int, repeats: int, tokens: int = 2208, rank: int = 8, adapters: int = 4) -> None:
    x, w = torch.randn(tokens, d_in), torch.randn(d_out, d_in)
    a, b = torch.randn(rank * adapters, d_in), torch.randn(d_out, rank * adapters)
    mask = torch.zeros(tokens, rank * adapters)
    runs = [(i * tokens // adapters, (i + 1) * tokens // adapters, slice(i * rank, (i + 1) * rank))
            for i in range(adapters)]
    for first, end, cols in runs:
        mask[first:end, cols] = 1

    def per_run():
        out = x @ w.T
        for first, end, cols in runs:
            out[first:end].addmm_(x[first:end] @ a[cols].T, b[:, cols].T)

    base = timed(lambda: x @ w.T, repeats)
    figures = {"masked, summed after": timed(lambda: x @ w.T + ((x @ a.T) * mask) @ b.T, repeats),
               "masked, addmm": timed(lambda: torch.addmm(x @ w.T, (x @ a.T) * mask, b.T), repeats),
               "per run": timed(per_run, repeats)}
    print(f"LoRA term {d_in}->{d_out} at {tokens} tokens: base {base * 1e3:.1f} ms; "
          + ", ".join(f"{k} +{(v / base - 1) * 100:.0f}%" for k, v in figures.items()))


def decoding_step(model, rows: int, repeats: int) -> None:
    import latent_traits.eval.decoding as decoding

    prompts = [list(range(100, 180))] * rows
    for name, roomy in (("DynamicLayer", False), ("RoomyLayer", True)):
        live = decoding.LiveRows.prefill(model, prompts, list(range(rows)), 0, None)
        if not roomy:  # back to transformers' own layers
            from transformers.cache_utils import DynamicLayer

            plain = []
            for layer in live.cache.layers:
                fresh = DynamicLayer()
                fresh.update(layer.keys.contiguous(), layer.values.contiguous())
                plain.append(fresh)
            live.cache.layers = plain
        state = {"live": live}

        def step(state=state):
            state["live"] = state["live"].step(model)

        print(f"decoding step, {rows} rows, 80 cached tokens: {name} {timed(step, repeats) * 1e3:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    from eval_throughput import MODEL, compose

    from latent_traits.config import to_plain
    from latent_traits.model.factory import load_tokenizer_and_model

    cfg = compose([f"model={MODEL}"])
    _, model = load_tokenizer_and_model(to_plain(cfg.model), cfg.paths.cache_dir)
    model.eval()
    pass_cost(model, args.repeats)
    for d_in, d_out in ((576, 1536), (1536, 576), (576, 576), (576, 192)):  # SmolLM2-135M's projections
        lora_term(d_in, d_out, args.repeats)
    decoding_step(model, args.rows, args.repeats)


if __name__ == "__main__":
    main()
