"""Which kernel keeps packed conversations apart: the recipe's ``packed_attention``.

A packed row holds several conversations whose ``position_ids`` restart at 0; attention must
not cross from one to the next. The paths, all giving a conversation the same logits alone and
packed (tests/test_packing_attention.py):

  flash     flash-attn's varlen kernels (transformers' ``flash_attention_2``): CUDA, flash-attn
            installed, bf16/fp16 compute.
  varlen    PyTorch's own flash kernel for packed sequences (``torch.nn.attention.varlen``,
            torch >= 2.10): CUDA, bf16/fp16 compute. No flash-attn needed.
  flex      FlexAttention with a document mask (``torch.nn.attention.flex_attention``, compiled
            on CUDA). Training needs CUDA: torch has no FlexAttention backward on CPU.
  segments  one SDPA call per conversation (``lw.sft.segments``): any device; the fastest on CPU
            (bench_packing: 2x the padded batches' useful tokens/s on 2 cores).
  mask      a 4D block-diagonal mask with SDPA: any device, but an [L, L] mask per row.
  auto      CUDA: flash, else varlen (half compute), else segments. CPU: segments. flex only when
            asked for: on an H200 (torch 2.11) its compiled backward failed in fp32 training
            ("NoValidChoicesError ... target: flex_attention"), so it is no default.

    path = choose(args.packed_attention, device="cuda", half=True)    # "varlen" without flash-attn
    isolate = setup(model, path)        # sets the attention; Collator(pad_id, isolate=isolate)
    ... train ...
    restore(model, path)                # back to sdpa for generation with a cache

A forced path that cannot run here is refused with an LwError that says why.
"""

import importlib.util
import inspect

from lw.errors import LwError
from lw.sft import segments
from lw.sft.segments import per_forward

PATHS = ("auto", "flash", "varlen", "flex", "segments", "mask")
VARLEN, FLEX = "lw_varlen", "lw_flex"
ISOLATE = {"flash": "position_ids", "varlen": "position_ids", "flex": "position_ids",
           "segments": "segments", "mask": "mask"}


def problem(path: str, device: str, half: bool) -> str | None:
    """Why ``path`` cannot train on ``device`` (None when it can). ``half``: the compute is
    bf16/fp16 (autocast or half weights)."""
    import torch

    cuda = str(device).startswith("cuda")
    if path in ("segments", "mask"):
        return None
    if path not in ISOLATE:
        return f"unknown packed_attention {path!r}; choose one of {PATHS}"
    if path == "flex":
        if not _has("torch.nn.attention.flex_attention"):
            return f"torch {torch.__version__} has no FlexAttention (torch >= 2.5 has it)"
        return None if cuda else ("torch has no FlexAttention backward on CPU, so it cannot "
                                  "train there; use segments (the fastest on CPU) or mask")
    if not cuda:
        return f"{path} attention runs flash kernels, which need CUDA"
    if not half:
        return f"{path} attention runs in bf16/fp16 only: set bf16: true in the recipe"
    if path == "flash" and importlib.util.find_spec("flash_attn") is None:
        return "flash-attn is not installed (pip install flash-attn); varlen needs no package"
    if path == "varlen" and not _has("torch.nn.attention.varlen"):
        return f"torch {torch.__version__} has no torch.nn.attention.varlen (torch >= 2.10)"
    return None


def choose(requested: str, device: str, half: bool) -> str:
    """The path to train with: ``requested`` if it can run (else an LwError saying why), or for
    ``auto`` the fastest that can run on ``device``."""
    if requested != "auto":
        if why := problem(requested, device, half):
            raise LwError(f"packed_attention {requested!r} cannot run here: {why}.")
        return requested
    if not str(device).startswith("cuda"):
        return "segments"
    return next(p for p in ("flash", "varlen", "segments") if not problem(p, device, half))


def setup(model, path: str) -> str:
    """Switch ``model`` (a transformers model, or a peft model around one) to ``path``'s attention
    and return the ``Collator`` isolate mode that goes with it."""
    impl = {"flash": "flash_attention_2", "varlen": register_varlen(), "flex": register_flex(),
            "segments": segments.register(), "mask": "sdpa"}[path]
    _base(model).set_attn_implementation(impl)
    return ISOLATE[path]


def restore(model, path: str) -> None:
    """Back to SDPA, which generation with a cache needs."""
    if path != "mask":
        _base(model).set_attn_implementation("sdpa")


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _compute_dtype(query, value):
    """The dtype attention computes in: autocast's where it is on (where q/k come out of RoPE in
    fp32 and v from a bf16 matmul), else the inputs'."""
    import torch

    kind = query.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return value.dtype


