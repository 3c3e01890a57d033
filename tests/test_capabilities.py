"""Capabilities declared, not guessed: every backend's ``capabilities``, settings refused before
any request, OpenAI-compatible servers identified from ``/v1/models`` and each setting sent under
the server's own name, and a ``base_url`` without /v1. The servers are stubs (an httpx
transport answering as each server's source says it does) or ``lw.serve`` in this process."""

import dataclasses
import json
import threading

import httpx
import pytest

import lw
from lw.errors import LwError
from lw.llm import Capabilities, GenerationConfig
from lw.llm.base import SETTINGS
from lw.llm.fake import ScriptedChatModel
from lw.llm.openai_compat import OpenAIChatModel
from lw.llm.server_kinds import KINDS, has_api_version

# /v1/models cards as each server sends them (their source; see lw.llm.server_kinds).
CARDS = {
    "vllm": {"id": "m", "object": "model", "created": 1, "owned_by": "vllm", "root": "m",
             "max_model_len": 4096},
    "sglang": {"id": "m", "object": "model", "created": 1, "owned_by": "sglang"},
    "llamacpp": {"id": "m", "object": "model", "created": 1, "owned_by": "llamacpp",
                 "meta": {"n_ctx_train": 8192}},
    "llama-cpp-python": {"id": "m", "object": "model", "owned_by": "me", "permissions": []},
    "ollama": {"id": "m", "object": "model", "created": 1, "owned_by": "library"},
    "openai": {"id": "m", "object": "model", "created": 1, "owned_by": "system"},
    "lw": {"id": "m", "object": "model", "owned_by": "lw"},
}


class Stub:
    """An OpenAI-compatible server in an httpx transport: ``cards`` on /v1/models (None: 404),
    a fixed reply on /v1/chat/completions; ``sent`` holds the chat request bodies."""

    def __init__(self, cards, prefix="/v1"):
        self.cards, self.prefix, self.sent = cards, prefix, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if not path.startswith(self.prefix + "/"):
            return httpx.Response(404, json={"detail": "Not Found"})
        if path.endswith("/models") and self.cards is not None:
            return httpx.Response(200, json={"object": "list", "data": self.cards})
        if path.endswith("/chat/completions"):
            self.sent.append(json.loads(request.content))
            return httpx.Response(200, json={
                "id": "c", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "fine"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})
        return httpx.Response(404, json={"detail": "Not Found"})

    def model(self, base_url="http://gpu-box:8000/v1", **options) -> OpenAIChatModel:
        client = httpx.Client(transport=httpx.MockTransport(self))
        return OpenAIChatModel("m", base_url=base_url, api_key="k", backoff=0.0,
                               http_client=client, **options)


@pytest.mark.parametrize("kind", sorted(CARDS))
def test_servers_are_identified_from_their_model_cards(kind):
    model = Stub([CARDS[kind]]).model()
    assert model.server_kind() == kind
    assert model.info()["server_kind"] == kind
    assert "owned_by" in model.info()["server_identified_by"]


def test_an_unknown_server_gets_standard_parameters_and_says_so():
    stub = Stub([{"id": "m", "object": "model", "owned_by": "acme-inference"}])
    model = stub.model()
    assert model.server_kind() is None
    info = model.info()
    assert "hosted OpenAI-style API" in info["server_kind"]
    assert "acme-inference" in info["server_identified_by"]
    caps = model.capabilities
    assert not caps.applies("repetition_penalty") and not caps.continues_prefix
    with pytest.raises(LwError, match=r"did not say which it is.*server='vllm'"):
        model.generate(["q"], repetition_penalty=1.3)
    assert stub.sent == []
    # Told what it is, the kit sends the server's own parameter.
    model = stub.model(server="vllm")
    model.generate(["q"], repetition_penalty=1.3)
    assert stub.sent[-1]["repetition_penalty"] == 1.3


