"""The SFT loss without full-vocabulary fp32 logits.

The plain way (``weighted_loss``) takes the model's ``[batch, L, vocab]`` logits and upcasts
them: at 32,768 tokens and Qwen's 152,064-token vocabulary that is ~20 GB of fp32 beside the
bf16 logits and their gradient. ``compute`` runs the model with its output layer skipped, keeps
the last hidden states of the target tokens only (labels != -100; most of a chat row is
prompt), and computes their logits ``loss_chunk_tokens`` at a time: one chunk's logits exist at
once, upcast to fp32 for the cross-entropy, and are recomputed in the backward pass
(``torch.utils.checkpoint``) instead of being kept. Loss and gradients equal the plain way's
within rounding (``tests/test_sft_loss.py``).

Three paths, named in the training stats (``loss_path``) and logged once:

    "liger"    CUDA, "token" weighting, ``liger_kernel`` installed, a plain Linear output layer:
               Liger's fused linear cross-entropy (its own chunking, in Triton).
    "chunked"  otherwise (CPU, "sequence" weighting, LoRA on the head, ZeRO-3).
    "full"     ``loss_chunk_tokens`` None or 0: today's full logits (also when the caller
               wants the logits back, e.g. evaluation).
"""

import contextlib
import logging

from lw.errors import LwError
from lw.sft.tokens import IGNORE

WEIGHTINGS = ("token", "sequence")
# Target tokens per chunk: at Qwen's 152k vocabulary one chunk's fp32 logits are 2.5 GB.
DEFAULT_CHUNK_TOKENS = 4096
log = logging.getLogger(__name__)


def _check(weighting: str) -> None:
    if weighting not in WEIGHTINGS:
        raise LwError(f"weighting must be 'token' or 'sequence', got {weighting!r}.")


def reduce(per_token, ids, weighting: str):
    """The batch loss from the losses of its target tokens (``[T]``) and their conversation ids.

    "token" averages over every target token of the batch, so long answers weigh in proportion
    to their length (the paper's choice, section 4.1); "sequence" averages within each
    conversation first, then over conversations (LongAlign's default).
    """
    import torch

    _check(weighting)
    if weighting == "token":
        return per_token.mean()
    _, inverse = torch.unique(ids, return_inverse=True)
    sums = torch.zeros(int(inverse.max()) + 1, dtype=per_token.dtype,
                       device=per_token.device).index_add_(0, inverse, per_token)
    counts = torch.bincount(inverse).to(per_token.dtype)
    return (sums / counts).mean()


def weighted_loss(logits, labels, seq_ids, weighting: str = "token"):
    """Next-token cross-entropy over target tokens, from full logits (the "full" path).

    Args:
        logits: ``[batch, L, vocab]``; labels: ``[batch, L]`` with -100 where no loss;
        seq_ids: ``[batch, L]`` conversation index of each token (-1 for padding).
        weighting: "token" or "sequence", as ``reduce`` describes.
    """
    import torch.nn.functional as F

    logits, labels, seq_ids = logits[:, :-1], labels[:, 1:], seq_ids[:, 1:]
    per_token = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                                ignore_index=IGNORE, reduction="none")
    target = labels.reshape(-1) != IGNORE
    if not target.any():
        return per_token.sum() * 0.0
    return reduce(per_token[target], seq_ids.reshape(-1)[target], weighting)


def _chunk_ce(head, hidden, labels):
    import torch.nn.functional as F

    # Only this chunk's logits are ever fp32.
    return F.cross_entropy(head(hidden).float(), labels, reduction="none")


def chunked_loss(hidden, head, labels, seq_ids, weighting: str = "token",
                 chunk_tokens: int = DEFAULT_CHUNK_TOKENS):
    """``weighted_loss`` from the last hidden states (``[batch, L, hidden]``) and the output
    layer ``head`` (a module: called, not read, so LoRA on it and ZeRO-3's gathering still
    apply), computing at most ``chunk_tokens`` target tokens' logits at a time."""
    import torch
    from torch.utils.checkpoint import checkpoint

    _check(weighting)
    if chunk_tokens < 1:
        raise LwError(f"chunk_tokens must be at least 1, got {chunk_tokens}.")
    shifted, labels, seq_ids = hidden[:, :-1], labels[:, 1:], seq_ids[:, 1:]
    target = labels != IGNORE
    if not target.any():
        # Zero, but through the head and the hidden states as the full path's is, so every
        # trained parameter still gets a (zero) gradient: DDP waits for all of them.
        return head(hidden[:, :1]).float().sum() * 0.0
    h, y = shifted[target], labels[target]
    # Recompute each chunk's logits in the backward pass rather than keep them: without
    # checkpointing autograd would hold every chunk's logits until backward, all of them again.
    recompute = torch.is_grad_enabled() and (
        h.requires_grad or any(p.requires_grad for p in head.parameters()))
    parts = []
    for start in range(0, h.size(0), chunk_tokens):
        hc, yc = h[start:start + chunk_tokens], y[start:start + chunk_tokens]
        parts.append(checkpoint(_chunk_ce, head, hc, yc, use_reentrant=False,
                                preserve_rng_state=False) if recompute
                     else _chunk_ce(head, hc, yc))
    return reduce(torch.cat(parts), seq_ids[target], weighting)


