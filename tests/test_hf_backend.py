"""The local transformers backend on the tiny random Llama (real code path, no mocks)."""

import pytest
import torch

import lw
import lw.llm.hf
from lw.errors import LwError

PROMPTS = ["hi", "Write a very long story about two cats, a dog and a lighthouse by the sea.",
           "Name a colour.", "Tell me about rivers, mountains and valleys in detail please.", "ok"]


def test_results_come_back_in_input_order(tiny):
    outs = tiny.generate(PROMPTS, max_new_tokens=4)
    lengths = [len(tiny.tokenizer(tiny.render([{"role": "user", "content": p}]),
                                  add_special_tokens=False).input_ids) for p in PROMPTS]
    assert [o.prompt_tokens for o in outs] == lengths
    assert len(set(lengths)) > 2  # the prompts really were of different lengths


def test_batching_with_left_padding_gives_the_same_greedy_text(tiny_exact):
    """Exact in fp32 (``tiny_exact``): in bf16 a padded batch rounds differently from one row
    alone, and the tiny model's flat distribution lets that pick another token."""
    tiny = tiny_exact
    solo = [tiny.generate([p], max_new_tokens=8)[0] for p in PROMPTS]
    batched = tiny.generate(PROMPTS, max_new_tokens=8)
    assert [b.text for b in batched] == [s.text for s in solo]


def test_token_budget_and_finish_reason(tiny):
    outs = tiny.generate(PROMPTS[:2], max_new_tokens=6)
    for o in outs:
        assert o.completion_tokens <= 6
        assert o.finish_reason in ("stop", "length")
        assert (o.finish_reason == "length") == (o.completion_tokens == 6)
        assert o.seconds > 0


def test_min_new_tokens_forces_length(tiny):
    outs = tiny.generate(PROMPTS[:2], max_new_tokens=12, min_new_tokens=12)
    assert [o.completion_tokens for o in outs] == [12, 12]


def test_stop_strings_end_the_reply_and_are_cut(tiny_exact):
    # fp32: a reply that stops leaves the batch, which changes its mates' batch shape.
    tiny = tiny_exact
    free = tiny.generate(PROMPTS, max_new_tokens=24, temperature=1.0, seed=3)
    # Pick a stop string the model is known to produce, from its own free-running output.
    stop = next(o.text.strip()[:1] for o in free if o.text.strip())
    outs = tiny.generate(PROMPTS, max_new_tokens=24, temperature=1.0, seed=3, stop=[stop])
    # Same seed, same batches: each reply is the free-running one cut before the stop string.
    assert [o.text for o in outs] == [f.text.split(stop)[0] for f in free]
    for o, f in zip(outs, free, strict=True):
        if stop in f.text:
            assert o.finish_reason == "stop" and o.completion_tokens < f.completion_tokens
        else:
            assert (o.finish_reason, o.completion_tokens) == (f.finish_reason, f.completion_tokens)
    assert any(stop in f.text for f in free)


def test_sampling_is_reproducible_with_a_seed(tiny_exact):
    # fp32: the second call reuses the first's prompt caches, so its arithmetic differs a little.
    tiny = tiny_exact
    a = tiny.generate(PROMPTS[:3], max_new_tokens=10, temperature=1.0, seed=7)
    b = tiny.generate(PROMPTS[:3], max_new_tokens=10, temperature=1.0, seed=7)
    c = tiny.generate(PROMPTS[:3], max_new_tokens=10, temperature=1.0, seed=8)
    assert [x.text for x in a] == [x.text for x in b]
    assert [x.text for x in a] != [x.text for x in c]


def test_prefix_is_rendered_after_the_generation_prompt(tiny):
    conv = [{"role": "user", "content": "Plan it."}]
    text = tiny.render(conv, "Paragraph 1 - Main Point:")
    assert text.endswith("<|im_start|>assistant\nParagraph 1 - Main Point:")
    out = tiny.generate([conv], prefix="Paragraph 1 - Main Point:", max_new_tokens=3)[0]
    assert out.prompt_tokens == len(tiny.tokenizer(text, add_special_tokens=False).input_ids)


def test_progress_bar_can_be_forced(tiny, capsys):
    tiny.generate(PROMPTS[:2], max_new_tokens=2, progress=True)
    assert "generate tiny-random" in capsys.readouterr().err


