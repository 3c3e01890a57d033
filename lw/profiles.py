"""The run sizes and each notebook's per-size defaults, in one place: what ``mock``, ``small``
and ``full`` mean for every notebook (``Size``: the model and its batch) and for each one's
counts, budgets, recipes and filters (its profile).

The size switch: ``SIZE`` in every notebook's parameters cell, ``None`` meaning "take ``$LW_SIZE``,
else ``small``". ``mock`` runs the tiny random model on a handful of items in seconds (what CI and
nbval run), ``small`` the embedded SmolLM2-135M on CPU, ``full`` a real model on a GPU.

    size = lw.profiles.resolve_size(SIZE, model=MODEL)   # a Size: .name, .model, .batch_size
    model = lw.llm.load(size.model, batch_size=size.batch_size, **size.options())
    p = lw.profiles.get("01", size)         # "01", "01_longwrite_ruler"; a Size or its name
    n_prompts = N_PROMPTS or p.n_prompts    # a parameter that is set beats the profile
    p                                        # prints every default the notebook will use

A notebook's parameters cell holds literals, most of them ``None`` ("take the size's"); its
settings cell fills each ``None`` from the notebook's profile. A field set to ``None`` in a profile
means "no limit" or "all" (e.g. ``n_prompts=None`` at ``full``: every prompt).

The pattern, for a new notebook (``NN_name``):
    1. a frozen dataclass named for what the notebook runs, one field per default, each with a
       comment (type and why where it is not obvious);
    2. ``NAME = {"mock": ..., "small": ..., "full": ...}``, one instance per size;
    3. an entry ``"NN_name": NAME`` in ``PROFILES`` (``tests/test_profiles.py`` then checks it).
Values that several notebooks share (the ``full`` size's budget, the small model's repetition
penalty, the recipe files, AgentWrite's per-size settings) are the module constants below, so each
is written once.
"""

from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType

from lw.errors import LwError
from lw.paths import SIZES, size_name


