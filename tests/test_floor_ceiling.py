"""Tasks at floor or ceiling (every row within noise of 0 or 1) are flagged, left out of the
traits by default with the reason in the report, and kept on request."""

from __future__ import annotations

import pandas as pd
import pytest
from test_analysis import planted_rank2, records_from

from latent_traits.analysis.errors import AnalysisError
from latent_traits.analysis.matrix import flat_columns
from latent_traits.analysis.options import AnalysisOptions
from latent_traits.analysis.report import write_report
from latent_traits.analysis.run import analyze_records


def with_columns(**columns) -> pd.DataFrame:
    frame, _ = planted_rank2()
    for name, values in columns.items():
        frame[name] = values
    return frame


def test_columns_within_noise_of_0_or_1_are_flagged_and_others_not():
    n = 40  # 3/n = 0.075
    rows = 9
    matrix = pd.DataFrame({
        "floor": [0.0] * (rows - 1) + [0.075],   # every row at most 3/n
        "near_floor": [0.0] * (rows - 1) + [0.1],  # one row above: a signal
        "ceiling": [1.0] * (rows - 1) + [0.95],
        "middle": [0.5] * rows,
    })
    flagged = flat_columns(matrix, pd.DataFrame(n, index=matrix.index, columns=matrix.columns))
    assert sorted(flagged) == ["ceiling", "floor"]
    assert flagged["floor"].startswith("floor: every row scores at most 3/n (n = 40)")
    assert flat_columns(matrix * 4, pd.DataFrame(n, index=matrix.index, columns=matrix.columns)) == {}  # not rates


def test_a_floor_column_is_left_out_of_the_traits_and_reported(tmp_path):
    frame = with_columns(gsm8k=0.0)
    analysis = analyze_records(records_from(frame), AnalysisOptions(n_components=2))
    assert analysis.left_out == ["gsm8k"] and "gsm8k" not in analysis.pca.loadings.columns
    assert "gsm8k" in analysis.matrix.columns  # the matrix still shows it
    write_report(analysis, tmp_path / "r", meta={"records_dir": "x"})
    md = (tmp_path / "r" / "report.md").read_text()
    assert "left out of the traits" in md and "gsm8k: floor: every row scores at most 3/n" in md
    kept = analyze_records(records_from(frame), AnalysisOptions(n_components=2, floor_ceiling="keep"))
    assert kept.left_out == [] and "gsm8k" in kept.pca.loadings.columns and kept.flat == analysis.flat


def test_the_traits_without_the_floor_column_are_the_traits_of_the_rest():
    frame = with_columns(gsm8k=0.0)
    without = analyze_records(records_from(frame), AnalysisOptions(n_components=2))
    rest = analyze_records(records_from(frame.drop(columns="gsm8k")), AnalysisOptions(n_components=2))
    pd.testing.assert_frame_equal(without.pca.loadings, rest.pca.loadings)


def test_an_unknown_policy_is_refused():
    with pytest.raises(AnalysisError, match="analysis.floor_ceiling='drop' is not one of exclude, keep"):
        AnalysisOptions(floor_ceiling="drop")
