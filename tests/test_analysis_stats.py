"""The analysis statistics: planted traits, bootstrap coverage, trait names, seeds, transfer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_analysis import TASKS, make_record, oriented, records_from

from latent_traits.analysis import bootstrap as bs
from latent_traits.analysis.errors import AnalysisError, RecordConflictError
from latent_traits.analysis.pca import fit_pca
from latent_traits.analysis.run import AnalysisOptions, BootstrapOptions, analyze_records
from latent_traits.analysis.seeds import seed_table
from latent_traits.analysis.traits import suggest_names, trait_names
from latent_traits.analysis.transfer import loto_predictions, transfer_summary
from latent_traits.eval.records import BASE_ADAPTER_ID
from latent_traits.io import write_jsonl

TAGS = {"amazon": ["sentiment"], "imdb": ["sentiment"], "goat": ["math", "arithmetic"],
        "gsm8k": ["math"], "mnli": ["nli"], "paws": ["paraphrase"]}


def planted(n_adapters=10, ratios=(0.8, 0.2), noise=0.0, seed=0):
    """Adapter deltas with orthonormal task directions and exactly known variance ratios."""
    rng = np.random.default_rng(seed)
    v, _ = np.linalg.qr(rng.normal(size=(len(TASKS), len(ratios))))
    a = rng.normal(size=(n_adapters, len(ratios)))
    q, _ = np.linalg.qr(a - a.mean(axis=0))
    deltas = q @ np.diag(np.sqrt(ratios)) * 0.3 @ v.T
    deltas = deltas + noise * rng.normal(size=deltas.shape)
    index = [f"src{i}/lora_r8_s0" for i in range(n_adapters)]
    return pd.DataFrame(deltas, index=index, columns=TASKS), v.T


# -- planted structure -------------------------------------------------------------------------


def test_planted_variance_ratios_loading_order_and_sign():
    deltas, directions = planted(ratios=(0.7, 0.3))
    result = fit_pca(deltas)
    ratio = result.explained_variance_ratio.to_numpy()
    np.testing.assert_allclose(ratio[:2], [0.7, 0.3], atol=1e-8)
    for k in range(2):  # order: the 0.7 direction first; sign: its largest entry positive
        np.testing.assert_allclose(result.loadings.iloc[k], oriented(directions[k]), atol=1e-8)


def test_too_few_adapters_for_requested_components_is_a_clear_error():
    deltas, _ = planted(n_adapters=3)
    base = pd.DataFrame([[0.5] * len(TASKS)], index=[BASE_ADAPTER_ID], columns=TASKS)
    records = records_from(pd.concat([base, base.iloc[0] + deltas]))
    with pytest.raises(AnalysisError, match="at most 2 component"):
        analyze_records(records, AnalysisOptions(n_components=4))


# -- bootstrap ---------------------------------------------------------------------------------


def test_bootstrap_cell_and_delta_intervals_cover_at_nominal_rate():
    rng = np.random.default_rng(0)
    truth, n, level, datasets = np.array([0.2, 0.5, 0.75]), 120, 0.9, 200
    covered, covered_delta = [], []
    reps = bs.Replicates(values=np.empty(0), has_ci=pd.DataFrame(), level=level)
    for _ in range(datasets):
        correct = rng.random((len(truth), n)) < truth[:, None]
        found = {i: {f"e{k}": float(c) for k, c in enumerate(row)} for i, row in enumerate(correct)}
        draws = np.column_stack(list(bs.resample_task(found, 300, rng).values()))
        low, high = reps.interval(draws)
        covered += list((low <= truth) & (truth <= high))
        dlow, dhigh = reps.interval(draws[:, 1:] - draws[:, :1])
        dtruth = truth[1:] - truth[0]
        covered_delta += list((dlow <= dtruth) & (dtruth <= dhigh))
    assert 0.85 <= np.mean(covered) <= 0.95, np.mean(covered)
    assert 0.85 <= np.mean(covered_delta) <= 0.96, np.mean(covered_delta)


def test_unpaired_rows_resample_independently():
    rng = np.random.default_rng(1)
    found = {0: {"a": 1.0, "b": 0.0}, 1: {"c": 1.0, "d": 1.0, "e": 0.0}}
    draws = bs.resample_task(found, 2000, rng)
    assert draws[0].mean() == pytest.approx(0.5, abs=0.05)
    assert set(np.unique(draws[1] * 3)) <= {0.0, 1.0, 2.0, 3.0}


def test_paired_rows_share_the_draw_so_deltas_are_tight():
    rng = np.random.default_rng(4)
    base = rng.random(200) < 0.5
    adapter = base.copy()
    adapter[:6] = ~adapter[:6]  # the adapter differs from the base on 6 examples only
    found = {i: {f"e{k}": float(c) for k, c in enumerate(x)} for i, x in enumerate([base, adapter])}
    draws = bs.resample_task(found, 500, rng)
    paired = np.std(draws[1] - draws[0])
    assert paired < 0.5 * np.std(draws[0])  # an unpaired delta would spread ~1.4x a cell's


def test_align_components_undoes_permutation_and_sign():
    reference = np.linalg.qr(np.random.default_rng(2).normal(size=(5, 3)))[0].T
    shuffled = np.stack([reference[[1, 0, 2]] * np.array([[-1], [1], [-1]])])
    ratios = np.array([[0.3, 0.6, 0.1]])
    loadings, matched = bs.align_components(shuffled, ratios, reference)
    np.testing.assert_allclose(loadings[0], reference)
    np.testing.assert_allclose(matched[0], [0.6, 0.3, 0.1])


def write_predictions(records, tmp_path, rng, n=300):
    """Per-example correctness drawn at each record's score; the score set to its mean."""
    for r in records:
        correct = rng.random(n) < r["metrics"]["accuracy"]
        path = tmp_path / f"{r['adapter']['id'].replace('/', '_')}.{r['task']['name']}.jsonl"
        write_jsonl(path, [{"id": f"x{k}", "correct": bool(c)} for k, c in enumerate(correct)])
        r["metrics"]["accuracy"] = float(correct.mean())
        r["_predictions"] = str(path)


