"""Cell records -> adapter x task matrix -> PCA latent traits -> report folder.

python analyze.py                          # artifacts/eval/<model> -> artifacts/reports/<model>
python analyze.py analysis.n_components=4 analysis.view=raw
python analyze.py analysis.source=wandb analysis.wandb.project=latent-traits analysis.logger=true
"""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from latent_traits.analysis.run import AnalysisOptions, run_analysis
from latent_traits.analysis.wandb_log import log_report
from latent_traits.config import check_config
from latent_traits.errors import exit_on_user_error
from latent_traits.preflight import preflight

log = logging.getLogger("analyze")


@hydra.main(version_base="1.3", config_path="conf", config_name="analyze")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    check_config(cfg)  # secrets, missing keys, wrong types and ranges, unsafe names: before anything runs
    config = OmegaConf.to_container(cfg, resolve=True)
    analysis = config["analysis"]
    options = AnalysisOptions.from_config(analysis)
    html = run_analysis(
        cfg.records_dir, cfg.report_dir, options, cfg.model.name, config,
        source=analysis["source"], wandb_cfg=analysis["wandb"],
    )
    log.info("Report: %s", html)
    if analysis["logger"]:
        log_report(html.parent, analysis["wandb"], config, name=f"analysis-{cfg.model.name}")


if __name__ == "__main__":
    preflight(Path(__file__).with_name("conf"), entry="analyze")  # YAML syntax, unknown group options
    main()
