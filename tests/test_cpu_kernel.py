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
    kernel, _ = cpu_kernel.load()
    assert chat.info()["linear_kernel"] == ("yes" if kernel.bf16_dot() else
                                            "no: the CPU lacks AVX-512 BF16 (vdpbf16ps)")
    assert chat.model.config._attn_implementation == attention.KERNEL_NAME
    off = lw.llm.load("smollm2-135m", dtype="bfloat16", batch_size=2, decode_kernel=False)
    assert off.info()["decode_kernel"] == "no: decode_kernel=False"
    assert off.info()["linear_kernel"] == "no: decode_kernel=False"
    assert lw.llm.prepacked.rows_kernel_layers(off.model) == 0
    assert off.model.config._attn_implementation == attention.NAME
    outs = chat.generate(["Name three rivers.", "Describe a harbour at night."],
                         max_new_tokens=12, min_new_tokens=12, temperature=0.0)
    assert all(o.completion_tokens == 12 and o.text.strip() for o in outs)


def test_a_model_the_kernel_cannot_serve_says_why(tiny, recwarn):
    """The tiny model is fp32 with head dimension 16: no kernel, said in info(), no warning
    (torch's path is the design there); insisting is an error that says what to do."""
    chat = lw.llm.load("tiny-random", batch_size=2)
    assert chat.info()["decode_kernel"].startswith("no: the model is float32")
    assert chat.info()["linear_kernel"] == "no: the model is float32, the kernel bf16"
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


# -- the few-row linear product (AVX-512 BF16) ---------------------------------------------------
@pytest.fixture(scope="module")
def rows(kernel):
    if not kernel.bf16_dot():
        pytest.skip("this CPU lacks AVX-512 BF16: the few-row product does not run here")
    return kernel


def _linear_inputs(m, n, k, seed, bias=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=gen).bfloat16()
    w = (torch.randn(n, k, generator=gen) / k ** 0.5).bfloat16()
    b = torch.randn(n, generator=gen).bfloat16() if bias else None
    return x, w, b


@needs_kernel
@pytest.mark.parametrize("m", [1, 5, 8, 13, 16, 32])
@pytest.mark.parametrize("n,k,bias", [(576, 576, False), (1536, 576, True), (48, 10, True),
                                      (192, 1536, False)])
def test_rows_linear_sums_what_a_linear_layer_sums(rows, m, n, k, bias):
    """Against the exact sum of the same bf16 products (float64) rounded once to bf16: within
    that rounding plus fp32 summation error, for row counts that fill tiles and that do not,
    an odd number of 16-output blocks (48 outputs) and a bias; and as oneDNN's within bf16."""
    x, w, b = _linear_inputs(m, n, k, seed=m * 1000 + n + k, bias=bias)
    got = rows.rows_linear(x, rows.pack_rows(w), b if bias else torch.empty(0))
    assert got.shape == (m, n) and got.dtype == torch.bfloat16
    exact = x.double() @ w.double().T + (b.double() if bias else 0)
    scale = x.double().abs() @ w.double().abs().T + (b.double().abs() if bias else 0)
    err = (got.double() - exact).abs()
    assert (err <= exact.abs() * 2.0 ** -8 + scale * 1e-6 + 1e-30).all(), err.max()
    onednn = torch.nn.functional.linear(x, w, b)
    torch.testing.assert_close(got.float(), onednn.float(), atol=2e-2, rtol=1.6e-2)


@needs_kernel
def test_a_rows_answer_does_not_depend_on_its_batch_mates(rows):
    """Each row's sums run in one fixed order, whatever the rows around it and the tile they
    fall in: a row alone and the same row among 15 others give the same bits (a reply's text
    then does not depend on which other replies shared its steps)."""
    x, w, _ = _linear_inputs(16, 576, 1536, seed=3)
    packed = rows.pack_rows(w)
    together = rows.rows_linear(x, packed, torch.empty(0))
    for i in (0, 7, 15):
        assert torch.equal(rows.rows_linear(x[i:i + 1], packed, torch.empty(0))[0], together[i])
    assert torch.equal(rows.rows_linear(x[3:12], packed, torch.empty(0)), together[3:12])


