"""lw.sft.attention: every packed-attention path gives a conversation its logits alone; the
path is chosen by device, a forced one that cannot run is refused, and training records it.

On CPU the fixture model is fp32 (tolerance 1e-4); on a GPU machine it is bf16 on CUDA, where
kernels round at different points (measured on tiny-random in bf16: alone vs packed 0.008 at
most, a leak across conversations 0.71, logits up to 1.3), hence 3e-2 there.
"""

import importlib.util

import pytest
import torch

from lw.errors import LwError
from lw.sft import Collator, attention, tokenize, train

CUDA = torch.cuda.is_available()
gpu = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs CUDA")]


def conv(user, reply):
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def three(tok):
    exs, _ = tokenize([conv("First question?", "A first answer that is fairly long. " * 3),
                       conv("Second?", "Second answer."),
                       conv("Third one here.", "Third answer, middling length.")], tok, 512)
    return exs


def tolerance(model) -> float:
    return 1e-4 if next(model.parameters()).dtype == torch.float32 else 3e-2


def check_isolation(tiny, path):
    """Pack [a, b, c] and [b, c] into two rows, run them through ``path``, and compare each
    conversation with its logits alone (plain SDPA, no packing)."""
    tok, model = tiny.tokenizer, tiny.model
    device = next(model.parameters()).device
    exs = three(tok)
    isolate = attention.setup(model, path)
    batch = {k: v.to(device) for k, v in Collator(tok.pad_token_id, isolate=isolate)(
        [exs, exs[1:]]).items()}
    try:
        with torch.no_grad():
            packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                           attention_mask=batch.get("attention_mask")).logits
    finally:
        attention.restore(model, path)
    worst = 0.0
    with torch.no_grad():
        for row, seqs in ((0, (0, 1, 2)), (1, (3, 4))):
            for seq in seqs:
                ex = exs[seq if row == 0 else seq - 2]
                alone = model(input_ids=torch.tensor([ex.input_ids], device=device)).logits[0]
                where = batch["seq_ids"][row] == seq
                worst = max(worst, (packed[row][where] - alone).abs().max().item())
    assert worst <= tolerance(model), f"{path}: alone vs packed differ by {worst}"


@pytest.mark.parametrize("path", ["segments", "mask"])
def test_packed_logits_match_alone_on_any_device(tiny, path):
    check_isolation(tiny, path)


@pytest.mark.filterwarnings("ignore:.*flex_attention called without torch.compile")
def test_flex_attention_isolates_packed_conversations(tiny):
    # On CPU flex runs eagerly and forward only (torch has no CPU backward); compiled on CUDA.
    check_isolation(tiny, "flex")


@pytest.mark.parametrize("path", [
    pytest.param("varlen", marks=gpu),
    pytest.param("flash", marks=[*gpu, pytest.mark.skipif(
        importlib.util.find_spec("flash_attn") is None, reason="flash-attn not installed")])])
def test_cuda_kernels_isolate_packed_conversations(tiny, path):
    if next(tiny.model.parameters()).dtype == torch.float32:
        pytest.skip("the fixture model is fp32; varlen/flash kernels run in bf16/fp16")
    check_isolation(tiny, path)


def test_a_packed_row_without_restarting_positions_is_refused():
    q = torch.zeros(1, 2, 3, 4)
    module = torch.nn.Module()
    for fn in (attention.varlen_attention, attention.flex_attention):
        with pytest.raises(LwError, match="position_ids"):
            fn(module, q, q, q, None)
    with pytest.raises(LwError, match="dropout"):
        attention.flex_attention(module.train(), q, q, q, None, dropout=0.1,
                                 position_ids=torch.zeros(1, 3, dtype=torch.long))


def test_auto_picks_by_device_and_forced_paths_that_cannot_run_are_refused():
    assert attention.choose("auto", "cpu", half=True) == "segments"
    assert attention.choose("mask", "cpu", half=False) == "mask"
    flash = importlib.util.find_spec("flash_attn") is not None
    assert attention.choose("auto", "cuda", half=True) == ("flash" if flash else "varlen")
    assert attention.choose("auto", "cuda", half=False) == "segments"  # varlen/flash need half; flex only by name
    with pytest.raises(LwError, match="no FlexAttention backward on CPU"):
        attention.choose("flex", "cpu", half=True)
    with pytest.raises(LwError, match="need CUDA"):
        attention.choose("varlen", "cpu", half=True)
    with pytest.raises(LwError, match="bf16: true"):
        attention.choose("varlen", "cuda", half=False)
    if not flash:
        with pytest.raises(LwError, match="flash-attn is not installed"):
            attention.choose("flash", "cuda", half=True)


DATA = [{"messages": conv(f"Question {i}: tell me about item {i}.",
                          "Item facts: it is small, it is blue, and it is useful. " * (1 + i % 3))}
        for i in range(8)]


def recipe(tmp_path, **train):
    return {"model": "tiny-random", "train": {
        "output_dir": str(tmp_path / "out"), "max_steps": 3, "per_device_train_batch_size": 2,
        "learning_rate": 1e-3, "logging_steps": 1, "save_strategy": "no", "max_length": 256,
        "seed": 0, **train}}


