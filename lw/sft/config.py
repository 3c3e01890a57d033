"""Training recipes: YAML files parsed into config dataclasses.

A recipe names the base model, the data and the settings of one stage (``sft`` or ``dpo``):

    model: smollm2-135m                 # any lw.llm.load spec that is a local/hub HF model
    stage: sft
    data: {train: runs/small/data/longwriter-kit.jsonl, general: null, general_ratio: 0.0}
    lora: null                          # or {r: 16, alpha: 32, dropout: 0.05}
    train:                              # fields of SFTConfig (transformers TrainingArguments + ours)
      max_length: 2048
      packing: true
      loss_weighting: token
      learning_rate: 2.0e-5

    recipe = load_recipe("recipes/smollm2-135m/sft/config_full_cpu.yaml", learning_rate=1e-4)

``SFTConfig`` subclasses ``transformers.TrainingArguments`` and adds only the long-output
settings; the DPO stage's config subclasses TRL's ``DPOConfig`` and adds only the precision
fields. Overrides are applied to ``train`` fields by name (or to top-level keys), so a notebook
or command line changes one value without editing the file.

Precision (both stages, ``lw.sft.precision``): ``bf16: true`` trains fp32 weights and optimizer
state with bf16 compute (autocast); ``weights_dtype: bfloat16`` asks for pure-bf16 weights (with
a warning: small updates are lost); ``save_dtype`` (``auto``, ``float32``, ``bfloat16``,
``float16``) names the dtype of the saved model, ``auto`` being bf16 when the recipe computes in
bf16, else fp32. Packing (SFT): ``packed_attention`` picks the kernel that keeps packed
conversations apart (``lw.sft.attention``; ``auto`` by device).
"""

from dataclasses import dataclass, field, fields
from pathlib import Path

from transformers import TrainingArguments

from lw.errors import LwError
from lw.sft.loss import DEFAULT_CHUNK_TOKENS
from lw.sft.precision import SAVE_HELP, WEIGHTS_HELP, check_precision

STAGES = ("sft", "dpo")
WEIGHTINGS = ("token", "sequence")
PACKED_ATTENTION = ("auto", "flash", "varlen", "flex", "segments", "mask")


@dataclass
class SFTConfig(TrainingArguments):
    """TrainingArguments plus the kit's SFT options."""

    max_length: int = field(default=2048, metadata={"help": "longest training row in tokens"})
    overflow: str = field(default="drop", metadata={
        "help": "'drop' or 'truncate' conversations longer than max_length (counted either way)"})
    packing: bool = field(default=True, metadata={
        "help": "several conversations per row, none attending to another (lw.sft.segments)"})
    loss_weighting: str = field(default="token", metadata={
        "help": "'token': mean over all target tokens of the batch (LongWriter, sec. 4.1); "
                "'sequence': mean per conversation first, then over conversations (LongAlign)"})
    packed_attention: str = field(default="auto", metadata={
        "help": "what isolates packed conversations: 'auto' (by device, lw.sft.attention), "
                "'flash', 'varlen', 'flex', 'segments' or 'mask'"})
    # Computing the loss a chunk of target tokens at a time keeps fp32 logits off the full
    # vocabulary x sequence (~20 GB at 32k tokens and a 152k vocabulary); same loss and gradients.
    loss_chunk_tokens: int | None = field(default=DEFAULT_CHUNK_TOKENS, metadata={
        "help": "target tokens whose logits are computed at once in the loss (lw.sft.loss); "
                "0 or null: the whole batch's logits at once, as before"})
    weights_dtype: str = field(default="float32", metadata={"help": WEIGHTS_HELP})
    save_dtype: str = field(default="auto", metadata={"help": SAVE_HELP})
    # lw.sft.memory.check refuses, before weights load, a run its estimate says will not fit.
    memory_check: bool = field(default=True, metadata={
        "help": "refuse a run the memory estimate says will not fit (lw.sft.memory); false "
                "runs it anyway, as --ignore-memory-check does"})
    remove_unused_columns: bool = False  # the kit's collator builds its own columns
    average_tokens_across_devices: bool = False  # each process normalises its own loss
    report_to: str | list[str] = "none"

    def __post_init__(self):
        super().__post_init__()
        if self.overflow not in ("drop", "truncate"):
            raise LwError(f"overflow must be 'drop' or 'truncate', got {self.overflow!r}.")
        if self.loss_weighting not in WEIGHTINGS:
            raise LwError(f"loss_weighting must be one of {WEIGHTINGS}, got "
                          f"{self.loss_weighting!r}.")
        if self.loss_chunk_tokens is not None and self.loss_chunk_tokens < 0:
            raise LwError(f"loss_chunk_tokens must be >= 0 (0 or null: full logits), got "
                          f"{self.loss_chunk_tokens}.")
        if self.max_length < 16:
            raise LwError(f"max_length {self.max_length} is too small to hold a conversation.")
        if self.packed_attention not in PACKED_ATTENTION:
            raise LwError(f"packed_attention must be one of {PACKED_ATTENTION}, got "
                          f"{self.packed_attention!r}.")
        check_precision(self)