def _liger_class():
    """Liger's fused linear cross-entropy loss class, or None where it is not installed."""
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except ImportError:
        return None
    return LigerFusedLinearCrossEntropyLoss


def _plain_linear(head) -> bool:
    """Liger reads the weight directly: only right for an unwrapped Linear whose weight is whole
    here (a LoRA-wrapped head would lose its adapter, a ZeRO-3 one holds a shard)."""
    import torch

    return (isinstance(head, torch.nn.Linear) and not hasattr(head.weight, "ds_id")
            and head.weight.numel() > 0)


def liger_loss(hidden, head, labels):
    """Mean next-token cross-entropy over target tokens ("token" weighting) by Liger."""
    import torch

    shifted, labels = hidden[:, :-1], labels[:, 1:]
    target = labels != IGNORE
    if not target.any():
        return head(hidden[:, :1]).float().sum() * 0.0
    h, y = shifted[target], labels[target]
    weight, bias = head.weight, head.bias
    # Liger's kernels want one dtype: under autocast the head would run in the autocast dtype,
    # so cast there (the fp32 master weight still gets the gradient through the cast).
    if torch.is_autocast_enabled(h.device.type):
        dtype = torch.get_autocast_dtype(h.device.type)
        h, weight = h.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    else:
        h = h.to(weight.dtype)
    loss = _liger_class()(ignore_index=IGNORE, reduction="mean")(weight, h, y, bias)
    return loss[0] if isinstance(loss, tuple) else loss


def output_layer(model):
    """The model's output (lm_head) module, through DDP/DeepSpeed and PEFT wrappers."""
    inner = getattr(model, "module", model)  # DDP / DeepSpeed engine
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if head is None:
        raise LwError(f"{type(inner).__name__} has no output embeddings (lm_head) to compute a "
                      "chunked loss with; set loss_chunk_tokens: 0 for the full-logits loss.")
    return head


def choose(weighting: str, chunk_tokens, head, device) -> str:
    """Which loss runs: "full", "liger" or "chunked" (see the module's docstring)."""
    if not chunk_tokens:
        return "full"
    if (weighting == "token" and getattr(device, "type", device) == "cuda"
            and _liger_class() is not None and _plain_linear(head)):
        return "liger"
    return "chunked"


@contextlib.contextmanager
def skip_head(head):
    """Within: calls of ``head`` get an empty sequence (so no logits are computed) and the
    hidden states they were given are appended to the yielded list. A hook rather than calling
    the decoder directly, so the model's own forward (DDP's, PEFT's, patched attention) runs."""
    seen = []

    def hook(module, args):
        seen.append(args[0])
        return (args[0][..., :0, :], *args[1:])

    handle = head.register_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def compute(model, inputs: dict, labels, seq_ids, weighting: str = "token",
            chunk_tokens: int | None = DEFAULT_CHUNK_TOKENS, want_outputs: bool = False):
    """Run ``model`` on ``inputs`` and return ``(loss, outputs, path)``.

    ``outputs.logits`` is empty on the chunked and Liger paths; ``want_outputs`` takes the full
    path so a caller that needs logits gets them.
    """
    _check(weighting)
    if chunk_tokens is not None and chunk_tokens < 0:
        raise LwError(f"loss_chunk_tokens must be >= 0 (0 or None: full logits), got "
                      f"{chunk_tokens}.")
    head = None if not chunk_tokens or want_outputs else output_layer(model)
    path = "full" if head is None else choose(weighting, chunk_tokens, head, labels.device)
    if path == "full":
        outputs = model(**inputs)
        return weighted_loss(outputs.logits, labels, seq_ids, weighting), outputs, path
    with skip_head(head) as seen:
        outputs = model(**inputs)
    if len(seen) != 1:
        raise LwError(f"the model called its output layer {len(seen)} times in one forward pass; "
                      "set loss_chunk_tokens: 0 for the full-logits loss.")
    hidden = seen[0]
    if path == "liger":
        return liger_loss(hidden, head, labels), outputs, path
    return chunked_loss(hidden, head, labels, seq_ids, weighting, chunk_tokens), outputs, path
