"""lw.llm.cpu_kernel: the compiled decoding-attention kernel computes what torch's two products
compute (``lw.llm.attention._matmul_step``) on the engine's cache views, padded or not, builds
once per machine under a lock, and a model says when it is not used and why."""

import pytest
import torch

import lw
from lw.errors import LwError
from lw.llm import attention, cpu_kernel

WHY = cpu_kernel.unavailable()
needs_kernel = pytest.mark.skipif(WHY is not None, reason=f"no kernel here: {WHY}")


@pytest.fixture(scope="module")
def kernel():
    module, why = cpu_kernel.load()
    assert module is not None, why  # unavailable() said this machine can build it
    return module


def _views(batch, kv_heads, groups, dim, length, room, seed):
    """Queries, and keys/values as the engine holds them: the first ``length`` positions of
    buffers with ``room`` more, filled past the end with values that would show if read."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, kv_heads, groups, dim, generator=gen).bfloat16()
    k_room = torch.randn(batch, kv_heads, length + room, dim, generator=gen).bfloat16()
    v_room = torch.randn(batch, kv_heads, length + room, dim, generator=gen).bfloat16()
    k_room[..., length:, :] = 1e4
    v_room[..., length:, :] = 1e4
    return q, k_room[..., :length, :], v_room[..., :length, :]


def _reference(q, k, v, mask, scale):
    """Attention in fp32 from the same bf16 inputs."""
    scores = (q.float() * scale) @ k.float().transpose(-1, -2)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return scores.softmax(-1) @ v.float()


@needs_kernel
@pytest.mark.parametrize("dim,kv_heads,groups", [(64, 3, 3), (128, 4, 7), (64, 2, 1)])
@pytest.mark.parametrize("length", [1, 13, 300])
@pytest.mark.parametrize("masking", ["none", "left padding", "holes"])
def test_kernel_computes_what_the_products_compute(kernel, dim, kv_heads, groups, length,
                                                     masking):
    batch, scale = 5, dim ** -0.5
    q, k, v = _views(batch, kv_heads, groups, dim, length, room=37, seed=length + dim)
    mask = None
    if masking != "none":
        mask = torch.ones(batch, length, dtype=torch.bool)
        for b in range(batch):  # row b starts b / batch of the way in (row 0 unpadded)
            mask[b, : b * (length - 1) // batch] = False
        if masking == "holes":
            mask[:, 1::3] = False
            mask[:, -1] = True  # the step's own token is always attended
    kernel_mask = torch.empty(0, dtype=torch.bool) if mask is None else mask.contiguous()
    got = kernel.decode_step((q * scale).contiguous(), k, v, kernel_mask)
    products = attention._matmul_step(q, k, v, None if mask is None else mask[:, None, None, :],
                                      scale)
    assert got.shape == products.shape and got.dtype == torch.bfloat16
    # The same roundings in the same places: apart from the order of fp32 sums, equal
    torch.testing.assert_close(got.float(), products.float(), atol=1e-2, rtol=1e-2)
    assert (got.float() - _reference(q, k, v, mask, scale)).abs().max() < 3e-2


@needs_kernel
def test_a_decoding_step_through_the_kernel_gives_the_models_logits(kernel):
    """A model whose head dimension the kernel takes (64): a bf16 step through ``lw_kernel``
    against the same step through the products, with one row left-padded."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lw.llm.engine import _cache

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=500, hidden_size=256, intermediate_size=512,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         attn_implementation="sdpa")
    model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    rows, context = 4, 1200  # rows x positions past MATMUL_FROM: the products' side
    ids = torch.randint(5, 500, (rows, context))
    mask = torch.ones_like(ids)
    mask[0, :300] = 0
    logits = {}
    for name in (attention.register(),
                 attention.register(attention.KERNEL_NAME, kernel=kernel)):
        model.set_attn_implementation("sdpa")
        cache = _cache(model.config)
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask, use_cache=True, cache=cache,
                  position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
            model.set_attn_implementation(name)
            step_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            logits[name] = model(input_ids=ids[:, :1], attention_mask=step_mask, use_cache=True,
                                 cache=cache, position_ids=step_mask.sum(-1, keepdim=True) - 1
                                 ).logits[:, -1].float()
    products, through_kernel = logits.values()
    assert torch.isfinite(through_kernel).all()
    torch.testing.assert_close(through_kernel, products, atol=0.05, rtol=0.02)


