"""Which side analyses exist (the public modules of this package, in report order) and which
the `analysis` config node selects; reads module names only, imports none of them."""

from __future__ import annotations

import pkgutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# report order; modules found in this package beyond these run after them, alphabetically
ORDER = ("lengths", "classes", "ablations", "asymmetry", "similarity", "dependency")
NOT_ANALYSES = {"catalog", "context", "registry"}  # modules of this package that are helpers (so are _private ones)

def known() -> list[str]:
    """Every side analysis: ORDER first, then other analysis modules of this package."""
    found = {m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
             if not m.name.startswith("_") and m.name not in NOT_ANALYSES}
    return [n for n in ORDER] + sorted(found - set(ORDER))


def selected(analysis: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{name: options} of the side analyses the `analysis` config node selects, in report order."""
    return {name: dict(analysis[name]) for name in known()
            if isinstance(analysis.get(name), Mapping)}