@needs_kernel
def test_rows_linear_reads_a_strided_input_and_refuses_a_mismatch(rows):
    x, w, _ = _linear_inputs(4, 32, 64, seed=5)
    wide = torch.zeros(4, 128, dtype=torch.bfloat16)
    wide[:, 10:74] = x
    packed = rows.pack_rows(w)
    assert torch.equal(rows.rows_linear(wide[:, 10:74], packed, torch.empty(0)),
                       rows.rows_linear(x, packed, torch.empty(0)))
    with pytest.raises(RuntimeError, match="x has 63 inputs, the weight 64"):
        rows.rows_linear(x[:, :63], packed, torch.empty(0))
    with pytest.raises(RuntimeError, match="outputs a multiple of 16"):
        rows.pack_rows(torch.zeros(10, 64, dtype=torch.bfloat16))


@needs_kernel
def test_packed_layers_send_few_rows_to_the_kernel_and_long_inputs_to_onednn(rows):
    """A prepacked bf16 model: inputs of up to FEW_ROWS rows through the kernel's copy, longer
    ones (prefill) through oneDNN's; a weight changed in place is laid out again; a layer whose
    shape the kernel does not take keeps oneDNN; dropping the kernel gives oneDNN back."""
    from lw.llm import prepacked

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.Linear(96, 10)).bfloat16()
    assert prepacked.prepack(model) is None
    assert prepacked.use_rows_kernel(model, rows) is None
    assert prepacked.rows_kernel_layers(model) == 1  # 10 outputs: not a multiple of 16
    first = model[0]
    assert "multiple of 16" in prepacked.rows_unavailable(model[1], rows)
    few = torch.randn(3, 5, 64).bfloat16()  # 15 rows
    many = torch.randn(2, 40, 64).bfloat16()  # 80 rows
    with torch.inference_mode():
        kernel_out = rows.rows_linear(few.reshape(-1, 64), rows.pack_rows(first.weight),
                                      first.bias).reshape(3, 5, 96)
        assert torch.equal(first(few), kernel_out)
        assert torch.equal(first(many), torch.nn.functional.linear(many, first.weight, first.bias))
        first.weight.mul_(2)
        again = rows.rows_linear(few.reshape(-1, 64), rows.pack_rows(first.weight), first.bias)
        assert torch.equal(first(few), again.reshape(3, 5, 96))
        assert prepacked.drop_rows_kernel(model) == 1
        assert torch.equal(first(few), torch.nn.functional.linear(few, first.weight, first.bias))
    fp32 = torch.nn.Sequential(torch.nn.Linear(64, 32))
    prepacked.prepack(fp32)
    assert prepacked.use_rows_kernel(fp32, rows) == "its weights are float32, the kernel is bf16"
    assert prepacked.use_rows_kernel(torch.nn.Sequential(torch.nn.Linear(64, 32)), rows) == \
        "the linear layers are not prepacked"


