"""Training throughput: this framework (Lightning + PEFT) vs the Hugging Face Trainer + PEFT.

Same model, data, LoRA config, batch size and steps, and the same batches: the examples are
shuffled once with a fixed seed and both sides take them in that order (the Trainer with
train_sampling_strategy=sequential). Each side runs in its own subprocess, alternating A/B/A/B,
so both see the same machine. By default the examples are the study's: whole inputs (no input
cut), up to 2048 tokens; `--task paper` mixes the study's ten sources. Two more Trainer sides:
`--trainer-group-by-length` (its own length-grouped sampler) and `--trainer-padding-free`
(transformers' DataCollatorWithFlattening, as TRL's padding_free=True). Reports real (non-padding) tokens per second,
peak memory (resident memory on CPU, allocated GPU memory on CUDA), and the fraction of the
machine's measured matmul peak (fp32 on CPU, bf16 on CUDA) that training reaches. FLOPs counted
are those training needs with a frozen base: forward plus the input-gradient half of backward,
4 x linear-weight params per processed token, plus attention's 12 x layers x hidden x length per
token (forward and backward of QK^T and AV, the usual MFU convention), over the tokens each side
processes (padding included); LoRA's own are ignored.

    python bench/train_throughput.py [--task gsm8k] [--steps 6] [--repeats 2] [--trainer-group-by-length]
    python bench/train_throughput.py --task imdb --max-input-tokens 160 --max-length 256   # uniform lengths
    python bench/train_throughput.py --device cuda --model llama3_2_3b_shape --data random \
        --seq-len 2048 --batch-size 4 --lora-r 64 --lora-alpha 32     # bf16, the paper's LoRA
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the study's ten training sources (offline pools here: their lengths stand in for the hub data's)
PAPER_SOURCES = ["amazon", "flipkart", "goat", "imdb", "magicoder", "metamathqa", "mnli", "mnli_nums", "paws", "pile"]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora_config(args) -> dict:
    return dict(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.0, bias="none",
                target_modules=TARGETS)


def matmul_peak_gflops(device: str = "cpu", repeats: int = 10) -> float:
    """fp32 2048^3 products on CPU, bf16 8192^3 on CUDA: the machine's practical matmul ceiling."""
    import torch

    size, dtype = (2048, torch.float32) if device == "cpu" else (8192, torch.bfloat16)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def encoded_examples(args, tokenizer):
    """The task's training examples, full-sequence loss, in one seeded order both sides follow."""
    import random

    from latent_traits.data.catalog import load_task_spec
    from latent_traits.data.datamodule import encode_training_example
    from latent_traits.data.load import load_examples

    tasks = PAPER_SOURCES if args.task == "paper" else args.task.split(",")
    encoded = []
    for task in tasks:  # an equal share of each task: the mixed length spread of a study's sources
        spec = load_task_spec(task, REPO / "conf")
        examples, _ = load_examples(spec, "train", n=-(-args.n // len(tasks)), seed=0)
        encoded += [encode_training_example(spec, e, tokenizer, args.max_length, args.max_input_tokens, "full")
                    for e in examples]
    random.Random(0).shuffle(encoded)
    return encoded


def random_examples(n: int, seq_len: int, vocab: int):
    """Full-length random token sequences with full-sequence loss: no padding, no data package."""
    import torch

    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(0, vocab, (n, seq_len), generator=generator).tolist()
    return [{"input_ids": r, "labels": r, "attention_mask": [1] * seq_len} for r in rows]


def load(model_name: str, device: str):
    import os

    import torch
    from omegaconf import OmegaConf

    from latent_traits.model.factory import load_tokenizer_and_model

    cfg = OmegaConf.to_container(OmegaConf.load(REPO / f"conf/model/{model_name}.yaml"))
    cache = os.environ.get("LATENT_TRAITS_CACHE", str(Path.home() / ".cache/latent_traits"))
    with torch.device(device):  # a random model is initialised where it will train
        return load_tokenizer_and_model(cfg, cache)


def linear_params(model) -> int:
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def flattened_spans(position_ids: list[int]) -> list[int]:
    """Example lengths of a flattened row: each example's position ids restart at 0."""
    starts = [i for i, p in enumerate(position_ids) if p == 0] + [len(position_ids)]
    return [b - a for a, b in zip(starts[:-1], starts[1:], strict=True)]


class StepTimer:
    """Wall time and processed tokens of the timed steps (the first `warmup` steps excluded)."""

    def __init__(self, warmup: int, device: str = "cpu"):
        self.warmup, self.step, self.started, self.ended, self.device = warmup, 0, None, None, device
        self.real_tokens = self.padded_tokens = self.attention_square = 0

    def begin(self, batch):
        from latent_traits.data.collate import batch_tokens

        self.step += 1
        if self.step == self.warmup + 1:
            sync(self.device)
            self.started = time.perf_counter()
        if self.step > self.warmup:
            if "cu_seq_lens_q" in batch:  # padding-free: one row, attention within each example
                spans = batch["cu_seq_lens_q"].diff().tolist()
            elif "position_ids" in batch and batch["input_ids"].shape[0] == 1:  # Trainer, flattened
                spans = flattened_spans(batch["position_ids"][0].tolist())
            else:
                spans = [batch["input_ids"].shape[1]] * batch["input_ids"].shape[0]
            self.real_tokens += batch_tokens(batch)
            self.padded_tokens += int(batch["input_ids"].numel())
            self.attention_square += sum(n * n for n in spans)  # attention work: length^2 per span

    def end(self):
        """After a step's optimizer update: the timed span ends at the last one (not at the end
        of fit, which may move the model back to the CPU)."""
        if self.started is not None:
            sync(self.device)
            self.ended = time.perf_counter()

    def seconds(self) -> float:
        return self.ended - self.started


def run_framework(args, tokenizer, model, encoded) -> StepTimer:
    import lightning as L
    from torch.utils.data import DataLoader

    from latent_traits.data.collate import collate_padding_free, collate_right_padded
    from latent_traits.model.lora_module import LoRAFineTuner

    timer = StepTimer(args.warmup, args.device)

    class Timing(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            timer.begin(batch)

        def on_train_batch_end(self, *args):
            timer.end()

    module = LoRAFineTuner(model, lora_config(args), {"lr": 1e-4, "warmup_steps": 0, "scheduler": "constant"},
                           gradient_checkpointing=args.gradient_checkpointing, fused_loss=args.fused_loss,
                           padding_free=args.padding_free)
    collate = collate_padding_free if args.padding_free else lambda b: collate_right_padded(b, tokenizer.pad_token_id)
    loader = DataLoader(encoded, batch_size=args.batch_size, shuffle=False, collate_fn=collate)  # the bench's order
    cuda = args.device == "cuda"
    trainer = L.Trainer(accelerator="gpu" if cuda else "cpu", devices=1,
                        precision="bf16-mixed" if cuda else "32-true", max_steps=args.warmup + args.steps,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Timing()], gradient_clip_val=1.0)
    trainer.fit(module, train_dataloaders=loader)
    return timer


def run_hf_trainer(args, tokenizer, model, encoded) -> StepTimer:
    import tempfile

    from peft import LoraConfig, get_peft_model
    from transformers import (
        DataCollatorForSeq2Seq,
        DataCollatorWithFlattening,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    timer = StepTimer(args.warmup, args.device)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora_config(args)))
    if args.which == "trainer_flat":  # the Trainer's own padding-free batches (one row, position ids restart)
        collator = DataCollatorWithFlattening(return_position_ids=True)
    else:
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)

    class StepEnd(TrainerCallback):
        def on_step_end(self, *args, **kwargs):
            timer.end()

    grouped = args.which == "trainer_grouped"

    class TimedTrainer(Trainer):
        def training_step(self, model, inputs, *rest, **kw):
            timer.begin(inputs)
            return super().training_step(model, inputs, *rest, **kw)

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, max_steps=args.warmup + args.steps,
            learning_rate=1e-4, lr_scheduler_type="constant", max_grad_norm=1.0,
            use_cpu=args.device == "cpu", bf16=args.device == "cuda",
            report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
            dataloader_num_workers=0, seed=0, remove_unused_columns=False,
            # the bench's order, as the framework takes it; or the Trainer's own length grouping
            train_sampling_strategy="group_by_length" if grouped else "sequential",
        )
        TimedTrainer(model=peft_model, args=targs, train_dataset=encoded, data_collator=collator,
                     callbacks=[StepEnd()]).train()
    return timer


