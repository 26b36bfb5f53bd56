"""Training throughput: this framework (Lightning + PEFT) vs the Hugging Face Trainer + PEFT.

Same model, data, LoRA config, batch size and steps; each side runs in its own subprocess,
alternating A/B/A/B, so both see the same machine. Reports real (non-padding) tokens per second,
peak resident memory, and the fraction of this machine's measured fp32 matmul peak that
training reaches (FLOPs actually needed: forward plus the input-gradient half of backward for
frozen weights, 4 x linear-weight params x processed tokens, plus the LoRA terms).

    python bench/train_throughput.py [--steps 6] [--repeats 2] [--model smollm2_135m]
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
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.0, bias="none",
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def encoded_examples(n: int, tokenizer):
    from omegaconf import OmegaConf

    from latent_traits.data.datamodule import encode_training_example
    from latent_traits.data.load import load_examples
    from latent_traits.data.spec import TaskSpec

    spec = TaskSpec.from_config(OmegaConf.load(REPO / "conf/tasks/imdb.yaml"))
    examples, _ = load_examples(spec, "train", n=n, seed=0)
    return [encode_training_example(spec, e, tokenizer, 256, 160, "full") for e in examples]


def load(model_name: str):
    from omegaconf import OmegaConf

    from latent_traits.model.factory import load_tokenizer_and_model

    cfg = OmegaConf.to_container(OmegaConf.load(REPO / f"conf/model/{model_name}.yaml"))
    return load_tokenizer_and_model(cfg, str(Path.home() / ".cache/latent_traits"))


def linear_params(model) -> int:
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


class StepTimer:
    """Wall time and processed tokens of the timed steps (the first `warmup` steps excluded)."""

    def __init__(self, warmup: int):
        self.warmup, self.step, self.started = warmup, 0, None
        self.real_tokens = self.padded_tokens = 0

    def begin(self, batch):
        self.step += 1
        if self.step == self.warmup + 1:
            self.started = time.perf_counter()
        if self.step > self.warmup:
            self.real_tokens += int(batch["attention_mask"].sum())
            self.padded_tokens += int(batch["attention_mask"].numel())

    def seconds(self) -> float:
        return time.perf_counter() - self.started


def run_framework(args, tokenizer, model, encoded) -> StepTimer:
    import lightning as L

    from latent_traits.data.datamodule import (
        ResumableDataLoader,
        SeededBatchSampler,
        collate_right_padded,
    )
    from latent_traits.model.lora_module import LoRAFineTuner

    timer = StepTimer(args.warmup)

    class Timing(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            timer.begin(batch)

    module = LoRAFineTuner(model, LORA, {"lr": 1e-4, "warmup_steps": 0, "scheduler": "constant"})
    sampler = SeededBatchSampler([len(e["input_ids"]) for e in encoded], args.batch_size, 0,
                                 group_by_length=args.group_by_length)
    loader = ResumableDataLoader(encoded, batch_sampler=sampler,
                                 collate_fn=lambda b: collate_right_padded(b, tokenizer.pad_token_id))
    trainer = L.Trainer(accelerator="cpu", precision="32-true", max_steps=args.warmup + args.steps,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Timing()], gradient_clip_val=1.0)
    trainer.fit(module, train_dataloaders=loader)
    return timer


def run_hf_trainer(args, tokenizer, model, encoded) -> StepTimer:
    import tempfile

    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    timer = StepTimer(args.warmup)
    peft_model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **LORA))
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)

    class TimedTrainer(Trainer):
        def training_step(self, model, inputs, *rest, **kw):
            timer.begin(inputs)
            return super().training_step(model, inputs, *rest, **kw)

    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, max_steps=args.warmup + args.steps,
            learning_rate=1e-4, lr_scheduler_type="constant", max_grad_norm=1.0, use_cpu=True,
            report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
            dataloader_num_workers=0, seed=0, remove_unused_columns=False,
        )
        TimedTrainer(model=peft_model, args=targs, train_dataset=encoded, data_collator=collator).train()
    return timer


def child(args) -> None:
    import torch

    tokenizer, model = load(args.model)
    model.train()
    encoded = encoded_examples(args.n, tokenizer)
    n_linear = linear_params(model)
    runner = run_framework if args.which == "framework" else run_hf_trainer
    timer = runner(args, tokenizer, model, encoded)
    seconds = timer.seconds()
    flops = 4 * n_linear * timer.padded_tokens  # forward + input-gradient backward of frozen weights
    print(json.dumps({
        "which": args.which, "tokens_per_s": timer.real_tokens / seconds,
        "padded_tokens_per_s": timer.padded_tokens / seconds, "seconds": seconds,
        "real_tokens": timer.real_tokens, "padded_tokens": timer.padded_tokens,
        "gflops_per_s": flops / seconds / 1e9, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
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
    parser.add_argument("--group-by-length", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--which", choices=["framework", "trainer"])
    args = parser.parse_args()
    if args.which:
        return child(args)
    peak = matmul_peak_gflops()
    results = []
    for _ in range(args.repeats):
        for which in ("framework", "trainer"):
            cmd = [sys.executable, __file__, "--which", which, *sys.argv[1:]]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    summary = {"matmul_peak_gflops": peak, "runs": results}
    for which in ("framework", "trainer"):
        rows = [r for r in results if r["which"] == which]
        summary[which] = {
            "tokens_per_s": max(r["tokens_per_s"] for r in rows),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
            "fraction_of_matmul_peak": max(r["gflops_per_s"] for r in rows) / peak,
        }
    summary["speedup"] = summary["framework"]["tokens_per_s"] / summary["trainer"]["tokens_per_s"]
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
