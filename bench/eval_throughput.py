"""Evaluation throughput on the embedded model: this framework vs reloading the model per cell vs
lm-evaluation-harness, on the same grid (base + 4 adapters x imdb, amazon, goat, gsm8k), the same
examples and prompts, greedy.

1. framework: `python evaluate.py` (one resident base model, the whole matrix in one process; a
   task's cells for all adapters decoded in shared batches, eval.mixed_adapter_batches=true);
   framework_per_cell: the same with eval.mixed_adapter_batches=false (cell after cell, adapters
   switched in place);
2. reload: one job per cell, as the study ran one vLLM config per adapter and task pair: each
   cell's own `evaluate.py` command (the `rerun` its record holds), so every cell starts a process
   and loads the base model and its adapter; the same decoding code, cell by cell;
   reload_in_process: one process that loads a fresh base model and adapter for every cell, then
   runs the same decoding code (latent_traits.eval.cells.run_cell): only the model loads repeat;
3. lm-eval: `python -m lm_eval run --model hf --model_args pretrained=<model>,peft=<adapter>` once per
   adapter (and once for the base model), on custom tasks holding the same prompts (lm_eval_tasks.py).

Every method runs in its own subprocess (wall time from start to exit, imports and model loads
included; peak RSS from wait4), methods rotate order across repeats. Predictions are compared with
the framework's, cell by cell: the chosen label for classification, the output text for generation.
Four adapters of the embedded model are needed: trained once with a tiny budget when missing
(`python train.py -m source_dataset=imdb,amazon,goat,gsm8k trainer.max_steps=8 logger=none
paths.artifacts_dir=artifacts/bench`). Needs `pip install -e '.[bench]'` (lm-eval==0.4.13).

    python bench/eval_throughput.py [--n 32] [--repeats 2] [--cap 96] [--threads 1]
        [--methods framework,framework_per_cell,reload,reload_in_process,lm_eval]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
MODEL = "smollm2_135m"
TASKS = ["imdb", "amazon", "goat", "gsm8k"]
METHODS = ("framework", "framework_per_cell", "reload", "reload_in_process", "lm_eval")
SOURCES = "imdb,amazon,goat,gsm8k"
THREADS_ENV: dict[str, str] = {}  # set from --threads: the same for every method
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled"}


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import latent_traits.config  # noqa: F401  (resolvers)

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose(config_name="evaluate", overrides=overrides)


def eval_overrides(args, adapter_ids: list[str]) -> list[str]:
    quoted = ",".join(f"'{a}'" for a in adapter_ids)
    return [f"model={MODEL}", f"target_task=[{','.join(TASKS)}]", f"paths.artifacts_dir={args.artifacts}",
            f"eval.n={args.n}", f"eval.batch_size={args.batch_size}", f"eval.adapters=[{quoted}]",
            f"eval.decoding.max_new_tokens_cap={args.cap}", "logger=none"]


def ensure_adapters(args) -> list:
    from latent_traits.eval.runner import discover_adapters

    adapters = discover_adapters(Path(args.artifacts) / "adapters", MODEL)
    if len(adapters) < 4:
        command = [sys.executable, "train.py", "-m", f"source_dataset={SOURCES}", "trainer.max_steps=8",
                   "logger=none", f"paths.artifacts_dir={args.artifacts}"]
        print("training 4 tiny-budget adapters:", " ".join(command), flush=True)
        subprocess.run(command, cwd=REPO, check=True)
        adapters = discover_adapters(Path(args.artifacts) / "adapters", MODEL)
    return adapters[:4]


def grid_inputs(cfg, tokenizer):
    """(spec, examples, prompt strings) per task, loaded exactly as evaluate.py loads them."""
    from latent_traits.config import target_specs
    from latent_traits.data.load import load_examples
    from latent_traits.data.prompts import encode_prompt, format_prompt, truncate_input

    out = []
    for spec, entry in target_specs(cfg):
        examples, _ = load_examples(spec, split=entry.get("split", "test"), n=entry.get("n"), seed=cfg.seed,
                                    source=cfg.data.source, local_path=cfg.data.local_path,
                                    test_fraction=cfg.data.test_fraction, transforms=entry.get("transforms"))
        prompts = [format_prompt(spec, truncate_input(e["input"], tokenizer, cfg.data.max_input_tokens))
                   for e in examples]
        for example, prompt in zip(examples, prompts, strict=True):  # lm-eval sees the framework's tokens
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            assert ids == encode_prompt(spec, example["input"], tokenizer, cfg.data.max_input_tokens), spec.name
        out.append((spec, examples, prompts))
    return out


def measured(command: list[str], log: Path) -> dict:
    """Run a command; its wall seconds and peak resident memory (MiB, from wait4)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **OFFLINE_ENV, **THREADS_ENV})
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({process.returncode}); see {log}")
    figures = {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024}
    log.with_suffix(".figures.json").write_text(json.dumps(figures))  # kept even if a later step fails
    return figures


