"""The results store: local records and W&B runs into one long table; logging an analysis run.

No W&B server is reachable here: the reader is tested on objects shaped like the runs
wandb.Api().runs() returns (.config, .summary, .name, .id, .group, .tags, .created_at), and
the logger on a stand-in wandb module."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from test_analysis import MODEL, make_record, planted_rank2

from latent_traits.analysis import store
from latent_traits.analysis.errors import NoRecordsError
from latent_traits.analysis.run import AnalysisOptions, analyze_records, run_analysis
from latent_traits.analysis.wandb_log import log_report
from latent_traits.eval.records import predictions_path, record_path
from latent_traits.io import write_json, write_jsonl

CELL_KEYS = ("task", "data", "decoding", "settings_hash", "primary_metric", "n_invalid")


@dataclass
class FakeRun:
    id: str
    name: str
    config: dict
    summary: dict
    group: str | None = "paper"
    tags: list = field(default_factory=lambda: ["eval"])
    created_at: str = "2026-02-01T00:00:00"


class FakeApi:
    def __init__(self, runs):
        self._runs, self.calls = runs, []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return iter(self._runs)


def run_for_adapter(adapter: str, scores: dict[str, float], run_id: str, **kwargs) -> FakeRun:
    """One evaluation run per adapter: config.cells per task, summary eval/<task>/<metric>."""
    records = {t: make_record(adapter, t, s) for t, s in scores.items()}
    first = next(iter(records.values()))
    config = {"model": first["model"], "adapter": first["adapter"],
              "cells": {t: {k: r[k] for k in CELL_KEYS} for t, r in records.items()}}
    summary = {f"eval/{t}/accuracy": s for t, s in scores.items()}
    summary |= {f"eval/{t}/n_invalid": 0 for t in scores} | {"_runtime": 12.0}
    return FakeRun(run_id, f"eval-{adapter}", config, summary, **kwargs)


def test_wandb_runs_map_to_cells():
    run = run_for_adapter("imdb/lora_r8_s0", {"imdb": 0.7, "gsm8k": 0.1}, "abc")
    records = store.records_from_run(run, "me/proj/")
    assert [(r["adapter"]["id"], r["task"]["name"], r["metrics"]["accuracy"]) for r in records] \
        == [("imdb/lora_r8_s0", "imdb", 0.7), ("imdb/lora_r8_s0", "gsm8k", 0.1)]
    r = records[0]
    assert r["_path"] == "wandb:me/proj/abc/imdb" and r["_predictions"] is None
    assert r["_run"] == {"id": "abc", "name": "eval-imdb/lora_r8_s0", "group": "paper",
                         "tags": ["eval"]}
    assert r["metrics"] == {"accuracy": 0.7, "n_invalid": 0.0}
    assert r["model"]["name"] == MODEL and r["task"]["version"] == "1"


def run_for_job(scores: dict[str, dict[str, float]], run_id: str, **kwargs) -> FakeRun:
    """One evaluation run per job (what evaluate.py writes): config.cells a list of cells that
    each name their adapter, summary eval/<adapter>/<task>/<metric>."""
    records = [make_record(a, t, s) for a, row in scores.items() for t, s in row.items()]
    config = {"model": records[0]["model"], "job": {"eval": {"n": 32}},
              "cells": [{"adapter": r["adapter"], **{k: r[k] for k in CELL_KEYS}} for r in records]}
    summary = {f"eval/{a}/{t}/accuracy": s for a, row in scores.items() for t, s in row.items()}
    summary |= {f"eval/{a}/{t}/n_invalid": 0 for a, row in scores.items() for t in row}
    summary |= {"_runtime": 12.0, "eval/base/imdb/confusion_matrix": "<media>"}
    return FakeRun(run_id, "evaluate-paper", config, summary, **kwargs)


def test_a_job_run_maps_to_every_adapter_and_task_cell():
    scores = {"base": {"imdb": 0.5, "gsm8k": 0.05}, "imdb/lora_r8_s0": {"imdb": 0.7, "gsm8k": 0.1}}
    run = run_for_job(scores, "job1")
    run.summary.pop("eval/imdb/lora_r8_s0/gsm8k/accuracy")  # an unfinished cell is skipped alone
    records = store.records_from_run(run, "me/proj/")
    got = {(r["adapter"]["id"], r["task"]["name"]): r for r in records}
    assert set(got) == {("base", "imdb"), ("base", "gsm8k"), ("imdb/lora_r8_s0", "imdb")}
    assert {k: r["metrics"]["accuracy"] for k, r in got.items()} == {
        ("base", "imdb"): 0.5, ("base", "gsm8k"): 0.05, ("imdb/lora_r8_s0", "imdb"): 0.7}
    cell = got[("imdb/lora_r8_s0", "imdb")]
    assert cell["metrics"] == {"accuracy": 0.7, "n_invalid": 0.0}  # no other adapter's or task's values
    assert cell["_path"] == "wandb:me/proj/job1/imdb/lora_r8_s0/imdb" and cell["model"]["name"] == MODEL
    assert "job" not in cell and cell["_run"]["name"] == "evaluate-paper"
    # old one-adapter runs and job runs read together
    old = run_for_adapter("gsm8k/lora_r8_s0", {"imdb": 0.4}, "old1")
    both = store.records_from_runs([run, old])
    assert {(r["adapter"]["id"], r["task"]["name"]) for r in both} >= {("gsm8k/lora_r8_s0", "imdb"), ("base", "imdb")}


def test_single_cell_runs_unfinished_cells_and_created_at():
    record = make_record("base", "imdb", 0.5)
    record.pop("created_at")
    single = FakeRun("one", "cell", {k: v for k, v in record.items() if k != "metrics"},
                     {"eval/imdb/accuracy": 0.5}, created_at=datetime(2026, 3, 1))
    unfinished = run_for_adapter("a/l_r8_s0", {"imdb": 0.6}, "two")
    unfinished.summary.pop("eval/imdb/accuracy")
    stray = FakeRun("three", "train", {"lr": 1e-4}, {"train/loss": 1.0})
    records = store.records_from_runs([single, unfinished, stray])
    assert len(records) == 1 and records[0]["created_at"] == "2026-03-01T00:00:00"


def test_wandb_filters_and_analysis_from_runs(tmp_path):
    frame, _ = planted_rank2()
    runs = [run_for_adapter(a, row.to_dict(), f"r{i}") for i, (a, row) in enumerate(frame.iterrows())]
    stale = run_for_adapter(frame.index[1], {"imdb": 0.0}, "old", created_at="2025-01-01")
    api = FakeApi([stale, *runs])
    cfg = {"project": "proj", "entity": "me", "group": "paper", "tags": ["eval", "v2"]}
    html = run_analysis(tmp_path / "unused", tmp_path / "report", AnalysisOptions(),
                        source="wandb", wandb_cfg=cfg, api=api)
    path, filters = api.calls[0]
    assert path == "me/proj" and filters["group"] == "paper" and filters["state"] == "finished"
    assert filters["$and"] == [{"tags": {"$in": ["eval"]}}, {"tags": {"$in": ["v2"]}}]
    matrix = pd.read_csv(html.parent / "matrix.csv", index_col=0)
    np.testing.assert_allclose(matrix.to_numpy(), frame.to_numpy())  # newest run wins
    cells = pd.read_csv(html.parent / "cells.csv")
    assert len(cells) == frame.size + 1 and (~cells.kept).sum() == 1
    assert set(cells.source) == {"wandb"}
    md = (html.parent / "report.md").read_text()
    assert "W&B project `me/proj`" in md and "no cell has a usable predictions file" in md
    with pytest.raises(NoRecordsError, match="analysis.wandb.project"):
        store.load_from_wandb(cfg, FakeApi([]))


def test_local_records_long_table_and_predictions(tmp_path):
    eval_dir = tmp_path / "eval" / MODEL
    for adapter, score in (("base", 0.5), ("a/l_r8_s0", 0.75)):
        write_json(record_path(tmp_path / "eval", MODEL, adapter, "imdb"),
                   make_record(adapter, "imdb", score, n=4))
    write_jsonl(predictions_path(tmp_path / "eval", MODEL, "a/l_r8_s0", "imdb"),
                [{"id": i, "correct": c} for i, c in enumerate([1, 1, 1, 0])])
    records = store.local_records(eval_dir)
    table = store.long_table(records, records)
    assert list(table.columns) == [*store.LONG_COLUMNS, "kept"]
    assert table.set_index("adapter").loc["a/l_r8_s0", "predictions"].endswith(
        "imdb.predictions.jsonl")
    assert pd.isna(table.set_index("adapter").loc["base", "predictions"])
    a = analyze_records(records, AnalysisOptions(view="raw"))
    low, high = a.intervals["matrix"]
    assert pd.isna(low.at["base", "imdb"]) and 0.0 <= low.at["a/l_r8_s0", "imdb"] <= 0.75


class FakeWandb:
    def __init__(self, fail: bool = False):
        self.fail, self.logged, self.finished, self.init_kwargs = fail, {}, 0, None
        self.Image = lambda path: ("image", path)
        self.Table = lambda dataframe: ("table", len(dataframe))
        self.Artifact = lambda name, type: SimpleNamespace(name=name, add_dir=lambda d: None)

    def init(self, **kwargs):
        self.init_kwargs = kwargs
        run = SimpleNamespace(id="run1", summary={}, log_artifact=lambda a: None)
        run.summary = {}
        run.log = self._log
        self.run = run
        return run

    def _log(self, data):
        if self.fail:
            raise RuntimeError("disk full")
        self.logged.update(data)

    def finish(self):
        self.finished += 1


def test_report_logged_as_analysis_run_and_finished_on_error(tmp_path):
    frame, _ = planted_rank2()
    report = tmp_path / "report"
    (report).mkdir()
    (report / "matrix.png").write_bytes(b"png")
    frame.to_csv(report / "matrix.csv")
    (report / "report.json").write_text(json.dumps(
        {"pca": {"explained_variance_ratio": {"PC0": 0.9}}, "records": [1, 2],
         "transfer": {"overall": {"skill": 0.5}}}))
    fake = FakeWandb()
    cfg = {"project": "p", "mode": "offline", "tags": ["x"], "dir": str(tmp_path)}
    assert log_report(report, cfg, {"a": 1}, wandb_module=fake) == "run1"
    assert fake.init_kwargs["job_type"] == "analysis" and fake.init_kwargs["mode"] == "offline"
    assert set(fake.logged) == {"analysis/figures/matrix", "analysis/tables/matrix"}
    assert fake.run.summary["analysis/explained_variance/PC0"] == 0.9
    assert fake.run.summary["analysis/transfer/skill"] == 0.5 and fake.finished == 1
    failing = FakeWandb(fail=True)
    with pytest.raises(RuntimeError, match="disk full"):
        log_report(report, cfg, wandb_module=failing)
    assert failing.finished == 1
