"""Decoding for evaluation: label scoring with constrained choice, and batched greedy generation.

Label scoring runs the prompt once (left-padded batch, explicit position ids so padding never
changes a result), then feeds each label's tokens on a copy of the prompt's KV cache, only as far
as a decision can need them: single-token labels need no second pass at all, and end-of-text after
a label is scored only where that label is a prefix of another. From the per-token
log-probabilities it derives both decisions the study uses:
- constrained choice: greedy token by token among the label strings, as vLLM's guided choice;
- log-likelihood ranking: the label with the highest total log-probability.

Greedy generation is continuously batched (`greedy_decode`): rows leave the batch as they stop
and the next prompts join it. Label scoring and greedy generation both take a `SharedPrefix`: the
tokens all of a task's prompts start with (its instruction), run once per adapter; each row then
runs only its own tokens.

Every model call passes on `routing` keywords (`adapter_names`, one adapter per row), so a batch
can hold several adapters' rows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from latent_traits.model.transformers_shims import (
    RoomyLayer,
    cache_keyword,
    make_roomy,
    returned_cache,
)


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
                 eos_id: int, prefix: SharedPrefix | None = None,
                 adapter_names: list[str] | None = None) -> list[LabelScores]:
    device = next(model.parameters()).device
    with_eos = needs_eos(label_tokens)
    # the tokens each label's pass feeds: its own but the last (whose log p the step before gives),
    # plus the last where end-of-text after it counts; a single-token label without that: none
    feeds = [tokens if eos else tokens[:-1] for tokens, eos in zip(label_tokens, with_eos, strict=True)]
    out, attention, positions = prompt_pass(model, prompts, pad_id, prefix, adapter_names, use_cache=any(feeds))
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
            **{cache_keyword(model): copy.deepcopy(returned_cache(out))}, use_cache=True,
            **routing_keywords(adapter_names),
        )
        lps = torch.log_softmax(step.logits.float(), dim=-1)  # (batch, k, vocab)
        for b in range(batch):
            token_lps[b][j] += [float(lps[b, i - 1, tokens[i]]) for i in range(1, len(tokens))]
            if with_eos[j]:
                eos_lps[b][j] = float(lps[b, len(tokens) - 1, eos_id])
    return [LabelScores(token_lps[b], eos_lps[b]) for b in range(batch)]


def common_prefix_length(prompts: list[list[int]]) -> int:
    """How many leading tokens every prompt shares, leaving each at least one of its own."""
    if not prompts:
        return 0
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


class SharedPrefix:
    """Tokens every prompt starts with (a task's instruction), run once per adapter: a batch's
    rows start from their adapter's copy of its KV cache and run only their own tokens."""

    @torch.no_grad()
    def __init__(self, model, ids: list[int], names: list[str] | None):
        self.device = next(model.parameters()).device
        self.ids, self.names = list(ids), sorted(set(names)) if names else None
        rows = len(self.names) if self.names else 1
        out = model(input_ids=torch.tensor([self.ids] * rows, device=self.device), use_cache=True, logits_to_keep=1,
                    **routing_keywords(self.names))
        self.cache = returned_cache(out)

    @property
    def length(self) -> int:
        return len(self.ids)

    def suffixes(self, prompts: list[list[int]]) -> list[list[int]]:
        """Each prompt's own tokens after the prefix (at least one each, else a clear error)."""
        for prompt in prompts:
            if prompt[:self.length] != self.ids or len(prompt) == self.length:
                raise ValueError("a prompt that does not continue the shared prefix (it must start with the "
                                 "prefix's tokens and hold at least one more)")
        return [p[self.length:] for p in prompts]

    def cache_for(self, names: list[str] | None, rows: int):
        """A KV cache for a batch of `rows` rows (routed by `names`), each its adapter's prefix."""
        if (self.names is None) != (names is None):
            raise ValueError("the shared prefix was run " + ("without" if self.names is None else "with")
                             + " adapter routing, and this batch is " + ("" if names is not None else "not ")
                             + "routed: build the prefix with the batch's adapter names")
        index = torch.tensor([self.names.index(n) for n in names] if names else [0] * rows, device=self.device)
        cache = copy.copy(self.cache)  # new layer objects: selecting rows gathers new tensors, so the
        cache.layers = [copy.copy(layer) for layer in self.cache.layers]  # prefix's own stay as they are
        for layer in cache.layers:
            layer.batch_select_indices(index)
        return cache


def prompt_pass(model, prompts: list[list[int]], pad_id: int, prefix: SharedPrefix | None,
                names: list[str] | None, use_cache: bool):
    """Run a left-padded batch of prompts, after the shared prefix's cache where there is one:
    (model output with next-token logits only, attention mask, position ids), the mask and
    positions covering the prefix too."""
    device = next(model.parameters()).device
    own = prefix.suffixes(prompts) if prefix else prompts
    input_ids, attention, positions = (t.to(device) for t in left_pad(own, pad_id))
    cache = None
    if prefix is not None:
        cache = prefix.cache_for(names, len(prompts))
        attention = torch.cat([attention.new_ones(len(prompts), prefix.length), attention], 1)
        positions = positions + prefix.length
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, **{cache_keyword(model): cache},
                use_cache=use_cache or cache is not None, logits_to_keep=1, **routing_keywords(names))
    return out, attention, positions


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