@dataclass(frozen=True)
class Size:
    """What one run size means for every notebook; per-notebook settings are in lw.profiles."""

    name: str
    model: str  # default model spec for lw.llm.load
    batch_size: int  # local generation batch (an openai: server's requests in flight)
    long_context: bool = False  # load known models with their documented long context
    # Local transformers models on a CPU (no CUDA) that has native bf16 instructions (AVX-512
    # BF16 or AMX, lw.llm.cpu_bf16) load in bf16: ~1.9x fp32's tokens/s at batch 8, ~2.9x at 16,
    # with the claims' numbers within a reseed of fp32's (docs/BENCHMARKS.md). Elsewhere fp32
    # (bf16 would be emulated, slower). int8 (quantize="int8") was faster still but made
    # SmolLM2-135M loop 3x sooner, so it is not a default.
    cpu_bf16: bool = False
    # Fine-tuning with bf16 autocast on such a CPU (train_options): 1.96x fp32's training speed
    # with no update lost (bench_cpu_train.py). On at small since 2026-12-03: notebook 05's SFT
    # at two training seeds in bf16 kept claim 5's verdict (usable words 2.23x [1.54, 3.06] and
    # 2.15x [1.53, 2.98], 16 prompts), within fp32's two seeds (2.83x and 2.13x): precision
    # moves it less than reseeding. docs/RESULTS.md has the figures.
    cpu_bf16_train: bool = False

    def options(self, spec: str | None = None) -> dict:
        """``lw.llm.load`` options for ``spec`` (default: this size's model) at this size, the
        batch aside: the paper's options for its released checkpoints (``lw.llm.paper_options``),
        ``dtype="bfloat16"`` for a local model on a CPU with bf16 instructions where the size
        says (``cpu_bf16``) and,
        at ``full``, the model's documented long context (``lw.llm.context.
        long_context_options``: Qwen2.5's YaRN x4, 131,072 positions, so a 32,768-token answer
        fits beside its prompt).

            model = lw.llm.load(size.model, batch_size=size.batch_size, **size.options())
        """
        from lw.llm import paper_options
        from lw.llm.context import long_context_options

        spec = spec or self.model
        extra = long_context_options(spec) if self.long_context else {}
        if self._bf16_on_cpu(spec):
            extra["dtype"] = "bfloat16"
        return {**paper_options(spec), **extra}

    def train_options(self, spec: str | None = None) -> dict:
        """Recipe ``train`` fields this size sets for fine-tuning ``spec`` (default: this
        size's model) on top of the recipe's: ``bf16: true`` (bf16 autocast over fp32 weights
        and AdamW state, ``lw.sft.precision``) on a CPU with bf16 instructions where the size
        says (``cpu_bf16_train``; on at ``small``, see the field). Measured at notebook 05's
        shape (benchmarks/bench_cpu_train.py, AMD EPYC with AVX-512 BF16, 2 cores): 1.96x
        fp32's training tokens/s, the loss within 0.054 of fp32's over 3 steps, and the update
        probe finds 99.93% of the weights changed. A GPU recipe sets its own precision, so
        elsewhere this is empty.

            recipe = lw.sft.load_recipe(path, **size.train_options(), **overrides)
        """
        if not self.cpu_bf16_train:
            return {}
        return {"bf16": True} if self._bf16_on_cpu(spec or self.model) else {}

    def _bf16_on_cpu(self, spec: str) -> bool:
        """Whether a local model ``spec`` runs in bf16 here: the size asks for it on a CPU
        (``cpu_bf16``) and the CPU has the instructions (else a warning: fp32, said)."""
        from lw.llm import cpu_bf16, runs_on_cpu

        if not (self.cpu_bf16 and runs_on_cpu(spec)):
            return False
        why = cpu_bf16()
        if why is not None:  # said, not silent: this run's figures are fp32's, and slower
            import warnings

            warnings.warn(f"size {self.name}: {why}, so local models run and train in fp32 "
                          "(about half the speed; figures differ from a bf16 run's).",
                          stacklevel=3)
        return why is None


_SIZES = {
    "mock": Size("mock", "tiny-random", batch_size=4),
    "small": Size("small", "smollm2-135m", batch_size=16, cpu_bf16=True, cpu_bf16_train=True),
    "full": Size("full", "hf:Qwen/Qwen2.5-7B-Instruct", batch_size=16, long_context=True),
}
FULL_MODEL = "Qwen/Qwen2.5-7B-Instruct"


def full_model(model: str = FULL_MODEL) -> str:
    """The ``full`` size's generator: vLLM on a server the kit starts (``vllm:``) where vLLM
    and CUDA are there, else the kit's own engine (``hf:``, CUDA graphs on a GPU), saying why."""
    from lw.llm.vllm_backend import vllm_available

    reason = vllm_available()
    if reason is None:
        return f"vllm:{model}"
    print(f"[lw] full size without vLLM ({reason}): generating with hf:{model} on the kit's "
          "engine instead (CUDA graphs on a GPU, ~10x slower than vLLM at long outputs).")
    return f"hf:{model}"


def resolve_size(size: str | None = None, **overrides) -> Size:
    """The ``Size`` for a name; ``None`` takes ``$LW_SIZE`` (default ``small``).

    Args:
        size: "mock", "small", "full" or None.
        overrides: fields to replace where not None (``model=MODEL``, ``batch_size=...``); a
            notebook's other per-size settings come from ``lw.profiles``.
    """
    name = size_name(size)
    known = [f.name for f in fields(Size) if f.name != "name"]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise LwError(f"resolve_size cannot override {unknown}: a Size has {known}; budgets and "
                      "counts are the notebook's profile (lw.profiles.get) or its parameters.")
    chosen = {k: v for k, v in overrides.items() if v is not None}
    if name == "full" and "model" not in chosen:
        chosen["model"] = full_model()
    return replace(_SIZES[name], **chosen)

