"""The one module that relies on the `datasets` library's internals (checked against datasets
5.2.0, the version constraints.txt pins): the commit of a hub dataset that load_dataset read,
taken from its cache layout, <cache>/<dataset>/<config>/<version>/<commit>/<files>.arrow (the
builder's `hash` is the hub repository's commit)."""

from __future__ import annotations

import re
from pathlib import Path

CHECKED_AGAINST = "datasets==5.2.0"
COMMIT = re.compile(r"^[0-9a-f]{40}$")


def loaded_commit(table) -> str | None:
    """The hub commit a loaded datasets.Dataset came from, or None where its files say nothing
    (an in-memory table, another cache layout)."""
    for cache_file in getattr(table, "cache_files", None) or []:
        folder = Path(str(cache_file.get("filename", ""))).parent.name
        if COMMIT.match(folder):
            return folder
    return None
