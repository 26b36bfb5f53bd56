"""The `analysis` config node as typed options (conf/analyze.yaml, conf/analysis/pca.yaml and
the side analyses' conf/analysis/<name>.yaml, kept as plain option mappings under `side`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from . import matrix as mx
from .errors import AnalysisError
from .floors import POLICIES as FLOOR_POLICIES
from .side.catalog import selected

VIEWS = ("delta", "raw")


@dataclass(frozen=True)
class BootstrapOptions:
    n_resamples: int = 1000  # 0 turns the bootstrap off
    seed: int = 0
    level: float = 0.95  # confidence level of the percentile intervals

    def __post_init__(self) -> None:
        if not 0.0 < self.level < 1.0:
            raise AnalysisError(f"analysis.bootstrap.level={self.level} must lie in (0, 1)")
        if self.n_resamples < 0:
            raise AnalysisError("analysis.bootstrap.n_resamples must be >= 0 (0: off)")


@dataclass(frozen=True)
class TransferOptions:
    enabled: bool = True
    k: int | None = 2  # traits fitted on the other tasks; None: as many as the data supports


@dataclass(frozen=True)
class AnalysisOptions:
    view: str = "delta"  # delta: adapter rows minus the base row; raw: adapter rows as scored
    n_components: int | None = None  # None: all the data supports
    center: bool = True
    standardize: bool = False
    missing: str = "error"  # error | drop_rows | drop_columns | impute_mean
    trait_names: tuple[str, ...] = ()
    floor_ceiling: str = "exclude"  # exclude | keep: tasks at floor/ceiling in the PCA (floors.py)
    allow_mixed_models: bool = False
    allow_mixed_versions: bool = False
    bootstrap: BootstrapOptions = field(default_factory=BootstrapOptions)
    transfer: TransferOptions = field(default_factory=TransferOptions)
    rows: Mapping[str, Any] = field(default_factory=dict)   # {include: [globs], exclude: [globs]} of row ids
    tasks: Mapping[str, Any] = field(default_factory=dict)  # {include: [...], exclude: [...]} of task names
    # {side analysis name: its options}, in report order; empty: the PCA report only
    side: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, analysis: Mapping[str, Any]) -> AnalysisOptions:
        """From the `analysis` config node (keys of other analyses are left to them)."""
        kwargs: dict[str, Any] = {
            f.name: analysis[f.name] for f in fields(cls) if f.name in analysis
        }
        if "bootstrap" in kwargs:
            kwargs["bootstrap"] = BootstrapOptions(**dict(kwargs["bootstrap"]))
        if "transfer" in kwargs:
            kwargs["transfer"] = TransferOptions(**dict(kwargs["transfer"]))
        kwargs["trait_names"] = tuple(kwargs.get("trait_names") or ())
        for key in ("rows", "tasks"):
            kwargs[key] = {k: list(v or []) for k, v in dict(kwargs.get(key) or {}).items()}
        kwargs["side"] = selected(analysis)
        return cls(**kwargs)

    def __post_init__(self) -> None:
        if self.view not in VIEWS:
            raise AnalysisError(f"analysis.view={self.view!r} is not one of {', '.join(VIEWS)}")
        for key in ("rows", "tasks"):
            unknown = sorted(set(getattr(self, key)) - {"include", "exclude"})
            if unknown:
                raise AnalysisError(f"analysis.{key} takes include and exclude (lists of globs), not {unknown}")
        if self.floor_ceiling not in FLOOR_POLICIES:
            raise AnalysisError(f"analysis.floor_ceiling={self.floor_ceiling!r} is not one of "
                                f"{', '.join(FLOOR_POLICIES)}")
        if self.missing not in mx.MISSING_POLICIES:
            raise AnalysisError(
                f"analysis.missing={self.missing!r} is not one of {', '.join(mx.MISSING_POLICIES)}"
            )


PCAOptions = AnalysisOptions  # the name before the options grew past PCA