def test_info_names_device_and_dtype(tiny, requested_dtype):
    """The device and dtype the weights really have: CUDA with bf16 (fp16 on chips without
    bf16) where a GPU is present, else the CPU with fp32 (or what LW_TEST_DTYPE asked for)."""
    info = tiny.info()
    weights = next(tiny.model.parameters())
    assert info["spec"] == "tiny-random"
    assert info["device"] == str(weights.device) and info["dtype"] == str(weights.dtype)
    if torch.cuda.is_available():
        assert info["device"].startswith("cuda")
    else:
        assert info["device"] == "cpu"
    assert info["dtype"] == str(requested_dtype or lw.llm.hf.pick_device()[1])


def test_missing_local_model_is_a_clear_error(tmp_path):
    """A folder that does not exist is named as such, never sent to the hub as an id."""
    with pytest.raises(LwError, match="no folder .*no-such-model") as err:
        lw.llm.load(f"hf:{tmp_path / 'no-such-model'}")
    assert "hf download" not in str(err.value)
    with pytest.raises(LwError, match="no folder"):
        lw.llm.load("hf:./runs/no/such/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LwError, match="no config.json"):
        lw.llm.load(f"hf:{tmp_path / 'empty'}")


def test_offline_hub_id_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LwError, match="HF_HUB_OFFLINE"):
        lw.llm.load("hf:someone/model-that-is-not-cached")


def test_hf_spec_loads_a_saved_folder(tiny, tmp_path, requested_dtype):
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    again = lw.llm.load(f"hf:{tmp_path}", **({"dtype": requested_dtype} if requested_dtype else {}))
    assert (again.device, again.model.dtype) == (tiny.device, tiny.model.dtype)
    for a, b in zip(again.model.parameters(), tiny.model.parameters(), strict=True):
        assert torch.equal(a, b)
    tiny.prefixes.clear()  # both prefill "hi" whole: the same arithmetic in any dtype
    assert again.generate(["hi"], max_new_tokens=4)[0].text == \
        tiny.generate(["hi"], max_new_tokens=4)[0].text


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_picks_bf16():
    model = lw.llm.load("tiny-random")
    assert model.device.startswith("cuda") and "bfloat16" in model.info()["dtype"]
    assert model.generate(["hi"], max_new_tokens=4)[0].completion_tokens > 0


def test_inst_format_feeds_pred_py_ids_to_the_model(tiny_exact):
    """prompt_format="inst": the raw "[INST]...[/INST]" text tokenized with the tokenizer's
    defaults, as pred.py does. SmolLM2's tokenizer adds no BOS, so a copy that adds one (as
    Llama 3.1's does) shows the defaults are used; greedy text equals transformers' own
    generate on those ids (fp32: the same arithmetic)."""
    from transformers import AutoTokenizer

    from lw.llm.embedded import tiny_random_dir

    tok = AutoTokenizer.from_pretrained(tiny_random_dir(), add_bos_token=True)
    model = lw.llm.hf.HFChatModel(tiny_exact.model, tok, "tiny-inst", batch_size=2,
                                  prompt_format="inst")
    prompt = "Write 300 words on rivers."
    ids = model.prompt_ids([{"role": "user", "content": prompt}])
    assert ids == tok(f"[INST]{prompt}[/INST]").input_ids and ids[0] == tok.bos_token_id
    assert model.prompt_ids([{"role": "user", "content": prompt}], "Rivers") == \
        tok(f"[INST]{prompt}[/INST]Rivers").input_ids
    out = model.generate([prompt], max_new_tokens=6)[0]
    assert out.prompt_tokens == len(ids)
    with torch.inference_mode():
        ref = tiny_exact.model.generate(torch.tensor([ids], device=tiny_exact.device),
                                        max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert out.text == tok.decode(ref[0, len(ids):], skip_special_tokens=True)
    assert model.info()["prompt_format"] == "inst"
    for conv in ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
                 [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"},
                  {"role": "user", "content": "More."}]):
        with pytest.raises(LwError, match="exactly one user message"):
            model.generate([conv], max_new_tokens=2)


def test_load_takes_the_prompt_format_for_local_models(tiny):
    inst = lw.llm.load("tiny-random", prompt_format="inst", batch_size=2)
    assert inst.render([{"role": "user", "content": "hi"}]) == "[INST]hi[/INST]"
    assert inst.prompt_ids([{"role": "user", "content": "hi"}]) == \
        inst.tokenizer("[INST]hi[/INST]").input_ids
    assert tiny.prompt_format == "chat" and "<|im_start|>" in tiny.render(
        [{"role": "user", "content": "hi"}])
    with pytest.raises(LwError, match="prompt_format must be one of"):
        lw.llm.load("tiny-random", prompt_format="llama")
    for spec in ("fake:x", "openai:gpt-4o"):
        with pytest.raises(LwError, match="apply to models the kit loads"):
            lw.llm.load(spec, prompt_format="inst")
    with pytest.raises(LwError, match="apply to models the kit loads"):
        lw.llm.load("fake:x", trust_remote_code=True)