def run_framework(args, adapter_ids, out: Path, mixed: bool = True) -> dict:
    command = [sys.executable, "evaluate.py", *eval_overrides(args, adapter_ids),
               f"paths.eval_dir={out}/eval", f"hydra.run.dir={out}/hydra",
               f"eval.mixed_adapter_batches={str(mixed).lower()}"]
    return measured(command, out / "log.txt")


def run_reload(args, adapter_ids, out: Path) -> dict:
    """One evaluate.py process per cell, the command each cell's record holds as `rerun`
    (rerun.cell_command): the base model's cells, then each adapter's."""
    from latent_traits.rerun import cell_command

    job = [*eval_overrides(args, adapter_ids), f"paths.eval_dir={out}/eval"]
    runs = []
    for adapter in [None, *adapter_ids]:
        for task in TASKS:
            name = f"{'base' if adapter is None else adapter.replace('/', '__')}-{task}"
            _, script, *overrides = shlex.split(cell_command(job, adapter or "base", task, adapter is None))
            command = [sys.executable, script, *overrides, f"hydra.run.dir={out}/hydra/{name}"]
            runs.append(measured(command, out / f"{name}.log"))
    return {"seconds": sum(r["seconds"] for r in runs), "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "runs": runs}


def run_reload_in_process(args, adapter_ids, out: Path) -> dict:
    command = [sys.executable, __file__, "--worker-reload", str(out), *[f"--adapter={a}" for a in adapter_ids],
               f"--n={args.n}", f"--batch-size={args.batch_size}", f"--cap={args.cap}", f"--artifacts={args.artifacts}"]
    return measured(command, out / "log.txt")


def run_lm_eval(args, adapters, model_dir: str, task_dir: Path, out: Path) -> dict:
    from lm_eval_tasks import task_name

    runs = []
    for adapter in [None, *adapters]:
        name = "base" if adapter is None else adapter.id.replace("/", "__")
        model_args = f"pretrained={model_dir},dtype=float32" + (f",peft={adapter.path}" if adapter else "")
        command = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args", model_args,
                   "--tasks", ",".join(task_name(t) for t in TASKS), "--include_path", str(task_dir),
                   "--batch_size", str(args.batch_size), "--device", "cpu", "--output_path", str(out / name),
                   "--log_samples"]
        runs.append(measured(command, out / f"{name}.log"))
    return {"seconds": sum(r["seconds"] for r in runs), "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "runs": runs}


def worker_reload(args) -> None:
    """Method 2: a fresh base model and adapter for every cell, the framework's decoding code and
    batching settings (as evaluate.py runs a cell)."""
    from peft import PeftModel

    from latent_traits.config import to_plain
    from latent_traits.eval.cells import run_cell
    from latent_traits.eval.runner import BASE, batching, decoding_settings, discover_adapters
    from latent_traits.io import write_jsonl
    from latent_traits.model.factory import load_tokenizer, load_tokenizer_and_model

    cfg = compose(eval_overrides(args, args.adapter))
    adapters = [BASE, *discover_adapters(cfg.paths.adapters_dir, MODEL, list(args.adapter))]
    inputs = grid_inputs(cfg, load_tokenizer(to_plain(cfg.model), cfg.paths.cache_dir))
    for adapter in adapters:
        for spec, examples, _ in inputs:
            tokenizer, model = load_tokenizer_and_model(to_plain(cfg.model), cfg.paths.cache_dir)
            tokenizer.padding_side = "left"
            if not adapter.is_base:
                model = PeftModel.from_pretrained(model, str(adapter.path))
            model.eval()
            rows, *_ = run_cell(model, tokenizer, spec, examples, max_input_tokens=cfg.data.max_input_tokens,
                                decoding=decoding_settings(cfg, adapter.id, spec.name), **batching(cfg, model))
            write_jsonl(Path(args.worker_reload) / adapter.id / f"{spec.name}.predictions.jsonl", rows)


def row_prediction(row: dict, classification: bool) -> str:
    return row["parsed"] if classification else row["raw_output"]


def read_rows(root: Path, adapter_ids: list[str], inputs) -> dict[tuple[str, str], dict[str, str]]:
    from latent_traits.io import read_jsonl

    return {(a, spec.name): {r["id"]: row_prediction(r, spec.is_classification)
                             for r in read_jsonl(root / a / f"{spec.name}.predictions.jsonl")}
            for a in adapter_ids for spec, _, _ in inputs}


def agreement(reference: dict, other: dict) -> dict[str, str]:
    """Per cell: identical predictions out of the reference's examples."""
    return {f"{a} x {t}": f"{sum(other.get((a, t), {}).get(i) == p for i, p in preds.items())}/{len(preds)}"
            for (a, t), preds in reference.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32, help="examples per task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cap", type=int, default=96, help="eval.decoding.max_new_tokens_cap")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of every method (OMP_NUM_THREADS); on a shared 2-core machine "
                             "two spinning OpenMP threads make each forward pass many times slower than one")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--artifacts", default=str(REPO / "artifacts" / "bench"))
    parser.add_argument("--worker-reload", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--adapter", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_reload:
        return worker_reload(args)
    THREADS_ENV.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))

    from lm_eval_tasks import read_predictions, write_tasks

    from latent_traits.config import to_plain
    from latent_traits.eval.cells import max_new_tokens
    from latent_traits.model.factory import load_tokenizer, model_location

    adapters = ensure_adapters(args)
    adapter_ids = [a.id for a in adapters]
    cfg = compose(eval_overrides(args, adapter_ids))
    tokenizer = load_tokenizer(to_plain(cfg.model), cfg.paths.cache_dir)
    inputs = grid_inputs(cfg, tokenizer)
    run_root = Path(args.artifacts) / "eval_throughput" / time.strftime("%Y%m%d-%H%M%S")
    task_dir = run_root / "lm_eval_tasks"
    write_tasks(inputs, {s.name: max_new_tokens(s, to_plain(cfg.eval.decoding)) for s, _, _ in inputs}, task_dir)
    model_dir = model_location(to_plain(cfg.model), cfg.paths.cache_dir)
    methods = args.methods.split(",")
    grid = ["base", *adapter_ids]
    results: list[dict] = []
    for repeat in range(args.repeats):
        order = methods[repeat % len(methods):] + methods[:repeat % len(methods)]
        for method in order:
            out = run_root / f"r{repeat}" / method
            print(f"repeat {repeat}: {method} ...", flush=True)
            if method in ("framework", "framework_per_cell"):
                figures = run_framework(args, adapter_ids, out, mixed=method == "framework")
                predictions = read_rows(out / "eval" / MODEL, grid, inputs)
            elif method == "reload":
                figures = run_reload(args, adapter_ids, out)
                predictions = read_rows(out / "eval" / MODEL, grid, inputs)
            elif method == "reload_in_process":
                figures = run_reload_in_process(args, adapter_ids, out)
                predictions = read_rows(out, grid, inputs)
            else:
                figures = run_lm_eval(args, adapters, model_dir, task_dir, out)
                labels = {s.name: list(s.labels) if s.is_classification else None for s, _, _ in inputs}
                predictions = {}
                for a in grid:
                    for task, preds in read_predictions(out / a.replace("/", "__"), labels).items():
                        predictions[(a, task)] = preds
            figures.update(method=method, repeat=repeat, cells=len(grid) * len(inputs), predictions=predictions)
            figures["cells_per_minute"] = figures["cells"] / figures["seconds"] * 60
            results.append(figures)
            print(f"  {figures['seconds']:.1f} s, {figures['peak_rss_mib']:.0f} MiB peak RSS", flush=True)
    report(results, args, run_root)


