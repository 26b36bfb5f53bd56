"""Side analyses: why a transfer happens (../PAPER.md's length, class, ablation, similarity,
dependency and asymmetry analyses).

Each side analysis is one module here and one member of the `analysis` config group
(conf/analysis/<name>.yaml, first line `# @package analysis.<name>`), selected with e.g.
`python analyze.py 'analysis=[pca,lengths,classes]'`. A module exposes

    NAME: str                 # the config key, e.g. "lengths"
    TITLE: str                # the report section's heading
    def run(ctx: SideContext, options: Mapping[str, Any]) -> SideResult

`run` reads what it needs from the context (the matrix, the cell records, their predictions
files, the source training data) and returns report blocks, figures and tables; it writes
nothing itself. An analysis that cannot run on the records at hand (e.g. no generative target)
returns a SideResult whose `skipped` says why, and the report shows that sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from latent_traits.data.load import load_examples
from latent_traits.data.spec import TaskSpec
from latent_traits.io import read_jsonl, stable_hash

if TYPE_CHECKING:
    from latent_traits.analysis.run import Analysis


@dataclass
class SideResult:
    name: str
    title: str
    blocks: list[tuple] = field(default_factory=list)  # render blocks (analysis/render.py)
    figures: dict[str, bytes] = field(default_factory=dict)  # "<name>_<what>.png" -> PNG bytes
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # "<name>_<what>.csv" -> frame
    summary: dict[str, Any] = field(default_factory=dict)  # JSON-able, goes into report.json
    skipped: str | None = None  # why the analysis did not run on these records


@dataclass
class SideContext:
    """What a side analysis may read. Data loads are cached per context."""

    analysis: Analysis  # matrix, delta, cells (records, each with "_path"), long table
    data_source: str = "offline"  # where source/target examples are re-read from (offline|hub|local)
    local_path: str | None = None
    _source_cache: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def records(self, task: str | None = None, adapter: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.analysis.cells
                if (task is None or r["task"]["name"] == task)
                and (adapter is None or r["adapter"]["id"] == adapter)]

    def predictions(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The cell's predictions rows (records.py documents the fields); [] when absent."""
        path = Path(str(record.get("_path", ""))).with_suffix("")
        path = path.with_name(path.name + ".predictions.jsonl")
        return read_jsonl(path) if path.is_file() else []

    def source_examples(self, record: dict[str, Any]) -> list[dict[str, Any]] | None:
        """The adapter's training examples, rebuilt from the settings the adapter recorded
        (task spec, split, n, seed, transforms); None for the base model. Cached per context."""
        settings = (record.get("adapter") or {}).get("train_config")
        if not settings:
            return None
        key = stable_hash(settings)
        if key not in self._source_cache:
            source, data = settings["source_dataset"], settings.get("data", {})
            self._source_cache[key], _ = load_examples(
                TaskSpec.from_config(source["task"]), split=source.get("split", "train"),
                n=source.get("n"), seed=settings.get("seed", 0),
                source=data.get("source", self.data_source), local_path=data.get("local_path"),
                test_fraction=data.get("test_fraction", 0.3), transforms=source.get("transforms"))
        return self._source_cache[key]


SideRun = Callable[[SideContext, Mapping[str, Any]], SideResult]
