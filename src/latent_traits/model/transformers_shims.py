"""The one module that relies on transformers' internals (checked against transformers
5.25.0, the version constraints.txt pins; tests/test_decoding.py compares each piece with the
public path it replaces):
- `RoomyLayer`, a DynamicLayer (transformers.cache_utils) whose keys and values are views of
  buffers with room to grow: a decoding step writes in place, where DynamicLayer concatenates the
  whole cache every step. It relies on DynamicLayer's attributes (keys, values, is_initialized,
  device) and on which of its methods replace keys and values.
- `cache_keyword` / `returned_cache`: the name a model's forward takes and returns its KV cache
  by (`cache` in releases that renamed `past_key_values`), read from the forward's signature.
- `loaded_commit`: the hub commit a model was loaded from (its config's `_commit_hash`).
"""

from __future__ import annotations

import functools
import inspect

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import DynamicLayer

CHECKED_AGAINST = "transformers==5.25.0"


def make_roomy(cache, room: int) -> None:
    """Where every layer of a returned cache is a plain DynamicLayer holding keys and values,
    make each a RoomyLayer with `room` tokens of room (other caches are left as they are)."""
    if all(type(layer) is DynamicLayer and getattr(layer, "keys", None) is not None for layer in cache.layers):
        cache.layers = [RoomyLayer.holding(layer.keys, layer.values, room) for layer in cache.layers]


class RoomyLayer(DynamicLayer):
    """A dynamic cache layer whose keys and values are views of buffers with room for more
    tokens: a decoding step writes its token in place, where DynamicLayer copies the whole cache
    (torch.cat), a cost that grows with the cache (bench/eval_parts.py). Full, it takes ROOM more."""

    ROOM = 64  # tokens of room at most (fewer where fewer can come)

    @classmethod
    def holding(cls, keys: torch.Tensor, values: torch.Tensor, room: int = ROOM) -> RoomyLayer:
        layer = cls()
        layer.device, layer.is_initialized, layer.room = keys.device, True, max(1, room)
        layer.hold(keys, values)
        return layer

    def hold(self, keys: torch.Tensor, values: torch.Tensor, room: int | None = None) -> None:
        """Take these keys and values, with room for `room` more tokens (default self.room)."""
        length, room = keys.shape[-2], room or self.room
        self._keys = keys.new_empty(*keys.shape[:2], length + room, keys.shape[-1])
        self._values = values.new_empty(*values.shape[:2], length + room, values.shape[-1])
        self._keys[:, :, :length], self._values[:, :, :length] = keys, values
        self.show(length)

    def show(self, length: int) -> None:
        """keys and values: the buffers' first `length` tokens."""
        self.keys, self.values = self._keys[:, :, :length], self._values[:, :, :length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized or self.keys is None:  # after reset()
            self.device, self.is_initialized, self.room = key_states.device, True, getattr(self, "room", self.ROOM)
            self.hold(key_states, value_states)
            return self.keys, self.values
        length, new = self.keys.shape[-2], key_states.shape[-2]
        if length + new > self._keys.shape[-2]:
            self.hold(self.keys, self.values, room=max(new, self.ROOM))
        self._keys[:, :, length:length + new], self._values[:, :, length:length + new] = key_states, value_states
        self.show(length + new)
        return self.keys, self.values

    def join(self, other: RoomyLayer, width: int, drop: int) -> None:
        """Take other's rows after these, in one new buffer: each layer's columns left-padded with
        zeros to `width`, then the first `drop` columns (padding for every row) dropped."""
        length, mine = width - drop, self.keys.shape[0]
        buffers = []
        for a, b in ((self.keys, other.keys), (self.values, other.values)):
            buffer = a.new_empty(mine + b.shape[0], a.shape[1], length + self.room, a.shape[-1])
            for rows, t in ((slice(0, mine), a), (slice(mine, None), b)):
                offset = width - t.shape[-2] - drop  # where t's first column lands
                buffer[rows, :, :max(0, offset)] = 0  # padding: masked, but never garbage (0 x NaN is NaN)
                buffer[rows, :, max(0, offset):length] = t[:, :, max(0, -offset):]
            buffers.append(buffer)
        self._keys, self._values = buffers
        self.show(length)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        length = self.keys.shape[-2]
        self._keys, self._values = self._keys[indices], self._values[indices]  # room included
        self.show(length)

    # DynamicLayer's own methods that replace keys and values: then the buffers follow them
    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        super().reorder_cache(beam_idx)
        self.hold(self.keys, self.values)

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self.hold(self.keys, self.values)

    def offload(self) -> None:
        super().offload()
        if self.is_initialized:
            self.hold(self.keys, self.values)

    def prefetch(self) -> None:
        super().prefetch()
        if self.is_initialized:
            self.hold(self.keys, self.values)


def cache_keyword(model) -> str:
    """The name the model's forward takes a KV cache by: `cache` in transformers releases that
    renamed `past_key_values` (which warn on the old name and drop it in 5.40), else the old one.
    Wrappers (peft, stacked routing) are looked through to the transformers model."""
    inner = model
    for _ in range(8):
        if isinstance(inner, PreTrainedModel):
            return forward_cache_keyword(type(inner))
        inner = inner.get_base_model() if hasattr(inner, "get_base_model") else getattr(inner, "model", None)
    return "past_key_values"


@functools.cache
def forward_cache_keyword(model_class: type) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def returned_cache(out):
    """The KV cache a forward returned, under either name (see cache_keyword)."""
    cache = out.get("cache")
    return out.get("past_key_values") if cache is None else cache


def loaded_commit(model) -> str | None:
    """The hub commit from_pretrained resolved for a model (None for local or generated weights)."""
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    return str(commit) if commit else None