# Generation budgets (new tokens per answer). Budgets at `small` differ by notebook: each is what
# that notebook's share of the 60-minute small run allows.
MOCK_BUDGET = 16  # the tiny random model's text means nothing; 16 tokens keeps nbval in seconds
FULL_BUDGET = 32768  # the paper's budget (LongBench-Write and LongWrite-Ruler, max_new_tokens)

# Sampling.
PAPER_REPETITION_PENALTY = 1.0  # no penalty, as the paper generated
SMALL_REPETITION_PENALTY = 1.1  # SmolLM2-135M repeats one sentence to the budget without one

# Training recipes (paths under the kit's root) and the mock size's overrides of them.
SMOLLM2_SFT_RECIPE = "recipes/smollm2-135m/sft/config_full_cpu.yaml"
SMOLLM2_DPO_RECIPE = "recipes/smollm2-135m/dpo/config_full_cpu.yaml"
# A notebook trains in its own process, so on one GPU: LoRA over a bf16 base (37.6 GB at 32k
# tokens by the dry run); the paper's full fine-tuning needs 8 GPUs under ZeRO-3, which notebook
# 05 prints the accelerate command for (QWEN_SFT_RECIPE_8_GPUS).
QWEN_SFT_RECIPE = "recipes/qwen2.5-7b/sft/config_one_gpu.yaml"
QWEN_SFT_RECIPE_8_GPUS = "recipes/qwen2.5-7b/sft/config_full.yaml"
QWEN_DPO_RECIPE = "recipes/qwen2.5-7b/dpo/config_full.yaml"
MOCK_MAX_LENGTH = 512  # tokens per training row at mock: a few steps in seconds
NO_OVERRIDES = MappingProxyType({})

# AgentWrite's per-size settings, shared by notebooks 02 and 04. At `small`, "scaffold": SmolLM2
# never writes the free-form plan format. At `mock`, 0.02 tokens per word: a few tokens a
# paragraph of random text.
AGENTWRITE = {
    "mock": dict(plan_mode="auto", tokens_per_word=0.02, plan_max_new_tokens=32),
    "small": dict(plan_mode="scaffold", tokens_per_word=1.5, plan_max_new_tokens=512),
    "full": dict(plan_mode="auto", tokens_per_word=1.5, plan_max_new_tokens=1024),
}


def _frozen(mapping: dict) -> MappingProxyType:
    """A read-only view, so a profile's dict fields cannot be changed in place either."""
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Quickstart:
    """00_quickstart."""

    max_new_tokens: int  # tokens per reply


QUICKSTART = {"mock": Quickstart(MOCK_BUDGET), "small": Quickstart(384),
              "full": Quickstart(FULL_BUDGET)}


@dataclass(frozen=True)
class Ruler:
    """01_longwrite_ruler."""

    n_prompts: int | None  # prompts taken (None: all 48)
    max_length: int | None  # drop prompts asking for more words (None: none dropped)
    languages: tuple[str, ...]  # SmolLM2 is English only in practice
    max_new_tokens: int


RULER = {
    "mock": Ruler(3, 5000, ("en",), MOCK_BUDGET),
    "small": Ruler(8, 5000, ("en",), 1024),
    "full": Ruler(None, None, ("en", "zh"), FULL_BUDGET),
}


@dataclass(frozen=True)
class AgentWriteRun:
    """02_agentwrite."""

    n_instructions: int
    max_words: int | None  # longest required length taken (None: no limit)
    direct_max_new_tokens: int  # the direct-generation baseline's budget
    plan_mode: str  # "auto", "free" or "scaffold"
    tokens_per_word: float  # per-paragraph budget = words asked x this
    plan_max_new_tokens: int
    # The same at every size (lw.agentwrite.run_settings builds the settings from them):
    temperature: float = 0.8  # AgentWrite's sampling (the paper used 1.0)
    direct_temperature: float = 0.5  # the direct baseline, as LongBench-Write generates
    repetition_penalty: float = 1.1  # small models loop without one
    words_per_step: int = 400  # paragraph length of a scaffolded plan
    retry_short: int = 1  # ask again for a paragraph under a quarter of its words (0: the paper)


