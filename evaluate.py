"""Evaluate the base model and every trained adapter on every target task: python evaluate.py"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from latent_traits.config import check_config  # importing it registers the config resolvers
from latent_traits.errors import exit_on_user_error
from latent_traits.eval.runner import evaluate_all
from latent_traits.preflight import preflight


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    check_config(cfg)  # secrets, missing keys, wrong types and ranges, unsafe names: before anything runs
    evaluate_all(cfg)


if __name__ == "__main__":
    preflight(Path(__file__).with_name("conf"), entry="evaluate")  # YAML syntax, unknown group options
    main()
