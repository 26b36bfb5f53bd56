"""Several LoRA adapters in one batch at the cost of one: each row through its own adapter.

peft's mixed adapter batches (`adapter_names`) loop over the adapters in every LoRA module at
every step (an index list, a gather, two products and a scatter each) and re-register a hook on
every module at every forward pass: on a CPU, a decoding step of five adapters' rows costs far
more than one adapter's. Here the group's adapters are stacked once per module: A as one
(sum of ranks x in) matrix, B with each adapter's scaling folded in as one (out x sum of ranks)
matrix. A row's LoRA term is then (x A^T * m) B^T, where m keeps the row's own adapter's rank
block and zeroes the others (all of it for the base model's rows): two plain products per
module, whatever the number of adapters. The extra work is the other adapters' (zeroed) rank
columns, small beside the base weights at LoRA ranks, and only those from the first to the last
adapter a pass uses: a batch of one adapter's rows runs that adapter's rank alone.

The one module that relies on peft's internals (checked against peft 0.21.2, the version
constraints.txt pins): LoRA layers' lora_A / lora_B / scaling / lora_variant / lora_bias, their
class names, and their forward, replaced per instance while a group is active. peft's own mixed
adapter batches stay the oracle and the fallback (`unstackable`): tests/test_multi_lora.py
compares every stacked pass with them.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

import torch

CHECKED_AGAINST = "peft==0.21.2"
BASE_ROW = "__base__"
STACKABLE = frozenset({"Linear", "Linear4bit", "Linear8bitLt"})  # peft's LoRA linear layers


def lora_layers(peft_model) -> list[Any]:
    from peft.tuners.lora import LoraLayer

    return [m for m in peft_model.modules() if isinstance(m, LoraLayer)]


def unstackable(peft_model, names: list[str]) -> str | None:
    """Why these adapters cannot be stacked (then peft's own routing runs); None when they can."""
    for layer in lora_layers(peft_model):
        mine = [n for n in names if n in layer.lora_A]
        if not mine:
            continue
        if type(layer).__name__ not in STACKABLE:
            return f"a LoRA layer of type {type(layer).__name__}"
        if any(n in getattr(layer, "lora_variant", {}) for n in mine):
            return "an adapter with a LoRA variant (DoRA, ...)"
        if any(getattr(layer, "lora_bias", {}).get(n) for n in mine):
            return "an adapter with a LoRA bias"
    return None


class StackedAdapters:
    """While active, every LoRA layer of `peft_model` runs the stacked forward for `names`;
    `route(names_per_row)` sets which adapter each row of the next forward pass uses."""

    def __init__(self, peft_model, names: list[str]):
        self.names = list(names)
        self.layers = [layer for layer in lora_layers(peft_model) if any(n in layer.lora_A for n in names)]
        widths = []
        for layer in self.layers:
            blocks_a, blocks_b, layer_widths = [], [], []
            ref = layer.get_base_layer()
            out_features, in_features = ref.out_features, ref.in_features
            for name in self.names:
                if name in layer.lora_A:
                    a = layer.lora_A[name].weight
                    b = layer.lora_B[name].weight * layer.scaling[name]
                else:  # this adapter does not touch this module: a zero-width block
                    a = layer.lora_A[next(iter(layer.lora_A))].weight.new_zeros(0, in_features)
                    b = a.new_zeros(out_features, 0)
                blocks_a.append(a)
                blocks_b.append(b)
                layer_widths.append(a.shape[0])
            layer._stacked_a = torch.cat(blocks_a, 0).detach()
            layer._stacked_b = torch.cat(blocks_b, 1).detach()
            widths.append(layer_widths)
        self.widths = widths

    def __enter__(self) -> StackedAdapters:
        for layer in self.layers:
            layer.forward = MethodType(stacked_forward, layer)
        return self

    def __exit__(self, *exc) -> None:
        for layer in self.layers:
            del layer.forward  # back to the class's forward
            del layer._stacked_a, layer._stacked_b
            for routing in ("_stacked_mask", "_stacked_span", "_stacked_runs"):  # the last pass's
                layer.__dict__.pop(routing, None)

    def route(self, names_per_row: list[str]) -> None:
        """One adapter per row (BASE_ROW: the base model): the masks for the next pass, over the
        rank columns from the first to the last adapter the pass uses (none for base rows only)."""
        index = {name: i for i, name in enumerate(self.names)}
        unknown = sorted({n for n in names_per_row if n != BASE_ROW and n not in index})
        if unknown:
            raise ValueError(f"rows routed to adapters not in this group: {unknown}")
        rows = [index.get(n, -1) for n in names_per_row]
        used = [r for r in rows if r >= 0]
        runs: list[list[int]] = []  # [first row, end row, adapter]: consecutive rows of one adapter
        for row, adapter in enumerate(rows):
            if adapter >= 0 and runs and runs[-1][1:] == [row, adapter]:
                runs[-1][1] = row + 1
            elif adapter >= 0:
                runs.append([row, row + 1, adapter])
        # per-run products only where each adapter's rows lie together (Rows.passes): else a
        # product per scattered row would cost more than the masked stack saves
        grouped = len(runs) == len({a for _, _, a in runs})
        masks: dict[tuple[int, ...], tuple[slice, torch.Tensor, list | None]] = {}
        for layer, layer_widths in zip(self.layers, self.widths, strict=True):
            key = tuple(layer_widths)
            if key not in masks:  # most layers share one rank layout
                ends = torch.tensor(layer_widths).cumsum(0)
                starts = ends - torch.tensor(layer_widths)
                span = slice(int(starts[min(used)]), int(ends[max(used)])) if used else slice(0, 0)
                col = torch.arange(span.start, span.stop)
                owner = torch.tensor(rows)
                keep = ((col[None] >= starts[owner.clamp(min=0)][:, None])
                        & (col[None] < ends[owner.clamp(min=0)][:, None]) & (owner[:, None] >= 0))
                blocks = ([(first, end, slice(int(starts[a]), int(ends[a]))) for first, end, a in runs
                           if ends[a] > starts[a]] if grouped else None)
                masks[key] = span, keep.to(layer._stacked_a.dtype).to(layer._stacked_a.device)[:, None, :], blocks
            layer._stacked_span, layer._stacked_mask, layer._stacked_runs = masks[key]


def stacked_forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """A LoRA linear layer's forward with the group's adapters stacked (see the module docstring)."""
    kwargs.pop("adapter_names", None)
    result = self.base_layer(x, *args, **kwargs)
    span = self._stacked_span
    if span.stop == span.start:  # no row of this pass uses an adapter that touches this module
        return result
    out, lora_dtype = result.shape[-1], self._stacked_a.dtype
    if (self._stacked_runs is not None and x.dim() == 3 and x.shape[1] > 1 and result.is_contiguous()
            and not torch.is_grad_enabled()):
        # a prompt pass, each adapter's rows together (cells.Rows.passes): each run of rows through
        # its adapter's rank block alone, a quarter of the work at four adapters; written in place
        for first, end, cols in self._stacked_runs:
            h = x[first:end].to(lora_dtype) @ self._stacked_a[cols].T
            if result.dtype == lora_dtype:
                result[first:end].view(-1, out).addmm_(h.reshape(-1, h.shape[-1]), self._stacked_b[:, cols].T)
            else:  # adapter weights in fp32 under a bf16 base (peft's default): summed as peft sums
                result[first:end] = (result[first:end] + h @ self._stacked_b[:, cols].T).to(result.dtype)
        return result
    a, b = self._stacked_a[span], self._stacked_b[:, span]
    h = (x.to(lora_dtype) @ a.T) * self._stacked_mask  # (rows, tokens, ranks), other adapters' zeroed
    if h.dtype != result.dtype:  # summed in the adapter's precision, then cast, as peft does
        return (result + h @ b.T).to(result.dtype)
    # the sum inside the product (one pass over the output, not three): about half the LoRA cost
    return torch.addmm(result.reshape(-1, out), h.reshape(-1, h.shape[-1]), b.T).view(result.shape)


class MixedModel:
    """The peft model as decoding calls it, with rows routed through stacked adapters: a call's
    `adapter_names` (one per row) set the masks, then the underlying causal LM runs (peft's
    per-forward hook registration bypassed)."""

    def __init__(self, peft_model, stacked: StackedAdapters):
        self.peft_model, self.stacked = peft_model, stacked
        self.causal_lm = peft_model.get_base_model()

    def __call__(self, *args, adapter_names: list[str], **kwargs):
        self.stacked.route(adapter_names)
        return self.causal_lm(*args, **kwargs)

    def __getattr__(self, name: str):  # parameters(), config, ...
        return getattr(self.peft_model, name)