def child(args) -> None:
    import torch

    tokenizer, model = load(args.model, args.device)
    model.train()
    if args.data == "random":
        encoded = random_examples(args.n, args.seq_len, len(tokenizer))
    else:
        encoded = encoded_examples(args, tokenizer)
    n_linear = linear_params(model)
    runner = run_framework if args.which == "framework" else run_hf_trainer
    timer = runner(args, tokenizer, model, encoded)
    seconds = timer.seconds()
    config = model.config
    attention = 12 * config.num_hidden_layers * config.hidden_size * timer.attention_square
    flops = 4 * n_linear * timer.padded_tokens + attention
    if args.device == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "which": args.which, "tokens_per_s": timer.real_tokens / seconds,
        "padded_tokens_per_s": timer.padded_tokens / seconds, "seconds": seconds,
        "real_tokens": timer.real_tokens, "padded_tokens": timer.padded_tokens,
        "gflops_per_s": flops / seconds / 1e9, "peak_mib": peak_mib, "device": args.device,
        "threads": torch.get_num_threads(),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2_135m")
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--task", default="gsm8k",
                        help="conf/tasks names, comma-separated, or 'paper' for the study's ten sources "
                             "(with --data task)")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--max-input-tokens", type=lambda v: None if v == "none" else int(v), default=None,
                        help="cut inputs to this many tokens (default none: whole inputs, as the study)")
    parser.add_argument("--padding-free", action=argparse.BooleanOptionalAction, default=True,
                        help="the framework's data.padding_free (its default)")
    parser.add_argument("--trainer-group-by-length", action="store_true",
                        help="add a side: the Trainer with train_sampling_strategy=group_by_length (its own batches)")
    parser.add_argument("--trainer-padding-free", action="store_true",
                        help="add a side: the Trainer with DataCollatorWithFlattening (its padding-free batches)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--data", choices=["task", "random"], default="task")
    parser.add_argument("--seq-len", type=int, default=2048, help="with --data random")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--lora-alpha", type=int, default=16)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--fused-loss", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--which", choices=["framework", "trainer", "trainer_grouped", "trainer_flat"])
    args = parser.parse_args()
    if args.which:
        return child(args)
    peak = matmul_peak_gflops(args.device)
    results = []
    sides = ("framework", "trainer", *(("trainer_grouped",) if args.trainer_group_by_length else ()),
             *(("trainer_flat",) if args.trainer_padding_free else ()))
    for _ in range(args.repeats):
        for which in sides:
            cmd = [sys.executable, __file__, "--which", which, *sys.argv[1:]]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    summary = {"matmul_peak_gflops": peak, "runs": results}
    for which in sides:
        rows = [r for r in results if r["which"] == which]
        summary[which] = {
            "tokens_per_s": max(r["tokens_per_s"] for r in rows),
            "peak_mib": max(r["peak_mib"] for r in rows),
            "fraction_of_matmul_peak": max(r["gflops_per_s"] for r in rows) / peak,
        }
    summary["speedup"] = summary["framework"]["tokens_per_s"] / summary["trainer"]["tokens_per_s"]
    for side, key in (("trainer_grouped", "speedup_vs_grouped"), ("trainer_flat", "speedup_vs_padding_free")):
        if side in sides:
            summary[key] = summary["framework"]["tokens_per_s"] / summary[side]["tokens_per_s"]
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