def report(results: list[dict], args, run_root: Path) -> None:
    from statistics import median

    reference = next(r["predictions"] for r in results if r["method"] == "framework")
    summary = {"n": args.n, "batch_size": args.batch_size, "cap": args.cap, "repeats": args.repeats,
               "threads": args.threads,
               "run_dir": str(run_root), "methods": {}}
    for method in dict.fromkeys(r["method"] for r in results):
        mine = [r for r in results if r["method"] == method]
        agree = agreement(reference, mine[-1]["predictions"])
        same = sum(int(v.split("/")[0]) for v in agree.values())
        total = sum(int(v.split("/")[1]) for v in agree.values())
        summary["methods"][method] = {
            "seconds": [round(r["seconds"], 1) for r in mine],
            "median_seconds": round(median(r["seconds"] for r in mine), 1),
            "cells_per_minute": [round(r["cells_per_minute"], 2) for r in mine],
            "peak_rss_mib": [round(r["peak_rss_mib"]) for r in mine],
            "identical_predictions": f"{same}/{total}", "per_cell": agree,
            **({"runs": [r.get("runs") for r in mine]} if method in ("lm_eval", "reload") else {}),
        }
    base = summary["methods"].get("framework", {}).get("median_seconds")
    print("\n| method | wall s (each repeat) | cells/min | peak RSS MiB | identical predictions | vs framework |")
    print("|---|---|---|---|---|---|")
    for method, m in summary["methods"].items():
        ratio = f"{m['median_seconds'] / base:.2f}x slower" if base else ""
        print(f"| {method} | {', '.join(map(str, m['seconds']))} | {', '.join(map(str, m['cells_per_minute']))} "
              f"| {', '.join(map(str, m['peak_rss_mib']))} | {m['identical_predictions']} | {ratio} |")
    for method, m in summary["methods"].items():
        differing = {cell: v for cell, v in m["per_cell"].items() if v.split("/")[0] != v.split("/")[1]}
        print(f"{method}: cells with differing predictions: {differing or 'none'}")
    (run_root / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"summary: {run_root / 'summary.json'}")


if __name__ == "__main__":
    main()
