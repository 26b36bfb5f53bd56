"""Wall time of the similarity and dependency side analyses at the demo's scale, through
analyze.py (so inside a running Hydra app, as a user runs them).

Records in the real schema are written for the demo's grid (base + adapters trained on
imdb, amazon, goat, gsm8k with data.train_n=64, evaluated on the same four targets with
eval.n=32, seed 0: the very example ids evaluation draws) with random correctness; then
`analyze.py 'analysis=[pca,similarity,dependency]'` runs on them and the seconds each side
analysis took are read from report.json.

    python bench/side_similarity_dependency.py [--n-texts 64] [--eval-n 32]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the synthetic-record helpers of the side tests

DATASETS = ["imdb", "amazon", "goat", "gsm8k"]


def write_demo_records(eval_dir: Path, eval_n: int, train_n: int) -> None:
    import numpy as np
    from side_records import adapter_id, evaluated_examples, write_cell

    rng = np.random.default_rng(0)
    for task in DATASETS:
        ids = [e["id"] for e in evaluated_examples(task, eval_n)]
        for row in ["base"] + [adapter_id(d) for d in DATASETS]:
            write_cell(eval_dir, row, task, dict(zip(ids, rng.random(len(ids)) < 0.5, strict=True)),
                       train_n=train_n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-texts", type=int, default=64)
    parser.add_argument("--eval-n", type=int, default=32)
    parser.add_argument("--train-n", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        eval_dir, report_dir = Path(tmp) / "eval", Path(tmp) / "report"
        write_demo_records(eval_dir / "smollm2_135m", args.eval_n, args.train_n)
        started = time.perf_counter()
        subprocess.run([sys.executable, "analyze.py", f"records_dir={eval_dir / 'smollm2_135m'}",
                        f"report_dir={report_dir}", "analysis=[pca,similarity,dependency]",
                        f"analysis.similarity.n_texts={args.n_texts}", f"hydra.run.dir={tmp}/hydra"],
                       cwd=REPO, check=True)
        total = time.perf_counter() - started
        report = json.loads((report_dir / "report.json").read_text())
    for name, side in report["side_analyses"].items():
        parts = (side.get("summary") or {}).get("seconds")
        print(f"{name}: {side.get('seconds')} s ({side.get('skipped') or side.get('error') or 'ran'})"
              + (f", of which {parts}" if parts else ""))
    print(f"analyze.py in all (start-up, PCA, bootstrap, report included): {total:.1f} s")


if __name__ == "__main__":
    main()