def test_bootstrap_gives_intervals_for_every_cell_ratio_and_loading(tmp_path):
    deltas, directions = planted(n_adapters=8, ratios=(0.85, 0.15))
    base = pd.Series(0.5, index=TASKS)
    frame = pd.concat([base.to_frame(BASE_ADAPTER_ID).T, base + deltas])
    records = records_from(frame)
    write_predictions(records, tmp_path, np.random.default_rng(3), n=2000)
    options = AnalysisOptions(n_components=2, bootstrap=BootstrapOptions(200, seed=1, level=0.9))
    a = analyze_records(records, options)
    low, high = a.intervals["matrix"]
    assert low.notna().all().all() and (low <= a.matrix).all().all()
    assert (a.matrix <= high).all().all()
    dlow, dhigh = a.intervals["delta"]
    assert ((dlow <= a.delta) & (a.delta <= dhigh)).all().all()
    ci = a.pca_ci
    assert (ci["ratio_low"] <= a.pca.explained_variance_ratio + 1e-9).all()
    assert (a.pca.explained_variance_ratio <= ci["ratio_high"] + 1e-9).all()
    first = oriented(directions[0])
    assert ((ci["loadings_low"].iloc[0] <= first + 0.05) & (first - 0.05 <= ci["loadings_high"]
                                                              .iloc[0])).all()
    assert ci["cosine"].iloc[0] > 0.95


def test_cells_without_predictions_get_no_interval(tmp_path):
    records = records_from(planted(n_adapters=4)[0])
    write_predictions(records[:3], tmp_path, np.random.default_rng(0))
    a = analyze_records(records, AnalysisOptions(view="raw", bootstrap=BootstrapOptions(50)))
    low, _ = a.intervals["matrix"]
    assert int(low.notna().to_numpy().sum()) == 3 and "no predictions" in a.bootstrap_note


# -- traits, seeds, mixing ---------------------------------------------------------------------


