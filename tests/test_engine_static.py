"""The static-cache engine (lw.llm.slots): the same replies as the growing-cache engine, run
eagerly on any device, and replayed as CUDA graphs on a GPU."""

import pytest
import torch

import lw
import lw.llm.slots as slots
from lw.errors import LwError
from lw.llm import GenerationConfig
from lw.llm.engine import Engine, Job, sample, uniforms
from lw.llm.prefix import PrefixStore
from lw.llm.slots import SlotEngine

PROMPTS = ["hi", "Write a very long story about two cats, a dog and a lighthouse by the sea.",
           "Name a colour.", "Tell me about rivers, mountains and valleys in detail please.", "ok",
           "Describe a storm over a harbour at dusk, with gulls."]
BUDGETS = [3, 17, 6, 11, 2, 9]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def exact():
    """tiny-random in fp32 on its default device, without prefix caching: the engines must
    then agree token for token (the tiny model's flat distribution flips on bf16 rounding)."""
    return lw.llm.load("tiny-random", batch_size=3, prefix_cache_bytes=0, dtype=torch.float32,
                       cuda_graphs=False)


def _run(model, engine, configs, prompts=PROMPTS):
    out = {}
    jobs = [Job(k, model._ids([{"role": "user", "content": p}], None), c, str(k))
            for k, (p, c) in enumerate(zip(prompts, configs, strict=True))]
    engine.run(jobs, lambda job, gen: out.__setitem__(job.key, gen))
    return [out[k] for k in range(len(jobs))]


def _engines(m, **kwargs):
    return (Engine(m.model, m.tokenizer, 3, m._eos()),
            SlotEngine(m.model, m.tokenizer, 3, m._eos(), graphs=False, admit_min=1, **kwargs))


@pytest.mark.parametrize("sampled", [False, True])
def test_static_engine_gives_the_growing_engines_replies(exact, sampled):
    """Rows of different lengths end at different steps and waiting prompts take their slots."""
    extra = dict(temperature=1.0, top_p=0.9, repetition_penalty=1.2, seed=3) if sampled else {}
    configs = [GenerationConfig(max_new_tokens=b, **extra) for b in BUDGETS]
    growing, static = _engines(exact)
    a, b = _run(exact, growing, configs), _run(exact, static, configs)
    assert [x.text for x in b] == [x.text for x in a]
    assert [x.completion_tokens for x in b] == [x.completion_tokens for x in a]
    assert [x.finish_reason for x in b] == [x.finish_reason for x in a]
    # A reply stops at its budget ("length") or earlier at an end-of-text token ("stop").
    for x, budget in zip(b, BUDGETS, strict=True):
        assert x.completion_tokens == budget if x.finish_reason == "length" \
            else (x.finish_reason == "stop" and x.completion_tokens <= budget), (x, budget)


def test_columns_are_reclaimed_and_the_cache_grows_without_changing_replies(exact, monkeypatch):
    """With an 8-column minimum the buffer must shift left (dropping columns no live row uses)
    and double several times during the run."""
    monkeypatch.setattr(slots, "MIN_COLUMNS", 8)
    configs = [GenerationConfig(max_new_tokens=3 * b) for b in BUDGETS * 3]
    growing, static = _engines(exact)
    shifts, grown = [], []
    shift, grow = static._shift, static._grow
    monkeypatch.setattr(static, "_shift", lambda *a: shifts.append(a) or shift(*a))
    monkeypatch.setattr(static, "_grow", lambda n: grown.append(n) or grow(n))
    a, b = _run(exact, growing, configs, PROMPTS * 3), _run(exact, static, configs, PROMPTS * 3)
    assert [x.text for x in b] == [x.text for x in a]
    assert any(used > 0 for _, used in shifts)  # live columns really were moved left
    assert len(grown) >= 2 and grown == sorted(grown)


def test_follow_ups_continue_stored_prefixes_in_one_padded_prefill(exact):
    """Each reply's follow-up repeats it (as AgentWrite's next paragraph does): the static engine
    copies the stored keys and values in and computes only the rest, batched with other prompts."""
    def chain(engine):
        texts = {}

        def on_done(job, gen):
            texts.setdefault(job.key[0], []).append(gen.text)
            if job.key[1] == 3:
                return []
            ids = job.ids + exact.tokenizer(gen.text + " and then", add_special_tokens=False)[
                "input_ids"]
            return [Job((job.key[0], job.key[1] + 1), ids, job.config, f"{job.key[0]}+")]

        engine.run([Job((k, 0), exact._ids([{"role": "user", "content": p}], None),
                        GenerationConfig(max_new_tokens=7 + k), str(k))
                    for k, p in enumerate(PROMPTS)], on_done)
        return texts

    store = PrefixStore(1 << 30, min_tokens=4)
    growing = Engine(exact.model, exact.tokenizer, 3, exact._eos())
    static = SlotEngine(exact.model, exact.tokenizer, 3, exact._eos(), prefixes=store,
                        graphs=False, admit_min=2)
    assert chain(static) == chain(growing)
    assert store.hits >= 3 * len(PROMPTS) - 3 and store.reused_tokens > 300