@needs_kernel
def test_a_decoding_step_with_the_kernels_linear_layers_gives_the_models_logits(rows):
    """A bf16 Llama's decoding step (attention kernel, prepacked layers) with the few-row
    product against oneDNN's, one row left-padded: the same logits within bf16 rounding."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lw.llm import prepacked
    from lw.llm.engine import _cache

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         attn_implementation="sdpa")
    model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    assert prepacked.prepack(model) is None
    model.set_attn_implementation(attention.register(attention.KERNEL_NAME, kernel=rows))
    ids = torch.randint(5, 500, (4, 300))
    mask = torch.ones_like(ids)
    mask[0, :100] = 0
    calls = []

    class Counting:  # the kernel, counting the products it is asked for
        def __getattr__(self, name):
            return getattr(rows, name)

        def rows_linear(self, *args):
            calls.append(args[0].shape)
            return rows.rows_linear(*args)

    logits = {}
    for on in (False, True):
        (prepacked.use_rows_kernel(model, Counting()) if on
         else prepacked.drop_rows_kernel(model))
        cache = _cache(model.config)
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask, use_cache=True, cache=cache,
                  position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
            step_mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            logits[on] = model(input_ids=ids[:, :1], attention_mask=step_mask, use_cache=True,
                               cache=cache, position_ids=step_mask.sum(-1, keepdim=True) - 1
                               ).logits[:, -1].float()
    assert prepacked.rows_kernel_layers(model) == 2 * 7 + 1
    # the step's 15 products went to the kernel (prefill's 1,200 rows did not)
    assert calls == [(4, 256)] * 3 + [(4, 256), (4, 256), (4, 256), (4, 512)] + \
        [(4, 256)] * 3 + [(4, 256), (4, 256), (4, 256), (4, 512)] + [(4, 256)]
    assert torch.isfinite(logits[True]).all()
    torch.testing.assert_close(logits[True], logits[False], atol=0.05, rtol=0.02)


# -- sampling ------------------------------------------------------------------------------------
def _rows(settings):
    """Engine rows (``lw.llm.engine.sample``'s view of them) from (config, seed, tokens so far)."""
    from types import SimpleNamespace

    return [SimpleNamespace(job=SimpleNamespace(config=c), seed=s, new=[1] * k)
            for c, s, k in settings]


@needs_kernel
def test_the_compiled_sampler_draws_what_torchs_operations_draw(kernel):
    """Mixed rows (greedy, sampled, penalised, an end token blocked before min_new_tokens, seen
    rows picked by index): the same tokens as torch's path for every greedy row and for sampled
    rows all but where a uniform falls within rounding of a boundary (none in these 600 draws),
    and the drawn tokens are marked seen."""
    from lw.llm.base import GenerationConfig
    from lw.llm.engine import sample

    vocab, n = 5000, 12
    gen = torch.Generator().manual_seed(0)
    cfgs = [GenerationConfig(max_new_tokens=50, temperature=t, repetition_penalty=p,
                             min_new_tokens=m)
            for t, p, m in [(0.0, 1.0, 0), (0.0, 1.3, 0), (0.5, 1.1, 0), (1.0, 1.0, 0),
                            (0.7, 1.2, 40), (0.0, 1.1, 40)] * 2]
    index = torch.tensor([5, 0, 3, 9, 1, 2, 11, 4, 6, 8, 7, 10])
    differ = draws = 0
    for step in range(100):
        logits = torch.randn(n, vocab, generator=gen) * 3
        logits[0, 7] = logits[0, 9] = logits[0].max() + 1  # a tie: the first index wins
        seen = torch.rand(n, vocab, generator=gen) < 0.05
        rows = _rows([(c, 1000 + k, step) for k, c in enumerate(cfgs)])
        seen_torch, seen_kernel = seen.clone(), seen.clone()
        want = sample(logits.clone(), seen_torch, rows, [2, 3], index)
        got = sample(logits.clone(), seen_kernel, rows, [2, 3], index, kernel=kernel)
        assert got.dtype == torch.long and got.shape == (n,)
        greedy = torch.tensor([c.temperature == 0 for c in cfgs])
        assert torch.equal(got[greedy], want[greedy])
        assert got[0] == 7
        assert not any(t in (2, 3) for t in got[[4, 5, 10, 11]].tolist())  # blocked
        differ += int((got != want)[~greedy].sum())
        draws += int((~greedy).sum())
        assert seen_kernel[index, got].all()
        assert torch.equal(seen_kernel, seen_torch) == torch.equal(got, want)
    assert draws == 600 and differ == 0, differ


@needs_kernel
def test_nucleus_sampling_and_gpu_logits_keep_torchs_operations(kernel):
    from lw.llm.base import GenerationConfig
    from lw.llm.engine import sample

    calls = []

    class Counting:
        def sample_step(self, *args):
            calls.append(1)
            return kernel.sample_step(*args)

    logits = torch.randn(2, 300)
    nucleus = GenerationConfig(max_new_tokens=5, temperature=1.0, top_p=0.9)
    plain = GenerationConfig(max_new_tokens=5, temperature=1.0)
    sample(logits, torch.zeros(2, 300, dtype=torch.bool), _rows([(nucleus, 1, 0), (plain, 2, 0)]),
           [2], kernel=Counting())
    assert calls == []
    sample(logits, torch.zeros(2, 300, dtype=torch.bool), _rows([(plain, 1, 0), (plain, 2, 0)]),
           [2], kernel=Counting())
    assert calls == [1]
