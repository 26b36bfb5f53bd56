"""What a side analysis may read: the analysis so far and the data behind its cells, loaded
once per context."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latent_traits.analysis.matrix import base_row, cell_row, find_cell, is_base
from latent_traits.analysis.state import Analysis, SideResult
from latent_traits.data.catalog import load_task_spec, task_names
from latent_traits.data.load import DATA_SOURCES, load_examples
from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError
from latent_traits.eval.records import PREDICTIONS_FIX
from latent_traits.io import read_jsonl, stable_hash

__all__ = ["SideContext", "SideResult", "SideRun"]  # SideResult (state.py): what run() returns
log = logging.getLogger(__name__)


@dataclass
class SideContext:
    """What a side analysis may read. Data loads are cached per context."""

    analysis: Analysis  # matrix, delta, cells (records, each with "_path"), long table
    data_source: str = "offline"  # where source/target examples are re-read from (offline|hub|local)
    local_path: str | None = None
    _source_cache: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    _task_cache: dict[tuple, dict[str, dict[str, Any]]] = field(default_factory=dict, repr=False)
    _whole_tasks: set[tuple] = field(default_factory=set, repr=False)  # _task_cache keys read whole
    _unreadable_tasks: set[str] = field(default_factory=set, repr=False)

    def adapters(self) -> list[str]:
        """The adapter rows of the matrix (base excluded), in matrix order."""
        return [row for row in self.analysis.matrix.index if not is_base(row)]

    def base_row(self) -> str | None:
        return base_row(self.analysis.matrix.index)

    def task_type(self, task: str) -> str | None:
        found = self.records(task)
        return found[0]["task"].get("type") if found else None

    def record(self, row: str, task: str) -> dict[str, Any] | None:
        """The cell of a matrix row (an adapter id, or <model>:<id> when models mix) and task."""
        return find_cell(self.analysis.cells, row, task)

    def row_record(self, row: str) -> dict[str, Any] | None:
        """Any one cell of a matrix row: what its adapter records (settings, training data) is the
        same in each."""
        return next((c for c in self.analysis.cells if cell_row(c) == row), None)

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

    def record_source(self, record: dict[str, Any]) -> tuple[str, str | None]:
        """Where the cell's examples came from (offline | hub | local, and a local file), as its
        record says (`data.source` = "<kind>:<where>"), else the context's defaults."""
        kind, _, where = str((record.get("data") or {}).get("source", "")).partition(":")
        if kind not in DATA_SOURCES:
            return self.data_source, self.local_path
        if kind == "local":
            return kind, self.local_path or where or None
        return kind, self.local_path

    def task_examples_by_id(self, record: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The examples of the cell's task and split that evaluation drew, by id: those its
        predictions name (only their rows are read out of hub data), else every example it could
        have drawn (the whole split; for sources split by a stable hash of the id, the whole pool,
        whatever data.test_fraction evaluation ran with). Read once per context and id."""
        name = record["task"]["name"]
        split = (record.get("data") or {}).get("split", "test")
        source, local_path = self.record_source(record)
        key = (name, split, source, local_path)
        known = self._task_cache.setdefault(key, {})
        wanted = {str(row["id"]) for row in self.predictions(record) if row.get("id") is not None} or None
        if key in self._whole_tasks or (wanted is not None and wanted <= known.keys()):
            return known
        if name not in task_names():
            raise LatentTraitsError(
                f"target task {name!r} has no conf/tasks/{name}.yaml here, so its questions cannot be "
                "re-read; run the analysis from the repository that evaluated it")
        examples, _ = load_examples(load_task_spec(name), split=split, source=source, local_path=local_path,
                                    test_fraction=1.0 if split == "test" else 0.0,
                                    ids=None if wanted is None else wanted - known.keys())
        known.update({str(e["id"]): e for e in examples})
        if wanted is None:
            self._whole_tasks.add(key)
        return known

    def reference_texts(self, record: dict[str, Any]) -> dict[str, str] | None:
        """{example id: reference target text} of the cell's evaluation examples, re-read from
        the task's data as the record names it (the predictions' `reference` of a numeric task
        is only the final number). None when the task's data cannot be re-read here."""
        task = record["task"]["name"]
        if task in self._unreadable_tasks:  # tried once already: no second attempt or warning
            return None
        try:
            by_id = self.task_examples_by_id(record)
        except Exception as error:  # noqa: BLE001 - the caller falls back to predictions
            log.warning("Reference texts of %s not re-read (%s)", task, error)
            self._unreadable_tasks.add(task)
            return None
        return {i: str(e.get("target") or "") for i, e in by_id.items()}


SideRun = Callable[[SideContext, Mapping[str, Any]], SideResult]
