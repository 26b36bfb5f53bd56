"""Run one (model, task) cell: predictions in the record's row format, then its metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from latent_traits.data.datamodule import encode_prompts_within
from latent_traits.data.spec import TaskSpec
from latent_traits.errors import LatentTraitsError
from latent_traits.eval.code import SandboxSettings, execute_against_reference, score_code_match
from latent_traits.eval.decoding import constrained_choice, generate, loglik_choice, score_labels
from latent_traits.eval.metrics import classification_metrics, code_metrics, numeric_metrics
from latent_traits.eval.scorers import reference_answer, score_numeric

CLASSIFICATION_MODES = {"constrained": constrained_choice, "loglik": None}


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first) to waste little padding."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def run_classification(model, tokenizer, spec: TaskSpec, examples: list[dict], prompts: list[list[int]],
                       batch_size: int, mode: str, progress: Callable) -> list[dict[str, Any]]:
    if mode not in CLASSIFICATION_MODES:
        raise LatentTraitsError(f"eval.decoding.classification={mode!r}: use constrained or loglik")
    labels = list(spec.labels)
    label_tokens = [tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
    rows: list[dict[str, Any] | None] = [None] * len(examples)
    for batch in progress(length_sorted_batches([len(p) for p in prompts], batch_size)):
        scores = score_labels(model, [prompts[i] for i in batch], label_tokens,
                              tokenizer.pad_token_id, tokenizer.eos_token_id)
        for i, s in zip(batch, scores, strict=True):
            chosen = labels[constrained_choice(label_tokens, s) if mode == "constrained" else loglik_choice(s)]
            rows[i] = classification_row(examples[i], chosen, len(label_tokens[labels.index(chosen)]),
                                         dict(zip(labels, (round(t, 5) for t in s.totals), strict=True)))
    return rows  # type: ignore[return-value]


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
    reference = reference_answer(example)
    scored = score_numeric(text, reference)
    return {"reference": reference, "parsed": scored["flexible"], "parsed_strict": scored["strict"],
            "correct": scored["flexible_correct"], "strict_correct": scored["strict_correct"],
            "flexible_correct": scored["flexible_correct"]}


def run_generation(model, tokenizer, spec: TaskSpec, examples: list[dict], prompts: list[list[int]],
                   batch_size: int, decoding: dict[str, Any], progress: Callable,
                   code: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any] | None] = [None] * len(examples)
    seed = decoding.get("seed")
    for b, batch in enumerate(progress(length_sorted_batches([len(p) for p in prompts], batch_size))):
        outputs = generate(
            model, tokenizer, [prompts[i] for i in batch], max_new_tokens=max_new_tokens(spec, decoding),
            stop=list(spec.stop), do_sample=bool(decoding.get("do_sample", False)),
            temperature=float(decoding.get("temperature", 1.0)), top_p=float(decoding.get("top_p", 1.0)),
            seed=None if seed is None else int(seed) + b,  # per batch: batches are a fixed partition
        )
        for i, text in zip(batch, outputs, strict=True):
            rows[i] = generation_row(spec, examples[i], text, tokenizer, code)
    return rows  # type: ignore[return-value]


def run_cell(model, tokenizer, spec: TaskSpec, examples: list[dict], *, batch_size: int,
             max_input_tokens: int | None, decoding: dict[str, Any], desc: str = "",
             code: dict[str, Any] | None = None) -> tuple[list[dict], dict, str, int]:
    """Returns (prediction rows, metrics, primary metric name, number of invalid outputs).
    `code`: {"execution": "off" | "sandboxed", "sandbox": {...}} for code_match tasks."""
    prompts = encode_prompts_within(spec, examples, tokenizer, max_input_tokens,  # room for the answer
                                    context=getattr(getattr(model, "config", None), "max_position_embeddings", None),
                                    reserve=max_new_tokens(spec, decoding))

    def progress(batches):
        return tqdm(batches, desc=desc or spec.name, unit="batch", leave=False)

    if spec.is_classification:
        rows = run_classification(model, tokenizer, spec, examples, prompts, batch_size,
                                  decoding.get("classification", "constrained"), progress)
    else:
        rows = run_generation(model, tokenizer, spec, examples, prompts, batch_size, decoding, progress, code)
    return (rows, *cell_metrics(spec, rows))


def cell_metrics(spec: TaskSpec, rows: list[dict[str, Any]]) -> tuple[dict, str, int]:
    """(metrics, primary metric name, number of invalid outputs) of a cell's prediction rows."""
    if spec.is_classification:
        return classification_metrics(rows, list(spec.labels)), "accuracy", 0
    if spec.scorer == "code_match":
        return code_metrics(rows), "code_match", sum(not r["parses"] for r in rows)
    return numeric_metrics(rows), "flexible_extract", sum(r["parsed"] is None for r in rows)
