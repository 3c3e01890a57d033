"""lw.sft.loss: the chunked loss equals the full-logits one (loss and every parameter's gradient)
and never holds more than one chunk's logits; the path that ran is chosen and recorded.

Runs on the tiny random Llama in fp32 on the CPU (bf16 by autocast for the looser check), with
its own model copy: gradients are compared parameter by parameter.
"""

import time

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lw.errors import LwError
from lw.sft import Collator, loss, pack, tokenize
from lw.sft.tokens import IGNORE


def conv(user, reply):
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


CONVS = [conv("First question?", "A first answer that is fairly long. " * 3),
         conv("Second?", "Second answer."),
         conv("Third one here.", "Third answer, middling length, with a few more words."),
         conv("Fourth: say something short.", "Short.")]


@pytest.fixture(scope="module")
def tiny_fp32():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lw.llm.embedded import tiny_random_dir

    path = tiny_random_dir()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32,
                                                 attn_implementation="sdpa")
    return tok, model


def batch(tok, packed: bool) -> dict:
    examples, _ = tokenize(CONVS, tok, 512)
    rows = pack(examples, 512) if packed else [[ex] for ex in examples]
    if packed:
        assert any(len(r) > 1 for r in rows)
    return Collator(tok.pad_token_id or 0)(rows)


def run(model, data: dict, weighting: str, chunk, autocast: bool = False):
    """Loss, path and the gradient of every parameter for one loss path."""
    model.zero_grad(set_to_none=True)
    inputs = {k: v for k, v in data.items() if k not in ("labels", "seq_ids")}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        value, _, path = loss.compute(model, inputs, data["labels"], data["seq_ids"], weighting,
                                      chunk)
    value.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return value.detach(), path, grads


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("packed", [False, True], ids=["unpacked", "packed"])
@pytest.mark.parametrize("weighting", ["token", "sequence"])
def test_chunked_loss_and_gradients_match_full_logits(tiny_fp32, weighting, packed, autocast):
    tok, model = tiny_fp32
    data = batch(tok, packed)
    # 7 target tokens a chunk: several chunks and a ragged last one.
    full, full_path, g_full = run(model, data, weighting, 0, autocast)
    chunked, path, g_chunked = run(model, data, weighting, 7, autocast)
    assert (full_path, path) == ("full", "chunked")
    loss_diff = (full - chunked).abs().item()
    grad_diff = max((g_full[n] - g_chunked[n]).abs().max().item() for n in g_full)
    grad_scale = max(g.abs().max().item() for g in g_full.values())
    print(f"\n{weighting} {'packed' if packed else 'unpacked'} "
          f"{'bf16 autocast' if autocast else 'fp32'}: loss {full.item():.6f}, "
          f"|loss diff| {loss_diff:.2e}, max |grad diff| {grad_diff:.2e} (max |grad| "
          f"{grad_scale:.2e})")
    if autocast:
        # Rounding of bf16 matmuls at different blockings; a wrong weighting or a missed
        # shift moves the loss by ~0.1 and gradients by their own size.
        assert loss_diff < 2e-2 and grad_diff < 5e-2 * grad_scale
    else:
        assert loss_diff < 1e-5 and grad_diff < 1e-5 * max(grad_scale, 1.0)


def test_chunked_loss_without_targets_is_zero_with_gradients(tiny_fp32):
    tok, model = tiny_fp32
    data = batch(tok, packed=False)
    data["labels"] = torch.full_like(data["labels"], IGNORE)
    value, _, grads = run(model, data, "sequence", 7)
    assert value.item() == 0.0
    assert all(g.abs().max() == 0 for g in grads.values())  # every parameter got one, zero


