"""Config helpers shared by the entry points: resolvers, spec extraction and validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from latent_traits.data.catalog import load_task_spec
from latent_traits.data.spec import BOS_MODES, TaskSpec
from latent_traits.errors import ConfigError, LatentTraitsError
from latent_traits.redact import refuse_secrets_in_config
from latent_traits.safe_paths import check_adapter_id, check_name


def resolve_precision(choice: str = "auto") -> str:
    """bf16 where the GPU supports it, fp32 on CPU (bf16 matmuls are ~400x slower there)."""
    if choice != "auto":
        return choice
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("lt.precision"):
        OmegaConf.register_new_resolver("lt.precision", resolve_precision)


register_resolvers()


def to_plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def model_record(model_cfg: Any) -> dict[str, Any]:
    """What every adapter and cell record says of the base model: name, source and revision."""
    return {"name": model_cfg.get("name"), "source": model_cfg.get("source"), "revision": model_cfg.get("revision")}


def model_settings(model_cfg: Any) -> dict[str, Any]:
    """The model's settings as they enter a settings hash; an unpinned revision (null) is left
    out, so results made before the key existed keep their hash."""
    plain = dict(to_plain(model_cfg))
    if plain.get("revision") is None:
        plain.pop("revision", None)
    return plain


def target_specs(cfg: DictConfig) -> list[tuple[TaskSpec, dict[str, Any]]]:
    """The selected target tasks in a stable order, each as (spec, its split/n settings): the
    target_task group's, or eval.tasks by name (a preset's list) with eval.task_n over eval.n."""
    named = OmegaConf.select(cfg, "eval.tasks", default=None)
    if named:
        task_n = to_plain(OmegaConf.select(cfg, "eval.task_n", default=None)) or {}
        entries = {name: {"split": "test", "n": task_n.get(name, cfg.eval.n)} for name in named}
        specs = {name: load_task_spec(name) for name in entries}
    else:
        tasks = cfg.get("target_task") or {}
        entries = {key: to_plain(tasks[key]) for key in tasks}
        specs = {key: TaskSpec.from_config(entry.pop("task")) for key, entry in entries.items()}
    out = []
    prompt = OmegaConf.select(cfg, "data.prompt", default=None)
    for key in sorted(entries):
        entry, spec = entries[key], specs[key].with_prompt_format(to_plain(prompt) if prompt is not None else None)
        if not spec.scorable:
            raise LatentTraitsError(
                f"target task {spec.name!r} has no automatic scorer (scorer: none): leave it out of "
                f"target_task or give its task spec a scorer"
            )
        out.append((spec, entry))
    return out


# -- validation of a composed config: one place, run before any data or model loads ----------------

_ABSENT = object()


@dataclass(frozen=True)
class Rule:
    """What one config value must be; `example` goes into the message as the fix."""

    kind: str                      # int | number | bool | choice
    example: Any
    low: float | None = None       # inclusive
    high: float | None = None      # inclusive
    above: float | None = None     # exclusive lower bound
    below: float | None = None     # exclusive upper bound
    nullable: bool = False
    choices: tuple[str, ...] = ()
    required: bool = True         # False: checked only where the composed config has the key
    also: tuple[Any, ...] = ()     # special values accepted besides the range (trainer.max_steps=-1)

    def describe(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        bounds = [f"{op} {bound}" for op, bound in ((">=", self.low), (">", self.above), ("<=", self.high),
                                                    ("<", self.below)) if bound is not None]
        kind = "an integer" if self.kind == "int" else "a number"
        also = "".join(f" or {_show(v)}" for v in self.also)
        return " ".join([kind, " and ".join(bounds)]).strip() + also + (" (or null)" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if value in self.also and not isinstance(value, bool):
            return True
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return str(value) in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        return ((self.low is None or value >= self.low) and (self.high is None or value <= self.high)
                and (self.above is None or value > self.above) and (self.below is None or value < self.below))


def _int(example: int, low: int | None = None, **kw: Any) -> Rule:
    return Rule("int", example, low=low, **kw)


FRACTION = Rule("number", 0.3, low=0.0, high=1.0)
COMMON_RULES = {"seed": _int(0, 0), "data.test_fraction": FRACTION, "data.max_input_tokens": _int(64, 1, nullable=True),
                "data.source": Rule("choice", "offline", choices=("offline", "hub", "local")),
                "data.prompt.bos": Rule("choice", "tokenizer", choices=BOS_MODES),
                "data.prompt.empty_instruction_newline": Rule("bool", False)}
RULES: dict[str, dict[str, Rule]] = {
    "train": {
        **COMMON_RULES,
        "data.train_n": _int(64, 1, nullable=True), "data.batch_size": _int(4, 1), "data.max_length": _int(256, 8),
        "data.num_workers": _int(0, 0), "data.group_by_length": Rule("bool", False),
        "data.packing": Rule("bool", False),
        "data.padding_free": Rule("bool", True),
        "data.loss_span": Rule("choice", "response", choices=("full", "response", "label", "all_but_label")),
        "data.overlong": Rule("choice", "refuse", choices=("refuse", "drop")),
        "lora.r": _int(8, 1), "lora.lora_alpha": Rule("number", 16, above=0),
        "lora.lora_dropout": Rule("number", 0.0, low=0, below=1),
        "optim.lr": Rule("number", 2e-3, above=0), "optim.weight_decay": Rule("number", 0.0, low=0),
        "optim.warmup_steps": _int(4, 0), "optim.scheduler": Rule("choice", "cosine", choices=("cosine", "constant")),
        # 0 steps would write a "complete" adapter that never trained; -1: no step limit (max_epochs)
        "trainer.max_steps": _int(16, 1, also=(-1,)), "trainer.max_epochs": _int(4, 1, nullable=True, also=(-1,)),
        "trainer.accumulate_grad_batches": _int(1, 1),
        "train.checkpoint_every_n_steps": _int(8, 1), "train.overwrite": Rule("bool", False),
    },
    "evaluate": {
        **COMMON_RULES,
        "eval.n": _int(32, 1, nullable=True), "eval.batch_size": _int(32, 1),
        "eval.decode_rows": _int(128, 1, nullable=True),
        "eval.pass_cost_tokens": _int(32, 0, nullable=True), "eval.include_base": Rule("bool", True),
        "eval.mixed_adapter_batches": Rule("bool", True), "eval.max_adapters_per_batch": _int(8, 1),
        "eval.code_execution": Rule("choice", "off", choices=("off", "sandboxed")),
        "eval.decoding.classification": Rule("choice", "constrained", choices=("constrained", "loglik")),
        "eval.decoding.do_sample": Rule("bool", False), "eval.decoding.temperature": Rule("number", 0.7, above=0),
        "eval.decoding.top_p": Rule("number", 0.95, above=0, high=1),
        "eval.decoding.max_new_tokens_cap": _int(96, 1, nullable=True),
        "eval.decoding.until": Rule("choice", "stop", choices=("stop", "end_of_text"), required=False),
        "eval.decoding.context_length": _int(2048, 1, required=False),
    },
    "analyze": {  # the analysis group's files may change: check what is there
        "analysis.n_components": _int(2, 1, nullable=True, required=False),
        "analysis.bootstrap.n_resamples": _int(1000, 0, required=False),
        "analysis.bootstrap.seed": _int(0, 0, required=False),
        "analysis.transfer.k": _int(2, 1, nullable=True, required=False),
    },
}


def check_config(cfg: Any) -> None:
    """Refuse a composed config with a secret, a missing key or a value of the wrong type or range,
    naming the key and the fix. Which rules apply follows `task_name` (train, evaluate, analyze)."""
    refuse_secrets_in_config(cfg)
    task = cfg.get("task_name") if isinstance(cfg, DictConfig) else None
    for key, rule in RULES.get(str(task), {}).items():
        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
        except MissingMandatoryValue:
            value = _ABSENT
        if value is _ABSENT and not rule.required:
            continue
        if value is _ABSENT:
            raise LatentTraitsError(
                f"{key} is missing from the config (deleted with ~{key}, or a config file lacks it): put it "
                f"back, e.g. +{key}={_show(rule.example)}; `python {task}.py --cfg job` prints the composed config")
        if not rule.accepts(value):
            raise LatentTraitsError(
                f"{key}={_show(value)}: must be {rule.describe()}, e.g. {key}={_show(rule.example)}")
    check_path_names(cfg)


# names that become folder names: one plain path component each (safe_paths.check_name)
PATH_NAME_KEYS = ("tag", "experiment_name", "model.name", "source_dataset.name", "lora.name")


def check_path_names(cfg: Any) -> None:
    for key in PATH_NAME_KEYS:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value not in (None, ""):
            check_name(value, key)
    adapters = OmegaConf.select(cfg, "eval.adapters", default=None, throw_on_missing=False)
    if isinstance(adapters, ListConfig):
        for adapter in adapters:
            check_adapter_id(adapter, "eval.adapters")


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) and not value else str(value)


def check_against_model(cfg: Any, model: Any) -> None:
    """Values that only the loaded model can check: a LoRA rank above the hidden size, lengths
    beyond the model's context, LoRA target modules the model does not have."""
    config = getattr(model, "config", None)
    context = getattr(config, "max_position_embeddings", None)
    hidden = getattr(config, "hidden_size", None)
    name = OmegaConf.select(cfg, "model.name", default="?")
    lengths = ["data.max_input_tokens"] + (["data.max_length"] if cfg.get("task_name") == "train" else [])
    for key in lengths:
        value = OmegaConf.select(cfg, key, default=None)
        if context and value and value > context:
            raise ConfigError(f"{key}={value} exceeds the context of model {name} ({context} tokens, "
                              f"max_position_embeddings): use {key}={min(context, 2048)} or less")
    if cfg.get("task_name") != "train":
        return
    r = OmegaConf.select(cfg, "lora.r", default=None)
    if hidden and r and r > hidden:
        raise ConfigError(f"lora.r={r} is larger than the hidden size of model {name} ({hidden}): a LoRA "
                          f"update of rank r cannot exceed the smaller side of the matrix it adapts; "
                          f"use lora.r={min(hidden, 64)} or less")
    targets = OmegaConf.select(cfg, "lora.target_modules", default=None)
    if isinstance(targets, str) or not targets:
        return
    present = {module_name.rsplit(".", 1)[-1] for module_name, _ in model.named_modules()}
    missing = sorted(set(targets) - present)
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
        raise ConfigError(f"lora.target_modules: {missing} not found in model {name}; its linear layers "
                          f"are {linear}")
