"""Load a task's examples from the hub, local files or the offline default, then split and subsample.

Every call returns the examples and a provenance dict (source, split, n, class distribution,
content hash) that travels into every training and evaluation record.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Collection
from pathlib import Path
from typing import Any

from latent_traits.data.datasets_shims import loaded_commit
from latent_traits.data.labels import canonical_label, check_labels, normalise_all
from latent_traits.data.offline import load_offline
from latent_traits.data.spec import TaskSpec
from latent_traits.data.transforms import add_label_noise, select_examples
from latent_traits.errors import LatentTraitsError
from latent_traits.io import stable_hash

SPLITS = ("train", "test")
DATA_SOURCES = ("offline", "hub", "local")


def in_test_split(example_id: str, test_fraction: float) -> bool:
    """A stable split by id: the same example lands in the same split on every machine."""
    bucket = int(hashlib.sha256(example_id.encode()).hexdigest()[:8], 16) % 10_000
    return bucket < test_fraction * 10_000


def pick_split(examples: list[dict[str, Any]], split: str, test_fraction: float) -> list[dict[str, Any]]:
    """The examples of one split, by a stable hash of each example's split_key (default: its id)."""
    if not 0.0 <= test_fraction <= 1.0:
        raise LatentTraitsError(f"test_fraction={test_fraction}: use a value between 0 and 1")
    chosen = []
    for example in examples:
        if isinstance(example, dict):
            example = dict(example)
            key = str(example.pop("split_key", None) or example["id"])
        else:  # a HubKey: split by its id
            key = example["id"]
        if in_test_split(key, test_fraction) == (split == "test"):
            chosen.append(example)
    return chosen


def as_names(column: str | list[str] | None) -> list[str]:
    """A column map's entry (one column name or a list of them) as a list."""
    return [column] if isinstance(column, str) else list(column or [])


def row_id(row: dict[str, Any], id_column: str | list[str] | None, position: int) -> str:
    """A row's id: its id column's value, or several columns' joined by '-', else its position."""
    names = as_names(id_column)
    if names and all(n in row for n in names):
        return "-".join(str(row[n]) for n in names)
    return str(position)


def column_names(columns: dict[str, Any]) -> list[str]:
    """The source columns a column map reads (a field maps to one column or a list)."""
    return [c for column in columns.values() for c in as_names(column)]


def thresholded(label: str, threshold: float, origin: str, row_number: int) -> str:
    """A numeric score as label "1" (>= threshold) or "0" (pile's toxicity score)."""
    try:
        return "1" if float(label) >= float(threshold) else "0"
    except ValueError as err:
        raise LatentTraitsError(f"{origin}: row {row_number}: label {label!r} is not a number to threshold") from err


def check_columns(columns: dict[str, Any], present: list[str], origin: str) -> None:
    missing = [c for c in column_names(columns) if c not in present]
    if missing:
        raise LatentTraitsError(f"{origin}: column(s) {missing} missing; columns present: {present}")


def map_columns(rows: list[dict[str, Any]], columns: dict[str, Any], origin: str, *, id_prefix: str,
                id_column: str | list[str] | None = None, input_template: str | None = None,
                label_threshold: float | None = None, answer_pattern: str | None = None) -> list[dict[str, Any]]:
    """Rows with the source's own column names -> raw examples {id, input, label | target, ...}.

    ``columns`` maps a field (input, label, target, answer) to a column or a list of columns
    (joined by newlines, or filled into ``input_template``, e.g. "Premise: {premise}...").
    ``label_threshold`` turns a numeric score column into "1" (>= threshold) or "0".
    ``answer_pattern`` (a regex with one group) takes the reference answer from the target's
    last line that matches it (MetaMathQA's "The answer is: X", X a number or LaTeX)."""
    answer_line = re.compile(answer_pattern, re.MULTILINE) if answer_pattern else None
    check_columns(columns, list(rows[0]) if rows else [], origin)
    examples = []
    for i, row in enumerate(rows):
        example = {"id": f"{id_prefix}-{row_id(row, id_column, i)}"}
        for field_name, column in columns.items():
            names = as_names(column)
            absent = [c for c in names if c not in row]
            if absent:
                raise LatentTraitsError(f"{origin}: row {i + 1} lacks column(s) {absent}; it has {list(row)}")
            if field_name == "input" and input_template:
                example[field_name] = input_template.format(**{c: str(row[c]).strip() for c in names})
            else:
                example[field_name] = "\n".join(str(row[c]).strip() for c in names)
        if answer_line is not None and "target" in example:
            found = answer_line.findall(example["target"])
            example["answer"] = found[-1].strip() if found else None
        if label_threshold is not None and "label" in example:
            example["label"] = thresholded(example["label"], label_threshold, origin, i)
        examples.append(example)
    return examples


