"""Task specs: one per dataset, shared by source datasets (training) and target tasks (evaluation)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from latent_traits.errors import LatentTraitsError

TASK_TYPES = ("classification", "generation")
ANSWER_FORM_NAMES = ("remainder", "undefined")  # eval/scorers.py reads them
SCORERS = ("exact_label", "numeric", "code_match", "none")  # none: no automatic score (refused as a target)


BOS_MODES = ("tokenizer", "literal_plus_tokenizer", "none")


@dataclass(frozen=True)
class PromptFormat:
    """How a prompt is spelled around the task's instruction, input and cue (data.prompt; training
    and evaluation must agree). `bos`: tokenizer (the tokenizer's own BOS, where it adds one: the
    default, what the model was pretrained with), literal_plus_tokenizer (the authors' template
    began with a literal BOS before the tokenizer's own: two with Llama 3's tokenizer), none.
    `empty_instruction_newline`: the authors' template kept the newline after an empty
    instruction, so prompts of tasks without one (goat, gsm8k, ...) start with "\n"; the default
    leaves it out, as a prompt that opens on a blank line says nothing."""

    bos: str = "tokenizer"
    empty_instruction_newline: bool = False

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> PromptFormat:
        given = dict(cfg or {})
        unknown = sorted(set(given) - {"bos", "empty_instruction_newline"})
        if unknown:
            raise LatentTraitsError(f"data.prompt: unknown keys {unknown}; valid: bos, empty_instruction_newline")
        fmt = cls(**given)
        if fmt.bos not in BOS_MODES:
            raise LatentTraitsError(f"data.prompt.bos={fmt.bos!r} is not one of {BOS_MODES}")
        if not isinstance(fmt.empty_instruction_newline, bool):
            raise LatentTraitsError("data.prompt.empty_instruction_newline must be true or false, "
                                    f"not {fmt.empty_instruction_newline!r}")
        return fmt

    @property
    def is_default(self) -> bool:
        return self == PromptFormat()


@dataclass(frozen=True)
class TaskSpec:
    name: str
    type: str
    version: str
    cue: str
    scorer: str
    instruction: str | None = None
    labels: tuple[str, ...] | None = None
    label_map: Mapping[str, str] | None = None  # raw dataset label -> label string (verbalisation)
    tags: tuple[str, ...] = ()
    max_new_tokens: int = 16
    stop: tuple[str, ...] = ()
    answer_forms: tuple[str, ...] = ()  # numeric scorer: answers besides one number (remainder, undefined)
    offline: Mapping[str, Any] = field(default_factory=dict)
    hub: Mapping[str, Any] | None = None
    local: Mapping[str, Any] | None = None  # {columns: {input: <col>, label|target: <col>}} for your own files
    description: str = ""
    prompt_format: PromptFormat = PromptFormat()  # the run's data.prompt (with_prompt_format), not the task's

    def __post_init__(self):
        if self.type not in TASK_TYPES:
            raise LatentTraitsError(f"task {self.name!r}: type {self.type!r} is not one of {TASK_TYPES}")
        if self.scorer not in SCORERS:
            raise LatentTraitsError(f"task {self.name!r}: scorer {self.scorer!r} is not one of {SCORERS}")
        unknown = sorted(set(self.answer_forms) - set(ANSWER_FORM_NAMES))
        if unknown:
            raise LatentTraitsError(f"task {self.name!r}: answer_forms {unknown} are not among {ANSWER_FORM_NAMES}")
        if self.type == "classification" and not self.labels:
            raise LatentTraitsError(f"task {self.name!r}: a classification task needs `labels`")

    @property
    def is_classification(self) -> bool:
        return self.type == "classification"

    @property
    def scorable(self) -> bool:
        return self.scorer != "none"

    @property
    def stand_in(self) -> bool:
        return bool(self.offline.get("stand_in", False))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> TaskSpec:
        from omegaconf import DictConfig, OmegaConf

        data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
        for key in ("labels", "tags", "stop", "answer_forms"):
            if data.get(key) is not None:
                data[key] = tuple(str(x) for x in data[key])
        if data.get("label_map") is not None:
            data["label_map"] = {str(k): str(v) for k, v in data["label_map"].items()}
        if isinstance(data.get("prompt_format"), Mapping):
            data["prompt_format"] = PromptFormat.from_config(data["prompt_format"])
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise LatentTraitsError(
                f"task {data.get('name')!r}: unknown keys {sorted(unknown)}; valid keys: {sorted(known)}"
            )
        return cls(**data)

    def with_prompt_format(self, cfg: Mapping[str, Any] | None) -> TaskSpec:
        """This task as a run spells its prompts (data.prompt)."""
        return replace(self, prompt_format=PromptFormat.from_config(cfg))

    def to_record(self) -> dict[str, Any]:
        """What a record says of the task; a non-default prompt format joins it (so results made
        with the default keep their settings hash)."""
        record = {
            "name": self.name, "version": self.version, "type": self.type, "tags": list(self.tags),
            "labels": list(self.labels) if self.labels else None, "scorer": self.scorer,
        }
        if not self.prompt_format.is_default:
            record["prompt_format"] = asdict(self.prompt_format)
        return record
