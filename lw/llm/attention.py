"""Decoding attention for grouped-query models on a CPU: ``lw_sdpa``.

SmolLM2, Llama 3 and Qwen share each key/value head among several query heads. At a decoding
step (one new token) transformers' SDPA path packs those query heads into the query-length axis
when it passes a padding mask, but when the mask is all ones it drops the mask and passes
``enable_gqa=True`` instead. On a CPU (torch 2.13) that call is slow: at 16 rows of 2,000
cached tokens, SmolLM2-135M in bf16, one layer's attention took 17 ms with ``enable_gqa`` and
3.7 ms packed, and attention was 92% of the decoding step (495 ms a token for 16 rows). This
function always packs at a decoding step, mask or not; everything else (prefill, training) goes
to transformers' own SDPA function unchanged. Through SDPA the arithmetic is the same kernel's
either way: only the layout of the query heads differs (tests/test_attention.py).

    use_for_decoding(model)   # on a CPU: model.config._attn_implementation == "lw_sdpa"

In bf16 (or fp16), once a step's rows x cached positions reach ``MATMUL_FROM``, the packed
step goes to two batched matrix products instead of SDPA (``_matmul_step``): torch 2.13's CPU
SDPA kernel blocks poorly for one query position and reads the engine's cache views (each row's
keys are a slice of a larger buffer) slower than a plain matrix product does; in one layer, 16
rows, 1,500 cached positions, bf16, it took 3.4 ms where the products took 2.1. The scores are
rounded to bf16 before the softmax (in fp32), as transformers' eager attention does; on real
text at 2,900 cached tokens both kernels are as far from fp32's logits (mean KL 0.0014 and
0.0015, docs/BENCHMARKS.md). Smaller steps and fp32 keep SDPA (its call costs less there).

In bf16 with the kit's compiled kernel (``lw.llm.cpu_kernel``; ``use_for_decoding(model,
kernel=...)`` registers ``lw_kernel``), a decoding step with a head dimension of 64 or 128 and a
boolean mask (or none) goes to the kernel instead of the two products: the same arithmetic read
from the engine's cache views where they lie, ~2.8x faster in one layer at 16 rows x 1,000-3,000
cached tokens (benchmarks/bench_decode_attention.py).

Not applied on a GPU, where SDPA's fused kernels take ``enable_gqa`` in their stride (and the
static-cache engine's captured graphs were measured with ``sdpa``).
"""

NAME = "lw_sdpa"
KERNEL_NAME = "lw_kernel"
KERNEL_HEAD_DIMS = (64, 128)  # what decode_step.cpp is compiled for
# Rows x cached positions from which a reduced-precision decoding step uses matrix products
# rather than SDPA: measured crossover on 2 AMD EPYC cores (bf16, one layer) between 1 x 3,000
# (products 0.27 ms, SDPA 0.33) and 4 x 500 (0.36 vs 0.24); bench_decode_attention.py.
MATMUL_FROM = 4096


