"""Prefix caching (lw.llm.prefix): finished replies' keys and values reused by later prompts."""

import torch

from lw.agentwrite import AgentWriteConfig, AgentWriter
from lw.llm import GenerationConfig, Request
from lw.llm.engine import Engine, Job, _cache
from lw.llm.prefix import PrefixStore


def _eager(model) -> Engine:
    """The growing-cache engine on ``model``'s weights and prefix store, on any device (on
    CUDA ``model._engine()`` is the CUDA-graph SlotEngine, whose ``_admit`` differs)."""
    return Engine(model.model, model.tokenizer, model.batch_size, model._eos(), model.prefixes)


def _kv(n: int, layers: int = 2):
    """Keys and values for ``n`` tokens: 2 layers x (k, v) x 2 floats x 4 bytes = 32 bytes a token."""
    return ([torch.zeros(1, 1, n, 2) for _ in range(layers)],
            [torch.zeros(1, 1, n, 2) for _ in range(layers)])


def test_the_longest_common_prefix_is_found():
    store = PrefixStore(min_tokens=2)
    store.add([1, 2, 3, 4], *_kv(4))
    store.add([1, 2, 9, 9, 9], *_kv(5))
    assert store.match([1, 2, 3, 4, 5])[0] == 4
    assert store.match([1, 2, 9, 9, 7, 7])[0] == 4
    assert store.match([1, 2, 3])[0] == 2  # never the whole prompt: its last token must be fed
    assert store.match([5, 6, 7]) == (0, None)
    assert store.match([1, 7, 7]) == (0, None)  # one token in common: under min_tokens
    assert store.stats()["hits"] == 3 and store.stats()["reused_tokens"] == 10


def test_extended_entries_are_dropped_and_the_least_recently_used_evicted():
    store = PrefixStore(min_tokens=1)
    store.add([1, 2], *_kv(2))
    store.add([1, 2, 3], *_kv(3))
    assert len(store) == 1 and store.nbytes == 3 * 32
    store = PrefixStore(max_bytes=5 * 32, min_tokens=1)
    store.add([1, 2, 3], *_kv(3))
    store.add([4, 5], *_kv(2))
    assert store.match([1, 2, 3, 0])[0] == 3  # now the most recently used
    store.add([6, 7], *_kv(2))  # 7 tokens > 5: the oldest unused one goes
    assert store.match([4, 5, 0]) == (0, None)
    assert store.match([1, 2, 3, 0])[0] == 3 and store.match([6, 7, 0])[0] == 2
    assert store.nbytes <= store.max_bytes


def test_a_disabled_store_keeps_nothing():
    store = PrefixStore(max_bytes=0, min_tokens=1)
    store.add([1, 2, 3], *_kv(3))
    assert len(store) == 0 and store.match([1, 2, 3, 4]) == (0, None)


def test_kept_caches_are_each_rows_own_keys_and_values(tiny, tolerance):
    """Rows of different lengths leave a left-padded batch at different steps; what the engine
    keeps of each must equal a fresh prefill of that row's tokens alone (to the rounding of
    the model's dtype: bf16 on a GPU)."""
    tiny.prefixes.clear()
    prompts = ["hi", "Write a very long story about a dog and a lighthouse.", "Name a colour."]
    tiny.stream([Request(k, p, GenerationConfig(max_new_tokens=n))
                 for k, (p, n) in enumerate(zip(prompts, [9, 3, 14], strict=True))],
                lambda r, g: None)
    entries = list(tiny.prefixes._entries.values())
    assert len(entries) == 3
    tol = tolerance(tiny.model.dtype)
    cache_arg = _eager(tiny).cache_arg  # `cache` from transformers 5.2x, `past_key_values` before
    with torch.inference_mode():
        for entry in entries:
            cache = _cache(tiny.model.config)
            tiny.model(input_ids=entry.ids[None].to(tiny.device), use_cache=True,
                       **{cache_arg: cache})
            for layer, keys, values in zip(cache.layers, entry.keys, entry.values, strict=True):
                assert keys.shape == layer.keys.shape
                assert keys.device == layer.keys.device and keys.dtype == tiny.model.dtype
                assert torch.allclose(keys, layer.keys, **tol)
                assert torch.allclose(values, layer.values, **tol)


def test_a_prompt_extending_a_finished_reply_is_prefilled_from_where_it_differs(tiny, tolerance):
    tiny.prefixes.clear()
    first = [{"role": "user", "content": "Tell me about the sea and its tides."}]
    reply = tiny.generate([first], max_new_tokens=12)[0]
    follow = [*first, {"role": "assistant", "content": reply.text},
              {"role": "user", "content": "Go on."}]
    ids = tiny._ids(follow, None)
    engine, cfg = _eager(tiny), GenerationConfig()
    _, _, reused, _ = engine._admit([], [Job(0, ids, cfg, "0")], None)
    # All of the first prompt is reused but for the last token or two, where the template's
    # "assistant\n" and the reply can merge into other tokens once rendered as history.
    assert tiny.prefixes.hits == 1
    assert tiny.prefixes.reused_tokens >= len(tiny._ids(first, None)) - 2
    tiny.prefixes.clear()
    _, _, fresh, _ = engine._admit([], [Job(0, ids, cfg, "0")], None)
    assert tiny.prefixes.hits == 0  # nothing kept, nothing reused
    # Logits from a reused prefix vs a whole prefill: ~5e-5 apart in fp32 (lw.llm.prefix).
    tol = tolerance(tiny.model.dtype)
    assert torch.allclose(reused, fresh, rtol=tol["rtol"], atol=max(tol["atol"], 1e-4))


def test_sequential_agentwrite_reuses_each_items_text_so_far(tmp_path, tiny):
    """Paragraph k's prompt is paragraph k-1's up to its text, plus one paragraph more."""
    tiny.prefixes.clear()
    cfg = AgentWriteConfig(plan_mode="scaffold", tokens_per_word=0.05, token_margin=8,
                           scaffold_words_per_step=200)
    items = [{"id": "a", "prompt": "Write about tides.", "length": 600},
             {"id": "b", "prompt": "Write about bees and flowers.", "length": 600}]
    recs = AgentWriter(tiny, tmp_path / "r.jsonl", cfg).run(items)
    stats = tiny.prefixes.stats()
    later = sum(len(r["paragraphs"]) - 1 for r in recs)  # every paragraph after the first
    assert [r["status"] for r in recs] == ["done", "done"] and later == 4
    assert stats["hits"] >= later
    later_prompts = [s["prompt_tokens"] for r in recs for s in r["steps"]
                     if s["step"] not in ("plan", 1)]
    assert stats["reused_tokens"] > sum(later_prompts) / 2
