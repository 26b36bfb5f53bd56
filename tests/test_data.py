"""Datasets of the study: offline loading of every task, the study's prompt templates, word vs
digit verbalisation, local files and the hub path (monkeypatched), bad input, data cards."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF, REPO, compose_config
from omegaconf import OmegaConf

from latent_traits.config import target_specs
from latent_traits.data.catalog import load_task_spec, task_names
from latent_traits.data.load import load_examples, map_columns
from latent_traits.data.prompts import format_prompt
from latent_traits.errors import LatentTraitsError

STUDY_TASKS = {"amazon", "flipkart", "imdb", "pile", "paws", "mnli", "mnli_nums", "goat", "magicoder",
               "metamathqa", "gsm8k"}
STAND_IN = {"amazon": False, "imdb": True, "goat": False, "gsm8k": False, "flipkart": True, "pile": True,
            "paws": True, "mnli": True, "mnli_nums": True, "magicoder": True, "metamathqa": True}
TASKS = task_names(CONF)


@pytest.fixture(scope="module")
def specs():
    return {name: load_task_spec(name, CONF) for name in TASKS}


@pytest.fixture(scope="module")
def offline(specs):
    """Every task's offline train and test splits (whole splits) with their provenance."""
    return {name: {split: load_examples(spec, split, n=None) for split in ("train", "test")}
            for name, spec in specs.items()}


def test_every_task_of_the_study_has_a_spec():
    assert STUDY_TASKS <= set(TASKS)
    sources = {p.stem for p in CONF.glob("source_dataset/*.yaml")}
    targets = {p.stem for p in CONF.glob("target_task/*.yaml")}
    assert STUDY_TASKS - {"metamathqa"} <= targets and "metamathqa" not in targets
    assert STUDY_TASKS <= sources and {"flipkart_balanced", "flipkart_imbalanced", "amazon_mislabeled"} <= sources


@pytest.mark.parametrize("name", sorted(STUDY_TASKS))
def test_offline_loading(name, specs, offline):
    spec = specs[name]
    (train, train_prov), (test, test_prov) = offline[name]["train"], offline[name]["test"]
    assert len(train) >= 100 and len(test) >= 40, (len(train), len(test))
    train_ids, test_ids = {e["id"] for e in train}, {e["id"] for e in test}
    assert len(train_ids) == len(train) and len(test_ids) == len(test)
    assert not train_ids & test_ids
    # no text in both splits, but for a few repeats in the sources: amazon's snippet "!" is
    # there twice, and the Goat generator draws easy items such as "0 * 31" more than once
    limit = 0.02 if name == "goat" else 0.01
    assert len({e["input"] for e in train} & {e["input"] for e in test}) <= limit * len(test)
    for example in train + test:
        assert example["input"].strip() and str(example["target"]).strip()
        assert "split_key" not in example
        if spec.is_classification:
            assert example["label"] in spec.labels and example["target"] == example["label"]
    if spec.is_classification:
        assert set(train_prov["class_distribution"]) == set(spec.labels)  # every class in train
    assert spec.stand_in is STAND_IN[name]
    assert train_prov["stand_in"] is STAND_IN[name] and test_prov["stand_in"] is STAND_IN[name]
    raw = OmegaConf.load(CONF / "tasks" / f"{name}.yaml")
    if "offline" in raw:  # mnli_nums inherits its offline block from mnli
        assert bool(raw.offline.stand_in) is STAND_IN[name]
        assert raw.offline.description.startswith("STAND-IN") is STAND_IN[name]


def test_flipkart_keeps_amazon_splits_and_is_mostly_positive(offline):
    """The Flipkart stand-in reuses Amazon snippets: a text sits in the same split in both tasks."""
    def snippets(name, split):  # the Amazon snippets (flipkart's movie-review sentences aside)
        return {e["id"].split("-", 1)[1] for e in offline[name][split][0] if not e["id"].startswith("flipkart-rt-")}

    assert snippets("flipkart", "train") <= snippets("amazon", "train")
    assert snippets("flipkart", "test") <= snippets("amazon", "test")
    shares = offline["flipkart"]["train"][1]["class_distribution"]
    assert shares["positive"] > 0.7 * sum(shares.values()) and shares["neutral"] < shares["negative"]


