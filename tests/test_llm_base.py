"""The chat-model interface: settings, argument checks, the scripted fake, the factory."""

import pytest

import lw
from lw.errors import LwError
from lw.llm import GenerationConfig
from lw.llm.fake import ScriptedChatModel
from lw.plots import generation_table


def test_config_rejects_bad_values_and_unknown_settings():
    with pytest.raises(LwError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(LwError, match="top_p"):
        GenerationConfig(top_p=0)
    with pytest.raises(LwError, match="unknown generation setting"):
        GenerationConfig().updated(max_tokens=5)
    assert GenerationConfig(stop=["\n"]).stop == ("\n",)


def test_generate_checks_its_arguments():
    fake = ScriptedChatModel("hi")
    with pytest.raises(LwError, match="wrap one"):
        fake.generate("a bare string")
    with pytest.raises(LwError, match="empty prompt"):
        fake.generate(["  "])
    with pytest.raises(LwError, match="conversation"):
        fake.generate([[{"content": "no role"}]])
    with pytest.raises(LwError, match="2 prefixes for 1"):
        fake.generate(["x"], prefix=["a", "b"])
    with pytest.raises(LwError, match="errors must be"):
        fake.generate(["x"], errors="ignore")
    assert fake.generate([]) == []


def test_prefix_needs_a_backend_that_can_continue():
    fake = ScriptedChatModel("x", supports_prefix=False)
    with pytest.raises(LwError, match="cannot continue an assistant prefix"):
        fake.generate(["q"], prefix="Paragraph 1 -")
    fake.generate(["q"], prefix=[None])  # no prefix given: fine


def test_fake_follows_its_script_and_records_calls():
    fake = ScriptedChatModel(["one\ntwo", RuntimeError("boom"), "three"])
    outs = fake.generate(["a", "b", "c"], stop=["\n"], errors="return")
    assert [o.text for o in outs] == ["one", "", "three"]
    assert [o.finish_reason for o in outs] == ["stop", "error", "stop"]
    assert "boom" in outs[1].error
    assert [c[0][-1]["content"] for c in fake.calls] == ["a", "b", "c"]
    with pytest.raises(LwError, match="ran out"):
        fake.generate(["d"])


def test_fake_raises_errors_by_default():
    fake = ScriptedChatModel(lambda conv, prefix: RuntimeError("down"))
    with pytest.raises(RuntimeError, match="down"):
        fake.generate(["a"])


def test_load_rejects_unknown_specs_with_the_list():
    with pytest.raises(LwError, match="smollm2-135m, tiny-random, hf:"):
        lw.llm.load("gpt-9000")
    with pytest.raises(LwError, match="unknown model spec"):
        lw.llm.load("hf:")


def test_load_turns_generation_options_into_defaults():
    model = lw.llm.load("fake:hello there world", max_new_tokens=2)
    assert model.config.max_new_tokens == 2
    out = model.generate(["q"])[0]
    assert out.text == "hello there" and out.finish_reason == "length"
    assert model.generate(["q"], max_new_tokens=5)[0].finish_reason == "stop"


def test_generation_table_measures_words():
    fake = ScriptedChatModel(["Three small words.", "写三个字"])
    outs = fake.generate(["p1", "p2"])
    table = generation_table(["p1", "p2"], outs, lengths=[3, 10])
    assert table["words"].tolist() == [3, 4]
    assert table["length"].tolist() == [3, 10]
    assert "length" not in generation_table(["p1", "p2"], outs)
