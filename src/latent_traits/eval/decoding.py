"""Decoding for evaluation: label scoring with constrained choice, and batched greedy generation.

Label scoring runs the prompt once (left-padded batch, explicit position ids so padding never
changes a result), then feeds each label's tokens on a copy of the prompt's KV cache, only as far
as a decision can need them: single-token labels need no second pass at all, and end-of-text after
a label is scored only where that label is a prefix of another. From the per-token
log-probabilities it derives both decisions the study uses:
- constrained choice: greedy token by token among the label strings, as vLLM's guided choice;
- log-likelihood ranking: the label with the highest total log-probability.

Every model call passes on `routing` keywords (`adapter_names`, one adapter per row), so a batch
can hold several adapters' rows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch


@dataclass
class LabelScores:
    token_logprobs: list[list[float]]   # per label: log p of each of its tokens given the prefix
    eos_logprobs: list[float | None]    # per label: log p of end-of-text right after it, where a
                                        # decision can need it (the label is a prefix of another)

    @property
    def totals(self) -> list[float]:
        return [sum(lps) for lps in self.token_logprobs]


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        attention[row, width - len(seq):] = 1
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    return input_ids, attention, positions


def needs_eos(label_tokens: list[list[int]]) -> list[bool]:
    """Per label: whether constrained choice can weigh end-of-text right after it, i.e. whether
    another label starts with its tokens (else the choice is made before its end)."""
    return [any(k != j and other[:len(tokens)] == tokens for k, other in enumerate(label_tokens))
            for j, tokens in enumerate(label_tokens)]


@torch.no_grad()
def score_labels(model, prompts: list[list[int]], label_tokens: list[list[int]], pad_id: int,
                 eos_id: int, **routing) -> list[LabelScores]:
    device = next(model.parameters()).device
    input_ids, attention, positions = (t.to(device) for t in left_pad(prompts, pad_id))
    with_eos = needs_eos(label_tokens)
    # the tokens each label's pass feeds: its own but the last (whose log p the step before gives),
    # plus the last where end-of-text after it counts; a single-token label without that: none
    feeds = [tokens if eos else tokens[:-1] for tokens, eos in zip(label_tokens, with_eos, strict=True)]
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                use_cache=any(feeds), logits_to_keep=1, **routing)  # only the next-token logits
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
    last_pos = positions[:, -1:]
    batch = len(prompts)
    token_lps = [[[float(first[b, tokens[0]])] for tokens in label_tokens] for b in range(batch)]
    eos_lps: list[list[float | None]] = [[None] * len(label_tokens) for _ in range(batch)]
    for j, (tokens, feed) in enumerate(zip(label_tokens, feeds, strict=True)):
        if not feed:
            continue
        k = len(feed)
        step = model(
            input_ids=torch.tensor(feed, device=device).expand(batch, k),
            attention_mask=torch.cat([attention, torch.ones(batch, k, dtype=attention.dtype, device=device)], 1),
            position_ids=last_pos + 1 + torch.arange(k, device=device),
            past_key_values=copy.deepcopy(out.past_key_values), use_cache=True, **routing,
        )
        lps = torch.log_softmax(step.logits.float(), dim=-1)  # (batch, k, vocab)
        for b in range(batch):
            token_lps[b][j] += [float(lps[b, i - 1, tokens[i]]) for i in range(1, len(tokens))]
            if with_eos[j]:
                eos_lps[b][j] = float(lps[b, len(tokens) - 1, eos_id])
    return [LabelScores(token_lps[b], eos_lps[b]) for b in range(batch)]


def constrained_choice(label_tokens: list[list[int]], scores: LabelScores) -> int:
    """Greedy decoding restricted to the label strings: at each step take the most likely allowed
    token (end-of-text is allowed where a label is complete); return the chosen label's index."""
    candidates = list(range(len(label_tokens)))
    position = 0
    while True:
        options: dict[object, tuple[float, list[int]]] = {}
        for c in candidates:
            if position == len(label_tokens[c]):
                key, lp = "<end>", scores.eos_logprobs[c]
            else:
                key, lp = label_tokens[c][position], scores.token_logprobs[c][position]
            best = options.get(key)
            options[key] = (lp, (best[1] if best else []) + [c])
        key, (lp, members) = max(options.items(), key=lambda item: item[1][0])
        if key == "<end>" or len(members) == 1 and position + 1 >= len(label_tokens[members[0]]):
            return members[0]
        candidates = members
        position += 1