class LargestTensor(TorchDispatchMode):
    """The most bytes any single tensor produced by an op held."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


def test_chunked_loss_never_materialises_full_logits():
    torch.manual_seed(0)
    vocab, width, length, chunk = 1000, 16, 512, 32
    head = torch.nn.Linear(width, vocab, bias=True)
    hidden = torch.randn(1, length, width, requires_grad=True)
    labels = torch.randint(0, vocab, (1, length))
    labels[0, torch.rand(length) < 0.4] = IGNORE  # ~300 target tokens
    seq_ids = (torch.arange(length) // 100)[None]
    targets = int((labels[:, 1:] != IGNORE).sum())
    chunk_bytes = chunk * vocab * 4  # one chunk's fp32 logits
    full_bytes = (length - 1) * vocab * 4

    saved = []

    def pack_hook(t):
        saved.append(t.numel() * t.element_size())
        return t

    with LargestTensor() as mode, torch.autograd.graph.saved_tensors_hooks(pack_hook, lambda t: t):
        value = loss.chunked_loss(hidden, head, labels, seq_ids, "sequence", chunk)
    kept_for_backward = sum(saved)  # besides the hidden states, which the model keeps anyway
    with mode:
        value.backward()
    print(f"\n{targets} targets x vocab {vocab}: largest tensor {mode.largest} B (one chunk's fp32 "
          f"logits {chunk_bytes} B, all of them {full_bytes} B); saved for backward outside "
          f"the chunks {kept_for_backward} B")
    assert mode.largest <= chunk_bytes < full_bytes / 8
    assert kept_for_backward < chunk_bytes  # the chunks' logits were not kept for backward

    # The same probe sees the full path's logits: it would catch them.
    with LargestTensor() as full_mode:
        loss.weighted_loss(head(hidden), labels, seq_ids, "sequence").backward()
    assert full_mode.largest >= full_bytes


def test_cpu_speed_of_the_two_paths(tiny_fp32):
    """Printed, not asserted: chunking recomputes the head's matmul in backward."""
    tok, model = tiny_fp32
    data = batch(tok, packed=True)
    timings = {}
    for chunk in (0, 64, loss.DEFAULT_CHUNK_TOKENS):
        run(model, data, "token", chunk)  # warm-up
        start = time.perf_counter()
        for _ in range(5):
            run(model, data, "token", chunk)
        timings[chunk] = (time.perf_counter() - start) / 5
    print("\nforward+backward s/step on CPU by loss_chunk_tokens:",
          {k: round(v, 4) for k, v in timings.items()}, "tokens", data["input_ids"].numel())


def test_liger_is_chosen_only_for_token_weighting_on_cuda(monkeypatch):
    head = torch.nn.Linear(4, 10)
    assert loss.choose("token", 4096, head, torch.device("cpu")) == "chunked"
    assert loss.choose("token", 0, head, torch.device("cpu")) == "full"
    assert loss.choose("token", None, head, torch.device("cuda")) == "full"
    monkeypatch.setattr(loss, "_liger_class", lambda: object)
    assert loss.choose("token", 4096, head, torch.device("cuda")) == "liger"
    assert loss.choose("sequence", 4096, head, torch.device("cuda")) == "chunked"
    assert loss.choose("token", 4096, head, torch.device("cpu")) == "chunked"
    wrapped = torch.nn.Sequential(head)  # e.g. a LoRA-wrapped head: Liger would skip its adapter
    assert loss.choose("token", 4096, wrapped, torch.device("cuda")) == "chunked"


def test_trainer_uses_and_records_the_chunked_loss(tiny_fp32, tmp_path):
    from lw.sft.config import SFTConfig
    from lw.sft.train import _trainer_class

    tok, model = tiny_fp32
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert args.loss_chunk_tokens == loss.DEFAULT_CHUNK_TOKENS
    trainer = _trainer_class()(model=model, args=args)
    data = batch(tok, packed=True)
    expected = loss.weighted_loss(model(**{k: v for k, v in data.items()
                                           if k not in ("labels", "seq_ids")}).logits,
                                  data["labels"], data["seq_ids"])
    value = trainer.compute_loss(model, dict(data))
    assert trainer.loss_path == "chunked"
    assert torch.isclose(value, expected, atol=1e-5)
    _, outputs = trainer.compute_loss(model, dict(data), return_outputs=True)
    assert outputs.logits.shape[:2] == data["input_ids"].shape  # a caller wanting logits gets them
    with pytest.raises(LwError):
        SFTConfig(output_dir=str(tmp_path), use_cpu=True, loss_chunk_tokens=-1)