def test_uniforms_are_splitmix64():
    """The counter-based draws equal SplitMix64 computed with Python's integers (uint64)."""
    def reference(seed, count):
        mask = (1 << 64) - 1
        x = (seed + (count + 1) * 0x9E3779B97F4A7C15) & mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        return ((x ^ (x >> 31)) >> 11) / float(1 << 53)

    pairs = [(0, 0), (12345, 7), ((1 << 63) - 1, 99), (2**40 + 3, 2**20)]
    got = uniforms(torch.tensor([s for s, _ in pairs]), torch.tensor([c for _, c in pairs]))
    assert got.tolist() == [reference(s, c) for s, c in pairs]
    many = uniforms(torch.full((4000,), 7), torch.arange(4000))
    assert 0 <= float(many.min()) and float(many.max()) < 1 and abs(float(many.mean()) - 0.5) < 0.02


def test_sampling_follows_the_distribution_and_blocks_early_ends():
    """Draws over a 3-token vocabulary match its probabilities; min_new_tokens bars the end token."""
    class Row:
        def __init__(self, seed, n, cfg):
            self.seed, self.new, self.job = seed, [0] * n, type("J", (), {"config": cfg})

    cfg = GenerationConfig(temperature=1.0, min_new_tokens=5)
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]])).repeat(3000, 1)
    rows = [Row(k, 5, cfg) for k in range(3000)]
    tokens = sample(logits.clone(), torch.zeros(3000, 3, dtype=torch.bool), rows, [2])
    share = torch.bincount(tokens, minlength=3).float() / 3000
    assert torch.allclose(share, torch.tensor([0.2, 0.3, 0.5]), atol=0.04)
    early = [Row(k, 1, cfg) for k in range(300)]
    tokens = sample(logits[:300].clone(), torch.zeros(300, 3, dtype=torch.bool), early, [2])
    assert int((tokens == 2).sum()) == 0


def test_cuda_graphs_need_cuda(exact):
    if exact.device.startswith("cuda"):
        pytest.skip("on a GPU")
    with pytest.raises(LwError, match="CUDA graphs need a CUDA device"):
        SlotEngine(exact.model, exact.tokenizer, 2, exact._eos(), graphs=True)
    with pytest.raises(LwError, match="cuda_graphs=True needs"):
        lw.llm.hf.HFChatModel(exact.model, exact.tokenizer, "x", cuda_graphs=True)
    assert exact.info()["cuda_graphs"] is False


@pytest.mark.gpu
@CUDA
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_graph_replay_equals_the_eager_static_engine(dtype, monkeypatch):
    """The same steps replayed as CUDA graphs give the eager steps' replies exactly (same
    kernels), through growth and shifts of the buffer."""
    monkeypatch.setattr(slots, "MIN_COLUMNS", 16)
    m = lw.llm.load("tiny-random", batch_size=3, prefix_cache_bytes=0, dtype=dtype)
    assert m.cuda_graphs and m.info()["cuda_graphs"]
    configs = [GenerationConfig(max_new_tokens=3 * b, temperature=0.8, seed=1) for b in BUDGETS]
    eager = SlotEngine(m.model, m.tokenizer, 3, m._eos(), graphs=False, admit_min=1)
    graphs = SlotEngine(m.model, m.tokenizer, 3, m._eos(), graphs=True, admit_min=1)
    a, b = _run(m, eager, configs), _run(m, graphs, configs)
    assert [x.text for x in b] == [x.text for x in a]
    assert graphs.captures >= 2


@pytest.mark.gpu
@CUDA
def test_default_gpu_model_decodes_with_graphs_and_matches_the_growing_engine():
    m = lw.llm.load("tiny-random", batch_size=4, dtype=torch.float32)
    assert m.cuda_graphs
    ours = m.generate(PROMPTS, max_new_tokens=12)
    m.cuda_graphs = False
    theirs = m.generate(PROMPTS, max_new_tokens=12)
    assert [o.text for o in ours] == [t.text for t in theirs]


def test_close_frees_the_engines_buffers_and_the_model_stays_usable(exact):
    exact.generate(["hi"], max_new_tokens=2)
    exact._slots = SlotEngine(exact.model, exact.tokenizer, 2, exact._eos(), graphs=False)
    exact.close()
    assert exact._slots is None and len(exact.prefixes) == 0
    assert exact.generate(["hi"], max_new_tokens=2)[0].completion_tokens >= 1
