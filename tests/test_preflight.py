"""``python -m lw.run --check``: the plan of a run, told before any work, loading nothing."""

from lw import preflight


def test_full_plan_offline_names_contexts_and_the_missing_gpu(capsys):
    lines = preflight.check("full")
    text = "\n".join(lines)
    # Qwen2.5-7B at full: YaRN x4 makes room for the paper's 32,768-token answers
    assert "`hf:Qwen/Qwen2.5-7B-Instruct`" in text or "`vllm:Qwen/Qwen2.5-7B-Instruct`" in text
    assert "context 131072 (published config + YaRN)" in text or "vLLM --max-model-len" in text
    assert "## 03: 120 prompts, budget 32768 tokens" in text
    assert "LongWriter-llama3.1-8b" in text and "LongWriter-glm4-9b" in text
    assert not any("will be capped" in x for x in lines)  # every budget fits its context
    assert "- GPU: " in text


def test_a_budget_past_the_context_is_found_before_the_run(capsys):
    # tiny-random holds 8,192 positions: a 9,000-token budget cannot be granted to anyone
    lines = preflight.check("mock", {"MAX_NEW_TOKENS": 9000})
    capped = [x for x in lines if "will be capped below the 9000-token budget" in x]
    assert capped and all("8192-token context (model config)" in x for x in capped)
    assert lines[-1].startswith(f"{len([x for x in lines if x.lstrip().startswith(('!', '- !'))])}"
                                " finding(s)")


def test_check_flag_prints_the_plan_and_loads_no_model(capsys, monkeypatch):
    import lw.llm

    monkeypatch.setattr(lw.llm, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert lw.run.main(["--size", "mock", "--check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# plan of a `mock` run") and "## 05:" in out
    # 05 at mock takes a prompt asking for 10,000 words: more than tiny-random's 8,192 positions
    assert "1 of 2 prompts ask for more words than the context" in out
    assert out.rstrip().endswith("1 finding(s) (marked !) to read before the run.")


def test_an_unreachable_server_is_reported_not_fatal(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    lines = preflight.check("mock", {"MODEL": "openai:m"})
    assert any("server not reachable" in x for x in lines)