def test_training_records_the_path_and_refuses_one_it_cannot_run(tmp_path):
    result = train(recipe(tmp_path, packed_attention="mask"), data=DATA, progress=False)
    assert result.stats["packed_attention"] == "mask" and result.stats["packing"]
    unpacked = train(recipe(tmp_path / "u", packing=False), data=DATA, progress=False)
    assert unpacked.stats["packed_attention"] is None
    if not CUDA:
        with pytest.raises(LwError, match="packed_attention 'flex' cannot run here"):
            train(recipe(tmp_path / "f", packed_attention="flex"), data=DATA, progress=False)
    with pytest.raises(LwError, match="packed_attention must be one of"):
        train(recipe(tmp_path / "x", packed_attention="fast"), data=DATA, progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("path", ["auto", "varlen"])
def test_packed_bf16_training_on_cuda_runs_a_kernel_path(tmp_path, path):
    result = train(recipe(tmp_path, bf16=True, packed_attention=path, max_steps=6,
                          learning_rate=1e-2), data=DATA, progress=False)
    assert result.stats["packed_attention"] in ("flash", "varlen")
    losses = [h["loss"] for h in result.log_history if "loss" in h]
    assert losses[-1] < losses[0]


def reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1),
                     enable_gqa=False, **unused):
    """torch 2.13's varlen_attn signature, computed with SDPA per sequence (runs on CPU)."""
    assert window_size == (-1, 0) and max_q == max_k == int(torch.diff(cu_q).max())
    assert cu_q.dtype == torch.int32 and q.dtype in (torch.bfloat16, torch.float16)
    if k.shape[1] != q.shape[1]:
        assert enable_gqa
    bounds = cu_q.tolist()
    return torch.cat([torch.nn.functional.scaled_dot_product_attention(
        q[s:e].transpose(0, 1), k[s:e].transpose(0, 1), v[s:e].transpose(0, 1), is_causal=True,
        scale=scale, enable_gqa=enable_gqa).transpose(0, 1)
        for s, e in zip(bounds, bounds[1:], strict=False)])


def old_reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, is_causal=False, return_aux=None):
    """torch 2.10's signature: no scale, no GQA, is_causal instead of a window."""
    assert is_causal and k.shape[1] == q.shape[1]
    return reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, window_size=(-1, 0))


@pytest.mark.parametrize("kernel", [reference_varlen, old_reference_varlen])
def test_varlen_path_cuts_rows_at_the_restarts(monkeypatch, tiny, kernel):
    """The kit's side of the varlen path (flattening, cu_seqlens, GQA, scale, autocast dtype)
    on CPU, with SDPA standing in for the CUDA kernel under either torch signature."""
    import torch.nn.attention.varlen as varlen

    monkeypatch.setattr(varlen, "varlen_attn", kernel)
    tok = tiny.tokenizer
    device = next(tiny.model.parameters()).device
    exs = three(tok)
    batch = Collator(tok.pad_token_id, isolate="position_ids")([exs, exs[1:]])
    torch.manual_seed(0)
    heads, kv_heads, width = 4, 2, batch["input_ids"].shape[1]
    q = torch.randn(2, heads, width, 16, device=device)
    k, v = (torch.randn(2, kv_heads, width, 16, device=device) for _ in range(2))
    pos = batch["position_ids"].to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out, _ = attention.varlen_attention(torch.nn.Module().eval(), q, k, v, None,
                                            scaling=0.3, position_ids=pos)
    assert out.shape == (2, width, heads, 16) and out.dtype == torch.bfloat16
    for row in range(2):
        for seq in [s for s in batch["seq_ids"][row].unique().tolist() if s >= 0]:  # no padding
            span = (batch["seq_ids"][row] == seq).nonzero().flatten()
            s, e = int(span[0]), int(span[-1]) + 1
            want = torch.nn.functional.scaled_dot_product_attention(
                q[row:row + 1, :, s:e], k[row:row + 1, :, s:e].repeat_interleave(2, 1),
                v[row:row + 1, :, s:e].repeat_interleave(2, 1), is_causal=True, scale=0.3)
            got = out[row, s:e].transpose(0, 1).float()
            assert (got - want[0]).abs().max() < 3e-2


def test_segment_attention_gradients_equal_a_block_diagonal_mask():
    # Training runs backward through the split into conversations: outputs and the gradients
    # of queries, keys and values (grouped, 2 query heads per key head) must equal one SDPA
    # call over the whole row with a block-diagonal causal mask.
    import torch.nn.functional as F

    from lw.sft import segments

    g = torch.Generator().manual_seed(0)
    lengths = [[5, 1, 7, 3], [16]]  # a row of four conversations (one of a token), a row of one
    L = 16
    q = torch.randn(2, 4, L, 8, generator=g, requires_grad=True)
    k = torch.randn(2, 2, L, 8, generator=g, requires_grad=True)
    v = torch.randn(2, 2, L, 8, generator=g, requires_grad=True)
    position_ids = torch.tensor([[i for n in row for i in range(n)] for row in lengths])
    module = torch.nn.Module()
    out, _ = segments.segment_attention(module, q, k, v, None, scaling=0.3,
                                        position_ids=position_ids)
    weights = torch.randn(out.shape, generator=g)
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v))

    doc = torch.tensor([[d for d, n in enumerate(row) for _ in range(n)] for row in lengths])
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    mask = (doc[:, :, None] == doc[:, None, :]) & causal  # [B, L, L]
    ref = F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1),
                                         attn_mask=mask[:, None], scale=0.3).transpose(1, 2)
    ref_grads = torch.autograd.grad((ref * weights).sum(), (q, k, v))
    assert (out - ref).abs().max() < 1e-5
    for name, got, want in zip("qkv", grads, ref_grads, strict=True):
        assert (got - want).abs().max() < 1e-5, name
