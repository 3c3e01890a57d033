"""Decoding attention for grouped-query models on a CPU: ``lw_sdpa``.

SmolLM2, Llama 3 and Qwen share each key/value head among several query heads. At a decoding
step (one new token) transformers' SDPA path packs those query heads into the query-length axis
when it passes a padding mask, but when the mask is all ones it drops the mask and passes
``enable_gqa=True`` instead. On a CPU (torch 2.13) that call is slow: at 16 rows of 2,000
cached tokens, SmolLM2-135M in bf16, one layer's attention took 17 ms with ``enable_gqa`` and
3.7 ms packed, and attention was 92% of the decoding step (495 ms a token for 16 rows). This
function always packs at a decoding step, mask or not; everything else (prefill, training) goes
to transformers' own SDPA function unchanged. The arithmetic is the same kernel's either way:
only the layout of the query heads differs (tests/test_attention.py).

    use_for_decoding(model)   # on a CPU: model.config._attn_implementation == "lw_sdpa"

Not applied on a GPU, where SDPA's fused kernels take ``enable_gqa`` in their stride (and the
static-cache engine's captured graphs were measured with ``sdpa``).
"""

NAME = "lw_sdpa"


def decode_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                     scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """transformers' attention-function signature: ``query`` ``[batch, heads, q_len, dim]``,
    ``key``/``value`` ``[batch, kv_heads, kv_len, dim]``; returns ``([batch, q_len, heads,
    dim], None)``."""
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
    out = torch.nn.functional.scaled_dot_product_attention(
        packed, key, value, attn_mask=attention_mask, dropout_p=0.0, scale=scaling,
        is_causal=False)
    return out.reshape(batch, heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None


def register() -> str:
    """Register ``lw_sdpa`` with transformers (idempotent; SDPA's own mask) and return it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, decode_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def use_for_decoding(model) -> bool:
    """Switch a transformers model on a CPU from ``sdpa`` to ``lw_sdpa``; True if switched.
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
        model.set_attn_implementation(register())
    except (ValueError, ImportError):  # a model transformers refuses it for: keep sdpa
        return False
    return True
