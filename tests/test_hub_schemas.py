"""The hub blocks against the real datasets' schemas: `python -m latent_traits.data check
--source hub`'s checks run on recorded rows of each dataset (tests/fixtures/hub/, written from
the datasets' public cards; tests/fixtures/hub/README.md), served by a stand-in for
datasets.load_dataset, since the hub cannot be reached here."""

from __future__ import annotations

import pytest
from conftest import CONF, fixture_rows

from latent_traits.data.catalog import load_task_spec, task_names
from latent_traits.data.check import check_task
from latent_traits.data.load import load_examples
from latent_traits.errors import LatentTraitsError
from latent_traits.eval.scorers import reference_answer, score_numeric


@pytest.mark.parametrize("task", task_names(CONF))
def test_each_hub_block_loads_its_datasets_recorded_rows(task, hub):
    spec = load_task_spec(task, CONF)
    hub(fixture_rows(task))
    lines = check_task(spec, source="hub", n=16)
    assert [line.split(":")[0] for line in lines] == [f"ok  {task} train", f"ok  {task} test"]
    assert all(call["path"] == spec.hub["id"] and call["split"].endswith("[:16]") for call in hub.calls)


def test_the_old_flipkart_block_fails_on_the_real_schema(hub):
    """Summary/Sentiment were guessed from the Kaggle set; the hub rows are instruction/input/output."""
    spec = load_task_spec("flipkart", CONF)
    old = type(spec)(**{**spec.__dict__, "hub": {**spec.hub, "columns": {"input": "Summary", "label": "Sentiment"}}})
    hub(fixture_rows("flipkart"))
    with pytest.raises(LatentTraitsError, match=r"column\(s\) \['Summary', 'Sentiment'\] missing; columns present: "
                                                r"\['instruction', 'input', 'output'\]"):
        check_task(old, source="hub")


def test_goat_divisions_score_quotient_and_remainder_and_undefined(hub):
    spec = load_task_spec("goat", CONF)
    hub(fixture_rows("goat"))
    examples, provenance = load_examples(spec, "train", source="hub", test_fraction=0.0)
    references = {e["input"]: reference_answer(e, spec.answer_forms) for e in examples}
    assert references["Compute 8914 / 5."] == "1782 R 4"
    assert references["What is 3652 divided by 0?"] == "undefined"
    assert references["Divide 52373 by 41."] == "1277 R 16"
    assert provenance["source"] == "hub:tiedong/goat"
    right = score_numeric("8914 / 5 = 1782 R 4", "1782 R 4", spec.answer_forms)
    wrong_remainder = score_numeric("8914 / 5 = 1782 R 3", "1782 R 4", spec.answer_forms)
    quotient_only = score_numeric("8914 / 5 = 1782", "1782 R 4", spec.answer_forms)
    assert (right["flexible_correct"], wrong_remainder["flexible_correct"], quotient_only["flexible_correct"]) == (
        True, False, False)
    assert score_numeric("3652 / 0 = undefined", "undefined", spec.answer_forms)["flexible_correct"]
    # without the forms (version 1) the last number, the remainder, was taken
    assert score_numeric("8914 / 5 = 1782 R 4", "1782 R 4")["flexible"] == "4"


def test_repeated_ids_are_refused_naming_the_fix(hub):
    """Magicoder's `index` restarts in each language: by index alone two rows share an id."""
    spec = load_task_spec("magicoder", CONF)
    by_index = type(spec)(**{**spec.__dict__, "hub": {**spec.hub, "id_column": "index"}})
    hub(fixture_rows("magicoder"))
    with pytest.raises(LatentTraitsError, match=r"1 example id\(s\) repeat in task 'magicoder'.*id_column"):
        check_task(by_index, source="hub")
    assert check_task(spec, source="hub")[0].startswith("ok  magicoder train: 3 rows")


def test_a_pinned_dataset_revision_reaches_the_hub_and_the_provenance(hub):
    spec = load_task_spec("imdb", CONF)
    revision = "e6281661ce1c48d982bc483cf8a173c1bbeb5d31"
    pinned = type(spec)(**{**spec.__dict__, "hub": {**spec.hub, "revision": revision}})
    hub(fixture_rows("imdb"))
    _, provenance = load_examples(pinned, "train", source="hub")
    assert hub.calls[-1]["revision"] == "e6281661ce1c48d982bc483cf8a173c1bbeb5d31"
    assert provenance["source"] == "hub:stanfordnlp/imdb@e6281661ce1c48d982bc483cf8a173c1bbeb5d31"


def test_the_check_command_reports_a_line_per_split(hub, capsys):
    from latent_traits.data.__main__ import main

    hub(fixture_rows("paws"))
    main(["check", "--tasks", "paws", "--n", "2"])
    out = capsys.readouterr().out.splitlines()
    assert out == ["ok  paws train: 2 rows, labels ['0', '1'] from "
                   "hub:google-research-datasets/paws (train)",
                   "ok  paws test: 2 rows, labels ['0', '1'] from "
                   "hub:google-research-datasets/paws (test)"]


def test_metamathqa_references_come_from_its_answer_line(hub):
    """Without the answer line the reference was the response's last number: '4' for 3/4."""
    spec = load_task_spec("metamathqa", CONF)
    hub(fixture_rows("metamathqa"))
    examples, _ = load_examples(spec, "train", source="hub", test_fraction=0.0)
    assert sorted(reference_answer(e, spec.answer_forms) for e in examples) == ["18", "\\frac{3}{4}"]


@pytest.mark.parametrize("task", [t for t in task_names(CONF) if load_task_spec(t, CONF).type == "generation"])
def test_a_perfect_answer_is_never_cut(task, tiny_tokenizer_and_model):
    """Every recorded target of a generation task holds none of its stop strings and fits its
    max_new_tokens: goat's multi-line divisions were cut at the first newline (version 2)."""
    spec = load_task_spec(task, CONF)
    tokenizer = tiny_tokenizer_and_model[0]
    column = spec.hub["columns"]["target"]
    for row in fixture_rows(task):
        target = str(row[column]).strip()
        assert not [s for s in spec.stop if s in target], (task, target[:80])
        if task != "magicoder":  # code answers run to 3,100 tokens (data.overlong drops them in training)
            assert len(tokenizer(target, add_special_tokens=False)["input_ids"]) <= spec.max_new_tokens, target[:80]
