"""Batches of encoded training examples: right-padded rows, or padding-free rows (a batch's
examples end to end, position ids restarting per example), and the counts a batch holds."""

from __future__ import annotations

from typing import Any

import torch

from latent_traits.contracts import IGNORE_INDEX


def collate_right_padded(batch: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(b["input_ids"]) for b in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        n = len(item["input_ids"])
        input_ids[row, :n] = torch.tensor(item["input_ids"])
        labels[row, :n] = torch.tensor(item["labels"])
        attention[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def collate_padding_free(batch: list[dict[str, list[int]]]) -> dict[str, Any]:
    """One row of the batch's examples end to end: position ids restart per example, and each
    example's first label is ignored (in a padded row no position predicts it; here the previous
    example's last token would)."""
    lengths = [len(item["input_ids"]) for item in batch]
    input_ids = torch.tensor([t for item in batch for t in item["input_ids"]], dtype=torch.long)
    labels = torch.tensor([t for item in batch for t in item["labels"]], dtype=torch.long)
    starts = torch.tensor([0, *lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    labels[starts[:-1].long()] = IGNORE_INDEX
    positions = torch.cat([torch.arange(n) for n in lengths])
    return {"input_ids": input_ids[None], "labels": labels[None], "position_ids": positions[None],
            "cu_seq_lens_q": starts, "cu_seq_lens_k": starts,
            "max_length_q": max(lengths), "max_length_k": max(lengths)}


def batch_tokens(batch: dict[str, Any]) -> int:
    """Real (non-padding) tokens of a training batch."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())


def batch_examples(batch: dict[str, Any]) -> int:
    """Examples in a training batch: its rows, or a padding-free row's segments."""
    bounds = batch.get("cu_seq_lens_q")
    return len(bounds) - 1 if bounds is not None else int(batch["input_ids"].shape[0])
