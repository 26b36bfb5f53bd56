"""Cell records -> adapter x task matrix -> PCA latent traits -> report folder.

python analyze.py                          # artifacts/eval/<model> -> artifacts/reports/<model>
python analyze.py analysis.n_components=4 analysis.view=raw
"""

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from latent_traits.analysis.run import PCAOptions, run_analysis
from latent_traits.errors import exit_on_user_error

log = logging.getLogger("analyze")


@hydra.main(version_base="1.3", config_path="conf", config_name="analyze")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    config = OmegaConf.to_container(cfg, resolve=True)
    options = PCAOptions.from_config(config["analysis"])
    html = run_analysis(cfg.records_dir, cfg.report_dir, options, cfg.model.name, config)
    log.info("Report: %s", html)


if __name__ == "__main__":
    main()
