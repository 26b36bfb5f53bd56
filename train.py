"""Train one LoRA adapter per job: python train.py -m source_dataset=imdb,goat,gsm8k"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from latent_traits.config import check_config  # importing it registers the config resolvers
from latent_traits.errors import exit_on_user_error
from latent_traits.preflight import preflight
from latent_traits.train.jobs import run_training_job


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    check_config(cfg)  # secrets, missing keys, wrong types and ranges, unsafe names: before anything runs
    run_training_job(cfg)


if __name__ == "__main__":
    preflight(Path(__file__).with_name("conf"), entry="train")  # YAML syntax, unknown group options
    main()
