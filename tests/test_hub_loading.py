"""Hub data is selected on light keys (id, label) and only the chosen rows leave the dataset's
Arrow table; the examples are exactly those of reading every row first (the path it replaced:
load_hub, then the split, the checks and the transforms on all rows)."""

from __future__ import annotations

import datasets
import pytest
from conftest import CONF, fixture_rows

from latent_traits.data import load
from latent_traits.data.catalog import load_task_spec
from latent_traits.data.labels import normalise_all
from latent_traits.data.load import hub_split_is_shared, load_examples, load_hub, pick_split
from latent_traits.data.transforms import apply_transforms
from latent_traits.errors import LatentTraitsError


def scaled_rows(task: str, copies: int) -> list[dict]:
    """The recorded rows `copies` times, each copy's input and id columns made distinct."""
    spec = load_task_spec(task, CONF)
    hub = spec.hub
    inputs = [hub["columns"]["input"]] if isinstance(hub["columns"]["input"], str) else hub["columns"]["input"]
    id_columns = [hub["id_column"]] if isinstance(hub.get("id_column"), str) else list(hub.get("id_column") or [])
    rows = []
    for copy in range(copies):
        for row in fixture_rows(task):
            row = dict(row)
            for column in inputs:
                row[column] = f"{row[column]} (copy {copy})"
            for column in id_columns:
                if column in ("index", "id"):
                    row[column] = (f"{row[column]}-{copy}" if isinstance(row[column], str)
                                   else row[column] + 1000 * copy)
            rows.append(row)
    return rows


def read_every_row(spec, split, n, seed, test_fraction, transforms):
    """The replaced path: every row as a Python example, then split, checked and transformed."""
    examples = load_hub(spec, split)
    if hub_split_is_shared(spec):
        examples = pick_split(examples, split, test_fraction)
    examples = normalise_all(spec, examples, "")
    return apply_transforms(examples, list(spec.labels) if spec.is_classification else None, transforms, n, seed)


CASES = [  # (task, split, n, transforms)
    ("imdb", "train", 50, None),
    ("flipkart", "train", 30, {"class_ratio": "balanced"}),
    ("amazon", "test", 40, {"label_noise": {"fraction": 1.0, "mode": "wrong"}}),
    ("pile", "train", 25, None),            # a thresholded score column
    ("paws", "test", None, None),           # every row
    ("goat", "train", 40, None),            # one hub split, divided by a hash of the position id
    ("goat", "test", 40, None),
    ("magicoder", "train", 20, None),       # ids from two columns
    ("metamathqa", "test", 15, None),       # the answer line
]


@pytest.mark.parametrize(("task", "split", "n", "transforms"), CASES)
def test_selecting_on_keys_gives_the_examples_of_reading_every_row(task, split, n, transforms, hub):
    spec = load_task_spec(task, CONF)
    hub(scaled_rows(task, 60))
    examples, provenance = load_examples(spec, split, n=n, seed=3, source="hub", test_fraction=0.3,
                                         transforms=transforms)
    expected, report = read_every_row(spec, split, n, 3, 0.3, transforms)
    assert examples == expected
    assert provenance["transforms"] == report and provenance["n"] == len(expected)


def test_only_the_chosen_rows_leave_the_arrow_table(hub, monkeypatch):
    """Whole rows become Python objects only for the n chosen examples; of the other rows only
    the id and label columns are read."""
    spec = load_task_spec("paws", CONF)
    rows = scaled_rows("paws", 500)
    hub(rows)
    reads = []
    to_list, arrow_columns = datasets.Dataset.to_list, load.arrow_columns

    def counting_to_list(self):
        reads.append(("rows", len(self), sorted(self.column_names)))
        return to_list(self)

    def counting_arrow_columns(table, names):
        reads.append(("columns", len(table), sorted(names)))
        return arrow_columns(table, names)

    monkeypatch.setattr(datasets.Dataset, "to_list", counting_to_list)
    monkeypatch.setattr(load, "arrow_columns", counting_arrow_columns)
    examples, _ = load_examples(spec, "train", n=12, seed=0, source="hub")
    assert len(examples) == 12
    assert reads == [("columns", len(rows), ["id", "label"]), ("rows", 12, ["id", "label", "sentence1", "sentence2"])]


def test_ids_read_exactly_those_examples(hub):
    spec = load_task_spec("goat", CONF)
    hub(scaled_rows("goat", 20))
    drawn, _ = load_examples(spec, "test", n=7, seed=1, source="hub")
    again, _ = load_examples(spec, "test", source="hub", ids=[e["id"] for e in drawn])
    assert sorted(again, key=lambda e: e["id"]) == sorted(drawn, key=lambda e: e["id"])
    with pytest.raises(LatentTraitsError, match="ids= takes the place of n and transforms"):
        load_examples(spec, "test", n=7, source="hub", ids=["goat-train-1"])


def test_a_missing_input_column_is_named_before_any_row_is_read(hub):
    spec = load_task_spec("imdb", CONF)
    hub([{"review": "x", "label": 0}])
    with pytest.raises(LatentTraitsError, match=r"hub dataset stanfordnlp/imdb \(split train\): column\(s\) "
                                                r"\['text'\] missing; columns present: \['review', 'label'\]"):
        load_examples(spec, "train", n=1, source="hub")


def test_records_name_the_commit_a_hub_dataset_and_model_were_read_from(hub, monkeypatch, tmp_path):
    """Unpinned, the commit the datasets cache holds (<...>/<version>/<commit>/<file>.arrow); pinned, the pin."""
    from types import SimpleNamespace

    from latent_traits.data.datasets_shims import loaded_commit
    from latent_traits.model.transformers_shims import loaded_commit as model_commit

    commit = "a" * 40
    folder = tmp_path / "stanfordnlp___imdb" / "plain_text" / "0.0.0" / commit
    folder.mkdir(parents=True)
    served = datasets.Dataset.from_list(fixture_rows("imdb"))
    served.save_to_disk(str(folder))
    cached = datasets.load_from_disk(str(folder))
    assert loaded_commit(cached) == commit and loaded_commit(served) is None
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: cached)
    spec = load_task_spec("imdb", CONF)
    assert load_examples(spec, "train", source="hub")[1]["source"] == f"hub:stanfordnlp/imdb@{commit}"
    pinned = type(spec)(**{**spec.__dict__, "hub": {**spec.hub, "revision": "b" * 40}})
    assert load_examples(pinned, "train", source="hub")[1]["source"] == f"hub:stanfordnlp/imdb@{'b' * 40}"
    assert model_commit(SimpleNamespace(config=SimpleNamespace(_commit_hash=commit))) == commit
    assert model_commit(SimpleNamespace(config=SimpleNamespace())) is None
