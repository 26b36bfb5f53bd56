"""Run an entry point that stops inside one chosen atomic write, so a test can kill -9 it there.

    python tests/pause_then_run.py <module> <n> <name suffix> <marker file> <script.py> [overrides...]

Wraps ``<module>.atomic_path``: inside the n-th write whose target name ends with the suffix, once
the block has written the temporary file or folder and before it is renamed into place, the
process writes the marker file and sleeps until it is killed. The product code is unchanged; only
the moment of the kill is chosen.
"""

from __future__ import annotations

import importlib
import runpy
import sys
import time
from contextlib import contextmanager
from pathlib import Path


def install(module_name: str, n: int, suffix: str, marker: Path) -> None:
    module = importlib.import_module(module_name)
    real = module.atomic_path
    seen = [0]

    @contextmanager
    def pausing(path):
        with real(path) as tmp:
            yield tmp
            if str(path).endswith(suffix):
                seen[0] += 1
                if seen[0] == n:
                    marker.write_text(f"paused inside the write of {path}\n")
                    while True:
                        time.sleep(60)

    module.atomic_path = pausing


if __name__ == "__main__":
    module_name, n, suffix, marker, script, *overrides = sys.argv[1:]
    install(module_name, int(n), suffix, Path(marker))
    sys.argv = [script, *overrides]
    runpy.run_path(script, run_name="__main__")