def _check(module, query, key, dropout, position_ids, name):
    if position_ids is None:
        raise LwError(f"{name} attention needs position_ids that restart at 0 for every packed "
                      "conversation (lw.sft.Collator(isolate='position_ids') makes them).")
    if key.shape[2] != query.shape[2]:
        raise LwError(f"{name} attention is for training and full forward passes; use sdpa for "
                      "generation with a cache.")
    if dropout and module.training:
        raise LwError(f"{name} attention has no dropout: set the model's attention_dropout to 0.")


# -- varlen ---------------------------------------------------------------------------------------
def _cu_seqlens(position_ids):
    """Cumulative conversation starts over the flattened batch, and the longest conversation."""
    import torch

    flat = position_ids.reshape(-1)
    starts = (flat == 0).nonzero().flatten()
    total = torch.tensor([flat.numel()], device=flat.device)
    cu = torch.cat([starts, total]).to(torch.int32)
    longest, first_ok = torch.stack([torch.diff(cu).max().long(),
                                     (position_ids[:, 0] == 0).all().long()]).tolist()
    if not first_ok:
        raise LwError("position_ids of a packed row must start at 0.")
    return cu, longest


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                     scaling: float | None = None, position_ids=None, **kwargs):
    """transformers attention function over ``torch.nn.attention.varlen.varlen_attn``: query
    ``[B, H, L, D]``, key/value ``[B, H_kv, L, D]``; returns ``([B, L, H, D], None)``."""
    from torch.nn.attention.varlen import varlen_attn

    _check(module, query, key, dropout, position_ids, "varlen")
    dtype = _compute_dtype(query, value)
    if dtype.itemsize != 2:
        raise LwError("varlen attention runs in bf16/fp16 only: set bf16: true in the recipe.")
    b, h, length, d = query.shape
    cu, longest = per_forward("varlen", position_ids, _cu_seqlens)
    q, k, v = (x.transpose(1, 2).reshape(b * length, x.shape[1], x.shape[3]).to(dtype)
               for x in (query, key, value))
    params = _params(varlen_attn)
    kw = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}
    if k.shape[1] != h:  # grouped-query attention
        if "enable_gqa" in params:
            kw["enable_gqa"] = True
        else:
            k, v = (x.repeat_interleave(h // x.shape[1], 1) for x in (k, v))
    if "scale" in params:
        kw["scale"] = scaling
    elif scaling is not None:  # torch 2.10's signature has no scale: fold it into the query
        q = q * (scaling * d ** 0.5)
    out = varlen_attn(q, k, v, cu, cu, longest, longest, **kw)
    return out.view(b, length, h, v.shape[-1]), None


def _params(fn) -> set:
    return set(inspect.signature(fn).parameters)


def register_varlen() -> str:
    return _register(VARLEN, varlen_attention)


# -- flex -----------------------------------------------------------------------------------------
_FLEX = {}


def _flex_kernel(cuda: bool):
    """flex_attention compiled (CUDA) or eager (CPU: forward only, for tests and inference)."""
    if cuda not in _FLEX:
        import torch
        from torch.nn.attention.flex_attention import flex_attention

        _FLEX[cuda] = torch.compile(flex_attention) if cuda else flex_attention
    return _FLEX[cuda]


def _document_mask(position_ids):
    """A BlockMask: token q sees token kv when kv <= q within the same conversation."""
    from torch.nn.attention.flex_attention import create_block_mask

    doc = (position_ids == 0).cumsum(-1)

    def same_document_causal(b, h, q, kv):
        return (doc[b, q] == doc[b, kv]) & (kv <= q)

    n, length = position_ids.shape
    return create_block_mask(same_document_causal, n, None, length, length,
                             device=position_ids.device, _compile=position_ids.is_cuda)


def flex_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                   scaling: float | None = None, position_ids=None, **kwargs):
    """transformers attention function over FlexAttention with a per-conversation causal mask
    (built once per forward pass); shapes as ``varlen_attention``."""
    _check(module, query, key, dropout, position_ids, "flex")
    dtype = _compute_dtype(query, value)
    block_mask = per_forward("flex", position_ids, _document_mask)
    h, h_kv = query.shape[1], key.shape[1]
    # GQA in flex wants a power-of-two head count; elsewhere share the heads by hand (as
    # transformers' own flex integration does).
    gqa = h != h_kv and h & (h - 1) == 0
    if h != h_kv and not gqa:
        key, value = (x.repeat_interleave(h // h_kv, 1) for x in (key, value))
    out = _flex_kernel(query.is_cuda)(query.to(dtype), key.to(dtype), value.to(dtype),
                                      block_mask=block_mask, scale=scaling, enable_gqa=gqa)
    return out.transpose(1, 2).contiguous(), None


def register_flex() -> str:
    return _register(FLEX, flex_attention)


def _register(name: str, fn) -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(name, fn)
    AttentionMaskInterface.register(name, segments._no_mask)  # boundaries come from position_ids
    return name
