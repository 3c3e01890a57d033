"""The OpenAI-compatible backend against a real HTTP server process on 127.0.0.1.

The server is `lw.serve` (tests/fault_server.py) serving the tiny random model; tests arm it to
answer with 429s, 500s, 503s, delays, cut-off bodies and dropped connections.
"""

import json
import socket

import pytest

import lw
from lw.errors import LwError


def client(server, **options):
    options = {"base_url": server.base_url, "api_key": server.key, "backoff": 0.01,
               "max_retries": 5, **options}
    return lw.llm.load("openai:tiny-random", **options)


def test_generates_in_order_with_usage(server):
    server.arm([])
    model = client(server, concurrency=3)
    prompts = ["one", "a longer prompt with more tokens in it", "three", "four", "five"]
    outs = model.generate(prompts, max_new_tokens=5)
    # greedy: the same text as in-process, on the CPU in fp32 as the test server runs it
    local = lw.llm.load("tiny-random", device="cpu").generate(prompts, max_new_tokens=5)
    assert [o.text for o in outs] == [x.text for x in local]
    assert [o.prompt_tokens for o in outs] == [x.prompt_tokens for x in local]
    assert all(o.completion_tokens == 5 and o.finish_reason == "length" for o in outs)
    assert server.seen() == 5


def test_retries_through_every_kind_of_fault(server):
    plan = ["429", "500", "malformed", "drop", "503"]
    server.arm(plan)
    outs = client(server, concurrency=2).generate(["a", "b", "c"], max_new_tokens=3)
    assert all(o.finish_reason == "length" and o.completion_tokens == 3 for o in outs)
    attempts = sum(o.extra["attempts"] for o in outs)
    assert attempts == len(outs) + len(plan) == server.seen()


def test_timeout_is_retried(server):
    server.arm(["delay"], delay=2.5)
    out = client(server, timeout=1.0).generate(["slow"], max_new_tokens=2)[0]
    assert out.extra["attempts"] == 2 and out.completion_tokens == 2


def test_exhausted_retries_fail_the_item_or_the_call(server):
    server.arm(["500"] * 3)
    outs = client(server, max_retries=2, concurrency=1).generate(
        ["x", "y"], max_new_tokens=2, errors="return")
    assert outs[0].finish_reason == "error" and "gave up after 3 attempts" in outs[0].error
    assert "500" in outs[0].error
    assert outs[1].finish_reason == "length"  # the others go on
    server.arm(["500"] * 3)
    with pytest.raises(RuntimeError, match="gave up"):
        client(server, max_retries=2, concurrency=1).generate(["x"], max_new_tokens=2)


def test_failed_replies_say_whether_a_rerun_can_mend_them(server):
    """Spent retries are a transport outage; a 400 is a wrong request, never retried."""
    from lw.llm.base import Request
    from lw.llm.failures import REQUEST, TRANSPORT, failure_kind

    server.arm(["400", "500", "500"])
    model = client(server, max_retries=1, concurrency=1)
    outs = model.generate(["x", "y", "z"], max_new_tokens=2, errors="return")
    assert [failure_kind(o) for o in outs[:2]] == [REQUEST, TRANSPORT]
    assert outs[0].extra["error_kind"] == REQUEST and "400" in outs[0].error
    assert "maximum context length" in outs[0].error
    assert outs[1].extra["error_kind"] == TRANSPORT and "gave up after 2 attempts" in outs[1].error
    assert outs[2].finish_reason == "length" and server.seen() == 4  # the 400 was sent once
    server.arm(["503", "503", "400"])
    got = {}
    model.stream([Request(k, k, model.config.updated(max_new_tokens=2)) for k in "ab"],
                 lambda r, out: got.update({r.key: out}))
    assert [got[k].extra.get("error_kind") for k in "ab"] == [TRANSPORT, REQUEST]


def test_wrong_key_is_a_clear_error(server):
    with pytest.raises(LwError, match="rejected the API key"):
        client(server, api_key="sk-wrong").generate(["x"])


def test_unknown_model_names_what_is_served(server):
    model = lw.llm.load("openai:gpt-x", base_url=server.base_url, api_key=server.key)
    with pytest.raises(LwError, match="'gpt-x' is not served.*tiny-random"):
        model.generate(["x"])
    unchecked = lw.llm.load("openai:gpt-x", base_url=server.base_url, api_key=server.key,
                            check=False)
    with pytest.raises(LwError, match="does not know model 'gpt-x'"):
        unchecked.generate(["x"])


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = lw.llm.load("openai:m", base_url=f"http://127.0.0.1:{port}/v1", api_key="k")
    with pytest.raises(LwError, match="cannot reach the server"):
        model.generate(["x"])


def test_missing_key_for_the_hosted_api(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(LwError, match="OPENAI_API_KEY"):
        lw.llm.load("openai:gpt-4o")


def test_key_and_base_url_come_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", server.key)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    server.arm([])
    assert lw.llm.load("openai:tiny-random").generate(["x"], max_new_tokens=2)[0].text


def test_the_key_is_never_in_records(server):
    server.arm([])
    model = client(server)
    outs = model.generate(["x"], max_new_tokens=2)
    dumped = json.dumps([model.info(), [o.to_dict() for o in outs]]) + repr(model)
    assert server.key not in dumped and server.base_url in dumped


def test_assistant_prefix_with_continue_final_message(server):
    server.arm([])
    with pytest.raises(LwError, match="continue_final_message=False was given"):
        client(server, continue_final_message=False).generate(["x"], prefix="Paragraph 1 -")
    assert server.seen() == 0  # refused before sending
    model = client(server)  # lw.serve says it continues prefixes: no option needed
    assert model.capabilities.continues_prefix and model.server_kind() == "lw"
    out = model.generate(["Plan it."], prefix="Paragraph 1 - Main Point:", max_new_tokens=3)[0]
    local = lw.llm.load("tiny-random", device="cpu")  # as the test server runs it
    expected = local.generate(["Plan it."], prefix="Paragraph 1 - Main Point:", max_new_tokens=3)
    assert out.text == expected[0].text and out.prompt_tokens == expected[0].prompt_tokens


def test_base_url_without_v1_is_named_not_the_model(server):
    server.arm([])
    root = server.base_url.removesuffix("/v1")
    with pytest.raises(LwError, match=f"has no /v1.*use base_url='{root}/v1'"):
        client(server, base_url=root).generate(["x"], max_new_tokens=2)
    with pytest.raises(LwError, match="has no /v1"):
        client(server, base_url=root, check=False).generate(["x"], max_new_tokens=2)
    assert server.seen() == 0


def test_lw_serve_is_identified_and_gets_its_own_parameters(server):
    server.arm([])
    model = client(server)
    assert model.server_kind() == "lw" and model.capabilities.applies("repetition_penalty")
    assert model.info()["server_kind"] == "lw"
    plain, penalised = (model.generate(["Say something."], max_new_tokens=8, temperature=0.0,
                                       repetition_penalty=p)[0].text for p in (1.0, 3.0))
    assert plain != penalised  # the penalty reached the model
