"""Attention for packed rows without flash-attention: one causal attention per conversation.

A packed row holds several conversations whose ``position_ids`` restart at 0. flash-attention's
varlen kernels (GPU) read those boundaries and never compute attention across them. Elsewhere
the kit used to isolate conversations with a 4D block-diagonal mask: correct, but the masked
attention builds and fills the whole ``[L, L]`` score matrix of every row, so a 2,048-token row
costs more per token than the short padded rows it replaces. This attention function cuts each
row at the restarts and runs SDPA's causal kernel on each conversation alone: no mask, and only
the within-conversation work. Registered with transformers' attention interface as ``NAME``:

    model.set_attn_implementation(lw.sft.segments.register())
    model(input_ids=..., position_ids=...)  # restarting position ids, no attention_mask

The collator (``isolate="segments"``) continues the last conversation's positions over the row's
padding, so padding joins the last segment instead of making one segment per pad token; being
after it, padding never changes its outputs. The cuts are found once per forward pass (one host
sync), not once per layer: ``per_forward`` keeps what was computed from the pass's
``position_ids`` tensor, which every layer receives as the same object.
"""

import weakref

import torch
import torch.nn.functional as F

from lw.errors import LwError

NAME = "lw_segments"


def segment_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                      scaling: float | None = None, position_ids=None, **kwargs):
    """transformers attention function: ``query`` ``[B, H, L, D]``, ``key``/``value``
    ``[B, H_kv, L, D]``; returns ``([B, L, H, D], None)``."""
    if position_ids is None:
        raise LwError("segment attention needs position_ids that restart at 0 for every "
                      "packed conversation (lw.sft.Collator(isolate='segments') makes them).")
    if key.shape[2] != query.shape[2]:
        raise LwError("segment attention is for training and full forward passes; use the "
                      "sdpa implementation for generation with a cache.")
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: share each key/value head
        key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    rows = []
    for b, starts in enumerate(per_forward("segments", position_ids, _row_starts)):
        sizes = [e - s for s, e in zip(starts, starts[1:] + [query.shape[2]], strict=True)]
        # One split per tensor, not a slice per conversation: a slice's backward fills a
        # zero gradient of the whole row and adds it up per conversation (1,500 fills of
        # [1, 9, 4096, 64] in a 4,096-token step of SmolLM2-135M); a split's backward
        # concatenates the pieces' gradients once (benchmarks/bench_segments.py).
        pieces = zip(*(t[b:b + 1].split(sizes, dim=2) for t in (query, key, value)), strict=True)
        rows.append(torch.cat([
            F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling,
                                           dropout_p=dropout if module.training else 0.0)
            for q, k, v in pieces], dim=2))
    return torch.cat(rows).transpose(1, 2).contiguous(), None


def _row_starts(position_ids) -> list[list[int]]:
    """Where each packed conversation of each row starts (one host sync)."""
    starts = [[] for _ in range(position_ids.shape[0])]
    for b, t in (position_ids == 0).nonzero().tolist():
        starts[b].append(t)
    if any(not row or row[0] != 0 for row in starts):
        raise LwError("position_ids of a packed row must start at 0.")
    return starts


_PER_FORWARD: dict = {}


def per_forward(kind: str, position_ids, compute):
    """``compute(position_ids)``, computed once per forward pass: every layer gets the pass's
    ``position_ids`` as the same tensor object, held here by a weak reference (a new pass's
    tensor, even one at a reused address, never matches a dead reference)."""
    held = _PER_FORWARD.get(kind)
    if held is not None and held[0]() is position_ids:
        return held[1]
    value = compute(position_ids)
    _PER_FORWARD[kind] = (weakref.ref(position_ids), value)
    return value


def _no_mask(*args, **kwargs):
    """The mask hook for ``NAME``: boundaries come from position_ids, so there is no mask."""
    return None


def register() -> str:
    """Register the attention function (idempotent) and return its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, segment_attention)
    AttentionMaskInterface.register(NAME, _no_mask)
    return NAME