@pytest.mark.parametrize("kind, penalty, minimum", [
    ("vllm", "repetition_penalty", "min_tokens"),
    ("sglang", "repetition_penalty", "min_tokens"),
    ("llamacpp", "repeat_penalty", None),
    ("llama-cpp-python", "repeat_penalty", "min_tokens"),
    ("ollama", None, None),
    ("openai", None, None),
    ("lw", "repetition_penalty", "min_tokens"),
])
def test_each_setting_goes_out_under_the_servers_own_name(kind, penalty, minimum):
    stub = Stub([CARDS[kind]])
    model = stub.model()
    caps = model.capabilities
    assert set(caps.settings) == set(SETTINGS)
    assert caps.settings["repetition_penalty"] == penalty
    assert caps.settings["min_new_tokens"] == minimum
    assert caps.settings["max_new_tokens"] == "max_tokens" and caps.settings["seed"] == "seed"
    assert not caps.token_probabilities and caps.concurrency == 8
    if penalty:
        model.generate(["q"], repetition_penalty=1.8, seed=3, top_p=0.9, temperature=0.7)
        body = stub.sent[-1]
        assert body[penalty] == 1.8 and body["seed"] == 3 and body["top_p"] == 0.9
        others = {"repetition_penalty", "repeat_penalty"} - {penalty}
        assert not others & set(body)  # never the other spelling, which would be ignored
    else:
        with pytest.raises(LwError, match="no repetition penalty: use repetition_penalty=1.0"):
            model.generate(["q"], repetition_penalty=1.8)
    if minimum:
        model.generate(["q"], min_new_tokens=5)
        assert stub.sent[-1][minimum] == 5
    else:
        with pytest.raises(LwError, match="no minimum reply length: use min_new_tokens=0"):
            model.generate(["q"], min_new_tokens=5)
    # Neutral values are not sent at all, so a server without the parameter never sees it.
    model.generate(["q"])
    assert not {"repetition_penalty", "repeat_penalty", "min_tokens"} & set(stub.sent[-1])


def test_refusals_name_the_server_and_what_to_do():
    hosted = Stub([CARDS["openai"]])
    with pytest.raises(LwError, match="hosted OpenAI-style APIs have no repetition penalty: "
                                      r"use repetition_penalty=1.0, or a server that has one "
                                      r"\(vLLM, SGLang, llama.cpp's server"):
        hosted.model().generate(["q"], repetition_penalty=1.2)
    llama = Stub([CARDS["llamacpp"]])
    with pytest.raises(LwError, match="llama.cpp's server has no minimum reply length: use "
                                      "min_new_tokens=0, or a server that has one"):
        llama.model().generate(["q"], min_new_tokens=100)
    assert hosted.sent == [] and llama.sent == []


def test_prefixes_follow_the_server(monkeypatch):
    for kind in ("vllm", "sglang", "lw"):
        stub = Stub([CARDS[kind]])
        stub.model().generate(["q"], prefix="Paragraph 1 -")
        body = stub.sent[-1]
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        assert body["messages"][-1] == {"role": "assistant", "content": "Paragraph 1 -"}
    for kind in ("llamacpp", "llama-cpp-python", "ollama", "openai"):
        stub = Stub([CARDS[kind]])
        model = stub.model()
        assert not model.supports_prefix  # the old name still answers
        with pytest.raises(LwError, match=f"cannot continue an assistant prefix. It is "
                                          f"{KINDS[kind].label}"):
            model.generate(["q"], prefix="Paragraph 1 -")
        assert stub.sent == []
        # Asserting the extension on a server known not to have it is an error...
        with pytest.raises(LwError, match="continue_final_message=True, but"):
            stub.model(continue_final_message=True).generate(["q"])
    with pytest.raises(LwError, match="continue_final_message=True, but"):
        Stub([]).model(server="llamacpp", continue_final_message=True)  # ...at once if told
    # ...but the user's word for a server that does not say what it is.
    stub = Stub([{"id": "m", "owned_by": "acme"}])
    stub.model(continue_final_message=True).generate(["q"], prefix="P:")
    assert stub.sent[-1]["continue_final_message"] is True


def test_stream_refuses_before_sending_anything():
    stub = Stub([CARDS["openai"]])
    model = stub.model()
    ok = lw.llm.Request("a", "q", GenerationConfig())
    bad = lw.llm.Request("b", "q", GenerationConfig(repetition_penalty=1.5))
    with pytest.raises(LwError, match="no repetition penalty"):
        model.stream([ok, bad], lambda r, g: None)
    assert stub.sent == []


