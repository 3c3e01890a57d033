"""Budgets within the context: every backend reports its context, a reply's budget is lowered to
what the context leaves after its prompt (recorded per answer and counted), a prompt that fills
the context is refused before it is sent, and a run's plan is told before any request.

Local: a tiny random Llama whose config allows 128 positions. Servers: the real ``server``
fixture (lw.serve over HTTP) and stub transports answering as vLLM, llama.cpp and
llama-cpp-python answer (their routes and fields, see lw.llm.server_kinds).
"""

import json
import shutil
import warnings

import httpx
import pytest

import lw
import lw.llm.vllm_backend
from lw.errors import LwError
from lw.llm.context import YARN_4X, long_context_options, plan
from lw.llm.embedded import tiny_random_dir
from lw.llm.hf import model_context, scaled_config

WINDOW = 128


@pytest.fixture(scope="module")
def short_model(tmp_path_factory):
    """tiny-random's weights with a 128-position config: contexts are reached in a few steps."""
    folder = tmp_path_factory.mktemp("short") / "model"
    shutil.copytree(tiny_random_dir(0), folder)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = WINDOW
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_context_from_a_config_with_and_without_rope_scaling():
    from transformers import LlamaConfig, Qwen2Config

    assert model_context(LlamaConfig(max_position_embeddings=8192)) == 8192
    qwen = Qwen2Config(max_position_embeddings=32768, rope_scaling=dict(YARN_4X))
    assert model_context(qwen) == 131072  # Qwen2.5's documented YaRN x4
    llama31 = LlamaConfig(max_position_embeddings=131072, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0})
    assert model_context(llama31) == 131072  # already counted in max_position_embeddings


def test_rope_scaling_keeps_the_models_own_base_frequency(tmp_path):
    from transformers import Qwen2Config

    Qwen2Config(max_position_embeddings=32768, rope_theta=1e6).save_pretrained(tmp_path)
    config = scaled_config(str(tmp_path), dict(YARN_4X))
    rope = getattr(config, "rope_parameters", None) or config.rope_scaling
    assert rope["rope_type"] == "yarn" and rope["factor"] == 4.0
    assert rope["rope_theta"] == 1e6  # not transformers' default of 10,000
    assert model_context(config) == 131072


def test_a_local_reply_is_capped_to_the_context_and_the_cap_is_recorded(short_model, tmp_path):
    model = lw.llm.load(f"hf:{short_model}", batch_size=2)
    assert model.capabilities.context == WINDOW
    rows = [{"id": "a", "prompt": "Write about tides.", "length": 500},
            {"id": "b", "prompt": "word " * 200, "length": 10}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        preds = lw.generation.predict(model, rows, tmp_path / "p.jsonl", max_new_tokens=200,
                                    temperature=0, progress=False)
    said = " ".join(str(w.message) for w in caught)
    assert "1 of 2 prompts fill the 128-token context" in said
    assert "1 of 2 replies will be capped below the 200-token budget" in said
    assert "ask for more words than the context leaves room for" in said
    a, b = preds
    prompt = model.prompt_tokens([{"role": "user", "content": rows[0]["prompt"]}])
    assert a["capped"] == {"asked": 200, "allowed": WINDOW - prompt, "context": WINDOW,
                           "prompt_tokens": prompt}
    assert a["completion_tokens"] <= WINDOW - prompt
    assert b["status"] == "failed" and "fills the 128-token context" in b["error"]
    assert lw.longbench.results(preds)["capped"] == 1
    stored = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["id"] for r in stored if "id" in r] == ["a"]  # the refused one is not stored


def test_generate_refuses_a_prompt_that_fills_the_context(short_model):
    model = lw.llm.load(f"hf:{short_model}", batch_size=2, engine="hf")
    with pytest.raises(LwError, match="leaves no room for a reply in the 128-token context"):
        model.generate(["word " * 200], max_new_tokens=4)
    out = model.generate(["Hi."], max_new_tokens=500, temperature=0)[0]  # one batch budget
    assert out.extra["capped"]["allowed"] < 500 and out.completion_tokens <= 128