def test_flipkart_presets_compare_at_the_same_n(tmp_path):
    counts = {}
    for preset in ("flipkart_balanced", "flipkart_imbalanced"):
        cfg = compose_config("train", [f"source_dataset={preset}", "data.train_n=90"], artifacts=tmp_path)
        spec = load_task_spec("flipkart", CONF)
        examples, prov = load_examples(spec, "train", n=cfg.source_dataset.n, seed=0,
                                       transforms=OmegaConf.to_container(cfg.source_dataset.transforms))
        assert cfg.source_dataset.task.name == "flipkart" and len(examples) == 90
        counts[preset] = prov["class_distribution"]
    assert counts["flipkart_balanced"] == {"negative": 30, "neutral": 30, "positive": 30}
    assert counts["flipkart_imbalanced"]["positive"] > 60


# -- the study's prompt templates (PAPER.md): {instruction}\n{input}\n{Cue}:\n{target} ------------
TEMPLATES = {
    "imdb": "What is the sentiment of the below sentence?\nGreat film.\nSentiment:\n1",
    "flipkart": "What is the sentiment of the below sentence? Positive, negative or neutral?\nGreat film.\n"
                "Sentiment:\npositive",
    "amazon": "What is the sentiment of the following amazon review? Provide a rating from 1 to 5 stars, "
              "where 1 is very negative and 5 is very positive.\nGreat film.\nRating:\n5",
    "paws": "Are the following two sentences paraphrases of each other?\nGreat film.\nA film, great.\nAnswer:\n1",
    "pile": "Is the following sentence toxic?\nGreat film.\nToxicity:\n0",
    "gsm8k": "Great film.\nAnswer:\n#### 4",
}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_prompt_matches_the_paper(name, specs):
    text = {"paws": "Great film.\nA film, great."}.get(name, "Great film.")
    target = TEMPLATES[name].rsplit("\n", 1)[1]
    assert format_prompt(specs[name], text) + target == TEMPLATES[name]


def test_paws_input_is_the_two_sentences_on_two_lines(specs, offline):
    for example in offline["paws"]["train"][0][:50]:
        first, second = example["input"].split("\n")
        assert first and second and first != second
        if example["label"] == "0":  # a word swap: the same bag of words
            assert sorted(re.findall(r"[\w']+", first)) == sorted(re.findall(r"[\w']+", second))
    rows = [{"id": 7, "sentence1": "A b.", "sentence2": "B a.", "label": 1}]
    hub = specs["paws"].hub
    [example] = map_columns(rows, dict(hub["columns"]), "test", id_prefix="paws", id_column=hub["id_column"])
    assert example == {"id": "paws-7", "input": "A b.\nB a.", "label": "1"}


def test_mnli_and_mnli_nums_differ_only_in_label_strings(specs, offline):
    words, digits = offline["mnli"]["test"][0], offline["mnli_nums"]["test"][0]
    assert [(e["id"], e["input"]) for e in words] == [(e["id"], e["input"]) for e in digits]
    to_digit = {"entailment": "0", "neutral": "1", "contradiction": "2"}
    assert [to_digit[e["label"]] for e in words] == [e["label"] for e in digits]
    assert specs["mnli"].instruction == specs["mnli_nums"].instruction
    assert format_prompt(specs["mnli"], "x") == format_prompt(specs["mnli_nums"], "x")
    assert words[0]["input"].startswith("Premise: ") and "\nHypothesis: " in words[0]["input"]