@needs_kernel
@pytest.mark.slow
def test_the_embedded_model_in_bf16_decodes_through_the_kernel():
    chat = lw.llm.load("smollm2-135m", dtype="bfloat16", batch_size=2)
    assert chat.info()["decode_kernel"] == "yes"
    assert chat.model.config._attn_implementation == attention.KERNEL_NAME
    off = lw.llm.load("smollm2-135m", dtype="bfloat16", batch_size=2, decode_kernel=False)
    assert off.info()["decode_kernel"] == "no: decode_kernel=False"
    assert off.model.config._attn_implementation == attention.NAME
    outs = chat.generate(["Name three rivers.", "Describe a harbour at night."],
                         max_new_tokens=12, min_new_tokens=12, temperature=0.0)
    assert all(o.completion_tokens == 12 and o.text.strip() for o in outs)


def test_a_model_the_kernel_cannot_serve_says_why(tiny, recwarn):
    """The tiny model is fp32 with head dimension 16: no kernel, said in info(), no warning
    (torch's path is the design there); insisting is an error that says what to do."""
    chat = lw.llm.load("tiny-random", batch_size=2)
    assert chat.info()["decode_kernel"].startswith("no: the model is float32")
    assert not [w for w in recwarn if "decoding kernel" in str(w.message)]
    with pytest.raises(LwError, match="decode_kernel=True cannot apply.*Leave decode_kernel"):
        lw.llm.load("tiny-random", batch_size=2, decode_kernel=True)
    bf16 = lw.llm.load("tiny-random", batch_size=2, dtype="bfloat16")
    assert bf16.info()["decode_kernel"] == "no: head dimension 16, the kernel is built for 64 and 128"
    with pytest.raises(LwError, match="decode_kernel must be None, True or False"):
        lw.llm.load("tiny-random", batch_size=2, decode_kernel="yes")


def test_no_compiler_is_a_reason_not_a_crash(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-lw")
    why = cpu_kernel.unavailable()
    if why is not None and "compiler" not in why:
        pytest.skip(f"not an x86-64 CPU with AVX2: {why}")
    assert why is not None and "no C++ compiler ('no-such-compiler-lw'" in why


@needs_kernel
@pytest.mark.slow
def test_processes_on_an_empty_cache_compile_the_kernel_once(tmp_path, run_at_once):
    """Two processes ask for the kernel at once on a fresh cache (a multi-process launch on a
    new machine): one compiles, the other waits and loads, both decode; a stale lock file of
    torch's builder (a build killed midway) does not hang them."""
    folder = tmp_path / "kernels" / cpu_kernel.build_key()
    folder.mkdir(parents=True)
    (folder / "lock").write_text("")  # what a Ctrl-C during torch's build leaves
    child = (
        "import torch\n"
        "from lw.llm import cpu_kernel\n"
        "module, why = cpu_kernel.load()\n"
        "assert module is not None, why\n"
        "q = torch.ones(1, 1, 2, 64).bfloat16(); k = torch.ones(1, 1, 5, 64).bfloat16()\n"
        "out = module.decode_step(q, k, k, torch.empty(0, dtype=torch.bool))\n"
        "assert torch.equal(out, torch.ones_like(out))\n")
    said = "".join(run_at_once(child, 2, tmp_path))
    assert said.count("Compiling the kit's CPU decoding kernel") == 1