def test_a_server_reports_its_context_and_replies_are_capped_through_it(server):
    server.arm([])
    model = lw.llm.load("openai:tiny-random", base_url=server.base_url, api_key=server.key)
    assert model.capabilities.context == 8192  # lw.serve's card says what its model holds
    assert model.context_how() == "lw /v1/models"
    # ~7,900 tokens of prompt in 47,000 bytes: only an exact count shows that it fits
    out = model.generate(["hello " * 7900], max_new_tokens=8000)[0]
    capped = out.extra["capped"]
    assert capped["asked"] == 8000 and capped["allowed"] < 400
    # counted by lw.serve's /tokenize (vLLM's route): exactly what the reply's usage says
    assert capped["prompt_tokens"] == out.prompt_tokens
    assert capped["allowed"] == 8192 - out.prompt_tokens >= out.completion_tokens


class _Stub:
    """An httpx transport answering as a server kind does; records the requests."""

    def __init__(self, routes: dict):
        self.routes, self.seen = routes, []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path))
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return httpx.Response(404, json={"error": "no route"})
        body = json.loads(request.content) if request.content else None
        return httpx.Response(200, json=route(body) if callable(route) else route)

    def client(self):
        return lw.llm.load("openai:m", base_url="http://srv:8000/v1", api_key="k",
                           http_client=httpx.Client(transport=httpx.MockTransport(self)))


def _chat(completion_tokens, finish="length", prompt_tokens=10):
    return lambda body: {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                         "choices": [{"index": 0, "finish_reason": finish,
                                      "message": {"role": "assistant",
                                                  "content": "w " * completion_tokens}}],
                         "usage": {"prompt_tokens": prompt_tokens,
                                   "completion_tokens": completion_tokens,
                                   "total_tokens": prompt_tokens + completion_tokens}}


def test_vllm_max_model_len_and_its_token_count_cap_the_request():
    sent = []
    stub = _Stub({
        ("GET", "/v1/models"): {"data": [{"id": "m", "owned_by": "vllm", "max_model_len": 4096}]},
        ("POST", "/tokenize"): lambda body: {"count": 1000, "max_model_len": 4096,
                                             "tokens": []},
        ("POST", "/v1/chat/completions"): lambda body: sent.append(body) or _chat(5)(body)})
    model = stub.client()
    assert model.capabilities.context == 4096 and model.context_how() == "vllm /v1/models"
    out = model.generate(["x" * 3000], max_new_tokens=32768)[0]
    assert sent[0]["max_tokens"] == 3096  # 4096 - 1000 counted by the server: never a 400
    assert out.extra["capped"] == {"asked": 32768, "allowed": 3096, "context": 4096,
                                   "prompt_tokens": 1000}
    stub.routes[("POST", "/v1/chat/completions")] = _chat(5, "stop")
    out = model.generate(["short"], max_new_tokens=100)[0]  # fits by the bound: not counted
    assert "capped" not in out.extra and stub.seen.count(("POST", "/tokenize")) == 1


def test_llamacpp_props_give_n_ctx_and_its_template_is_counted():
    stub = _Stub({
        ("GET", "/v1/models"): {"data": [{"id": "m", "owned_by": "llamacpp"}]},
        ("GET", "/props"): {"default_generation_settings": {"n_ctx": 2048}},
        ("POST", "/apply-template"): lambda body: {"prompt": "<s>" + body["messages"][0][
            "content"]},
        ("POST", "/tokenize"): lambda body: {"tokens": list(range(700))},
        ("POST", "/v1/chat/completions"): _chat(3, "stop")})
    model = stub.client()
    assert model.capabilities.context == 2048 and "n_ctx" in model.context_how()
    out = model.generate(["y" * 1900], max_new_tokens=4000)[0]
    assert out.extra["capped"]["allowed"] == 2048 - 700


