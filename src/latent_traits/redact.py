"""Keep secrets out of everything written: configs, records, reports, W&B configs, Hydra's .hydra/.

Secrets belong in environment variables (the judge's key in the variable ``judge.api_key_env``
names, hub tokens in ``HF_TOKEN`` or ``hf auth login``, W&B's in ``wandb login``); a config key
that holds one is refused at the start of every entry point (``refuse_secrets_in_config``).
Everything written is still passed through ``redact`` as a second line of defence (an
``${oc.env:...}`` interpolation, a key pasted into a free-text field): a value is replaced by
``<redacted>`` when its key names a secret, when it looks like a credential (``sk-...``,
``hf_...``, ``ghp_...``, ``AKIA...``), and wherever it contains the value of an environment
variable whose name says it holds a secret. Hydra writes ``.hydra/*.yaml`` (and a sweep's
``multirun.yaml``) before the job runs; ``RedactSecrets``, a Hydra callback in conf/hydra,
rewrites them redacted as each job starts.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from latent_traits.errors import LatentTraitsError
from latent_traits.io import write_text

REDACTED = "<redacted>"
SECRET_NAME = re.compile(
    r"api_?key|apikey|secret|passw(or)?d|credential|private_key|access_key|(^|_)auth($|_)|(^|_)token$",
    re.IGNORECASE)
# a tokenizer's special tokens are text, not credentials
NOT_SECRET_NAMES = {f"{t}_token" for t in ("bos", "eos", "pad", "unk", "sep", "cls", "mask")}
SECRET_VALUE = re.compile(
    r"\b(sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})")
ASSIGNMENT = re.compile(r"([\w.@/+~-]+)=([^,\s'\"]+)")  # key=value, as in Hydra overrides
# scheme://user:password@host (Hydra's launcher log escapes it as scheme\://user\:password@host)
URL_CREDENTIALS = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*\\?://)[^/\s@'\"<>]+@")
MIN_SECRET_CHARS = 8  # shorter environment values ("1", "true") would redact ordinary text
HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")


def _holds_value(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and value == "")


def is_secret_name(name: str) -> bool:
    """True for a key that holds a secret (api_key, hf_token, password, ...). `*_env` keys name an
    environment variable instead, so they are not secrets themselves."""
    last = str(name).rsplit(".", 1)[-1].lstrip("+~").lower()
    if last.endswith("_env") or last in NOT_SECRET_NAMES:
        return False
    return SECRET_NAME.search(last) is not None


def _env_names_in(obj: Any) -> set[str]:
    """Environment variable names given by secret-named `*_env` keys (e.g. judge.api_key_env)."""
    names: set[str] = set()
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if str(key).lower().endswith("_env") and is_secret_name(str(key)[:-4]) and isinstance(value, str):
                names.add(value)
            names |= _env_names_in(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            names |= _env_names_in(value)
    return names


def secret_values(extra_env_names: Iterable[str] = ()) -> list[str]:
    """Values of the environment variables that hold secrets, longest first."""
    names = {n for n in os.environ if is_secret_name(n)} | set(extra_env_names)
    values = {os.environ.get(n, "") for n in names}
    return sorted((v for v in values if len(v) >= MIN_SECRET_CHARS), key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] | None = None) -> str:
    """`text` with known secret values, credential-shaped words and `secret_key=value` pairs redacted."""
    for secret in secret_values() if secrets is None else secrets:
        text = text.replace(secret, REDACTED)
    text = SECRET_VALUE.sub(REDACTED, text)
    text = without_url_credentials(text)
    return ASSIGNMENT.sub(lambda m: f"{m.group(1)}={REDACTED}" if is_secret_name(m.group(1)) else m.group(0), text)


def without_url_credentials(text: str) -> str:
    """Every URL's user:password@ replaced: http://user:pass@host/v1 -> http://<redacted>@host/v1."""
    return URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)


def redact(obj: Any, secrets: Iterable[str] | None = None) -> Any:
    """A copy of a JSON/YAML-like object with every secret replaced by '<redacted>'."""
    if secrets is None:
        secrets = secret_values(_env_names_in(obj))
    secrets = list(secrets)
    if isinstance(obj, Mapping):
        return {key: (REDACTED if is_secret_name(str(key)) and _holds_value(value) else redact(value, secrets))
                for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(value, secrets) for value in obj)
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    return obj


def secret_keys_in(obj: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the secret-named keys that hold a value."""
    found: list[str] = []
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            path = f"{prefix}{key}"
            if is_secret_name(str(key)) and _holds_value(value):
                found.append(path)
            else:
                found += secret_keys_in(value, f"{path}.")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found += secret_keys_in(value, f"{prefix}{i}.")
    return found


def refuse_secrets_in_config(cfg: Any) -> None:
    """A user error when the config holds a secret: it would be written to .hydra/ and W&B."""
    from omegaconf import DictConfig, OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    keys = secret_keys_in(plain)
    if keys:
        raise LatentTraitsError(
            f"{', '.join(keys)}: a config must not hold a secret (configs are written to the output "
            "folder, records and W&B). Put it in an environment variable instead: the judge's key in the "
            "variable that judge.api_key_env names (OPENAI_API_KEY by default), a hub token in HF_TOKEN "
            "(or `hf auth login`), a W&B key with `wandb login`")


def redact_yaml_file(path: str | Path) -> bool:
    """Rewrite a YAML file with its secrets redacted; True if it changed."""
    path = Path(path)
    if not path.is_file():
        return False
    data = yaml.safe_load(path.read_text())
    clean = redact(data)
    if clean == data:
        return False
    write_text(path, yaml.safe_dump(clean, sort_keys=False, allow_unicode=True))
    return True


try:
    from hydra.experimental.callback import Callback
except ImportError:  # hydra is a dependency; this keeps the helpers importable without it
    Callback = object  # type: ignore[assignment,misc]


class RedactingFilter(logging.Filter):
    """A log handler filter: each record's text redacted before the handler writes it (conf/hydra
    puts it on every handler of Hydra's and the job's logging; Hydra's launcher logs each job's
    overrides, a judge URL's user:password included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


class RedactSecrets(Callback):
    """Hydra callback: redact the config files Hydra wrote before the job started."""

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        hydra_cfg = config.get("hydra") if hasattr(config, "get") else None
        if hydra_cfg is None:
            return
        if hydra_cfg.get("output_subdir") is not None:
            folder = Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir
            for name in HYDRA_FILES:
                redact_yaml_file(folder / name)
        self._redact_sweep(hydra_cfg)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        hydra_cfg = config.get("hydra") if hasattr(config, "get") else None
        if hydra_cfg is not None:
            self._redact_sweep(hydra_cfg)

    @staticmethod
    def _redact_sweep(hydra_cfg: Any) -> None:
        sweep_dir = hydra_cfg.get("sweep", {}).get("dir") if str(hydra_cfg.get("mode")).endswith("MULTIRUN") else None
        if sweep_dir:
            redact_yaml_file(Path(sweep_dir) / "multirun.yaml")
