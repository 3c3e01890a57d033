"""Continuous batching (lw.llm.engine) and ChatModel.stream on real backends."""

import lw
from lw.llm import GenerationConfig, Request

PROMPTS = ["hi", "Write a very long story about two cats, a dog and a lighthouse by the sea.",
           "Name a colour.", "Tell me about rivers, mountains and valleys in detail please.", "ok",
           "Describe a storm over a harbour at dusk, with gulls."]


def test_rows_leaving_and_joining_do_not_change_greedy_replies(tiny_exact):
    """Batch 2 over 6 prompts with different budgets: rows end at different steps, others are
    prefilled and merged into the running batch (shorter and longer than it). In fp32: bf16
    rounds each batch shape differently, enough to flip the tiny model's nearly flat argmax."""
    tiny = tiny_exact
    budgets = [3, 17, 6, 11, 2, 9]
    solo = [tiny.generate([p], max_new_tokens=b)[0] for p, b in zip(PROMPTS, budgets, strict=True)]
    tiny.batch_size = 2
    try:
        done = {}
        tiny.stream([Request(k, p, GenerationConfig(max_new_tokens=b))
                     for k, (p, b) in enumerate(zip(PROMPTS, budgets, strict=True))],
                    lambda r, g: done.__setitem__(r.key, g))
    finally:
        tiny.batch_size = 4
    assert [done[k].text for k in range(6)] == [s.text for s in solo]
    assert [done[k].completion_tokens for k in range(6)] == [s.completion_tokens for s in solo]


def test_continuous_engine_matches_transformers_generate(tiny_exact):
    # fp32: the two compute the same logits in different shapes (see the test above).
    tiny = tiny_exact
    reference = lw.llm.hf.HFChatModel(tiny.model, tiny.tokenizer, "tiny-random", batch_size=4,
                                      engine="hf")
    assert tiny.engine == "continuous" and reference.engine == "hf"
    ours = tiny.generate(PROMPTS, max_new_tokens=12, repetition_penalty=1.3)
    theirs = reference.generate(PROMPTS, max_new_tokens=12, repetition_penalty=1.3)
    assert [o.text for o in ours] == [t.text for t in theirs]


def test_a_sampled_reply_does_not_depend_on_its_batch_mates(tiny_whole_prefill):
    """Each reply draws from its own generator. Prompts of one token length keep the batch shape
    the same, so the arithmetic is too (the tiny model's flat distribution would let ~1e-7
    rounding differences between shapes flip a draw); prefix caching is off for that reason."""
    tiny = tiny_whole_prefill
    first = ["Name a colour.", "Name a river.", "Name a fruit."]
    second = ["Name a colour.", "Name a metal.", "Name a tree."]
    sizes = {len(tiny._ids([{"role": "user", "content": p}], None)) for p in first + second}
    assert len(sizes) == 1
    cfg = dict(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=5)
    a, b = tiny.generate(first, **cfg), tiny.generate(second, **cfg)
    assert a[0].text == b[0].text
    assert len({x.text for x in a}) > 1 and a[1].text != b[1].text


def test_follow_ups_start_before_the_round_ends(tiny):
    """A's follow-up is generated while B (a long reply) is still running: finish order shows
    it. In rounds, A2 would have to wait for B."""
    order = []

    def on_done(request, gen):
        order.append(request.key)
        return [Request("A2", "again", GenerationConfig(max_new_tokens=2, min_new_tokens=2))] \
            if request.key == "A" else []

    tiny.stream([Request("A", "a", GenerationConfig(max_new_tokens=2, min_new_tokens=2)),
                 Request("B", "b", GenerationConfig(max_new_tokens=40, min_new_tokens=40))],
                on_done)
    assert order == ["A", "A2", "B"]


def test_base_stream_works_in_rounds_and_checks_requests():
    fake = lw.llm.load("fake:hello there")
    seen = []

    def on_done(request, gen):
        seen.append((request.key, gen.text))
        return [Request(request.key + 1, "more", request.config)] if request.key < 2 else None

    fake.stream([Request(0, "start", GenerationConfig())], on_done)
    assert seen == [(0, "hello there"), (1, "hello there"), (2, "hello there")]
    try:
        fake.stream(["not a request"], on_done)
    except lw.errors.LwError as exc:
        assert "Request" in str(exc)
    else:
        raise AssertionError("a plain string was accepted")


def test_openai_stream_sends_follow_ups(server):
    server.arm([])
    model = lw.llm.load("openai:tiny-random", base_url=server.base_url, api_key=server.key,
                        concurrency=2)
    got = {}

    def on_done(request, gen):
        got[request.key] = gen
        return [Request(request.key + "+", "next", request.config)] if len(request.key) == 1 \
            else []

    model.stream([Request(k, f"say {k}", GenerationConfig(max_new_tokens=3)) for k in "xy"],
                 on_done)
    assert sorted(got) == ["x", "x+", "y", "y+"]
    assert all(g.finish_reason in ("stop", "length") and g.completion_tokens for g in got.values())


def test_the_repetition_penalty_counts_the_prompts_end_of_turn_tokens(tiny):
    """As transformers and vLLM do: the chat template's end-of-turn tokens are 'seen' (see the
    engine's docstring for why the kit no longer exempts them)."""
    from lw.llm.engine import Engine, Job

    # The growing-cache engine on any device (on CUDA tiny._engine() is the SlotEngine).
    engine = Engine(tiny.model, tiny.tokenizer, tiny.batch_size, tiny._eos(), tiny.prefixes)
    ids = tiny._ids([{"role": "user", "content": "Tell me more."}], None)
    eos = [t for t in engine.eos_ids if t in ids]
    assert eos, "the chat template should put an end-of-turn token in the prompt"
    unseen = next(t for t in range(1000, 2000) if t not in ids)
    rows = []
    _, _, _, seen = engine._admit(rows, [Job(0, ids, GenerationConfig(repetition_penalty=5.0),
                                             "0")], None)
    assert seen[0, eos].all() and seen[0, ids[-1]] and not seen[0, unseen]
