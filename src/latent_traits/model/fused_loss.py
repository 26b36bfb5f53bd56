"""The causal-LM loss without the full logits tensor.

The standard path materialises fp32 logits for every position (batch x length x vocabulary:
~280 MB for 8 x 177 tokens of a 49k vocabulary), then log_softmax, its backward and a zero-filled
gradient of the same size: on a CPU about a tenth of a LoRA step and most of its peak memory.
Here only the positions that carry a label are projected, a chunk at a time, and the gradient
with respect to the hidden states is formed in the same pass (softmax minus one-hot, times the
head), so no chunk's logits outlive it. The loss equals transformers' mean cross-entropy over
labelled next-token positions.
"""

from __future__ import annotations

from typing import Any

import torch

from latent_traits.contracts import IGNORE_INDEX

SEGMENT_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")  # padding-free batches
# model types whose forward is `logits = lm_head(hidden_states)` with nothing after it (no
# soft-capping or logit scaling), so the fused loss computes exactly what their forward does
PLAIN_HEAD_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk_tokens: int) -> torch.Tensor:
        positions = (targets != IGNORE_INDEX).nonzero().squeeze(1)
        h, y = hidden.index_select(0, positions), targets.index_select(0, positions)
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if weight.requires_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, len(y), chunk_tokens):
            hc, yc = h[start:start + chunk_tokens], y[start:start + chunk_tokens]
            logits = (hc @ weight.T).float()
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, yc[:, None]).squeeze(1)).sum()
            # d(sum of losses)/d(logits) = softmax - one-hot, formed in place in the logits buffer
            probs = logits.sub_(lse[:, None]).exp_()
            probs[torch.arange(len(yc), device=yc.device), yc] -= 1.0
            grad_logits = probs.to(hc.dtype)
            grad_h[start:start + chunk_tokens] = grad_logits @ weight
            if grad_w is not None:
                grad_w += (grad_logits.T @ hc).float()
        n_labelled = len(y)
        ctx.save_for_backward(positions, grad_h, *(() if grad_w is None else (grad_w,)))
        ctx.hidden_shape, ctx.n_labelled, ctx.weight_dtype = hidden.shape, n_labelled, weight.dtype
        return total / n_labelled  # 0/0 = NaN with no labelled position, as transformers gives

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        positions, grad_h, *grad_w = ctx.saved_tensors
        scale = grad_loss / ctx.n_labelled
        grad_hidden = grad_h.new_zeros(ctx.hidden_shape)
        grad_hidden.index_copy_(0, positions, grad_h * scale.to(grad_h.dtype))
        grad_weight = (grad_w[0] * scale).to(ctx.weight_dtype) if grad_w else None
        return grad_hidden, grad_weight, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         chunk_tokens: int = 1024) -> torch.Tensor:
    """Mean next-token cross-entropy of `hidden @ weight.T` against `labels` shifted by one
    (positions labelled -100 ignored), as transformers' ForCausalLMLoss computes it."""
    hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    targets = labels[:, 1:].reshape(-1)
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk_tokens)


def fused_loss_unsupported(causal_lm: Any) -> str | None:
    """Why the fused loss cannot stand in for this model's forward; None when it can."""
    model_type = getattr(causal_lm.config, "model_type", None)
    if model_type not in PLAIN_HEAD_MODEL_TYPES:
        return f"model type {model_type!r} is not one of {sorted(PLAIN_HEAD_MODEL_TYPES)}"
    head = causal_lm.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return (f"the output head is a {type(head).__name__}, not a plain bias-free Linear (an adapter or "
                "quantisation on it)")
    if getattr(head.weight, "quant_state", None) is not None:
        return "the output head is quantised"
    return None


def causal_lm_loss(causal_lm: Any, batch: dict[str, torch.Tensor], chunk_tokens: int = 1024) -> torch.Tensor:
    """The loss of `causal_lm(**batch)` from its backbone's hidden states and the fused head."""
    segments = {k: batch[k] for k in ("position_ids", *SEGMENT_KEYS) if k in batch}  # padding-free batches
    hidden = causal_lm.model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                             use_cache=False, **segments).last_hidden_state
    return linear_cross_entropy(hidden, causal_lm.get_output_embeddings().weight, batch["labels"],
                                chunk_tokens)