AGENTWRITE_RUN = {
    "mock": AgentWriteRun(2, 2000, MOCK_BUDGET, **AGENTWRITE["mock"]),
    # 8 of the kit's 12 instructions asking for 2,000-3,000 words (only 5 ask for exactly 2,000)
    "small": AgentWriteRun(8, 3000, 2048, **AGENTWRITE["small"]),
    "full": AgentWriteRun(8, None, FULL_BUDGET, **AGENTWRITE["full"]),
}


@dataclass(frozen=True)
class LongBench:
    """03_longbench_write."""

    benchmark: str  # "longbench_write_en" (English half) or "longbench_write"
    n_prompts: int | None  # stratified by bucket and language (None: all 120)
    max_length: int | None
    max_new_tokens: int
    released_models: bool  # compare the paper's two released checkpoints by default


LONGBENCH = {
    "mock": LongBench("longbench_write_en", 3, 2000, MOCK_BUDGET, released_models=False),
    "small": LongBench("longbench_write_en", 8, 2000, 1024, released_models=False),
    "full": LongBench("longbench_write", None, None, FULL_BUDGET, released_models=True),
}


@dataclass(frozen=True)
class DataRun:
    """04_longwriter_data: AgentWrite over instructions, filters, general short answers."""

    n_instructions: int | None
    min_words: int  # shortest required length; 800 at small: longer than the base model writes
    max_words: int | None
    words_per_step: int  # scaffold paragraphs; 200 at small: SmolLM2 writes 100-150 whatever
    n_general: int  # short general answers for mixing
    # Long-answer filters (lw.data.Filters). Mock turns them off: random text fails them all.
    min_ratio: float
    max_repetition: float
    min_answer_words: int
    # General short answers: budget and filters.
    general_max_new_tokens: int
    general_max_repetition: float
    general_min_words: int
    general_require_stop: bool  # keep only answers that ended by themselves
    plan_mode: str
    tokens_per_word: float
    plan_max_new_tokens: int


DATA_RUN = {
    "mock": DataRun(n_instructions=2, min_words=400, max_words=1000, words_per_step=400,
                    n_general=4, min_ratio=0.0, max_repetition=1.0, min_answer_words=1,
                    general_max_new_tokens=MOCK_BUDGET, general_max_repetition=1.0,
                    general_min_words=1, general_require_stop=False, **AGENTWRITE["mock"]),
    "small": DataRun(n_instructions=24, min_words=800, max_words=2000, words_per_step=200,
                     n_general=40, min_ratio=0.5, max_repetition=0.2, min_answer_words=20,
                     general_max_new_tokens=256, general_max_repetition=0.3,
                     general_min_words=5, general_require_stop=True, **AGENTWRITE["small"]),
    "full": DataRun(n_instructions=None, min_words=400, max_words=None, words_per_step=400,
                    n_general=0, min_ratio=0.5, max_repetition=0.2, min_answer_words=20,
                    general_max_new_tokens=512, general_max_repetition=0.3,
                    general_min_words=5, general_require_stop=True, **AGENTWRITE["full"]),
}


