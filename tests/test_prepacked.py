"""lw.llm.prepacked: linear layers multiplying by a packed weight give nn.Linear's results,
fall back where the packed copy cannot serve, never use a stale copy, and the kit's CPU models
use them."""

import copy

import pytest
import torch

import lw
from lw.errors import LwError
from lw.llm import prepacked


def _mlp(dtype, bias=True):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(24, 40, bias=bias), torch.nn.SiLU(),
                               torch.nn.Linear(40, 8, bias=bias)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_layers_compute_what_nn_linear_computes(dtype, bias, tolerance):
    model = _mlp(dtype, bias)
    x = torch.randn(3, 5, 24, dtype=dtype)  # rows x positions x features, as in a model
    with torch.inference_mode():
        expected = model(x)
        assert prepacked.prepack(model) is None
        assert prepacked.packed_layers(model) == 2
        got = model(x)
    assert got.shape == expected.shape
    if dtype == torch.bfloat16:  # the same oneDNN kernel either way
        assert torch.equal(got, expected)
    else:  # MKL's sum against oneDNN's: rounding only
        assert torch.allclose(got, expected, **tolerance(dtype))


def _plain(model, x):
    """``model``'s output computed with F.linear on its current weights."""
    f = torch.nn.functional
    return f.linear(f.silu(f.linear(x, model[0].weight, model[0].bias)), model[2].weight,
                    model[2].bias)


def test_a_weight_changed_in_place_is_packed_again():
    model = _mlp(torch.float32)
    prepacked.prepack(model)
    x = torch.randn(4, 24)
    with torch.no_grad():
        assert torch.allclose(model(x), _plain(model, x), atol=1e-5)
        model[0].weight.mul_(2.0)  # an optimizer step, a merge: the version counter moves
        assert torch.allclose(model(x), _plain(model, x), atol=1e-5)
        model[0].weight = torch.nn.Parameter(torch.randn(40, 24))  # replaced
        assert torch.allclose(model(x), _plain(model, x), atol=1e-5)
    assert prepacked.unpack(model) == 2 and prepacked.packed_layers(model) == 0


def test_training_and_other_dtypes_fall_back_to_nn_linear(monkeypatch):
    model = _mlp(torch.float32)
    prepacked.prepack(model)
    calls = []
    real = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise",
                        lambda *a: calls.append(1) or real(*a), raising=False)
    x = torch.randn(4, 24)
    out = model(x)  # gradients wanted: nn.Linear's path, with autograd
    out.sum().backward()
    assert model[0].weight.grad is not None and not calls
    with torch.inference_mode():
        model(x)
    assert len(calls) == 2
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.inference_mode():
        assert model(x).dtype == torch.bfloat16  # autocast's own cast, nn.Linear's path
    with torch.inference_mode():
        assert model(x[:0]).shape == (0, 8)


def test_a_deepcopy_carries_no_packed_copy_and_packs_its_own():
    model = _mlp(torch.float32)
    prepacked.prepack(model)
    twin = copy.deepcopy(model)
    assert twin[0] not in prepacked._PACKED
    with torch.no_grad():
        twin[0].weight.add_(1.0)
        x = torch.randn(2, 24)
        assert not torch.allclose(twin(x), model(x))
        assert twin[0] in prepacked._PACKED
    assert "_lw" not in str(twin.state_dict().keys())  # nothing saved with the weights


def test_prepack_declines_with_a_reason(monkeypatch):
    assert "no nn.Linear" in prepacked.prepack(torch.nn.Sequential(torch.nn.SiLU()))
    spread = _mlp(torch.float32)
    spread[2].to("meta")  # a layer elsewhere (offloaded, another device): none is packed
    assert "cpu and meta" in prepacked.prepack(spread)
    assert prepacked.packed_layers(spread) == 0
    monkeypatch.setattr(prepacked, "_available_bytes", lambda: 1000)
    model = _mlp(torch.float32)
    why = prepacked.prepack(model)
    assert why and "quarter" in why and prepacked.packed_layers(model) == 0


def test_the_kits_local_models_pack_on_a_cpu(tiny):
    if not tiny.device.startswith("cpu"):
        assert tiny.info()["prepacked"].startswith("no: the model is on")
        return
    assert tiny.info()["prepacked"] == "yes"
    layers = tiny.model.config.num_hidden_layers * 7 + 1  # q k v o gate up down, lm_head
    assert prepacked.packed_layers(tiny.model) == layers
    again = lw.llm.hf.HFChatModel(tiny.model, tiny.tokenizer, "tiny-random")  # same weights
    assert again.info()["prepacked"] == "yes"
    plain = lw.llm.load("tiny-random", batch_size=2, prepack=False)
    assert plain.info()["prepacked"] == "no: prepack=False"
    assert prepacked.packed_layers(plain.model) == 0
    prompts = ["Tell me about tides.", "Name three rivers."]
    a = tiny.generate(prompts, max_new_tokens=12, temperature=0.0)
    b = plain.generate(prompts, max_new_tokens=12, temperature=0.0)
    assert [x.text for x in a] == [x.text for x in b]


def test_insisting_where_it_cannot_apply_is_an_error(monkeypatch):
    monkeypatch.setattr(prepacked, "_available_bytes", lambda: 1000)
    with pytest.raises(LwError, match="prepack=True cannot apply"):
        lw.llm.load("tiny-random", prepack=True)
    with pytest.warns(UserWarning, match="not prepacked"):
        model = lw.llm.load("tiny-random")
    assert model.info()["prepacked"].startswith("no: the packed copies")
    with pytest.raises(LwError, match="prepack must be"):
        lw.llm.load("tiny-random", prepack="yes")
