"""Hub loading: selecting on light keys vs reading every row first, on an Amazon-sized split.

A synthetic stand-in for the Amazon reviews train split (its schema: class_index 1-5,
review_title, review_text; `--rows` rows of about 430 characters) is written once as an Arrow
dataset and memory-mapped, as datasets.load_dataset serves a cached hub split. Each side loads
`--n` training examples of task amazon through `datasets.load_dataset` (patched to serve that
dataset), in fresh processes: one for the wall time and the load's peak RSS (Linux's VmHWM, reset
after the imports and the dataset's opening, less the RSS at that point; it counts the memory-mapped
dataset pages read, which the kernel can reclaim), one traced for its peak Python heap (tracemalloc):

- keys: load_examples(source=hub), which reads the id and label columns of every row and the
  full rows of the chosen examples only;
- every row (the baseline, the path it replaced): load_hub (each row a Python example), then the
  same split, checks and transforms on all rows.

Both must return identical examples (the check is part of the run).

    python bench/hub_load.py [--rows 3000000] [--n 10000] [--class-ratio balanced]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = ("good bad great poor fine awful product price quality works broke love hate order ship fast slow "
         "cheap sturdy flimsy return refund again never always would recommend").split()


def write_split(folder: Path, rows: int) -> None:
    import datasets

    rng = random.Random(0)

    def chunk(start: int, size: int) -> dict:
        return {"class_index": [rng.randint(1, 5) for _ in range(size)],
                "review_title": [" ".join(rng.choices(WORDS, k=4)) for _ in range(size)],
                "review_text": [f"review {start + i}: " + " ".join(rng.choices(WORDS, k=70)) for i in range(size)]}

    step = 200_000
    parts = [datasets.Dataset.from_dict(chunk(s, min(step, rows - s))) for s in range(0, rows, step)]
    datasets.concatenate_datasets(parts).save_to_disk(str(folder))


def status_kib(field: str) -> int:
    """A memory figure of this process (Linux): VmRSS now, VmHWM the peak since its last reset."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def measure(folder: str, side: str, n: int, class_ratio: str | None, trace: bool) -> None:
    """One side in this (fresh) process; prints a JSON line: its time, or (trace) its memory."""
    import datasets

    from latent_traits.data.catalog import load_task_spec
    from latent_traits.data.labels import normalise_all
    from latent_traits.data.load import load_examples, load_hub
    from latent_traits.data.transforms import apply_transforms
    from latent_traits.io import stable_hash

    served = datasets.load_from_disk(folder)
    if trace:
        tracemalloc.start()
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS from here: the imports are not the load's
    before = status_kib("VmRSS")
    datasets.load_dataset = lambda *args, **kwargs: served
    spec = load_task_spec("amazon")
    transforms = {"class_ratio": class_ratio} if class_ratio else None
    started = time.perf_counter()
    if side == "keys":
        examples, _ = load_examples(spec, "train", n=n, seed=0, source="hub", transforms=transforms)
    else:
        rows = normalise_all(spec, load_hub(spec, "train"), "")
        examples, _ = apply_transforms(rows, list(spec.labels), transforms, n, 0)
    seconds = time.perf_counter() - started
    figures = {"python_heap_peak_mib": round(tracemalloc.get_traced_memory()[1] / 2**20)} if trace else {
        "seconds": round(seconds, 2), "load_peak_rss_mib": round((status_kib("VmHWM") - before) / 1024)}
    print(json.dumps({"side": side, **figures, "examples": len(examples), "hash": stable_hash(examples)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--class-ratio", default=None)
    parser.add_argument("--measure", nargs=2, metavar=("FOLDER", "SIDE"), help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(*args.measure, args.n, args.class_ratio, args.trace)
        return
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        write_split(Path(tmp) / "split", args.rows)
        print(f"wrote {args.rows:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
        results = {}
        for side in ("keys", "every_row"):
            results[side] = {}
            for trace in (False, True):  # time and RSS without tracemalloc's overhead; the heap with it
                command = [sys.executable, __file__, "--measure", str(Path(tmp) / "split"), side, "--n", str(args.n)]
                command += ["--class-ratio", args.class_ratio] if args.class_ratio else []
                command += ["--trace"] if trace else []
                out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO).stdout
                results[side].update(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(results[side]), flush=True)
        same = results["keys"]["hash"] == results["every_row"]["hash"]
        print(f"identical examples: {same}")
        if not same:
            raise SystemExit("the two sides chose different examples")


if __name__ == "__main__":
    main()