def open_hub_split(spec: TaskSpec, split: str, limit: int | None = None):
    """The task's hub split as a datasets.Dataset (Arrow, memory-mapped from the local cache: rows
    become Python objects only when asked for) and the hub split's name; `limit`: its first rows.
    `hub.revision` pins the dataset's commit (recorded in the provenance's source)."""
    if not spec.hub:
        raise LatentTraitsError(f"task {spec.name!r} has no hub source; use data.source=offline")
    hub = spec.hub
    hub_split = (hub.get("splits") or {}).get(split, split)
    try:
        import datasets

        table = datasets.load_dataset(hub["id"], hub.get("subset"), revision=hub.get("revision"),
                                      split=f"{hub_split}[:{limit}]" if limit else hub_split)
    except Exception as err:  # network, auth and missing-dataset errors all land here
        raise LatentTraitsError(
            f"could not load {hub['id']} (subset {hub.get('subset')}, split {hub_split}) from the "
            f"hub: {type(err).__name__}: {err}. Without network use data.source=offline"
        ) from err
    if not len(table):
        raise LatentTraitsError(f"{hub['id']} split {hub_split} is empty; columns present: {table.column_names}")
    check_columns(dict(hub.get("columns") or {}), list(table.column_names), hub_where(spec, hub_split))
    return table, hub_split


def hub_where(spec: TaskSpec, hub_split: str) -> str:
    return f"hub dataset {(spec.hub or {}).get('id')} (split {hub_split})"


