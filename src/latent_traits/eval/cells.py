"""Run (model, task) cells: predictions in the record's row format, then their metrics.

A cell is one model (the base or an adapter) on one task. `run_cells` decodes several adapters'
cells of one task together: every example once per adapter, length-sorted into shared batches,
each row routed through its own adapter (by `adapter_names`: runner.ResidentModel.use_mixed), so a
resident base model fills its batches across the matrix instead of cell by cell."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm import tqdm

from latent_traits.data.prompts import encode_prompts_within
from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError
from latent_traits.eval.code import SandboxSettings, execute_against_reference, score_code_match
from latent_traits.eval.decoding import (
    Batching,
    Sampling,
    SharedPrefix,
    common_prefix_length,
    constrained_choice,
    generate,
    loglik_choice,
    needs_eos,
    score_labels,
)
from latent_traits.eval.metrics import classification_metrics, code_metrics, numeric_metrics
from latent_traits.eval.scorers import reference_answer, score_numeric

CLASSIFICATION_MODES = {"constrained": constrained_choice, "loglik": None}
MIN_SHARED_PREFIX = 4  # fewer shared tokens (a BOS, a word) are not worth a pass and cache copies


def longest_first(lengths: list[int]) -> list[int]:
    """Indices by length, longest first (ties in order): neighbours waste little padding."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def padding_aware_cuts(lengths: list[int], max_rows: int, pass_cost: int) -> list[int]:
    """Where to cut rows ordered longest first into prompt passes of at most `max_rows` rows, so
    that the passes compute the fewest tokens: each pass costs its rows times its longest row
    (padding included) plus `pass_cost`, a pass's fixed cost counted in tokens. Returns the start
    of each pass and then len(lengths). Exact, by dynamic programming over the cut points."""
    n, width = len(lengths), np.asarray(lengths, dtype=np.int64)
    best, start = np.zeros(n + 1, dtype=np.int64), np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):  # the cheapest cost of the first `end` rows: its last pass starts at `first`
        first = np.arange(max(0, end - max_rows), end)
        costs = best[first] + pass_cost + (end - first) * width[first]
        k = int(costs.argmin())
        best[end], start[end] = costs[k], first[k]
    cuts = [n]
    while cuts[-1] > 0:
        cuts.append(int(start[cuts[-1]]))
    return cuts[::-1]


class Rows:
    """The rows of one task decoded for several adapters at once: entry k is (adapter index,
    example index), adapter-major; `order` is the entries longest prompt first, `batches` cut it
    into batch_size pieces (a fixed partition: sampling seeds each), and `passes` cuts it where
    padding would cost more than another pass (neighbours in `order` waste little padding, but a
    long tail of lengths puts many pads in the first batches)."""

    def __init__(self, adapters: list[str | None], prompts: list[list[int]], batch_size: int):
        self.adapters, self.prompts, self.batch_size = adapters, prompts, batch_size
        self.entries = [(a, i) for a in range(len(adapters)) for i in range(len(prompts))]
        self.lengths = [len(prompts[i]) for _, i in self.entries]  # each entry's prompt tokens
        self.order = longest_first(self.lengths)
        self.batches = [self.order[i:i + batch_size] for i in range(0, len(self.order), batch_size)]
        self.rows: list[list[dict[str, Any] | None]] = [[None] * len(prompts) for _ in adapters]

    def passes(self, pass_cost: int | None) -> list[list[int]]:
        """`order` cut into prompt passes of at most batch_size rows (padding_aware_cuts; None:
        every batch_size rows), each a list of positions in `order`."""
        if pass_cost is None:
            cuts = [*range(0, len(self.order), self.batch_size), len(self.order)]
        else:
            cuts = padding_aware_cuts([self.lengths[k] for k in self.order], self.batch_size, pass_cost)
        # within a pass, one adapter's rows together (entries are adapter-major): stacked LoRA runs
        # each adapter's rows through its own rank block alone
        return [sorted(range(first, end), key=self.order.__getitem__)
                for first, end in zip(cuts[:-1], cuts[1:], strict=True)]

    @property
    def routed(self) -> list[str] | None:
        """The adapters rows are routed to by name; None for one cell on the active model."""
        return None if self.adapters == [None] else self.adapters  # type: ignore[return-value]

    def batch(self, batch: list[int]) -> tuple[list[list[int]], dict[str, Any]]:
        """A batch's prompts, and the model keywords that route each row to its adapter."""
        prompts = [self.prompts[self.entries[k][1]] for k in batch]
        if self.routed is None:
            return prompts, {}
        return prompts, {"adapter_names": [self.adapters[self.entries[k][0]] for k in batch]}

    def put(self, k: int, row: dict[str, Any]) -> None:
        a, i = self.entries[k]
        self.rows[a][i] = row