def test_metamathqa_and_gsm8k_answers(offline):
    for example in offline["metamathqa"]["train"][0][:20]:
        assert example["target"] == f"The answer is: {example['answer']}"
    assert all("####" in e["target"] for e in offline["gsm8k"]["test"][0])


# -- local files ---------------------------------------------------------------------------------
def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_local_jsonl_with_a_column_map_and_a_split_per_file(tmp_path, specs):
    for split, rows in (("train", [("good", "5"), ("bad", "1")]), ("test", [("fine", "4")])):
        write(tmp_path / f"mine_{split}.jsonl",
              "\n".join(json.dumps({"review": t, "stars": s}) for t, s in rows) + "\n")
    spec = dataclasses.replace(specs["amazon"], local={"columns": {"input": "review", "label": "stars"}})
    train, prov = load_examples(spec, "train", source="local", local_path=str(tmp_path / "mine_{split}.jsonl"))
    test, _ = load_examples(spec, "test", source="local", local_path=str(tmp_path / "mine_{split}.jsonl"))
    assert [(e["input"], e["label"]) for e in train] == [("good", "5"), ("bad", "1")]
    assert [e["input"] for e in test] == ["fine"] and prov["source"].endswith("mine_train.jsonl")
    folder = tmp_path / "mine"  # a folder with train.* and test.*
    folder.mkdir()
    (tmp_path / "mine_train.jsonl").rename(folder / "train.jsonl")
    train_again, _ = load_examples(spec, "train", source="local", local_path=str(folder))
    assert [e["input"] for e in train_again] == [e["input"] for e in train]
    with pytest.raises(LatentTraitsError, match=r"needs exactly one test.jsonl.*holds \['train.jsonl'\]"):
        load_examples(spec, "test", source="local", local_path=str(folder))


def test_local_file_with_the_hub_column_names_works_as_is(tmp_path, specs):
    rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": i % 3} for i in range(40)]
    path = write(tmp_path / "glue.jsonl", "\n".join(json.dumps(r) for r in rows))
    train, _ = load_examples(specs["mnli"], "train", source="local", local_path=str(path))
    test, _ = load_examples(specs["mnli"], "test", source="local", local_path=str(path))
    assert len(train) + len(test) == 40 and not {e["id"] for e in train} & {e["id"] for e in test}
    assert train[0]["input"].startswith("Premise: p") and train[0]["label"] in specs["mnli"].labels


def test_local_csv(tmp_path, specs):
    path = write(tmp_path / "d.csv", "id,input,label\n" + "".join(f"r{i},text {i},{i % 2}\n" for i in range(30)))
    examples, _ = load_examples(specs["imdb"], "train", source="local", local_path=str(path), test_fraction=0.2)
    assert examples and all(e["id"].startswith("r") for e in examples)


def test_local_parquet(tmp_path, specs):
    import pandas as pd

    path = tmp_path / "d.parquet"
    frame = pd.DataFrame({"question": [f"q{i}" for i in range(20)], "answer": [f"#### {i}" for i in range(20)]})
    frame.to_parquet(path)
    train, _ = load_examples(specs["gsm8k"], "train", source="local", local_path=str(path))  # hub column names
    assert train and train[0]["input"].startswith("q") and train[0]["target"].startswith("####")
    bad = write(tmp_path / "broken.parquet", "not parquet")
    with pytest.raises(LatentTraitsError, match=rf"{bad}: not a readable parquet file"):
        load_examples(specs["gsm8k"], "train", source="local", local_path=str(bad))


# -- bad input -----------------------------------------------------------------------------------
def test_malformed_jsonl_line_names_file_and_line(tmp_path, specs):
    path = write(tmp_path / "bad.jsonl", '{"input": "a", "label": "0"}\n\n{"input": "b", "label": \n')
    with pytest.raises(LatentTraitsError, match=rf"{path}:3: not valid JSON"):
        load_examples(specs["imdb"], "train", source="local", local_path=str(path))