def loglik_choice(scores: LabelScores) -> int:
    totals = scores.totals
    return max(range(len(totals)), key=totals.__getitem__)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, stop: list[str],
             do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
             seed: int | None = None, **routing) -> list[str]:
    """Continue each prompt (one left-padded batch); cut each output at its first stop string.
    Greedy decoding runs `greedy_decode`; sampling runs transformers' generate, and with a seed
    reseeds torch's generators first, so the same call gives the same text."""
    device = next(model.parameters()).device
    stop_ids = stop_token_ids(tokenizer, stop)
    if not do_sample:
        texts = greedy_decode(model, tokenizer, prompts, max_new_tokens, stop_ids, stop, **routing)
        return [cut_at_stop(text, stop) for text in texts]
    if seed is not None:
        torch.manual_seed(seed)  # every device's generator
    input_ids, attention, _ = (t.to(device) for t in left_pad(prompts, tokenizer.pad_token_id))
    kwargs = {"do_sample": True, "temperature": temperature, "top_p": top_p}
    if stop:
        from transformers import StoppingCriteriaList

        kwargs["stopping_criteria"] = StoppingCriteriaList([StopOnText(tokenizer, stop, input_ids.shape[1])])
    output = model.generate(
        input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=stop_ids, **kwargs, **routing,
    )
    texts = tokenizer.batch_decode(output[:, input_ids.shape[1]:], skip_special_tokens=True)
    return [cut_at_stop(text, stop) for text in texts]


def stop_token_ids(tokenizer, stop: list[str]) -> list[int]:
    """End-of-text, and each stop string that is one token: those stop a row like end-of-text.
    A stop string the model spells over several tokens ("\n" "\n" for "\n\n") is caught by
    StopOnText, which decodes only each row's last few tokens (transformers' stop_strings matcher
    costs about a third of a CPU decoding step)."""
    ids = [tokenizer.eos_token_id]
    for s in stop:
        encoded = tokenizer(s, add_special_tokens=False)["input_ids"]
        if len(encoded) == 1:
            ids.append(encoded[0])
    return ids


@torch.no_grad()
def greedy_decode(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, stop_ids: list[int],
                  stop: list[str], **routing) -> list[str]:
    """Greedy continuation of a left-padded batch that drops each row as it stops, so a batch
    costs the tokens its rows write, not its longest row times its size (what transformers'
    generate spends). A row stops at a stop token (kept, as generate keeps it; decoding skips
    special tokens) or once its text holds a stop string; the texts are not yet cut at stops."""
    device = next(model.parameters()).device
    input_ids, attention, positions = (t.to(device) for t in left_pad(prompts, tokenizer.pad_token_id))
    names = routing.get("adapter_names")
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True,
                logits_to_keep=1, **routing)
    cache, position = out.past_key_values, positions[:, -1:]
    rows = list(range(len(prompts)))  # the batch's row of each live position
    written: list[list[int]] = [[] for _ in prompts]
    stopper = StopOnText(tokenizer, stop, 0) if stop else None
    for step in range(max_new_tokens):
        tokens = out.logits[:, -1].argmax(-1)
        live = []
        for i, (row, token) in enumerate(zip(rows, tokens.tolist(), strict=True)):
            written[row].append(token)
            if token not in stop_ids and not (stopper and stopper.holds_stop(written[row])):
                live.append(i)
        if not live or step == max_new_tokens - 1:
            break
        if len(live) < len(rows):  # drop the rows that stopped, from the cache too
            keep = torch.tensor(live, device=device)
            for layer in cache.layers:
                layer.batch_select_indices(keep)
            rows, tokens, attention, position = ([rows[i] for i in live], tokens[keep], attention[keep],
                                                 position[keep])
            if names is not None:
                names = [names[i] for i in live]
        attention = torch.cat([attention, attention.new_ones(len(rows), 1)], 1)
        position = position + 1
        out = model(input_ids=tokens[:, None], attention_mask=attention, position_ids=position,
                    past_key_values=cache, use_cache=True,
                    **({"adapter_names": names} if names is not None else {}))
    return tokenizer.batch_decode(written, skip_special_tokens=True)


class StopOnText:
    """Per row: stop once the generated text holds a stop string (checked on the last tokens only,
    enough to hold the longest stop string, so each step costs a few short decodes)."""

    def __init__(self, tokenizer, stop: list[str], prompt_length: int):
        self.tokenizer, self.stop, self.prompt_length = tokenizer, list(stop), prompt_length
        self.window = max(len(s) for s in stop) + 2  # a token decodes to at least one character, mostly

    def holds_stop(self, tokens: list[int]) -> bool:
        """Whether one row's written tokens end in text holding a stop string."""
        tail = self.tokenizer.decode(tokens[-self.window:], skip_special_tokens=True)
        return any(s in tail for s in self.stop)

    def __call__(self, input_ids: torch.Tensor, scores=None, **kwargs) -> torch.Tensor:
        tails = self.tokenizer.batch_decode(input_ids[:, max(self.prompt_length, input_ids.shape[1] - self.window):],
                                            skip_special_tokens=True)
        return torch.tensor([any(s in tail for s in self.stop) for tail in tails], device=input_ids.device)


def cut_at_stop(text: str, stop: list[str]) -> str:
    cut = len(text)
    for s in stop:
        index = text.find(s)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]