def map_hub_rows(spec: TaskSpec, rows: list[dict[str, Any]], hub_split: str,
                 columns: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Hub rows -> raw examples by the task's hub block (`columns`: only these fields)."""
    hub = spec.hub or {}
    return map_columns(
        rows, dict(hub.get("columns") or {}) if columns is None else columns, hub_where(spec, hub_split),
        id_prefix=f"{spec.name}-{hub_split}", id_column=hub.get("id_column"),
        input_template=hub.get("input_template"), label_threshold=hub.get("label_threshold"),
        answer_pattern=hub.get("answer_pattern"))


def load_hub(spec: TaskSpec, split: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The task's hub split, every row as a raw example; `limit`: only its first rows (a schema check)."""
    table, hub_split = open_hub_split(spec, split, limit)
    return map_hub_rows(spec, table.to_list(), hub_split)


class HubKey:
    """A hub row before it is read: its position, id and (classification) label, served as
    key["row"], key["id"], key["label"], all that splitting, the checks and sampling read. Light:
    a positional id is spelled only when asked for, and equal labels share one string."""

    __slots__ = ("row", "label", "_id", "_prefix")

    def __init__(self, row: int, label: str | None, id_: str | None, prefix: str):
        self.row, self.label, self._id, self._prefix = row, label, id_, prefix

    @property
    def id(self) -> str:
        return self._id if self._id is not None else f"{self._prefix}-{self.row}"

    def __getitem__(self, name: str):
        return getattr(self, name)

    def get(self, name: str, default=None):
        return getattr(self, name, default)


def arrow_columns(table, names: list[str]) -> dict[str, list]:
    """Whole columns of a datasets.Dataset as Python lists, read through Arrow (no row dicts)."""
    if not names:
        return {}
    data = table.select_columns(names).with_format("arrow")[:]
    return {name: data.column(name).to_pylist() for name in names}


def hub_keys(spec: TaskSpec, table, hub_split: str) -> list[HubKey]:
    """One HubKey per hub row, from the id and label columns alone; ids and labels are those
    load_hub and normalise_all give (row_id's join, thresholded, canonical_label)."""
    hub = spec.hub or {}
    prefix = f"{spec.name}-{hub_split}"
    id_names = as_names(hub.get("id_column"))
    id_names = id_names if id_names and all(c in table.column_names for c in id_names) else []
    label_column = (hub.get("columns") or {}).get("label") if spec.is_classification else None
    columns = arrow_columns(table, sorted({*id_names, *as_names(label_column)}))
    threshold = hub.get("label_threshold")
    labels: dict[Any, str] = {}  # raw value -> the task's label, each worked out once

    def label_of(raw: Any, position: int) -> str:
        if raw not in labels:
            text = str(raw).strip()
            if threshold is not None:
                text = thresholded(text, threshold, hub_where(spec, hub_split), position)
            labels[raw] = canonical_label(spec, text)[0]
        return labels[raw]

    keys = []
    for position in range(len(table)):
        id_ = f"{prefix}-" + "-".join(str(columns[c][position]) for c in id_names) if id_names else None
        label = label_of(columns[label_column][position], position) if label_column else None
        keys.append(HubKey(position, label, id_, prefix))
    return keys


def materialise_hub(spec: TaskSpec, table, hub_split: str, keys: list[HubKey]) -> list[dict[str, Any]]:
    """The full raw examples of the chosen keys, in their order: only those rows leave Arrow."""
    rows = table.select([k.row for k in keys]).to_list()
    examples = map_hub_rows(spec, rows, hub_split)
    for key, example in zip(keys, examples, strict=True):
        example["id"] = key.id  # its position in the whole split, not in the selection
    return examples


def hub_origin(spec: TaskSpec, table=None) -> str:
    """hub:<id>@<commit>: the revision the task pins, else the commit the loaded table came from
    (datasets_shims.loaded_commit); hub:<id> where neither is known."""
    hub = spec.hub or {}
    commit = hub.get("revision") or (loaded_commit(table) if table is not None else None)
    return f"hub:{hub.get('id')}" + (f"@{commit}" if commit else "")


def check_unique_ids(examples: list[dict[str, Any]], origin: str, spec: TaskSpec) -> None:
    """Every example id once: analyses key predictions by id, and a repeated id would merge rows."""
    repeated = [i for i, n in Counter(str(e["id"]) for e in examples).items() if n > 1]
    if repeated:
        raise LatentTraitsError(
            f"{origin}: {len(repeated)} example id(s) repeat in task {spec.name!r}, e.g. {repeated[:3]}; give "
            "the task's hub block an id_column (or a list of columns) that is unique, e.g. id_column: [lang, index]")


def hub_split_is_shared(spec: TaskSpec) -> bool:
    """The hub set has one split for both train and test (goat, magicoder, metamathqa)."""
    splits = (spec.hub or {}).get("splits") or {}
    return splits.get("train", "train") == splits.get("test", "test")


def read_utf8(path: Path) -> str:
    """A text file's content; bytes that are not UTF-8 are an error naming the line and the fix.
    A leading byte-order mark (as spreadsheet programs write) is dropped."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise LatentTraitsError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); save the "
            f"file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path} > {path.stem}.utf8{path.suffix}`") from None


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a jsonl, csv or parquet file; a malformed line names the file and line."""
    if path.suffix == ".jsonl":
        rows = []
        for line_no, line in enumerate(read_utf8(path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise LatentTraitsError(f"{path}:{line_no}: not valid JSON ({err.msg})") from err
            if not isinstance(row, dict):
                raise LatentTraitsError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
        return rows
    if path.suffix == ".csv":
        with io.StringIO(read_utf8(path), newline="") as f:
            reader = csv.DictReader(f)
            rows = []
            try:
                for row in reader:
                    extra, short = row.pop(None, []), [k for k, v in row.items() if v is None]
                    if extra or short:
                        n_fields = len(reader.fieldnames) + len(extra) - len(short)
                        raise LatentTraitsError(
                            f"{path}:{reader.line_num}: {n_fields} fields where the header has "
                            f"{len(reader.fieldnames)} ({reader.fieldnames})")
                    rows.append(row)
            except csv.Error as err:
                raise LatentTraitsError(f"{path}:{reader.line_num}: malformed CSV ({err})") from err
        return rows
    if path.suffix == ".parquet":
        import pandas as pd

        try:
            return pd.read_parquet(path).to_dict("records")
        except Exception as err:  # pyarrow raises several types for a damaged file
            raise LatentTraitsError(f"{path}: not a readable parquet file ({type(err).__name__}: {err})") from err
    raise LatentTraitsError(f"local data file {path}: use .jsonl, .csv or .parquet")


def local_columns(spec: TaskSpec | None, present: list[str]) -> dict[str, Any]:
    """The column map for a user's file: the spec's `local.columns` if set; the file's own
    input/label/target/answer columns if it has `input`; else the hub column names (a file exported
    from the hub set works as it is)."""
    configured = (spec.local or {}).get("columns") if spec else None
    if configured:
        return dict(configured)
    if "input" in present:
        return {f: f for f in ("input", "label", "target", "answer") if f in present}
    hub_columns = dict((spec.hub or {}).get("columns") or {}) if spec else {}
    names = [c for column in hub_columns.values() for c in ([column] if isinstance(column, str) else column)]
    if hub_columns and all(c in present for c in names):
        return hub_columns
    raise LatentTraitsError(
        "needs an `input` column (and `label` or `target`), or a column map: "
        "source_dataset.task.local.columns='{input: <col>, label: <col>}' (target_task.<name>.task.local... "
        f"for evaluation); columns present: {present}"
    )


LOCAL_SUFFIXES = (".jsonl", ".csv", ".parquet")


def local_split_file(local_path: str | Path, split: str) -> Path | None:
    """The file of one split when the user gave one per split: a folder holding train.jsonl and
    test.jsonl (or .csv, .parquet), or a path with {split} in it. None for a single file."""
    if "{split}" in str(local_path):
        return Path(str(local_path).replace("{split}", split))
    folder = Path(local_path)
    if not folder.is_dir():
        return None
    found = [folder / f"{split}{suffix}" for suffix in LOCAL_SUFFIXES if (folder / f"{split}{suffix}").is_file()]
    if len(found) != 1:
        raise LatentTraitsError(
            f"local data folder {folder}: needs exactly one {split}.jsonl, {split}.csv or {split}.parquet; "
            f"it holds {sorted(p.name for p in folder.iterdir())}")
    return found[0]


def load_local(path: str | Path, spec: TaskSpec | None = None) -> list[dict[str, Any]]:
    """A jsonl, csv or parquet file: columns id (optional), input, and label or target, or any
    names mapped by the spec's `local.columns`."""
    path = Path(path)
    if not path.is_file():
        raise LatentTraitsError(f"local data file {path} does not exist")
    rows = read_rows(path)
    if not rows:
        raise LatentTraitsError(f"local data file {path} has no rows")
    present = list(rows[0])
    try:
        columns = local_columns(spec, present)
    except LatentTraitsError as err:
        raise LatentTraitsError(f"{path}: {err}") from None
    if spec is not None:
        wanted = "label" if spec.is_classification else "target"
        if wanted not in columns and "target" not in columns:
            raise LatentTraitsError(
                f"{path}: task {spec.name!r} needs a `{wanted}` column (or a column map naming one); "
                f"columns present: {present}")
    hub = (spec.hub or {}) if spec else {}
    examples = map_columns(rows, columns, str(path), id_prefix=path.stem,
                           input_template=hub.get("input_template") if columns == hub.get("columns") else None)
    for row, example in zip(rows, examples, strict=True):  # the file's own ids, where it has them
        if row.get("id") not in (None, ""):
            example["id"] = str(row["id"])
    return examples


def load_examples(
    spec: TaskSpec, split: str, n: int | None = None, seed: int = 0, source: str = "offline",
    local_path: str | None = None, test_fraction: float = 0.3,
    transforms: dict[str, Any] | None = None, ids: Collection[str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A split's examples: checked (labels, unique ids), then the transforms' selection (a class
    ratio or a seeded subsample of n) and label noise. `ids`: exactly the examples with these ids
    instead of a selection (an analysis re-reading what was evaluated). Hub data is selected on
    light keys (id, label) and only the chosen rows are read out of the dataset's Arrow table."""
    if split not in SPLITS:
        raise LatentTraitsError(f"split {split!r} is not one of {SPLITS}")
    if ids is not None and (n is not None or transforms):
        raise LatentTraitsError("load_examples: ids= takes the place of n and transforms; give one or the other")
    table = None
    if source == "offline":
        pool = load_offline(dict(spec.offline))
        origin = f"offline:{spec.offline.get('loader')}"
        examples = pick_split(pool, split, test_fraction)
    elif source == "hub":
        table, hub_split = open_hub_split(spec, split)
        examples, origin = hub_keys(spec, table, hub_split), hub_origin(spec, table)
        if hub_split_is_shared(spec):  # one hub split: train and test by a stable hash of the id
            examples = pick_split(examples, split, test_fraction)
    elif source == "local":
        if not local_path:
            raise LatentTraitsError("data.source=local needs data.local_path=<file or folder with train.* and test.*>")
        per_split = local_split_file(local_path, split)
        if per_split is not None:  # a folder with train.* and test.*, or a path with {split}
            examples, origin = load_local(per_split, spec), f"local:{per_split}"
        else:  # one file: train and test by a stable hash of the id, as offline
            examples, origin = load_local(local_path, spec), f"local:{local_path}"
            examples = pick_split(examples, split, test_fraction)
    else:
        raise LatentTraitsError(f"data.source={source!r} is not one of {DATA_SOURCES}")
    if not examples:
        raise LatentTraitsError(
            f"task {spec.name!r}: split {split!r} from {origin} is empty (test_fraction={test_fraction}); "
            "check the split settings or the file")
    if table is None:  # hub keys carry the task's labels already
        examples = normalise_all(spec, examples, origin)
    check_labels(spec, examples, origin)
    check_unique_ids(examples, origin, spec)
    labels = list(spec.labels) if spec.is_classification else None
    if ids is not None:
        wanted = {str(i) for i in ids}
        examples = [e for e in examples if str(e["id"]) in wanted]
    else:
        examples = select_examples(examples, labels, transforms, n, seed)
    if table is not None:  # the chosen keys' full rows; labels already checked on every key
        examples = normalise_all(spec, materialise_hub(spec, table, hub_split, examples), origin)
    examples, transform_report = add_label_noise(examples, labels, transforms, seed)
    if not examples and ids is None:  # ids: the caller sees which it did not get
        raise LatentTraitsError(
            f"task {spec.name!r}: no examples left in split {split!r} from {origin} after the transforms")
    provenance = {
        "source": origin,
        "stand_in": source == "offline" and spec.stand_in,
        "split": split,
        "seed": seed,
        "transforms": transform_report,
        **describe_examples(spec, examples),
    }
    return examples, provenance


def describe_examples(spec: TaskSpec, examples: list[dict[str, Any]]) -> dict[str, Any]:
    """The provenance fields that depend on which examples were taken: n, hash, class distribution."""
    return {
        "n": len(examples),
        "hash": stable_hash([(e["id"], e["input"], e["target"]) for e in examples]),
        "class_distribution": dict(sorted(Counter(e["label"] for e in examples).items()))
        if spec.is_classification else None,
    }