def test_base_url_without_v1_says_to_add_it():
    stub = Stub([CARDS["vllm"]])
    with pytest.raises(LwError, match=r"has no /v1.*use base_url='http://127.0.0.1:8080/v1'"):
        stub.model(base_url="http://127.0.0.1:8080").generate(["q"])
    with pytest.raises(LwError, match="has no /v1"):  # unchecked: the first request says it
        stub.model(base_url="http://127.0.0.1:8080/", check=False).generate(["q"])
    assert stub.sent == []
    # A server that also answers without /v1 (llama.cpp's does) is left alone.
    root = Stub([CARDS["llamacpp"]], prefix="")
    assert root.model(base_url="http://127.0.0.1:8080").generate(["q"])[0].text == "fine"
    # With /v1, a 404 on the chat route is the model's name, as before.
    missing = Stub(None, prefix="/elsewhere")  # 404 on every route
    with pytest.raises(LwError, match="does not know model 'm'"):
        missing.model(base_url="http://127.0.0.1:8080/v1", check=False).generate(["q"])


@pytest.mark.parametrize("url, versioned", [
    ("http://127.0.0.1:8080", False), ("http://127.0.0.1:8080/", False),
    ("https://api.deepseek.com", False), ("http://h:8000/v1", True),
    ("http://h:8000/v1/", True), ("https://openrouter.ai/api/v1", True),
    ("https://generativelanguage.googleapis.com/v1beta/openai/", True),
    ("http://h:8000/api", False),
])
def test_api_version_in_base_url(url, versioned):
    assert has_api_version(url) == versioned


def test_lw_serve_says_what_the_model_it_serves_does():
    from lw.serve import make_server

    wrapped = ScriptedChatModel("served", supports_prefix=False,
                                settings={"repetition_penalty": None})
    server = make_server(wrapped, port=0, name="m")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/v1"
        model = OpenAIChatModel("m", base_url=base, api_key="k")
        caps = model.capabilities
        assert model.server_kind() == "lw"
        assert not caps.continues_prefix and not caps.applies("repetition_penalty")
        assert caps.settings["min_new_tokens"] == "min_tokens"
        with pytest.raises(LwError, match="lw.serve serves .* cannot apply it"):
            model.generate(["q"], repetition_penalty=1.4)
        assert model.generate(["q"])[0].text == "served"
        # Asked directly, the server refuses (400) rather than drop the setting.
        reply = httpx.post(base + "/chat/completions", json={
            "model": "m", "messages": [{"role": "user", "content": "q"}],
            "repetition_penalty": 1.4})
        assert reply.status_code == 400 and "repetition_penalty" in reply.text
        assert len(wrapped.calls) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_fake_declares_what_it_is_told():
    fake = ScriptedChatModel("x", batch_size=3)
    caps = fake.capabilities
    assert caps == Capabilities(3, True, False, {k: k for k in SETTINGS})
    fake.supports_prefix = False  # tests switch it
    assert not fake.capabilities.continues_prefix
    limited = ScriptedChatModel("x", settings={"seed": None})
    with pytest.raises(LwError, match="cannot apply seed=4"):
        limited.generate(["q"], seed=4)
    with pytest.raises(LwError, match="cannot apply seed=4"):
        limited.stream([lw.llm.Request("k", "q", GenerationConfig(seed=4))], lambda r, g: None)
    assert limited.calls == []
    limited.generate(["q"], seed=None, temperature=0.5)  # neutral: fine
    with pytest.raises(LwError, match="unknown generation setting"):
        ScriptedChatModel("x", settings={"beam_width": None})


def test_local_model_applies_everything(tiny):
    caps = tiny.capabilities
    assert caps.concurrency == tiny.batch_size and caps.continues_prefix
    assert caps.token_probabilities and caps.distinct_copies
    assert caps.settings == {k: k for k in SETTINGS}
    tiny.check_settings(GenerationConfig(repetition_penalty=1.5, min_new_tokens=3, seed=1))


def test_dpo_samples_copies_together_only_where_they_differ(tmp_path):
    from lw.data.pairs import sample

    class Distinct(ScriptedChatModel):
        @property
        def capabilities(self):
            return dataclasses.replace(super().capabilities, distinct_copies=True)

    rows = [{"id": "a", "prompt": "Write A.", "length": 10},
            {"id": "b", "prompt": "Write B.", "length": 10}]
    apart = ScriptedChatModel("some words")
    sample(apart, rows, tmp_path / "apart", n_samples=2, progress=False)
    assert sorted({c[2].seed for c in apart.calls}) == [0, 1]
    together = Distinct("some words")
    sample(together, rows, tmp_path / "together", n_samples=2, progress=False)
    assert {c[2].seed for c in together.calls} == {0} and len(together.calls) == 4
