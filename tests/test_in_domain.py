"""In-domain gains: each classification adapter on its own task, with the label shares that say
why a change whose interval holds 0 is not resolved."""

from __future__ import annotations

import pandas as pd
from test_analysis import records_from

from latent_traits.analysis.in_domain import in_domain_blocks, in_domain_table
from latent_traits.analysis.options import AnalysisOptions, BootstrapOptions
from latent_traits.analysis.run import analyze_records
from latent_traits.eval.records import BASE_ADAPTER_ID

MATRIX = pd.DataFrame({"imdb": [0.50, 0.80, 0.50], "flipkart": [0.79, 0.50, 0.79]},
                      index=[BASE_ADAPTER_ID, "imdb/lora_r8_s0", "flipkart/lora_r8_s0"])


def analysis():
    records = records_from(MATRIX, n=200)
    for r in records:  # flipkart's test split is 79% label "1"; its adapter answers "1" as the base does
        if r["task"]["name"] == "flipkart":
            r["data"]["class_distribution"] = {"0": 42, "1": 158}
            answers_one = 200 if r["adapter"]["id"] != "imdb/lora_r8_s0" else 100
            r["metrics"]["predicted_distribution"] = {"0": 200 - answers_one, "1": answers_one}
    a = analyze_records(records, AnalysisOptions(bootstrap=BootstrapOptions(n_resamples=0)))
    low, high = a.delta - 0.05, a.delta + 0.05  # stand-in intervals of +-5 points
    a.intervals["delta"] = (low, high)
    return a


def test_each_classification_adapter_on_its_own_task_with_why_not_where_unresolved():
    table = in_domain_table(analysis())
    assert list(table.index) == ["flipkart/lora_r8_s0", "imdb/lora_r8_s0"]
    assert abs(table.loc["imdb/lora_r8_s0", "change"] - 0.3) < 1e-9
    assert table.loc["imdb/lora_r8_s0", "outside the interval"] == "yes"
    assert table.loc["imdb/lora_r8_s0", "why not"] == ""
    assert table.loc["flipkart/lora_r8_s0", "outside the interval"] == "no"
    assert table.loc["flipkart/lora_r8_s0", "why not"] == (
        "the test split is 79% `1`; the base answers `1` on 100% of it, the adapter on 100%")


def test_without_intervals_the_table_has_no_verdict_and_without_a_base_no_table():
    a = analysis()
    a.intervals.clear()
    table = in_domain_table(a)
    assert "outside the interval" not in table and list(table["task"]) == ["flipkart", "imdb"]
    assert "no intervals" in in_domain_blocks(a)[1][1]
    no_base = analyze_records(records_from(MATRIX.drop(index=BASE_ADAPTER_ID)),
                              AnalysisOptions(bootstrap=BootstrapOptions(n_resamples=0), view="raw"))
    assert in_domain_table(no_base) is None and in_domain_blocks(no_base) == []


def test_rows_and_tasks_are_chosen_by_glob_and_the_base_stays():
    import pytest

    from latent_traits.analysis.errors import AnalysisError

    matrix = pd.DataFrame({"imdb": [0.5, 0.8, 0.6, 0.5], "flipkart": [0.79, 0.5, 0.7, 0.79], "paws": [0.4] * 4},
                          index=[BASE_ADAPTER_ID, "imdb/lora_r8_s0", "flipkart_balanced/lora_r8_s0",
                                 "flipkart_imbalanced/lora_r8_s0"])
    options = AnalysisOptions(bootstrap=BootstrapOptions(n_resamples=0), rows={"exclude": ["flipkart_*"]},
                              tasks={"include": ["imdb", "f*"]})
    a = analyze_records(records_from(matrix), options)
    assert list(a.matrix.index) == [BASE_ADAPTER_ID, "imdb/lora_r8_s0"]
    assert sorted(a.matrix.columns) == ["flipkart", "imdb"]
    with pytest.raises(AnalysisError, match=r"leave no adapter cell"):
        analyze_records(records_from(matrix), AnalysisOptions(rows={"include": ["nope*"]}))
    with pytest.raises(AnalysisError, match=r"analysis.rows takes include and exclude"):
        AnalysisOptions(rows={"only": ["x"]})
