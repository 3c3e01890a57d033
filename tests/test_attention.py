"""lw.llm.attention: decoding steps with grouped query heads packed (``lw_sdpa``), through SDPA
or (large bf16 steps) two matrix products, give the logits transformers' own SDPA gives, with
and without padding, and nothing else changes."""

import pytest
import torch

import lw
from lw.llm import attention
from lw.llm.embedded import tiny_random_dir
from lw.llm.engine import _cache


def _model(dtype):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_random_dir()), dtype=dtype,
                                                 attn_implementation="sdpa")
    return model.eval()


def _decode(model, impl, ids, mask, steps=4):
    """Prefill ``ids`` (left-padded by ``mask``), then ``steps`` greedy decoding steps under
    attention ``impl``; the logits of each step."""
    model.set_attn_implementation(impl)
    cache, out = _cache(model.config), []
    with torch.inference_mode():
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                       cache=cache).logits[:, -1]
        for _ in range(steps):
            token = logits.argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, -1:]
            logits = model(input_ids=token, attention_mask=mask, position_ids=pos,
                           use_cache=True, cache=cache).logits[:, -1]
            out.append(logits.float())
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("padded", [False, True])
def test_decoding_logits_match_sdpa(dtype, padded, tolerance, monkeypatch):
    model = _model(dtype)
    assert model.config.num_attention_heads > model.config.num_key_value_heads  # GQA
    torch.manual_seed(1)
    ids = torch.randint(5, 1000, (3, 40))
    mask = torch.ones_like(ids)
    if padded:  # the engine's left padding: rows of different lengths in one batch
        mask[0, :17], mask[2, :5] = 0, 0
    expected = _decode(model, "sdpa", ids, mask)

    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        calls.append((q.shape[2], kw.get("enable_gqa", False)))
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    got = _decode(model, attention.register(), ids, mask)
    for e, g in zip(expected, got, strict=True):
        assert torch.allclose(e, g, **tolerance(dtype)), (e - g).abs().max()
    # The decoding steps went through the packed call: the query axis holds the groups and
    # no enable_gqa (the slow call this module exists to avoid); the prefill did not.
    groups = model.config.num_attention_heads // model.config.num_key_value_heads
    decode_calls = calls[model.config.num_hidden_layers:]
    assert decode_calls and all(c == (groups, False) for c in decode_calls)
    assert all(q == ids.shape[1] for q, _ in calls[:model.config.num_hidden_layers])


@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none"])
def test_matmul_step_equals_sdpa_on_cache_views(mask_kind):
    """The products' step against SDPA on the engine's layout: keys and values are slices of
    a larger buffer (``_GrowingLayer``), rows left-padded. In fp32 the two agree to rounding."""
    torch.manual_seed(3)
    batch, kv_heads, groups, dim, length = 4, 3, 3, 16, 50
    room = torch.randn(2, batch, kv_heads, length + 30, dim)
    key, value = room[0, :, :, :length], room[1, :, :, :length]
    assert not key.is_contiguous()
    query = torch.randn(batch, kv_heads, groups, dim)
    keep = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    keep[0, ..., :20], keep[3, ..., :7] = False, False
    mask = {"bool": keep, "none": None,
            "additive": torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))}[mask_kind]
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, scale=0.3)
    got = attention._matmul_step(query, key, value, mask, 0.3)
    assert torch.allclose(expected, got, rtol=1e-5, atol=1e-6), (expected - got).abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_reduced_precision_steps_use_the_products(dtype, tolerance, monkeypatch):
    """From ``matmul_from`` rows x positions on, a bf16 decoding step goes to the products
    (no SDPA call) with sdpa's logits within bf16's tolerance; fp32 steps stay on SDPA."""
    model = _model(dtype)
    torch.manual_seed(2)
    ids = torch.randint(5, 1000, (3, 30))
    mask = torch.ones_like(ids)
    mask[1, :9] = 0
    expected = _decode(model, "sdpa", ids, mask)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        calls.append(q.shape[2])
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    # 3 rows x 31 positions at the first step: over a threshold of 64, under the default
    got = _decode(model, attention.register("lw_sdpa_test", matmul_from=64), ids, mask)
    for e, g in zip(expected, got, strict=True):
        assert torch.allclose(e, g, **tolerance(dtype)), (e - g).abs().max()
    layers = model.config.num_hidden_layers
    assert calls[:layers] == [ids.shape[1]] * layers  # the prefill: transformers' SDPA
    assert len(calls) == (layers if dtype == torch.bfloat16 else 5 * layers)


def test_training_forward_is_sdpa_unchanged():
    """A training forward (many tokens, grads) is transformers' SDPA call as it was."""
    model = _model(torch.float32).train()
    ids = torch.randint(5, 1000, (2, 24))
    model.set_attn_implementation("sdpa")
    expected = model(input_ids=ids).logits
    model.set_attn_implementation(attention.register())
    got = model(input_ids=ids).logits
    assert torch.equal(expected, got)
    got.sum().backward()  # gradients flow through it
    assert model.model.layers[0].self_attn.q_proj.weight.grad is not None


def test_only_sdpa_models_on_a_cpu_are_switched():
    model = _model(torch.float32)
    assert attention.use_for_decoding(model)
    assert model.config._attn_implementation == attention.NAME
    assert not attention.use_for_decoding(model)  # already switched
    model.set_attn_implementation("eager")
    assert not attention.use_for_decoding(model)
    assert model.config._attn_implementation == "eager"


def test_models_that_do_not_dispatch_through_the_interface_keep_sdpa(monkeypatch):
    """Remote code that picks its attention class by the name "sdpa" would fall to eager."""
    model = _model(torch.float32)
    monkeypatch.setattr(type(model), "_supports_attention_backend", False)
    assert not attention.use_for_decoding(model)
    assert model.config._attn_implementation == "sdpa"


def test_the_kits_local_models_decode_with_it(tiny):
    if tiny.device.startswith("cpu"):
        assert tiny.model.config._attn_implementation == attention.NAME
    else:  # a GPU's fused kernels handle grouped heads themselves
        assert tiny.model.config._attn_implementation == "sdpa"
    assert lw.llm.load("tiny-random", batch_size=2).generate(["hi"], max_new_tokens=3)