@dataclass(frozen=True)
class Sampling:
    """Sampled generation's settings; decoding without them is greedy."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None  # reseeds torch's generators first: the same call gives the same text


@dataclass(frozen=True)
class Batching:
    """How greedy decoding batches rows (see greedy_decode)."""

    batch_size: int | None = None
    passes: list[list[int]] | None = None
    max_rows: int | None = None


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, stop: list[str],
             sampling: Sampling | None = None, batching: Batching = Batching(), prefix: SharedPrefix | None = None,
             on_row_done=None, **routing) -> list[str]:
    """Continue each prompt; cut each output at its first stop string.
    Greedy decoding (no `sampling`) runs `greedy_decode` with `batching`, after `prefix` where one
    is given (every prompt starts with its tokens). Sampling runs transformers' generate on the
    prompts as one left-padded batch."""
    stop_ids = stop_token_ids(tokenizer, stop)
    if sampling is None:
        texts = greedy_decode(model, tokenizer, prompts, max_new_tokens, stop_ids, stop,
                              batch_size=batching.batch_size, on_row_done=on_row_done, prefix=prefix,
                              passes=batching.passes, max_rows=batching.max_rows, **routing)
        return [cut_at_stop(text, stop) for text in texts]
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)  # every device's generator
    device = next(model.parameters()).device
    input_ids, attention, _ = (t.to(device) for t in left_pad(prompts, tokenizer.pad_token_id))
    kwargs = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p}
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
                  stop: list[str], batch_size: int | None = None, on_row_done=None,
                  adapter_names: list[str] | None = None, prefix: SharedPrefix | None = None,
                  passes: list[list[int]] | None = None, max_rows: int | None = None) -> list[str]:
    """Greedy continuation with continuous batching: at most `max_rows` rows decode together
    (default `batch_size`, else all); each row leaves the batch and its KV cache as it stops, and
    once the next prompt pass fits (or a quarter of the rows are free) it runs and its rows join.
    Unlike batches run one after another (each as long as its longest row, with ever fewer rows),
    the batch stays full; a step costs nearly as much with a few rows as with many wherever reading
    the weights bounds it (a GPU, or a CPU at a few rows).
    Prompt passes: `passes` (lists of indices into `prompts`, each index once, in the order they
    run; a pass larger than the free rows runs in parts), else the prompts in the order given, as
    many as are free at a time. Where the model's cache cannot take joining rows (sliding-window,
    quantized), each pass's rows decode until all have stopped, and a pass then takes up to
    `batch_size` rows across the given passes. A row stops at a stop token (kept, as generate keeps
    it; decoding skips special tokens), once its text holds a stop string, or at max_new_tokens;
    the texts are not yet cut at stops."""
    if max_new_tokens < 1 or not prompts:
        return [""] * len(prompts)
    if passes is None:
        pending = [list(range(len(prompts)))]
    else:
        pending = [list(p) for p in passes if p]
        if sorted(i for p in pending for i in p) != list(range(len(prompts))):
            raise ValueError("passes must hold the index of every prompt exactly once")
    pass_rows = batch_size or max(map(len, pending))
    max_rows = max_rows or batch_size or len(prompts)
    refill_at = max(1, max_rows // 4)
    room = min(max_new_tokens, RoomyLayer.ROOM)  # a row feeds at most max_new_tokens - 1 tokens
    written: list[list[int]] = [[] for _ in prompts]
    stopper = StopOnText(tokenizer, stop, 0) if stop else None
    live: LiveRows | None = None
    joins = True  # whether the model's cache takes joining rows (known after the first pass)

    def stopped(row: int) -> bool:
        tokens = written[row]
        return (tokens[-1] in stop_ids or len(tokens) >= max_new_tokens
                or bool(stopper and stopper.holds_stop(tokens)))

    while pending or live is not None:
        free = max_rows - (len(live.rows) if live else 0)
        if pending and (live is None or (free >= min(refill_at, len(pending[0])) and live.can_join)):
            # new rows: their prompts run; the running rows wait a pass with their next token
            if joins:
                joining, pending[0] = pending[0][:free], pending[0][free:]
            else:  # no pool to fill: one pass of up to batch_size rows, across the given passes
                rows = [i for p in pending for i in p]
                take = min(free, pass_rows)
                joining, pending = rows[:take], [rows[take:]]
            pending = [p for p in pending if p]
            advanced = LiveRows.prefill(model, prompts, joining, tokenizer.pad_token_id, adapter_names, prefix, room)
            joins = advanced.can_join
        else:
            advanced, live = live.step(model), None
        for row, token in zip(advanced.rows, advanced.tokens.tolist(), strict=True):
            written[row].append(token)
        done = [i for i, row in enumerate(advanced.rows) if stopped(row)]
        if on_row_done:
            for _ in done:
                on_row_done()
        advanced = advanced.without(done)
        live = advanced if live is None else live.merge(advanced)
    return tokenizer.batch_decode(written, skip_special_tokens=True)


class LiveRows:
    """Rows decoding together: their KV cache (each row's padding before its own tokens, after any
    shared prefix), attention mask, last positions, the next token each feeds, and the adapter each
    is routed through (None: no routing)."""

    def __init__(self, rows, cache, attention, position, tokens, names):
        self.rows, self.cache, self.attention, self.position, self.tokens, self.names = (
            rows, cache, attention, position, tokens, names)

    @classmethod
    def prefill(cls, model, prompts, rows: list[int], pad_id: int, adapter_names, prefix=None,
                room: int = 64) -> LiveRows:
        """The rows' prompt pass; where the cache's layers are plain dynamic ones, they become
        RoomyLayers with `room` tokens of room (and the rows can join others)."""
        names = None if adapter_names is None else [adapter_names[r] for r in rows]
        out, attention, positions = prompt_pass(model, [prompts[r] for r in rows], pad_id, prefix, names,
                                                use_cache=True)
        cache = returned_cache(out)
        make_roomy(cache, room)
        return cls(list(rows), cache, attention, positions[:, -1:], out.logits[:, -1].argmax(-1), names)

    def step(self, model) -> LiveRows:
        """Feed each row's next token; the rows with the token after it."""
        attention = torch.cat([self.attention, self.attention.new_ones(len(self.rows), 1)], 1)
        position = self.position + 1
        out = model(input_ids=self.tokens[:, None], attention_mask=attention, position_ids=position,
                    **{cache_keyword(model): self.cache}, use_cache=True, **routing_keywords(self.names))
        return LiveRows(self.rows, self.cache, attention, position, out.logits[:, -1].argmax(-1), self.names)

    def without(self, drop: list[int]) -> LiveRows | None:
        if not drop:
            return self
        dropped = set(drop)
        keep = [i for i in range(len(self.rows)) if i not in dropped]
        if not keep:
            return None
        index = torch.tensor(keep, device=self.tokens.device)
        for layer in self.cache.layers:
            layer.batch_select_indices(index)
        return LiveRows([self.rows[i] for i in keep], self.cache, self.attention[index], self.position[index],
                        self.tokens[index], None if self.names is None else [self.names[i] for i in keep])

    @property
    def can_join(self) -> bool:
        """Whether other rows can join these: their cache's layers are RoomyLayers (plain dynamic
        layers made roomy by `prefill`; a sliding-window or quantized cache holds more than keys
        and values)."""
        return all(type(layer) is RoomyLayer for layer in self.cache.layers)

    def merge(self, other: LiveRows | None) -> LiveRows:
        """One batch of both: caches and masks left-padded to a common length; columns no row
        attends to any more are dropped from the front."""
        if other is None:
            return self
        width = max(self.attention.shape[1], other.attention.shape[1])
        attention = torch.cat([zeros_before(self.attention, 1, width), zeros_before(other.attention, 1, width)], 0)
        first = int(attention.any(0).nonzero()[0])  # the first column any row attends to
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.join(theirs, width, first)
        names = None if self.names is None else self.names + other.names
        return LiveRows(self.rows + other.rows, self.cache, attention[:, first:],
                        torch.cat([self.position, other.position]), torch.cat([self.tokens, other.tokens]), names)


