"""The three entry points as subprocesses on the tiny model, and checks on the files they leave."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
# 12 examples in batches of 2, a checkpoint every 2 of 8 steps: 4 checkpoints per adapter
TRAIN = ["-m", "model=tiny_llama", "logger=none", "source_dataset=imdb,goat", "trainer.max_steps=8",
         "data.train_n=12", "data.batch_size=2", "train.checkpoint_every_n_steps=2"]
ADAPTERS = ("imdb/lora_r8_s0", "goat/lora_r8_s0")
# sampled generation: a rerun and a resumed run must draw the same samples
EVALUATE = ["model=tiny_llama", "eval.n=3", "eval.batch_size=2", "target_task=[imdb,goat]",
            "eval.decoding.max_new_tokens_cap=6", "eval.decoding.do_sample=true",
            "eval.decoding.temperature=0.7"]
ANALYZE = ["model=tiny_llama"]
N_CELLS = 6  # base + 2 adapters, x 2 tasks
# fields of a result that say when, where and how fast, not what
RUN_SPECIFIC = ("timing", "created_at", "host", "git_sha", "versions", "wall_time_s", "tokens_per_s",
                "resumed_from", "config")


def env_for(artifacts: Path) -> dict[str, str]:
    # one thread: the tiny model's matrices are far too small for more, and the machine is shared
    return {**os.environ, "LATENT_TRAITS_ARTIFACTS": str(artifacts), "WANDB_MODE": "offline",
            "OMP_NUM_THREADS": "1"}


def run(script: str, args: list[str], artifacts: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    cwd = cwd or artifacts.parent
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, env=env_for(artifacts),
                          capture_output=True, text=True, timeout=600)


def run_ok(script: str, args: list[str], artifacts: Path) -> str:
    proc = run(script, args, artifacts)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def run_command_line(line: str, artifacts: Path) -> str:
    """Run a recorded `python <script> ...` command line (as stored in a result's `rerun`)."""
    python, script, *args = shlex.split(line)
    assert python == "python", line
    return run_ok(script, args, artifacts)


def kill_inside_write(module: str, n: int, suffix: str, script: str, args: list[str],
                      artifacts: Path) -> str:
    """Start `script`, let it pause inside the n-th atomic write of `module` whose target ends
    with `suffix` (tests/pause_then_run.py), then SIGKILL it. Returns what it printed."""
    marker = artifacts.parent / f"paused-{script}"
    marker.unlink(missing_ok=True)
    artifacts.parent.mkdir(parents=True, exist_ok=True)
    log = open(artifacts.parent / f"{script}.killed.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "pause_then_run.py"), module, str(n), suffix, str(marker),
         str(REPO / script), *args], cwd=artifacts.parent, env=env_for(artifacts), stdout=log, stderr=log)
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.seek(0)
            raise AssertionError(f"{script} never reached the kill point:\n{log.read()[-3000:]}")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    log.seek(0)
    return log.read()


def temp_entries(root: Path) -> list[Path]:
    """Leftovers of interrupted writes: atomic_path's `.<name>.<pid>.<x>.tmp` entries."""
    return [p for p in root.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]


def assert_every_json_parses(root: Path) -> None:
    for path in root.rglob("*"):
        if path.suffix == ".json" and not any(part.startswith(".") for part in path.relative_to(root).parts):
            json.loads(path.read_text())
        elif path.name.endswith(".jsonl"):
            [json.loads(line) for line in path.read_text().splitlines()]


def mtimes(root: Path) -> dict[str, int]:
    """Modification times of the finished files under root (temporaries left out)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


def adapter_tensors(artifacts: Path, adapter: str) -> dict[str, torch.Tensor]:
    return load_file(str(artifacts / "adapters" / "tiny_llama" / adapter / "adapter_model.safetensors"))


def assert_same_adapters(a: Path, b: Path) -> None:
    for adapter in ADAPTERS:
        x, y = adapter_tensors(a, adapter), adapter_tensors(b, adapter)
        assert x.keys() == y.keys() and x, adapter
        assert all(torch.equal(x[k], y[k]) for k in x), f"{adapter}: weights differ"


def without_run_specific(result: dict) -> dict:
    out = {k: v for k, v in result.items() if k not in RUN_SPECIFIC}
    if isinstance(out.get("adapter"), dict):
        out["adapter"] = {k: v for k, v in out["adapter"].items() if k != "path"}
    return out


def differences(a, b, path: str = "") -> list[str]:
    """Dotted paths where two JSON-like values differ (for a readable assertion message)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
    return [] if a == b else [path or "."]


def cells(artifacts: Path) -> dict[str, tuple[dict, list[dict]]]:
    """{<adapter>/<task>: (record minus run-specific fields, prediction rows)}."""
    out = {}
    for path in sorted((artifacts / "eval").rglob("*.json")):
        record = json.loads(path.read_text())
        rows = [json.loads(line) for line in path.with_name(path.stem + ".predictions.jsonl").read_text().splitlines()]
        out[f"{record['adapter']['id']}/{record['task']['name']}"] = (without_run_specific(record), rows)
    return out


def report_numbers(artifacts: Path) -> dict:
    """What the report concludes: every cell's score and settings, the PCA, the transfer summary,
    and the matrix table."""
    report = artifacts / "reports" / "tiny_llama"
    data = json.loads((report / "report.json").read_text())
    records = sorted(({k: v for k, v in r.items() if k not in ("path", "created_at")} for r in data["records"]),
                     key=lambda r: (r["adapter"], r["task"]))
    return {"records": records, "pca": data["pca"], "transfer": data["transfer"],
            "n_per_cell": data["n_per_cell"], "matrix.csv": (report / "matrix.csv").read_text()}
