"""Log a finished report folder to W&B as one analysis run (job_type=analysis).

The run carries the resolved config, the figures as images, the CSV tables as W&B tables,
headline numbers in its summary (analysis/explained_variance/<PC>, analysis/transfer/skill)
and the whole folder as an artifact. Offline unless analysis.wandb.mode=online;
wandb.finish() always runs, also when logging fails.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from latent_traits.redact import redact

log = logging.getLogger(__name__)


def summary_numbers(report: Mapping[str, Any]) -> dict[str, float]:
    """Headline numbers from report.json."""
    out: dict[str, float] = {}
    pca = report.get("pca") or {}
    for name, value in (pca.get("explained_variance_ratio") or {}).items():
        out[f"analysis/explained_variance/{name}"] = float(value)
    transfer = report.get("transfer") or {}
    for key, value in (transfer.get("overall") or {}).items():
        out[f"analysis/transfer/{key}"] = float(value)
    out["analysis/n_cells"] = float(len(report.get("records") or []))
    return out


def log_report(
    report_dir: str | Path,
    wandb_cfg: Mapping[str, Any],
    config: dict[str, Any] | None = None,
    name: str | None = None,
    wandb_module: Any = None,
) -> str | None:
    """Log the report folder; returns the run's id."""
    import json

    if wandb_module is None:
        import wandb as wandb_module
    wandb = wandb_module
    report_dir = Path(report_dir)
    report = json.loads((report_dir / "report.json").read_text())
    try:
        run = wandb.init(
            project=wandb_cfg.get("project") or "latent-traits",
            entity=wandb_cfg.get("entity"),
            group=wandb_cfg.get("group"),
            tags=list(wandb_cfg.get("tags") or []) or None,
            job_type="analysis",
            name=name,
            mode=wandb_cfg.get("mode", "offline"),
            dir=str(wandb_cfg.get("dir") or report_dir.parent),
            config=redact(config),  # no secret in a W&B config (latent_traits.redact)
        )
        images = {f"analysis/figures/{p.stem}": wandb.Image(str(p))
                  for p in sorted(report_dir.glob("*.png"))}
        tables = {f"analysis/tables/{p.stem}": wandb.Table(dataframe=pd.read_csv(p))
                  for p in sorted(report_dir.glob("*.csv"))}
        run.log({**images, **tables})
        run.summary.update(summary_numbers(report))
        artifact = wandb.Artifact(f"report-{run.id}", type="analysis-report")
        artifact.add_dir(str(report_dir))
        run.log_artifact(artifact)
        log.info("Logged the report to W&B run %s (%s)", run.id, wandb_cfg.get("mode"))
        return run.id
    finally:
        wandb.finish()