@dataclass(frozen=True)
class Finetune:
    """05_finetune: SFT, evaluation against the base, DPO."""

    sft_recipe: str
    n_prompts: int | None  # LongBench-Write prompts asking for 2,000+ words (None: all)
    max_new_tokens: int
    repetition_penalty: float  # for every model compared
    dpo_recipe: str
    dpo_instructions: int  # kit instructions to sample preference pairs from
    dpo_min_words: int
    dpo_max_words: int | None
    dpo_max_new_tokens: int
    dpo_min_margin: float  # reward gap between chosen and rejected
    # Off at small: 4 instructions x 2 samples gave 1 pair on 2026-11-25 (noise, not a
    # measurement) for ~7 of the 60 minutes, which the controlled experiment's seeds need more.
    run_dpo: bool
    sft_overrides: MappingProxyType = field(default_factory=lambda: NO_OVERRIDES)  # recipe ``train`` fields
    dpo_overrides: MappingProxyType = field(default_factory=lambda: NO_OVERRIDES)


FINETUNE = {
    "mock": Finetune(sft_recipe=SMOLLM2_SFT_RECIPE, n_prompts=2, max_new_tokens=MOCK_BUDGET,
                     repetition_penalty=PAPER_REPETITION_PENALTY, dpo_recipe=SMOLLM2_DPO_RECIPE,
                     dpo_instructions=2, dpo_min_words=500, dpo_max_words=1500,
                     dpo_max_new_tokens=MOCK_BUDGET, dpo_min_margin=0, run_dpo=True,
                     sft_overrides=_frozen({"max_steps": 4, "max_length": MOCK_MAX_LENGTH,
                                            "save_strategy": "no"}),
                     dpo_overrides=_frozen({"max_steps": 2, "max_length": MOCK_MAX_LENGTH})),
    # 16 of the 23 English prompts asking for 2,000+ words; 3,072 tokens leave room for the
    # longest answers in 04's SFT data (2,000 words, ~2,900 tokens), so a model that learned to
    # stop can (at 2,048, 7 of 8 SFT answers were cut: the budget set the ratio). Chosen before
    # the run, not fitted to it.
    "small": Finetune(sft_recipe=SMOLLM2_SFT_RECIPE, n_prompts=16, max_new_tokens=3072,
                      repetition_penalty=SMALL_REPETITION_PENALTY, dpo_recipe=SMOLLM2_DPO_RECIPE,
                      dpo_instructions=4, dpo_min_words=500, dpo_max_words=800,
                      dpo_max_new_tokens=1024, dpo_min_margin=5, run_dpo=False),
    "full": Finetune(sft_recipe=QWEN_SFT_RECIPE, n_prompts=None, max_new_tokens=FULL_BUDGET,
                     repetition_penalty=PAPER_REPETITION_PENALTY, dpo_recipe=QWEN_DPO_RECIPE,
                     dpo_instructions=64, dpo_min_words=2000, dpo_max_words=None,
                     dpo_max_new_tokens=FULL_BUDGET, dpo_min_margin=5, run_dpo=True),
}


@dataclass(frozen=True)
class Controlled:
    """06_controlled_experiment: one model per SFT-data cap and training seed."""

    design: str  # "cut" (same conversations, answers cut to each cap), "filter", "fill"
    caps: tuple[int, ...]  # answer-length caps in words
    n_per_cap: int | None  # conversations per cap (None: all the design allows)
    train_seeds: tuple[int, ...]  # one model per cap and seed
    recipe: str
    recipe_overrides: MappingProxyType  # recipe ``train`` fields for every model
    n_prompts: int | None  # LongWrite-Ruler English prompts (None: all 24)
    max_new_tokens: int
    temperature: float
    repetition_penalty: float
    # conversation sources (lw.sft.load_conversations); empty: notebook 04's two files. At full
    # the largest cap is 4,000 words and 4 of the kit's 52 instructions ask for that many, so the
    # pool is the paper's LongWriter-6k (answers of 2,000 to 10,000+ words).
    pool: tuple[str, ...] = ()


