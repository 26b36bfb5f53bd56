"""The study's zero-shot prompt format: ``{instruction}\\n{input}\\n{Cue}:\\n{target}<eos>``, with
the beginning-of-sequence token and the empty instruction's newline as data.prompt says."""

from __future__ import annotations

import logging
from typing import Any

from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError

log = logging.getLogger(__name__)


def format_prompt(spec: TaskSpec, text: str) -> str:
    """Everything the model sees before its answer; the target follows directly. Without an
    instruction the prompt starts at the input, or (data.prompt.empty_instruction_newline, the
    authors' template) with the newline that followed the empty instruction."""
    newline = "\n" if spec.prompt_format.empty_instruction_newline else ""
    head = f"{spec.instruction}\n" if spec.instruction else newline
    return f"{head}{text}\n{spec.cue}:\n"


def truncate_input(text: str, tokenizer, max_tokens: int | None) -> str:
    """Shorten the input text (never the instruction, cue or target) to max_tokens tokens."""
    if not max_tokens:
        return text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens])


def encode_prompt(spec: TaskSpec, text: str, tokenizer, max_input_tokens: int | None) -> list[int]:
    """Prompt token ids; shared by training and evaluation so both see identical tokens. The
    beginning-of-sequence token as data.prompt.bos says (spec.PromptFormat)."""
    prompt = format_prompt(spec, truncate_input(text, tokenizer, max_input_tokens))
    bos = spec.prompt_format.bos
    ids = tokenizer(prompt, add_special_tokens=bos != "none")["input_ids"]
    if bos == "literal_plus_tokenizer":
        if tokenizer.bos_token_id is None:
            raise LatentTraitsError("data.prompt.bos=literal_plus_tokenizer: the tokenizer of this model has no "
                                    "BOS token; use data.prompt.bos=tokenizer")
        ids = [tokenizer.bos_token_id, *ids]
    return ids


def fit_prompt(spec: TaskSpec, text: str, tokenizer, max_input_tokens: int | None, room: int) -> list[int]:
    """The prompt's ids, its input (never the instruction or cue) cut further until the prompt
    fits `room` tokens; longer than `room` only when the instruction and cue alone are."""
    ids = encode_prompt(spec, text, tokenizer, max_input_tokens)
    overflow = len(ids) - room
    if overflow <= 0:
        return ids
    n_input = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    keep = min(n_input, max_input_tokens or n_input) - overflow
    while overflow > 0 and keep > 0:  # re-tokenising the cut text can shift a token or so
        ids = encode_prompt(spec, text, tokenizer, keep)
        overflow = len(ids) - room
        keep -= overflow
    return ids


def encode_prompts_within(spec: TaskSpec, examples: list[dict[str, Any]], tokenizer, max_input_tokens: int | None,
                          context: int | None, reserve: int) -> list[list[int]]:
    """Prompt ids for evaluation. A prompt that would leave fewer than `reserve` tokens of the model's
    context for the answer has its input (never the instruction or cue) cut further, with a logged
    warning that counts them; data.max_input_tokens chooses the cut for every prompt instead."""
    prompts = [encode_prompt(spec, e["input"], tokenizer, max_input_tokens) for e in examples]
    limit = (context or 0) - reserve
    n_cut = 0
    for i, ids in enumerate(prompts):
        if not context or len(ids) <= limit:
            continue
        ids = fit_prompt(spec, examples[i]["input"], tokenizer, max_input_tokens, limit)
        if len(ids) > limit:
            raise LatentTraitsError(
                f"task {spec.name!r}: its instruction and cue alone leave no room in the model's context "
                f"({context} tokens) for {reserve} answer tokens; shorten the instruction or lower "
                "eval.decoding.max_new_tokens_cap")
        prompts[i], n_cut = ids, n_cut + 1
    if n_cut:
        log.warning("task %s: %d of %d prompts were longer than the model's context (%d tokens) minus %d "
                    "for the answer; their inputs were cut to fit (data.max_input_tokens sets the cut)",
                    spec.name, n_cut, len(prompts), context, reserve)
    return prompts
