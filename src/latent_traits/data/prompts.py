"""The study's zero-shot prompt format: ``{instruction}\\n{input}\\n{Cue}:\\n{target}<eos>``."""

from __future__ import annotations

from latent_traits.data.spec import TaskSpec


def format_prompt(spec: TaskSpec, text: str) -> str:
    """Everything the model sees before its answer; the target follows directly."""
    head = f"{spec.instruction}\n" if spec.instruction else ""
    return f"{head}{text}\n{spec.cue}:\n"


def truncate_input(text: str, tokenizer, max_tokens: int | None) -> str:
    """Shorten the input text (never the instruction, cue or target) to max_tokens tokens."""
    if not max_tokens:
        return text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens])