def test_trait_names_suggested_from_tags_and_overridable():
    loadings = pd.DataFrame([[0.7, 0.6, 0.1, 0.1, 0.2, 0.1], [0.1, 0.1, 0.7, 0.6, -0.1, -0.2]],
                            index=["PC0", "PC1"], columns=TASKS)
    assert suggest_names(loadings, TAGS) == ["sentiment", "math"]
    loadings.iloc[1] = [-0.6, 0.7, 0.5, 0.1, 0.0, 0.0]
    assert suggest_names(loadings, TAGS)[1] == "math vs sentiment"
    names, given = trait_names(loadings, TAGS, ["general gain"])
    assert names[0] == "general gain" and given == [True, False]
    with pytest.raises(AnalysisError, match="trait_names has 3 names"):
        trait_names(loadings, TAGS, ["a", "b", "c"])


def test_seed_groups_mean_and_spread():
    matrix = pd.DataFrame({"t": [0.5, 0.6, 0.7, 0.2]},
                          index=[BASE_ADAPTER_ID, "imdb/lora_r8_s0", "imdb/lora_r8_s1", "x/lora_r8_s0"])
    table = seed_table(matrix)
    assert table.to_dict("records") == [{"group": "imdb/lora_r8_s*", "task": "t", "n_seeds": 2,
                                         "mean": pytest.approx(0.65), "std": pytest.approx(0.0707,
                                         abs=1e-4), "min": 0.6, "max": 0.7}]


def test_mixing_allowed_on_request():
    records = records_from(pd.DataFrame({"t": [0.5, 0.6, 0.7]},
                                        index=[BASE_ADAPTER_ID, "a/l_r8_s0", "b/l_r8_s0"]))
    other = records_from(pd.DataFrame({"t": [0.1, 0.3, 0.2]},
                                      index=[BASE_ADAPTER_ID, "a/l_r8_s0", "b/l_r8_s0"]),
                         model="llama3_2_3b")
    with pytest.raises(RecordConflictError, match="allow_mixed_models"):
        analyze_records(records + other, model_name="smollm2_135m")
    a = analyze_records(records + other, AnalysisOptions(allow_mixed_models=True),
                        model_name="smollm2_135m")
    assert a.delta.loc["llama3_2_3b:a/l_r8_s0", "t"] == pytest.approx(0.2)
    assert a.delta.loc["smollm2_135m:b/l_r8_s0", "t"] == pytest.approx(0.2)
    newer = make_record("a/l_r8_s0", "t", 0.9, version="2", created_at="2027-01-01T00:00:00")
    with pytest.raises(RecordConflictError, match="t v1.*t v2"):
        analyze_records(records + [newer])
    a = analyze_records(records + [newer], AnalysisOptions(allow_mixed_versions=True))
    assert a.matrix.at["a/l_r8_s0", "t"] == 0.9 and a.mixed_versions == {"t": ["1", "2"]}


# -- transfer prediction -----------------------------------------------------------------------


def test_transfer_beats_mean_on_planted_low_rank_not_on_noise():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(12, 2)), rng.normal(size=(2, 8))
    data = pd.DataFrame(u @ v + 0.05 * rng.normal(size=(12, 8)))
    summary = transfer_summary(loto_predictions(data, k=2))
    assert summary.loc["overall", "skill"] > 0.8
    assert (summary.drop(index="overall")["skill"] > 0).all()
    skills = [
        transfer_summary(loto_predictions(pd.DataFrame(rng.normal(size=(12, 8))), k=2))
        .loc["overall", "skill"] for _ in range(20)
    ]
    assert np.mean(skills) < 0 and np.median(skills) < 0


def test_transfer_k_is_checked_and_lowered_in_the_analysis():
    with pytest.raises(AnalysisError, match="at least k \\+ 4 adapters"):
        loto_predictions(pd.DataFrame(np.eye(5)), k=2)
    deltas, _ = planted(n_adapters=5)
    a = analyze_records(records_from(deltas), AnalysisOptions(view="raw"))
    assert a.transfer_k == 1 and "lowered to 1" in a.transfer_note