@pytest.mark.parametrize("bad_row", ['"b",1,extra', '"b"'])
def test_malformed_csv_line_names_file_and_line(tmp_path, specs, bad_row):
    path = write(tmp_path / "bad.csv", f'input,label\n"a",0\n{bad_row}\n"c",1\n')
    with pytest.raises(LatentTraitsError, match=rf"{path}:3: \d fields where the header has 2"):
        load_examples(specs["imdb"], "train", source="local", local_path=str(path))


def test_missing_column_lists_the_columns_present(tmp_path, specs):
    path = write(tmp_path / "d.jsonl", json.dumps({"text": "a", "stars": "1"}) + "\n")
    with pytest.raises(LatentTraitsError, match=r"columns present: \['text', 'stars'\]"):
        load_examples(specs["amazon"], "train", source="local", local_path=str(path))
    spec = dataclasses.replace(specs["amazon"], local={"columns": {"input": "review", "label": "stars"}})
    with pytest.raises(LatentTraitsError, match=r"\['review'\] missing; columns present: \['text', 'stars'\]"):
        load_examples(spec, "train", source="local", local_path=str(path))
    path = write(tmp_path / "e.jsonl", json.dumps({"input": "a"}) + "\n")
    with pytest.raises(LatentTraitsError, match=r"needs a `label` column.*columns present: \['input'\]"):
        load_examples(specs["amazon"], "train", source="local", local_path=str(path))


def test_labels_outside_the_label_set_are_listed_with_counts(tmp_path, specs):
    rows = [{"input": f"t{i}", "label": label} for i, label in enumerate(["1", "6", "6", "zero", "2"] * 4)]
    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    with pytest.raises(LatentTraitsError) as err:
        load_examples(specs["amazon"], "train", source="local", local_path=str(path), test_fraction=0.0)
    assert "'6': 8" in str(err.value) and "'zero': 4" in str(err.value) and "(12 examples)" in str(err.value)


def test_an_empty_split_is_an_error(tmp_path, specs):
    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps({"input": f"t{i}", "label": "1"}) for i in range(5)))
    with pytest.raises(LatentTraitsError, match=r"split 'test' from local:.* is empty"):
        load_examples(specs["imdb"], "test", source="local", local_path=str(path), test_fraction=0.0)
    empty = write(tmp_path / "empty.jsonl", "\n")
    with pytest.raises(LatentTraitsError, match="has no rows"):
        load_examples(specs["imdb"], "train", source="local", local_path=str(empty))


def test_hub_failure_names_the_dataset_and_points_offline(monkeypatch, specs):
    import datasets

    calls = []

    def no_network(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("Couldn't reach 'https://huggingface.co' (offline)")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    with pytest.raises(LatentTraitsError) as err:
        load_examples(specs["paws"], "test", source="hub")
    message = str(err.value)
    assert "google-research-datasets/paws" in message and "data.source=offline" in message
    assert "ConnectionError" in message and calls  # tried the hub, and no silent fallback


def test_hub_rows_are_mapped_thresholded_and_split(monkeypatch, specs):
    import datasets

    tables = {
        "tomekkorbak/pile-toxicity-balanced": [{"text": f"t{i}", "score": i / 10, "meta": {}} for i in range(10)],
        "nyu-mll/glue": [{"premise": "p", "hypothesis": "h", "label": 2, "idx": 5}],
        "ise-uiuc/Magicoder-OSS-Instruct-75K": [{"problem": f"p{i}", "solution": f"s{i}", "index": i}
                                                for i in range(50)],
    }
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda hub_id, subset, split, revision=None: datasets.Dataset.from_list(tables[hub_id]))
    pile, _ = load_examples(specs["pile"], "train", source="hub")
    assert [e["label"] for e in pile] == ["0"] * 5 + ["1"] * 5
    [nli], _ = load_examples(specs["mnli"], "test", source="hub")
    assert nli["input"] == "Premise: p\nHypothesis: h" and nli["label"] == "contradiction"
    [nli], _ = load_examples(specs["mnli_nums"], "test", source="hub")
    assert nli["label"] == "2"
    train, _ = load_examples(specs["magicoder"], "train", source="hub")
    test, _ = load_examples(specs["magicoder"], "test", source="hub")  # one hub split: hash-split
    assert train and test and len(train) + len(test) == 50
    assert not {e["id"] for e in train} & {e["id"] for e in test}


