"""Padding-free training batches: a batch's examples laid end to end in one row, no pad tokens.

A right-padded batch spends every projection, the head and the loss on pad positions too: with
the study's full-length examples (no input cut) and random batches, 26-60% of the processed
tokens of a source dataset are padding (BENCHMARKS.md). Here the batch is one row of its
examples' tokens, position ids restart at each example, and attention runs per example through
PyTorch's SDPA (causal, no mask: its fastest kernel), so no example attends to another. The loss
and the LoRA gradients equal the padded batch's (same labelled positions, same mean); only the
order of floating-point sums differs.

The segment boundaries travel as transformers' flash-attention keywords (`cu_seq_lens_q`, ...),
so a model loaded with `attn_implementation=flash_attention_2` runs its own variable-length
kernel on the same batches; sdpa and eager models are switched to the per-example SDPA below.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

ATTENTION_NAME = "latent_traits_varlen_sdpa"
# attention implementations that take cu_seq_lens themselves (transformers' flash-attention path)
NATIVE_VARLEN = frozenset({"flash_attention_2", "flash_attention_3", "flash_attention_4"})
SWITCHABLE = frozenset({"sdpa", "eager", ATTENTION_NAME})


def varlen_sdpa_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0,
                          scaling: float | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """Causal attention within each segment of a one-row batch ([1, heads, tokens, dim] in,
    [1, tokens, heads, dim] out, as transformers' attention functions)."""
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None:
        raise RuntimeError(f"{ATTENTION_NAME} needs a padding-free batch (cu_seq_lens_q); this model "
                           "was switched to it for training with data.padding_free=true")
    if query.shape[0] != 1:
        raise RuntimeError(f"{ATTENTION_NAME}: a padding-free batch is one row, got {query.shape[0]}")
    offsets = bounds.tolist()
    parts = [
        F.scaled_dot_product_attention(query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
                                       dropout_p=dropout, is_causal=True,
                                       scale=scaling, enable_gqa=query.shape[1] != key.shape[1])
        for start, end in zip(offsets[:-1], offsets[1:], strict=True)
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION_NAME, varlen_sdpa_attention)


def padding_free_unsupported(causal_lm: Any) -> str | None:
    """Why this model cannot train on padding-free batches; None when it can."""
    implementation = getattr(causal_lm.config, "_attn_implementation", None)
    if implementation in NATIVE_VARLEN or implementation in SWITCHABLE:
        if not hasattr(causal_lm, "set_attn_implementation"):
            return "this transformers version cannot switch a model's attention implementation"
        return None
    return f"attention implementation {implementation!r} takes no segment boundaries"


def enable_padding_free(causal_lm: Any) -> None:
    """Route the model's attention through per-example SDPA (a flash-attention model keeps its own
    variable-length kernel)."""
    if causal_lm.config._attn_implementation not in NATIVE_VARLEN:
        causal_lm.set_attn_implementation(ATTENTION_NAME)
