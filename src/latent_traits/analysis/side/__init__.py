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

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from latent_traits.analysis.matrix import is_base
from latent_traits.data.load import load_examples
from latent_traits.data.spec import TaskSpec
from latent_traits.eval.records import PREDICTIONS_FIX
from latent_traits.io import read_jsonl, stable_hash

if TYPE_CHECKING:
    from latent_traits.analysis.run import Analysis

log = logging.getLogger(__name__)


@dataclass
class SideResult:
    name: str
    title: str
    blocks: list[tuple] = field(default_factory=list)  # render blocks (analysis/render.py)
    figures: dict[str, bytes] = field(default_factory=dict)  # "<name>_<what>.png" -> PNG bytes
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # "<name>_<what>.csv" -> frame
    summary: dict[str, Any] = field(default_factory=dict)  # JSON-able, goes into report.json
    skipped: str | None = None  # why the analysis did not run on these records
    error: str | None = None  # set by the registry when run() raised (the report goes on)
    seconds: float | None = None  # set by the registry


@dataclass
class SideContext:
    """What a side analysis may read. Data loads are cached per context."""

    analysis: Analysis  # matrix, delta, cells (records, each with "_path"), long table
    data_source: str = "offline"  # where source/target examples are re-read from (offline|hub|local)
    local_path: str | None = None
    _source_cache: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    _task_cache: dict[tuple, dict[str, dict[str, Any]]] = field(default_factory=dict, repr=False)
    _unreadable_tasks: set[str] = field(default_factory=set, repr=False)

    def adapters(self) -> list[str]:
        """The adapter rows of the matrix (base excluded), in matrix order."""
        return [row for row in self.analysis.matrix.index if not is_base(row)]

    def base_row(self) -> str | None:
        return next((row for row in self.analysis.matrix.index if is_base(row)), None)

    def task_type(self, task: str) -> str | None:
        found = self.records(task)
        return found[0]["task"].get("type") if found else None

    def record(self, row: str, task: str) -> dict[str, Any] | None:
        """The cell of a matrix row (an adapter id, or <model>:<id> when models mix) and task."""
        return next((r for r in self.records(task) if r.get("_row", r["adapter"]["id"]) == row),
                    None)

    def records(self, task: str | None = None, adapter: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.analysis.cells
                if (task is None or r["task"]["name"] == task)
                and (adapter is None or r["adapter"]["id"] == adapter)]

    def predictions(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The cell's predictions rows (records.py documents the fields); [] when absent."""
        if record.get("_predictions"):  # set by the local store
            path = Path(record["_predictions"])
        else:
            path = Path(str(record.get("_path", ""))).with_suffix("")
            path = path.with_name(path.name + ".predictions.jsonl")
        return read_jsonl(path, fix=PREDICTIONS_FIX) if path.is_file() else []

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

    def reference_texts(self, record: dict[str, Any]) -> dict[str, str] | None:
        """{example id: reference target text} of the cell's evaluation examples, re-read from
        the task's data as the record names it (the predictions' `reference` of a numeric task
        is only the final number). None when the task's data cannot be re-read here."""
        from ._texts import task_examples_by_id  # _texts builds on this module

        task = record["task"]["name"]
        if task in self._unreadable_tasks:  # tried once already: no second attempt or warning
            return None
        try:
            by_id = task_examples_by_id(self, record)
        except Exception as error:  # noqa: BLE001 - the caller falls back to predictions
            log.warning("Reference texts of %s not re-read (%s)", task, error)
            self._unreadable_tasks.add(task)
            return None
        return {i: str(e.get("target") or "") for i, e in by_id.items()}


SideRun = Callable[[SideContext, Mapping[str, Any]], SideResult]