# Small: chosen on one H200 with the real SmolLM2 weights and a pool built as notebook 04 builds
# it (2026-11-26; 24 Ruler prompts x 4 training seeds). Caps 50/150/450, 12 conversations, 2
# epochs at lr 2e-4 gave mean usable words 68 / 188 / 729, Spearman 0.74 [0.66, 0.82]; every
# 8-prompt x 2-seed slice of it excluded 0 (lowest bound 0.39). 3 epochs at 1e-4: 0.63 [0.43,
# 0.77] with two slices including 0; caps 100/300/900 with 22 conversations: 0.69 [0.57, 0.78]
# at twice the training tokens. Unpacked rows, so every cap's model takes the same number of
# optimizer steps (packed, the 50-word subset fits in one row: a few steps, a model still close
# to the base).
_CONTROLLED_TRAIN = {"packing": False, "per_device_train_batch_size": 1,
                     "gradient_accumulation_steps": 2}
CONTROLLED = {
    "mock": Controlled("cut", (20, 100), None, (0, 1), SMOLLM2_SFT_RECIPE,
                       _frozen({**_CONTROLLED_TRAIN, "max_steps": 2,
                                "max_length": MOCK_MAX_LENGTH}),
                       2, MOCK_BUDGET, 0.5, PAPER_REPETITION_PENALTY),
    "small": Controlled("cut", (50, 150, 450), 12, (0, 1), SMOLLM2_SFT_RECIPE,
                        _frozen({**_CONTROLLED_TRAIN, "num_train_epochs": 2,
                                 "learning_rate": 2e-4}),
                        8, 1024, 0.5, SMALL_REPETITION_PENALTY),
    "full": Controlled("cut", (500, 1000, 2000, 4000), None, (0, 1, 2), QWEN_SFT_RECIPE,
                       _frozen(_CONTROLLED_TRAIN), None, FULL_BUDGET, 0.5,
                       PAPER_REPETITION_PENALTY, pool=("hub:THUDM/LongWriter-6k",)),
}

PROFILES = {
    "00_quickstart": QUICKSTART,
    "01_longwrite_ruler": RULER,
    "02_agentwrite": AGENTWRITE_RUN,
    "03_longbench_write": LONGBENCH,
    "04_longwriter_data": DATA_RUN,
    "05_finetune": FINETUNE,
    "06_controlled_experiment": CONTROLLED,
}


def get(notebook: str, size):
    """The profile of one notebook at one size.

    Args:
        notebook: its number ("01"), its stem ("01_longwrite_ruler") or file name.
        size: a ``lw.profiles.Size`` or a size name ("mock", "small", "full").

    Returns:
        The notebook's frozen profile dataclass for that size.
    """
    stem = str(notebook).removesuffix(".ipynb").rsplit("/", 1)[-1]
    key = next((k for k in PROFILES if stem in (k, k.split("_", 1)[0])), None)
    if key is None:
        raise LwError(f"no profile for notebook {notebook!r}: use one of "
                      f"{', '.join(PROFILES)} (or its number, e.g. '01').")
    name = getattr(size, "name", size)
    if name not in SIZES:
        raise LwError(f"unknown size {name!r} for {key}: use one of "
                      f"{', '.join(SIZES)} (lw.profiles.resolve_size gives a Size).")
    return PROFILES[key][name]


def add_run_arguments(ap, folder: str, several: bool = True) -> None:
    """The options every stage command shares (``python -m lw.<stage>``): the size, the model(s),
    how many prompts, the budget, temperature and seed, the results folder. What is left out
    comes from the size and the notebook's profile, as in the notebook."""
    from lw.paths import SIZES as sizes

    ap.add_argument("--size", choices=sizes, help="default $LW_SIZE, else small")
    ap.add_argument("--model", action="append" if several else "store",
                    help="lw.llm.load spec" + (" (repeat for several)" if several else ""))
    ap.add_argument("--prompts", type=int, help="how many prompts (default the profile's)")
    ap.add_argument("--max-new-tokens", type=int, help="budget (default the profile's)")
    ap.add_argument("--temperature", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help=f"results folder (default <run folder>/{folder})")