def decode_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                     scaling: float | None = None, is_causal: bool | None = None,
                     matmul_from: float = MATMUL_FROM, kernel=None, **kwargs):
    """transformers' attention-function signature: ``query`` ``[batch, heads, q_len, dim]``,
    ``key``/``value`` ``[batch, kv_heads, kv_len, dim]``; returns ``([batch, q_len, heads,
    dim], None)``. ``matmul_from``: see ``MATMUL_FROM`` (``float("inf")``: packed SDPA only).
    ``kernel``: the compiled module (``lw.llm.cpu_kernel.load``), used for bf16 steps it takes."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    plain = (query.shape[2] != 1 or groups <= 1 or dropout or module.training
             or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None
             or kwargs.get("output_attentions"))
    if plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    batch, heads, _, dim = query.shape
    # Query head h reads key/value head h // groups (transformers' repeat_kv), so the heads of
    # one group are adjacent: [batch, kv_heads, groups, dim] puts them on the query axis. A
    # mask [batch, 1, 1, kv_len] (or [batch, 1, q_len=1, kv_len]) broadcasts over both.
    packed = query.reshape(batch, heads // groups, groups, dim)
    scale = dim ** -0.5 if scaling is None else scaling
    if kernel is not None and _kernel_takes(packed, key, value, attention_mask):
        mask = (torch.empty(0, dtype=torch.bool) if attention_mask is None
                else attention_mask.reshape(batch, key.shape[-2]).contiguous())
        # scaled and rounded to bf16 first, as _matmul_step's (packed * scale) is
        out = kernel.decode_step((packed * scale).contiguous(), key, value, mask)
    elif query.dtype in (torch.bfloat16, torch.float16) and batch * key.shape[-2] >= matmul_from:
        out = _matmul_step(packed, key, value, attention_mask, scale)
    else:
        out = torch.nn.functional.scaled_dot_product_attention(
            packed, key, value, attn_mask=attention_mask, dropout_p=0.0, scale=scaling,
            is_causal=False)
    return out.reshape(batch, heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None


def _kernel_takes(packed, key, value, mask) -> bool:
    """Whether the compiled kernel computes this step: bf16, a head dimension it is built for,
    keys and values with unit stride along it, and a boolean mask of one row per batch row."""
    import torch

    if not (packed.dtype == key.dtype == value.dtype == torch.bfloat16):
        return False
    if packed.shape[-1] not in KERNEL_HEAD_DIMS or key.stride(-1) != 1 or value.stride(-1) != 1:
        return False
    return mask is None or (mask.dtype == torch.bool and mask.dim() == 4
                            and mask.shape[1] == mask.shape[2] == 1
                            and mask.shape[0] == packed.shape[0])


def _matmul_step(packed, key, value, mask, scale: float):
    """One decoding step's attention as two batched products: ``packed`` ``[batch, kv_heads,
    groups, dim]``, ``key``/``value`` ``[batch, kv_heads, kv_len, dim]``, ``mask`` boolean
    (True: attend) or additive, broadcasting to ``[batch, 1, 1, kv_len]``, or None."""
    import torch

    # keys @ queries^T, not queries @ keys^T: the keys, the large operand, stay the left one
    # with unit stride along ``dim``, which torch multiplies in place; transposed on the right
    # they were copied first (6.8 ms against 2.2 at 16 rows x 3,000 positions).
    scores = torch.matmul(key, (packed * scale).transpose(-1, -2)).transpose(-1, -2)
    if mask is not None:
        scores = (scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool
                  else scores + mask)
    return torch.matmul(scores.softmax(-1, dtype=torch.float32).to(value.dtype), value)


def register(name: str = NAME, matmul_from: float = MATMUL_FROM, kernel=None) -> str:
    """Register ``lw_sdpa`` with transformers (idempotent; SDPA's own mask) and return its
    name. Another ``name``, ``matmul_from`` or ``kernel`` register a variant (the benchmark's
    packed-SDPA only variant: ``matmul_from=float("inf")``; ``lw_kernel``: the compiled kernel)."""
    import functools

    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    fn = (decode_attention if matmul_from == MATMUL_FROM and kernel is None
          else functools.partial(decode_attention, matmul_from=matmul_from, kernel=kernel))
    AttentionInterface.register(name, fn)
    AttentionMaskInterface.register(name, sdpa_mask)
    return name


def use_for_decoding(model, kernel=None) -> bool:
    """Switch a transformers model on a CPU from ``sdpa`` to ``lw_sdpa`` (``lw_kernel`` with a
    compiled ``kernel``, ``lw.llm.cpu_kernel.load``); True if switched.
    Models with another attention (eager, flash, a custom one), on a GPU, or whose class does
    not dispatch through transformers' attention functions (``_supports_attention_backend``
    False: remote code that may test for the name "sdpa" and fall back to eager) are left
    alone."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    if not getattr(type(model), "_supports_attention_backend", False):
        return False
    if next(model.parameters()).device.type != "cpu":
        return False
    try:
        model.set_attn_implementation(register(KERNEL_NAME, kernel=kernel) if kernel is not None
                                      else register())
    except (ValueError, ImportError):  # a model transformers refuses it for: keep sdpa
        return False
    return True