def test_a_target_without_a_scorer_is_refused_by_name(tmp_path):
    # magicoder has a scorer now (code_match); the refusal stays for any task with scorer none
    cfg = compose_config("evaluate", ["target_task=[imdb,magicoder]", "target_task.magicoder.task.scorer=none"],
                         artifacts=tmp_path)
    with pytest.raises(LatentTraitsError, match="'magicoder' has no automatic scorer"):
        target_specs(cfg)


# -- data cards ----------------------------------------------------------------------------------
def test_cards_command_writes_a_card_per_task_and_an_index(tmp_path):
    out = tmp_path / "cards"
    result = subprocess.run(
        [sys.executable, "-m", "latent_traits.data", "cards", "--tasks", "imdb,paws,mnli_nums,goat",
         "--out", str(out)], capture_output=True, text=True, cwd=REPO, check=True)
    index = out / "README.md"
    assert result.stdout.strip() == str(index)
    assert sorted(p.name for p in out.glob("*.md")) == ["README.md", "goat.md", "imdb.md", "mnli_nums.md", "paws.md"]
    text = index.read_text()
    assert "[paws](paws.md)" in text and "| **yes** |" in text
    paws = (out / "paws.md").read_text()
    assert "STAND-IN" in paws and "Are the following two sentences paraphrases of each other?" in paws
    for key in ("| train |", "| test |", "median", "p95", "Answer:"):
        assert key in paws
    assert "STAND-IN" in (out / "imdb.md").read_text() and "`0`" in (out / "imdb.md").read_text()


def test_cards_for_every_task(tmp_path):
    from latent_traits.data.cards import write_cards

    index = write_cards(out_dir=tmp_path)
    assert {p.stem for p in tmp_path.glob("*.md")} == set(TASKS) | {"README"}
    assert index.read_text().count("](") == len(TASKS)


def test_unknown_task_in_cards_lists_the_known_ones(tmp_path):
    result = subprocess.run([sys.executable, "-m", "latent_traits.data", "cards", "--tasks", "nope",
                             "--out", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "unknown task 'nope'" in result.stderr and "paws" in result.stderr


def test_a_text_two_tasks_share_lies_in_the_same_split_of_both(specs):
    """imdb and flipkart both draw VADER's movie-review sentences, amazon and flipkart its Amazon
    snippets: an adapter trained on one never meets its training texts in another's test split."""
    def texts(name, split):
        return {e["input"] for e in load_examples(specs[name], split)[0]}

    for one, other in (("imdb", "flipkart"), ("amazon", "flipkart")):
        shared = (texts(one, "train") | texts(one, "test")) & (texts(other, "train") | texts(other, "test"))
        assert len(shared) > 100, (one, other)
        # the sources repeat a few short texts under other ids ("what a junk."): at most 1%, as above
        for train, test in ((texts(one, "train"), texts(other, "test")), (texts(other, "train"), texts(one, "test"))):
            assert len(train & test) <= 0.01 * len(test), (one, other, sorted(train & test)[:5])


def test_the_pools_hold_what_the_study_needs(specs):
    imdb = load_examples(specs["imdb"], "test")[0]
    assert len(imdb) > 2000 and sum(e["id"].startswith("imdb-rt-") for e in imdb) > 1900
    flipkart = load_examples(specs["flipkart"], "train")[0]
    assert sum(e["label"] == "neutral" for e in flipkart) >= 342  # a balanced train_n of 1024
    assert len(load_examples(specs["paws"], "test")[0]) >= 1000
