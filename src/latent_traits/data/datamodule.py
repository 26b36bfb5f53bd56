"""Tokenise training examples in the study's prompt format and batch them for Lightning."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from latent_traits.contracts import IGNORE_INDEX
from latent_traits.data.collate import collate_padding_free, collate_right_padded
from latent_traits.data.prompts import encode_prompt, fit_prompt
from latent_traits.data.spec import TaskSpec
from latent_traits.errors import ConfigError, LatentTraitsError

log = logging.getLogger(__name__)
# full: prompt + answer (the authors); response: answer + eos; label: the label (classification)
# or the final answer's tokens (generation) only; all_but_label: everything except those tokens
LOSS_SPANS = ("full", "response", "label", "all_but_label")


def encode_target(target: str, tokenizer) -> list[int]:
    """The answer tokenised on its own, then end-of-text: evaluation scores labels the same way."""
    return tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def encode_training_example(
    spec: TaskSpec, example: dict[str, Any], tokenizer, max_length: int,
    max_input_tokens: int | None, loss_span: str,
) -> dict[str, list[int]]:
    if loss_span not in LOSS_SPANS:
        raise LatentTraitsError(f"data.loss_span={loss_span!r} is not one of {LOSS_SPANS}")
    target_ids = encode_target(example["target"], tokenizer)
    # keep the answer and the prompt format whole: shorten the input instead
    prompt_ids = fit_prompt(spec, example["input"], tokenizer, max_input_tokens, max_length - len(target_ids))
    overflow = len(prompt_ids) + len(target_ids) - max_length
    if overflow > 0:  # the format and the answer alone are too long: cut the prompt's tail
        if overflow >= len(prompt_ids):
            target_ids = target_ids[: max_length - 1]
            prompt_ids = prompt_ids[:1]
        else:
            prompt_ids = prompt_ids[: len(prompt_ids) - overflow]
    input_ids = prompt_ids + target_ids
    if loss_span == "full":
        labels = list(input_ids)
    elif loss_span == "response":
        labels = [IGNORE_INDEX] * len(prompt_ids) + target_ids
    else:
        start, end = label_token_span(spec, example, tokenizer)
        start, end = len(prompt_ids) + start, min(len(prompt_ids) + end, len(input_ids))
        in_label = [start <= i < end for i in range(len(input_ids))]
        keep = in_label if loss_span == "label" else [not x for x in in_label]
        labels = [tok if k else IGNORE_INDEX for tok, k in zip(input_ids, keep, strict=True)]
    return {"input_ids": input_ids, "labels": labels}


def label_token_span(spec: TaskSpec, example: dict[str, Any], tokenizer) -> tuple[int, int]:
    """[start, end) of the label inside the target's tokens: the whole label for classification,
    the last occurrence of the answer for generation (the whole answer if it does not occur)."""
    target = example["target"]
    n_target = len(tokenizer(target, add_special_tokens=False)["input_ids"])
    if spec.is_classification:
        return 0, n_target
    answer = str(example.get("answer") or "")
    at = target.rfind(answer) if answer else -1
    if at < 0:
        return 0, n_target
    start = len(tokenizer(target[:at], add_special_tokens=False)["input_ids"]) if at else 0
    end = len(tokenizer(target[: at + len(answer)], add_special_tokens=False)["input_ids"])
    return start, max(end, start + 1)


def pack_examples(encoded: list[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """Concatenate encoded examples (each ending in eos) and cut the stream into max_length blocks.

    Classic packing: attention crosses example boundaries within a block, as TRL's packing=True
    without position resets. The study trained without packing; this trades that for speed."""
    ids = [t for e in encoded for t in e["input_ids"]]
    labels = [t for e in encoded for t in e["labels"]]
    return [{"input_ids": ids[i:i + max_length], "labels": labels[i:i + max_length]}
            for i in range(0, len(ids), max_length)]


class SeededBatchSampler(Sampler[list[int]]):
    """Batches in a seeded order per epoch, optionally grouped by length, that can resume mid-epoch.

    The order of epoch e depends only on (seed, e), so a resumed run sees exactly the batches an
    uninterrupted run would. `consumed` counts batches the model has trained on (advanced by the
    LightningModule, not by the prefetching data fetcher)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = False):
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.group_by_length = group_by_length
        self.epoch, self.consumed, self._skip = 0, 0, 0
        self._started = False
        self.num_replicas, self.rank = 1, 0

    def shard(self, num_replicas: int, rank: int) -> None:
        """Under DDP/FSDP: rank r takes batches r, r + n, ... of each epoch's seeded order (the
        remainder that would leave ranks uneven is dropped), so the ranks together see what one
        process would, batch_size x n examples a step."""
        self.num_replicas, self.rank = num_replicas, rank

    def batches_for_epoch(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        if self.group_by_length:  # sort within shuffled windows, then shuffle the batches
            window = self.batch_size * 32
            order = [i for w in range(0, len(order), window)
                     for i in sorted(order[w:w + window], key=lambda j: -self.lengths[j])]
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.group_by_length:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def __len__(self) -> int:
        return ((len(self.lengths) + self.batch_size - 1) // self.batch_size) // self.num_replicas

    def rank_batches(self, epoch: int) -> list[list[int]]:
        return self.batches_for_epoch(epoch)[self.rank::self.num_replicas][:len(self)]

    def __iter__(self):
        if self._started:  # a fresh pass: the next epoch
            self.epoch += 1
        self._started = True
        skip, self._skip = self._skip, 0
        self.consumed = skip
        yield from self.rank_batches(self.epoch)[skip:]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self._skip = int(state["epoch"]), int(state["consumed"])
        if self._skip >= len(self):  # saved at the end of an epoch: start the next one
            self.epoch, self._skip = self.epoch + 1, 0
        self._started = False


class ResumableDataLoader(DataLoader):
    """A DataLoader whose position Lightning saves in checkpoints (state_dict/load_state_dict)."""

    def state_dict(self) -> dict[str, int]:
        return self.batch_sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.load_state_dict(state)


def answer_tokens(spec: TaskSpec, tokenizer):
    """The tokens an example needs with no input at all: instruction, cue and answer."""
    fixed = len(encode_prompt(spec, "", tokenizer, None))
    return lambda example: fixed + len(encode_target(example["target"], tokenizer))


def fit_answers(spec: TaskSpec, examples: list[dict[str, Any]], tokenizer, max_length: int,
                overlong: str = "refuse") -> tuple[list[dict[str, Any]], int]:
    """Only the input may be cut to fit data.max_length, never the instruction, cue or answer
    (the example would teach nothing). An example whose answer does not fit is refused
    (overlong=refuse) or left out (overlong=drop); returns the examples kept and how many were left out."""
    need = answer_tokens(spec, tokenizer)
    needs = [need(e) for e in examples]
    kept = [e for e, need in zip(examples, needs, strict=True) if need <= max_length]
    if len(kept) == len(examples):
        return examples, 0
    if overlong != "drop" or not kept:
        raise ConfigError(f"data.max_length={max_length} cannot hold task {spec.name}'s instruction, cue and "
                          f"longest answer ({max(needs)} tokens without any input; {len(examples) - len(kept)} of "
                          f"{len(examples)} examples do not fit): use data.max_length={max(needs)} or more (longer "
                          "inputs are then cut to fit), or data.overlong=drop to leave those examples out")
    log.warning("%s: %d of %d training examples left out (data.overlong=drop): their instruction, cue and "
                "answer are longer than data.max_length=%d tokens", spec.name, len(examples) - len(kept),
                len(examples), max_length)
    return kept, len(examples) - len(kept)


class SourceDataModule(L.LightningDataModule):
    def __init__(self, spec: TaskSpec, examples: list[dict[str, Any]], tokenizer, batch_size: int,
                 max_length: int, max_input_tokens: int | None, loss_span: str, seed: int,
                 num_workers: int = 0, group_by_length: bool = False, packing: bool = False,
                 padding_free: bool = False, overlong: str = "refuse"):
        super().__init__()
        # data.overlong: refuse, or drop (self.dropped counts the examples left out)
        examples, self.dropped = fit_answers(spec, examples, tokenizer, max_length, overlong)
        self.spec, self.examples, self.tokenizer = spec, examples, tokenizer
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.padding_free = padding_free  # the model must be switched too: LoRAFineTuner(padding_free=True)
        self.encoded = [
            encode_training_example(spec, e, tokenizer, max_length, max_input_tokens, loss_span)
            for e in examples
        ]
        n_cut = sum(len(encode_prompt(spec, e["input"], tokenizer, max_input_tokens))
                    + len(encode_target(e["target"], tokenizer)) > max_length for e in examples)
        if n_cut:
            log.warning("%s: %d of %d training examples were longer than data.max_length=%d tokens; their "
                        "inputs were shortened to fit (the instruction, cue and answer are kept)",
                        spec.name, n_cut, len(examples), max_length)
        if packing:
            self.encoded = pack_examples(self.encoded, max_length)
        self.sampler = SeededBatchSampler([len(e["input_ids"]) for e in self.encoded], batch_size,
                                          seed, group_by_length)

    @property
    def n_tokens(self) -> int:
        return sum(len(e["input_ids"]) for e in self.encoded)

    def train_dataloader(self) -> DataLoader:
        pad_id = self.tokenizer.pad_token_id
        collate = collate_padding_free if self.padding_free else partial(collate_right_padded, pad_id=pad_id)
        if self.trainer is not None:  # Lightning's DistributedSampler is off: shard the batches here
            self.sampler.shard(self.trainer.world_size, self.trainer.global_rank)
        return ResumableDataLoader(
            self.encoded, batch_sampler=self.sampler,
            collate_fn=collate, num_workers=self.num_workers,
        )