@pytest.mark.parametrize("trust", [False, True])
def test_trust_remote_code_reaches_tokenizer_and_model(monkeypatch, trust):
    import transformers

    from lw.llm.embedded import tiny_random_dir

    seen = {}
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        original = cls.from_pretrained

        def record(path, *args, _cls=cls.__name__, _original=original, **kwargs):
            seen[_cls] = kwargs.get("trust_remote_code", "not passed")
            return _original(path, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", record)
    model = lw.llm.load(f"hf:{tiny_random_dir()}", device="cpu",
                        **({"trust_remote_code": True} if trust else {}))
    assert seen == {"AutoTokenizer": trust, "AutoModelForCausalLM": trust}
    assert model.prompt_format == "chat"


def test_paper_options_name_the_released_models():
    assert lw.llm.paper_options("hf:THUDM/LongWriter-llama3.1-8b") == {"prompt_format": "inst"}
    assert lw.llm.paper_options("vllm:THUDM/LongWriter-glm4-9b") == {"trust_remote_code": True}
    assert lw.llm.paper_options("agentwrite:hf:THUDM/LongWriter-llama3.1-8b") == \
        {"prompt_format": "inst"}
    assert lw.llm.paper_options("hf:Qwen/Qwen2.5-7B-Instruct") == {}
    assert lw.llm.paper_options("tiny-random") == {}


def test_int8_on_cpu_quantises_the_linear_layers_and_names_its_results_files(tmp_path):
    from lw.store import keyed_path

    plain = lw.llm.load("tiny-random", batch_size=2)
    quant = lw.llm.load("tiny-random", batch_size=2, quantize="int8")
    assert any("quantized.dynamic" in type(m).__module__ for m in quant.model.modules())
    assert not any("quantized" in type(m).__module__ for m in plain.model.modules())
    outs = quant.generate(PROMPTS[:3], max_new_tokens=6, min_new_tokens=6)
    assert [o.completion_tokens for o in outs] == [6, 6, 6]
    # The same rows with the same seed give the same text again (a rerun is identical).
    again = quant.generate(PROMPTS[:3], max_new_tokens=6, min_new_tokens=6)
    assert [o.text for o in again] == [o.text for o in outs]
    assert quant.info()["quantize"] == "int8" and "quantize" not in plain.info()
    assert quant.load_identity() == {"quantize": "int8"} and plain.load_identity() == {}
    # An fp32 model's file keeps the name its spec gave it (older runs resume); int8's differs.
    assert keyed_path(tmp_path, "preds", model=plain, seed=0) == \
        keyed_path(tmp_path, "preds", model="tiny-random", seed=0)
    assert keyed_path(tmp_path, "preds", model=quant, seed=0) != \
        keyed_path(tmp_path, "preds", model=plain, seed=0)


def test_quantize_refuses_what_it_cannot_do():
    with pytest.raises(LwError, match=r"quantize='int4' is not one of \('int8',\)"):
        lw.llm.load("tiny-random", quantize="int4")
    with pytest.raises(LwError, match="dynamic int8 for CPUs.*on cuda:0.*leave quantize unset"):
        lw.llm.hf._quantized(torch.nn.Linear(2, 2), "int8", "cuda:0", "hf:x")
    with pytest.raises(LwError, match="does not take the option"):
        lw.llm.load("fake:ok", quantize="int8")


def test_a_cpu_dtype_by_name_loads_and_names_its_results_files(tmp_path):
    from lw.store import keyed_path

    half = lw.llm.load("tiny-random", batch_size=2, dtype="bfloat16")
    assert half.model.dtype == torch.bfloat16 and half.load_identity() == {"dtype": "bfloat16"}
    assert keyed_path(tmp_path, "preds", model=half) != keyed_path(tmp_path, "preds",
                                                                   model="tiny-random")
    assert len(half.generate(["hi"], max_new_tokens=3, min_new_tokens=3)[0].text) > 0
    with pytest.raises(LwError, match="'bfloat17' is not a torch dtype"):
        lw.llm.load("tiny-random", dtype="bfloat17")