@dataclass
class LoraSettings:
    """LoRA adapters (peft); the trained adapters are merged into the saved model."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass
class DataSettings:
    """Training data: JSONL of ``{"messages": [...]}``, a saved ``datasets`` folder, or
    ``hub:<id>`` (e.g. ``hub:THUDM/LongWriter-6k``); an optional general set mixed in."""

    train: str = ""
    general: str | None = None
    general_ratio: float = 0.0  # general conversations per long one (the paper mixes ~1:30 by count)
    limit: int | None = None  # take at most this many long conversations


@dataclass
class Recipe:
    """One training stage of one model."""

    model: str
    stage: str = "sft"
    data: DataSettings = field(default_factory=DataSettings)
    lora: LoraSettings | None = None
    train: object = None  # SFTConfig or trl.DPOConfig
    source: str | None = None  # the file it came from


def check_trainable(spec: str) -> str:
    """``spec`` if the kit can fine-tune it, else an LwError saying why: a served model's (and
    a scripted fake's) weights are out of reach. Called before any data is read."""
    if spec.partition(":")[0] in ("openai", "fake"):
        raise LwError(f"cannot fine-tune {spec!r}: it is a model behind a server (or a scripted "
                      "fake), and training needs its weights. Set the model to weights the kit "
                      "can load (smollm2-135m, hf:<id or folder>, vllm:<id or folder>); a "
                      "served model can still be the judge (JUDGE).")
    return spec


def load_recipe(path_or_dict, **overrides) -> Recipe:
    """Parse a recipe file (or dict) into a ``Recipe``; unknown keys are errors that list the
    known ones. ``overrides`` set ``train`` fields (or top-level keys such as ``model``)."""
    import yaml

    if isinstance(path_or_dict, dict):
        raw, source = dict(path_or_dict), None
    else:
        source = str(path_or_dict)
        if not Path(source).exists():
            raise LwError(f"recipe {source} not found; the kit's recipes are under recipes/.")
        raw = yaml.safe_load(Path(source).read_text()) or {}
    raw = {**raw, "train": dict(raw.get("train") or {})}
    for key, value in overrides.items():
        if key in ("model", "stage", "lora", "data"):
            raw[key] = value
        else:
            raw["train"][key] = value
    _known(raw, {"model", "stage", "data", "lora", "train"}, "recipe", source)
    if not raw.get("model"):
        raise LwError(f"recipe {source or ''} has no 'model' (an lw.llm.load spec).")
    check_trainable(str(raw["model"]))
    stage = raw.get("stage", "sft")
    if stage not in STAGES:
        raise LwError(f"stage must be one of {STAGES}, got {stage!r}.")
    data = raw.get("data") or {}
    _known(data, {f.name for f in fields(DataSettings)}, "data", source)
    lora = raw.get("lora")
    if lora is not None:
        _known(lora, {f.name for f in fields(LoraSettings)}, "lora", source)
    cls = SFTConfig if stage == "sft" else _dpo_config()
    train = raw["train"]
    _known(train, {f.name for f in fields(cls)}, "train", source)
    train.setdefault("output_dir", "runs/train/" + str(raw["model"]).replace(":", "_"))
    if not _cuda():  # a GPU recipe still parses (and runs, slowly) on a CPU-only machine
        train.setdefault("use_cpu", True)
        train.setdefault("bf16", False)  # TRL's configs default to bf16
    return Recipe(model=raw["model"], stage=stage, data=DataSettings(**data),
                  lora=None if lora is None else LoraSettings(**lora), train=cls(**train),
                  source=source)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _dpo_config():
    """TRL's DPOConfig plus the kit's precision fields (imported on first use: TRL is slow)."""
    from lw.sft.dpo_config import LwDPOConfig

    return LwDPOConfig


def _known(section: dict, known: set, name: str, source) -> None:
    unknown = sorted(set(section) - known)
    if unknown:
        hint = ", ".join(sorted(known)) if len(known) < 12 else "see the config's fields"
        raise LwError(f"unknown {name} key(s) {unknown} in {source or 'recipe'}; known: {hint}.")


def model_path(spec: str) -> str:
    """A local folder or hub id for a model spec that can be trained."""
    from lw.llm import embedded

    if spec == "smollm2-135m":
        return str(embedded.smollm2_dir())
    if spec == "tiny-random" or spec.startswith("tiny-random:"):
        return str(embedded.tiny_random_dir(int(spec.partition(":")[2] or 0)))
    if spec.startswith(("hf:", "vllm:")):  # vllm: serves the same weights (the full size's)
        return spec.partition(":")[2]
    raise LwError(f"cannot fine-tune {spec!r}: training needs weights (smollm2-135m, "
                  "tiny-random, hf:<id or folder> or vllm:<id or folder>), not an API.")


def train_device(args) -> str:
    """"cuda" or "cpu": where the Trainer will put the model."""
    import torch

    return "cuda" if torch.cuda.is_available() and not getattr(args, "use_cpu", False) else "cpu"
