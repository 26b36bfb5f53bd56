"""A side analysis' options: its conf/analysis/<name>.yaml defaults, overridden by what was given,
and a clear error for a key the analysis does not know (a typo would otherwise be ignored)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from latent_traits.analysis.errors import AnalysisError


def merged_options(name: str, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """defaults updated by `given`, one level of nested mappings merged key by key."""
    out = dict(defaults)
    for key, value in dict(given).items():
        if key not in defaults:
            raise AnalysisError(f"analysis.{name}.{key} is not an option of the {name} analysis; "
                                f"its options: {', '.join(sorted(defaults))}")
        if isinstance(defaults[key], Mapping) and defaults[key] and isinstance(value, Mapping):
            unknown = sorted(set(value) - set(defaults[key]))
            if unknown:
                raise AnalysisError(f"analysis.{name}.{key}: unknown option(s) {unknown}; "
                                    f"its options: {', '.join(sorted(defaults[key]))}")
            value = {**defaults[key], **dict(value)}
        out[key] = value
    return out