def test_llama_cpp_python_reports_nothing_but_its_silent_cut_is_recorded_and_learned():
    stub = _Stub({("GET", "/v1/models"): {"data": [{"id": "m", "owned_by": "me"}]},
                  ("POST", "/v1/chat/completions"): _chat(40, prompt_tokens=24)})
    model = stub.client()
    assert model.capabilities.context is None
    assert "context unknown" in plan(model, [{"id": 1, "prompt": "x"}], 100).lines()[0]
    out = model.generate(["x"], max_new_tokens=100)[0]  # the server cut it to 40 of 100
    assert out.extra["capped"] == {"asked": 100, "allowed": 40, "context": 64,
                                   "prompt_tokens": 24, "by": "server"}
    assert model.capabilities.context == 64 and model.context_how().startswith("learned")
    given = lw.llm.load("openai:m", base_url="http://srv:8000/v1", api_key="k", context=8192,
                        check=False)
    assert given.capabilities.context == 8192


def test_credentials_in_base_url_never_reach_a_record(tmp_path):
    stub = _Stub({("GET", "/v1/models"): {"data": [{"id": "m", "owned_by": "vllm"}]},
                  ("POST", "/v1/chat/completions"): _chat(2, "stop")})
    model = lw.llm.load("openai:m", base_url="http://user:sk-secret@srv:8000/v1",
                        api_key="k", http_client=httpx.Client(transport=httpx.MockTransport(stub)))
    preds = lw.generation.predict(model, [{"id": "a", "prompt": "Hi", "length": 5}],
                                tmp_path / "p.jsonl", max_new_tokens=2, progress=False)
    assert preds[0]["status"] == "done" and stub.seen[-1] == ("POST", "/v1/chat/completions")
    kept = (tmp_path / "p.jsonl").read_text() + json.dumps(model.info()) + repr(model)
    assert "sk-secret" not in kept
    assert model.info()["base_url"] == "http://srv:8000/v1"


def test_long_context_options_per_backend_and_at_full_size_only(monkeypatch):
    assert long_context_options("hf:Qwen/Qwen2.5-7B-Instruct") == {"rope_scaling": YARN_4X}
    vllm = long_context_options("vllm:Qwen/Qwen2.5-7B-Instruct")
    assert vllm["max_model_len"] == 131072
    assert vllm["hf_overrides"]["rope_parameters"] == {**YARN_4X, "rope_theta": 1e6}
    argv = lw.llm.vllm_backend.vllm_command("Qwen/Qwen2.5-7B-Instruct", 8000, **vllm)
    flag = argv.index("--hf-overrides")
    assert json.loads(argv[flag + 1])["rope_parameters"]["rope_type"] == "yarn"
    assert argv[argv.index("--max-model-len") + 1] == "131072"
    assert long_context_options("hf:Qwen/Qwen2.5-0.5B-Instruct") == {}
    full = lw.profiles.resolve_size("full", model="hf:Qwen/Qwen2.5-7B-Instruct")
    assert full.options() == {"rope_scaling": YARN_4X}
    # small never asks for the long context; what else it adds (bf16 on a CPU that has it) is
    # the CPU's business, so both readings of LW_CPU_BF16 are checked
    small = lw.profiles.resolve_size("small", model="hf:Qwen/Qwen2.5-7B-Instruct")
    for forced in ("0", "1"):
        monkeypatch.setenv("LW_CPU_BF16", forced)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fp32 warning is test_profiles' to check
            options = small.options()
        assert "rope_scaling" not in options and set(options) <= {"dtype"}
    released = full.options("hf:THUDM/LongWriter-llama3.1-8b")
    assert released == {"prompt_format": "inst"}  # 128k already: the paper's own options


def test_agentwrite_warns_before_writing_what_the_context_cannot_hold():
    from lw.agentwrite.writer import context_warning

    model = lw.llm.load("tiny-random", batch_size=2)  # 8,192 positions
    items = [{"id": "long", "prompt": "Write 6000 words on tides.", "length": 6000},
             {"id": "short", "prompt": "Write 500 words on tides.", "length": 500}]
    with pytest.warns(UserWarning, match="1 of 2 items ask for more text than the 8192-token"):
        assert context_warning(model, items, "sequential") == ["long"]
    assert context_warning(model, items, "parallel") == []  # each prompt holds one paragraph