def zeros_before(t: torch.Tensor, dim: int, width: int) -> torch.Tensor:
    """Zeros before t's entries along `dim`, to `width`."""
    return torch.nn.functional.pad(t, (0, 0) * (t.dim() - 1 - dim) + (width - t.shape[dim], 0))


def routing_keywords(names: list[str] | None) -> dict:
    return {} if names is None else {"adapter_names": names}


class StopOnText:
    """Per row: stop once the generated text holds a stop string (checked on the last tokens only,
    enough to hold the longest stop string, so each step costs a few short decodes)."""

    def __init__(self, tokenizer, stop: list[str], prompt_length: int):
        self.tokenizer, self.stop, self.prompt_length = tokenizer, list(stop), prompt_length
        self.window = max(len(s) for s in stop) + 2  # a token decodes to at least one character, mostly

    def holds_stop(self, tokens: list[int]) -> bool:
        """Whether one row's written tokens end in text holding a stop string."""
        return self.in_text(self.tokenizer.decode(tokens[-self.window:], skip_special_tokens=True))

    def __call__(self, input_ids: torch.Tensor, scores=None, **kwargs) -> torch.Tensor:
        tails = self.tokenizer.batch_decode(input_ids[:, max(self.prompt_length, input_ids.shape[1] - self.window):],
                                            skip_special_tokens=True)
        return torch.tensor([self.in_text(tail) for tail in tails], device=input_ids.device)

    def in_text(self, text: str) -> bool:
        return any(s in text for s in self.stop)


def cut_at_stop(text: str, stop: list[str]) -> str:
    cut = len(text)
    for s in stop:
        index = text.find(s)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]
