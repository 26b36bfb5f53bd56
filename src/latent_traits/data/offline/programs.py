"""Code: the Magicoder stand-in, from reasoning-gym's CodeI/O data (read as a file, not run)."""

from __future__ import annotations

import gzip
import json
from typing import Any

from latent_traits.data.offline.common import offline_loader, package_dir
from latent_traits.errors import LatentTraitsError


@offline_loader("codeio_python")
def load_codeio(max_target_chars: int | None = None, **_: Any) -> list[dict[str, Any]]:
    """STAND-IN for Magicoder OSS-Instruct: reasoning-gym's 3002 CodeI/O programming tasks (a task
    description and an input/output spec) with their reference Python solution as the target.
    The file ships in the package; nothing is executed and no network is needed."""
    path = package_dir("reasoning_gym", "pip install reasoning-gym") / "data" / "codeio.jsonl.gz"
    if not path.is_file():
        raise LatentTraitsError(f"reasoning-gym does not ship {path.name}; install reasoning-gym")
    examples = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            row = json.loads(line)
            problem = f"{row['task_description'].strip()}\n\n{row['input_output_spec'].strip()}"
            solution = row["code_sample"].strip()
            if max_target_chars and len(solution) > max_target_chars:
                continue
            # the input generator lets the opt-in sandbox test a generated solution (eval/code.py)
            examples.append({"id": f"codeio-{i}", "input": problem, "target": solution,
                             "input_generator": row.get("input_generator")})
    return examples