def run_classification(model, tokenizer, spec: TaskSpec, examples: list[dict], table: Rows, mode: str,
                       progress: Callable, prefix: SharedPrefix | None = None, pass_cost: int | None = None) -> None:
    if mode not in CLASSIFICATION_MODES:
        raise LatentTraitsError(f"eval.decoding.classification={mode!r}: use constrained or loglik")
    labels = list(spec.labels)
    label_tokens = [tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
    if pass_cost is not None:  # a batch also runs a pass for each label that feeds tokens
        pass_cost *= 1 + sum(eos or len(t) > 1 for t, eos in zip(label_tokens, needs_eos(label_tokens), strict=True))
    for batch in progress([[table.order[p] for p in positions] for positions in table.passes(pass_cost)]):
        prompts, routing = table.batch(batch)
        scores = score_labels(model, prompts, label_tokens, tokenizer.pad_token_id, tokenizer.eos_token_id,
                              prefix=prefix, **routing)
        for k, s in zip(batch, scores, strict=True):
            chosen = labels[constrained_choice(label_tokens, s) if mode == "constrained" else loglik_choice(s)]
            table.put(k, classification_row(examples[table.entries[k][1]], chosen,
                                            len(label_tokens[labels.index(chosen)]),
                                            dict(zip(labels, (round(t, 5) for t in s.totals), strict=True))))


def classification_row(example: dict, chosen: str, output_tokens: int,
                       label_scores: dict[str, float] | None) -> dict[str, Any]:
    """One classification prediction row (every backend writes these); label_scores are the
    labels' log-probabilities where the backend computed them, else None."""
    return {
        "id": example["id"], "reference": example["label"], "raw_output": chosen, "parsed": chosen,
        "correct": chosen == example["label"], "output_chars": len(chosen), "output_tokens": output_tokens,
        "label_scores": label_scores,
    }


def generation_row(spec: TaskSpec, example: dict, text: str, tokenizer, code: dict[str, Any] | None) -> dict[str, Any]:
    """One generation prediction row (every backend writes these): scored, with its lengths."""
    return {
        "id": example["id"], "raw_output": text, **score_generation(spec, example, text, code),
        "output_chars": len(text), "output_tokens": len(tokenizer(text, add_special_tokens=False)["input_ids"]),
    }


def max_new_tokens(spec: TaskSpec, decoding: dict[str, Any]) -> int:
    """The task's max_new_tokens, capped by eval.decoding.max_new_tokens_cap where set."""
    cap = decoding.get("max_new_tokens_cap")
    return min(spec.max_new_tokens, cap) if cap else spec.max_new_tokens


UNTIL = ("stop", "end_of_text")


def until_end_of_text(decoding: dict[str, Any]) -> bool:
    until = decoding.get("until", "stop")
    if until not in UNTIL:
        raise LatentTraitsError(f"eval.decoding.until={until!r} is not one of {UNTIL}")
    return until == "end_of_text"


def generation_stop(spec: TaskSpec, decoding: dict[str, Any]) -> list[str]:
    """The stop strings of a generation task's rows: the task's, or none with until=end_of_text."""
    return [] if until_end_of_text(decoding) else list(spec.stop)


def generation_room(spec: TaskSpec, decoding: dict[str, Any], prompt_length: int,
                    model_context: int | None = None) -> int:
    """New tokens a row of `prompt_length` prompt tokens may write. until=stop (the default): the
    task's max_new_tokens (capped). until=end_of_text (the study's: one sample up to the context
    length): whatever eval.decoding.context_length (and the model's own context) leaves after
    the prompt."""
    if not until_end_of_text(decoding):
        return max_new_tokens(spec, decoding)
    context = min(int(decoding.get("context_length") or 0), model_context or float("inf"))
    if context - prompt_length < 1:
        raise LatentTraitsError(
            f"task {spec.name!r}: a prompt of {prompt_length} tokens leaves no room within "
            f"eval.decoding.context_length={decoding.get('context_length')} (the model's context: "
            f"{model_context}); raise it or lower data.max_input_tokens")
    return int(context - prompt_length)


def context_length_of(model) -> int | None:
    """The model's context length in tokens (its config's max_position_embeddings), if it says."""
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def answer_reserve(spec: TaskSpec, decoding: dict[str, Any]) -> int:
    """Tokens a prompt must leave free in the model's context: the task's answer length."""
    return spec.max_new_tokens if until_end_of_text(decoding) else max_new_tokens(spec, decoding)


def score_generation(spec: TaskSpec, example: dict, text: str, code: dict[str, Any] | None) -> dict[str, Any]:
    """The scorer-specific fields of one generation row (reference, parsed, correct, ...)."""
    if spec.scorer == "code_match":
        reference = example.get("target", "")
        scored = score_code_match(text, reference, question=example.get("input", ""))
        row = {"reference": reference, "parsed": scored["code"], "correct": scored["correct"],
               "parses": scored["parses"], "required_names": scored["required_names"],
               "missing_names": scored["missing_names"],
               "name_recall": scored["name_recall"]}
        if code and code.get("execution") == "sandboxed":
            row.update(execute_against_reference(scored["code"], example, SandboxSettings.from_config(code["sandbox"])))
        return row
    reference = reference_answer(example, spec.answer_forms)
    scored = score_numeric(text, reference, spec.answer_forms)
    return {"reference": reference, "parsed": scored["flexible"], "parsed_strict": scored["strict"],
            "correct": scored["flexible_correct"], "strict_correct": scored["strict_correct"],
            "flexible_correct": scored["flexible_correct"]}


def run_generation(model, tokenizer, spec: TaskSpec, examples: list[dict], table: Rows,
                   decoding: dict[str, Any], progress: Callable, code: dict[str, Any] | None = None,
                   prefix: SharedPrefix | None = None, pass_cost: int | None = None,
                   decode_rows: int | None = None) -> None:
    seed, sampled = decoding.get("seed"), bool(decoding.get("do_sample", False))
    if seed is not None and table.adapters != [None]:
        raise LatentTraitsError("sampled cells are decoded one cell at a time (their seeds are per cell)")
    longest = max((len(p) for p in table.prompts), default=0)  # one generate call serves every row
    limits = {"max_new_tokens": generation_room(spec, decoding, longest, context_length_of(model)),
              "stop": generation_stop(spec, decoding)}
    if sampled:  # one generate call per batch, seeded per batch: batches are a fixed partition
        for b, batch in enumerate(progress(table.batches)):
            prompts, routing = table.batch(batch)
            sampling = Sampling(float(decoding.get("temperature", 1.0)), float(decoding.get("top_p", 1.0)),
                                None if seed is None else int(seed) + b)
            outputs = generate(model, tokenizer, prompts, sampling=sampling, **limits, **routing)
            for k, text in zip(batch, outputs, strict=True):
                table.put(k, generation_row(spec, examples[table.entries[k][1]], text, tokenizer, code))
        return
    prompts, routing = table.batch(table.order)
    with progress(None, total=len(table.order)) as bar:  # greedy: one continuously batched call
        batching = Batching(table.batch_size, table.passes(pass_cost), decode_rows)
        outputs = generate(model, tokenizer, prompts, batching=batching, on_row_done=bar.update, prefix=prefix,
                           **limits, **routing)
    for k, text in zip(table.order, outputs, strict=True):
        table.put(k, generation_row(spec, examples[table.entries[k][1]], text, tokenizer, code))


def run_cells(model, tokenizer, spec: TaskSpec, examples: list[dict], adapters: list[str | None], *,
              batch_size: int, max_input_tokens: int | None, decoding: dict[str, Any], desc: str = "",
              code: dict[str, Any] | None = None, share_prefix: bool = True, pass_cost: int | None = None,
              decode_rows: int | None = None) -> list[tuple[list[dict], dict, str, int]]:
    """One task's cells for each of `adapters` (peft adapter names, "__base__" for the base model;
    [None]: the one cell of whatever model is active), decoded in shared batches. Per adapter:
    (prediction rows, metrics, primary metric name, number of invalid outputs).
    `code`: {"execution": "off" | "sandboxed", "sandbox": {...}} for code_match tasks.
    `share_prefix`: the tokens all the task's prompts start with (its instruction) run once per
    adapter, not once per row (greedy decoding and label scoring; sampling runs whole prompts).
    `pass_cost`: a prompt pass's fixed cost in tokens, for cutting passes where padding costs more
    (Rows.passes; None: every batch_size rows). `decode_rows`: rows greedy generation decodes
    together (default batch_size); prompt passes of at most batch_size rows fill that pool."""
    prompts = encode_prompts_within(spec, examples, tokenizer, max_input_tokens,  # room for the answer
                                    context=context_length_of(model),
                                    reserve=answer_reserve(spec, decoding))
    table = Rows(adapters, prompts, batch_size)

    def progress(batches, total=None):
        return tqdm(batches, total=total, desc=desc or spec.name, unit="batch" if total is None else "row",
                    leave=False)

    shared = common_prefix_length(prompts) if share_prefix and not decoding.get("do_sample") else 0
    prefix = SharedPrefix(model, prompts[0][:shared], table.routed) if shared >= MIN_SHARED_PREFIX else None
    if spec.is_classification:
        run_classification(model, tokenizer, spec, examples, table,
                           decoding.get("classification", "constrained"), progress, prefix, pass_cost)
    else:
        run_generation(model, tokenizer, spec, examples, table, decoding, progress, code, prefix, pass_cost,
                       decode_rows)
    return [(rows, *cell_metrics(spec, rows)) for rows in table.rows]  # type: ignore[arg-type]


def run_cell(model, tokenizer, spec: TaskSpec, examples: list[dict], *, batch_size: int,
             max_input_tokens: int | None, decoding: dict[str, Any], desc: str = "",
             code: dict[str, Any] | None = None, share_prefix: bool = True, pass_cost: int | None = None,
             decode_rows: int | None = None) -> tuple[list[dict], dict, str, int]:
    """One cell on the active model: (prediction rows, metrics, primary metric name, number of
    invalid outputs)."""
    return run_cells(model, tokenizer, spec, examples, [None], batch_size=batch_size,
                     max_input_tokens=max_input_tokens, decoding=decoding, desc=desc, code=code,
                     share_prefix=share_prefix, pass_cost=pass_cost, decode_rows=decode_rows)[0]


def cell_metrics(spec: TaskSpec, rows: list[dict[str, Any]]) -> tuple[dict, str, int]:
    """(metrics, primary metric name, number of invalid outputs) of a cell's prediction rows."""
    if spec.is_classification:
        return classification_metrics(rows, list(spec.labels)), "accuracy", 0
    if spec.scorer == "code_match":
        return code_metrics(rows), "code_match", sum(not r["parses"] for r in rows)
    return numeric_metrics(rows), "flexible_extract", sum(r["parsed"] is None for r in rows)
