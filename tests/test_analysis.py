"""The analysis stage on synthetic cell records: matrix, PCA latent traits, report folder."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latent_traits.analysis.errors import AnalysisError, MissingCellsError, RecordConflictError
from latent_traits.analysis.matrix import (
    apply_missing_policy,
    delta_view,
    score_matrix,
    select_cells,
)
from latent_traits.analysis.pca import fit_pca
from latent_traits.analysis.report import write_report
from latent_traits.analysis.run import PCAOptions, analyze_records
from latent_traits.eval.records import BASE_ADAPTER_ID, load_records, record_path
from latent_traits.io import write_json

REPO = Path(__file__).resolve().parents[1]
MODEL = "smollm2_135m"
TASKS = ["amazon", "goat", "gsm8k", "imdb", "mnli", "paws"]


def make_record(
    adapter, task, score, *, model=MODEL, version="1", created_at=None, stand_in=False, n=40
):
    return {
        "schema_version": 1,
        "status": "complete",
        "model": {"name": model, "source": "offline_gguf"},
        "adapter": {
            "id": adapter,
            "path": None,
            "source_dataset": adapter.split("/")[0],
            "train_config": None,
            "train_data": None,
        },
        "task": {
            "name": task,
            "version": version,
            "type": "classification",
            "tags": [],
            "labels": ["0", "1"],
            "scorer": "exact_label",
        },
        "data": {
            "source": f"offline:{task}",
            "stand_in": stand_in,
            "split": "test",
            "n": n,
            "hash": "abc",
            "class_distribution": {},
        },
        "decoding": {"mode": "choice"},
        "settings_hash": f"h-{adapter}-{task}",
        "metrics": {"accuracy": float(score)},
        "primary_metric": "accuracy",
        "n_invalid": 0,
        "timing": {"seconds": 1.0, "examples_per_second": 40.0},
        "versions": {},
        "git_sha": "x",
        "host": "test",
        "created_at": created_at or "2026-01-01T00:00:00+00:00",
    }


def records_from(frame: pd.DataFrame, **kwargs) -> list[dict]:
    out = []
    for adapter, row in frame.iterrows():
        for task, score in row.items():
            record = make_record(adapter, task, score, **kwargs)
            record["_path"] = f"{adapter}/{task}.json"
            out.append(record)
    return out


def planted_rank2(seed: int = 0, noise: float = 1e-4):
    """Base row + 8 adapter rows whose deltas are U @ V with two known task directions."""
    rng = np.random.default_rng(seed)
    v, _ = np.linalg.qr(rng.normal(size=(len(TASKS), 2)))  # orthonormal task directions
    a = rng.normal(size=(8, 2))
    a -= a.mean(axis=0)
    q, _ = np.linalg.qr(a)  # centred, orthogonal adapter factors
    deltas = q @ np.diag([0.3, 0.1]) @ v.T + noise * rng.normal(size=(8, len(TASKS)))
    base = rng.uniform(0.3, 0.6, size=len(TASKS))
    rows = np.vstack([base, base + deltas])
    index = [BASE_ADAPTER_ID] + [f"src{i}/default_r8_s0" for i in range(8)]
    return pd.DataFrame(rows, index=index, columns=TASKS), v.T


def oriented(direction: np.ndarray) -> np.ndarray:
    return direction if direction[np.abs(direction).argmax()] > 0 else -direction


def small_matrix(n_adapters: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    index = [BASE_ADAPTER_ID] + [f"a{i}" for i in range(n_adapters)]
    return pd.DataFrame(
        rng.uniform(size=(n_adapters + 1, 4)), index=index, columns=["t_b", "t_a", "t_d", "t_c"]
    )


# -- PCA ---------------------------------------------------------------------------------------


def test_pca_recovers_planted_rank2_traits():
    frame, directions = planted_rank2()
    analysis = analyze_records(records_from(frame))
    result = analysis.pca
    assert result.n_components == 6  # min(8 adapters - 1 (centred), 6 tasks)
    assert result.explained_variance_ratio.iloc[:2].sum() > 0.99
    for k in range(2):
        loading = result.loadings.iloc[k].to_numpy()
        assert float(loading @ oriented(directions[k])) > 0.99
    assert list(result.loadings.columns) == TASKS
    assert list(result.projections.index) == list(frame.index[1:])


def test_sign_convention_largest_loading_positive():
    data = pd.DataFrame(np.random.default_rng(3).normal(size=(7, 5)), columns=list("abcde"))
    for center in (True, False):
        result = fit_pca(data, center=center)
        loadings = result.loadings.to_numpy()
        assert (loadings[np.arange(len(loadings)), np.abs(loadings).argmax(axis=1)] > 0).all()
    # loadings and projections flip together: the full decomposition reconstructs the data
    result = fit_pca(data, center=True)
    rebuilt = result.projections.to_numpy() @ result.loadings.to_numpy() + data.mean().to_numpy()
    np.testing.assert_allclose(rebuilt, data.to_numpy(), atol=1e-8)


def test_too_many_components_names_the_numbers():
    data = small_matrix(3).drop(index=BASE_ADAPTER_ID)
    with pytest.raises(AnalysisError) as err:
        fit_pca(data, n_components=5)
    message = str(err.value)
    assert "analysis.n_components=5" in message and "3 adapters x 4 tasks" in message
    assert "at most 2" in message and "analysis.n_components=2" in message


def test_one_adapter_skips_pca_but_reports(tmp_path):
    analysis = analyze_records(records_from(small_matrix(1)))
    assert analysis.pca is None and "at least 2 adapters" in analysis.pca_note
    html = write_report(analysis, tmp_path / "report", meta={"records_dir": "x"})
    assert not (tmp_path / "report" / "loadings.csv").exists()
    assert "PCA needs at least 2 adapters" in (tmp_path / "report" / "report.md").read_text()
    assert html.exists()


# -- matrix ------------------------------------------------------------------------------------


def test_matrix_base_first_sorted_tasks_and_delta():
    frame = small_matrix(3).loc[["a2", "a0", BASE_ADAPTER_ID, "a1"]]
    matrix = score_matrix(select_cells(records_from(frame)))
    assert list(matrix.index) == [BASE_ADAPTER_ID, "a0", "a1", "a2"]
    assert list(matrix.columns) == ["t_a", "t_b", "t_c", "t_d"]
    delta = delta_view(matrix)
    assert list(delta.index) == ["a0", "a1", "a2"]
    expected = matrix.loc[["a0", "a1", "a2"]] - matrix.loc[BASE_ADAPTER_ID]
    pd.testing.assert_frame_equal(delta, expected)


def test_newest_duplicate_wins():
    records = records_from(small_matrix(2))
    old = make_record("a0", "t_a", 0.01, created_at="2025-01-01T00:00:00+00:00")
    new = make_record("a0", "t_a", 0.99, created_at="2027-01-01T00:00:00+00:00")
    old["_path"], new["_path"] = "old/t_a.json", "new/t_a.json"
    matrix = score_matrix(select_cells([new, *records, old]))
    assert matrix.at["a0", "t_a"] == 0.99
    assert analyze_records([old, *records, new]).matrix.at["a0", "t_a"] == 0.99


def test_mixing_models_or_task_versions_raises():
    records = records_from(small_matrix(2))
    other = make_record("a9", "t_a", 0.5, model="llama3_2_3b")
    with pytest.raises(RecordConflictError, match="smollm2_135m.*llama3_2_3b"):
        select_cells([*records, other])
    v2 = make_record("a9", "t_a", 0.5, version="2")
    with pytest.raises(RecordConflictError, match="t_a v1.*t_a v2"):
        select_cells([*records, v2])


def test_missing_cell_policies():
    records = [
        r
        for r in records_from(small_matrix(3))
        if (r["adapter"]["id"], r["task"]["name"]) != ("a1", "t_c")
    ]
    matrix = score_matrix(select_cells(records))
    with pytest.raises(MissingCellsError, match="a1 x t_c"):
        apply_missing_policy(matrix, "error")
    rows, imputed = apply_missing_policy(matrix, "drop_rows")
    assert list(rows.index) == [BASE_ADAPTER_ID, "a0", "a2"] and imputed == []
    assert "t_c" not in apply_missing_policy(matrix, "drop_columns")[0].columns
    filled, imputed = apply_missing_policy(matrix, "impute_mean")
    assert imputed == [("a1", "t_c")]
    others = matrix["t_c"].drop(index="a1")
    assert filled.at["a1", "t_c"] == pytest.approx(others.mean())
    pd.testing.assert_frame_equal(filled.drop(index="a1"), matrix.drop(index="a1"))
    analysis = analyze_records(records, PCAOptions(missing="drop_rows"))
    assert analysis.dropped["adapters"] == ["a1"] and analysis.pca.n_components == 1
    assert analysis.missing == [("a1", "t_c")]
    analysis = analyze_records(records, PCAOptions(missing="impute_mean"))
    assert analysis.imputed == [("a1", "t_c")] and analysis.pca.n_components == 2


def test_delta_view_needs_base_row_raw_does_not():
    records = records_from(small_matrix(3).drop(index=BASE_ADAPTER_ID))
    with pytest.raises(MissingCellsError, match="analysis.view=raw"):
        analyze_records(records)
    analysis = analyze_records(records, PCAOptions(view="raw"))
    assert analysis.delta is None and analysis.pca.n_components == 2


# -- analyze.py end to end ---------------------------------------------------------------------

EXPECTED_FILES = {
    "report.md", "report.html", "report.json", ".latent_traits_output",
    "matrix.png", "delta.png", "zscores.png", "scree.png", "loadings.png", "biplot.png",
    "transfer.png",
    "cells.csv", "matrix.csv", "delta.csv", "zscores.csv", "explained_variance.csv",
    "loadings.csv", "projections.csv", "transfer.csv", "transfer_predictions.csv",
    "findings.csv",
}


def run_analyze(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    )
    env.pop("LATENT_TRAITS_ARTIFACTS", None)
    return subprocess.run(
        [sys.executable, str(REPO / "analyze.py"), f"paths.artifacts_dir={tmp_path}", *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_analyze_script_writes_report(tmp_path):
    frame, _ = planted_rank2()
    for record in records_from(frame, stand_in=True):
        adapter, task = record["adapter"]["id"], record["task"]["name"]
        write_json(record_path(tmp_path / "eval", MODEL, adapter, task), record)
    assert len(load_records(tmp_path / "eval" / MODEL)) == frame.size
    proc = run_analyze(tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = tmp_path / "reports" / MODEL
    assert f"Report: {report / 'report.html'}" in proc.stdout + proc.stderr
    assert {p.name for p in report.iterdir()} == EXPECTED_FILES
    html = (report / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 7
    assert 'src="http' not in html and "src='http" not in html
    assert "stand-in" in (report / "report.md").read_text()
    matrix = pd.read_csv(report / "matrix.csv", index_col=0)
    assert list(matrix.index) == list(frame.index)


def test_analyze_script_without_records_fails_clearly(tmp_path):
    proc = run_analyze(tmp_path)
    assert proc.returncode != 0
    assert f"no cell records were found under {tmp_path / 'eval' / MODEL}" in proc.stderr
    assert "python evaluate.py" in proc.stderr
    assert not (tmp_path / "reports").exists()


def test_a_cell_without_a_primary_value_counts_as_missing():
    from latent_traits.eval.records import primary_score

    record = {"metrics": {"judge_accuracy": None}, "primary_metric": "judge_accuracy"}
    assert math.isnan(primary_score(record))
