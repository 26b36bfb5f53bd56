"""Offline sources of the embedded default: real data that PyPI packages ship, and generators.

Each loader returns a list of raw examples ``{"id", "input", "target", "label"?, "answer"?,
"split_key"?}`` for the whole pool; splitting and subsampling happen in `latent_traits.data.load`.
``split_key`` (default: the id) decides the train/test split: loaders that draw two tasks from
the same texts give them the same key, so a text is in the same split in both tasks.

Loaders by source: `sentiment` (IMDB, Amazon, Flipkart, toxicity), `maths` (GSM-Symbolic, Goat,
ASDiv), `pairs` (PAWS, NLI) and `programs` (code).
"""

from __future__ import annotations

from typing import Any

from latent_traits.data.offline import maths, pairs, programs, sentiment  # noqa: F401 - each registers its loaders
from latent_traits.data.offline.common import NOT_LOADER_ARGS, OFFLINE_LOADERS
from latent_traits.errors import LatentTraitsError


def load_offline(offline_cfg: dict[str, Any]) -> list[dict[str, Any]]:
    name = offline_cfg.get("loader")
    if name not in OFFLINE_LOADERS:
        raise LatentTraitsError(
            f"unknown offline loader {name!r}; known loaders: {sorted(OFFLINE_LOADERS)}"
        )
    kwargs = {k: v for k, v in offline_cfg.items() if k not in NOT_LOADER_ARGS}
    return OFFLINE_LOADERS[name](**kwargs)
