"""Supervised fine-tuning on transformers' Trainer, with packing and the two loss weightings.

    result = lw.sft.train("recipes/smollm2-135m/sft/config_full_cpu.yaml",
                          data="runs/small/data/longwriter-kit.jsonl", output_dir="runs/small/sft")
    model = lw.llm.load(f"hf:{result.model_dir}")

The same entry runs on many GPUs: ``accelerate launch --config_file
recipes/accelerate_configs/deepspeed_zero3.yaml -m lw.sft <recipe>``. A finished run (same
recipe, same data) is not redone; an interrupted one resumes from its last checkpoint.

Weights and optimizer state are fp32 with bf16 compute where the recipe says ``bf16: true``
(``lw.sft.precision``); packed rows are isolated by the kernel ``lw.sft.attention`` picks. The
stats in ``<output_dir>/final/lw_train.json`` record both (``weights_dtype``, ``compute``,
``save_dtype``, ``saved_dtype``, ``packed_attention``).
"""

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from lw.errors import LwError
from lw.sft import attention, precision
from lw.sft.config import Recipe, load_recipe
from lw.sft.tokens import IGNORE, Collator, pack, tokenize


def weighted_loss(logits, labels, seq_ids, weighting: str = "token"):
    """Next-token cross-entropy over target tokens.

    Args:
        logits: ``[batch, L, vocab]``; labels: ``[batch, L]`` with -100 where no loss;
        seq_ids: ``[batch, L]`` conversation index of each token (-1 for padding).
        weighting: "token" averages over every target token of the batch, so long answers
            weigh in proportion to their length (the paper's choice, section 4.1); "sequence"
            averages within each conversation first, then over conversations (LongAlign's
            default), so a short answer counts as much as a long one.
    """
    import torch
    import torch.nn.functional as F

    logits, labels, seq_ids = logits[:, :-1], labels[:, 1:], seq_ids[:, 1:]
    per_token = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                                ignore_index=IGNORE, reduction="none")
    target = labels.reshape(-1) != IGNORE
    if not target.any():
        return per_token.sum() * 0.0
    if weighting == "token":
        return per_token[target].mean()
    if weighting != "sequence":
        raise LwError(f"weighting must be 'token' or 'sequence', got {weighting!r}.")
    ids = seq_ids.reshape(-1)[target]
    _, inverse = torch.unique(ids, return_inverse=True)
    sums = torch.zeros(int(inverse.max()) + 1, dtype=per_token.dtype,
                       device=per_token.device).index_add_(
        0, inverse, per_token[target])
    counts = torch.bincount(inverse).to(per_token.dtype)
    return (sums / counts).mean()


def _trainer_class():
    from transformers import Trainer

    class LwTrainer(Trainer):
        """Trainer whose loss follows ``args.loss_weighting`` and ignores ``seq_ids``."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # Our loss is a per-micro-batch mean: let the Trainer divide by accumulation steps.
            self.model_accepts_loss_kwargs = False

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels, seq_ids = inputs.pop("labels"), inputs.pop("seq_ids")
            outputs = model(**inputs)
            loss = weighted_loss(outputs.logits, labels, seq_ids, self.args.loss_weighting)
            return (loss, outputs) if return_outputs else loss

    return LwTrainer


@dataclass
class TrainResult:
    """Where the trained model is and what training saw."""

    model_dir: Path
    output_dir: Path
    stats: dict
    log_history: list
    skipped: bool = False  # finished earlier with the same recipe and data

    @property
    def spec(self) -> str:
        return f"hf:{self.model_dir}"


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


def load_model(spec: str, recipe_train, lora=None, plan: precision.Precision | None = None):
    """Tokenizer and model for training, its weights in the dtype ``plan`` names (default
    ``precision.plan(recipe_train)``: fp32 unless the recipe asks for bf16 weights by name), with
    SDPA attention (``lw.sft.attention.setup`` switches packed training to its kernel)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plan = plan or precision.plan(recipe_train)
    path = model_path(spec)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=plan.torch_weights,
                                                 attn_implementation="sdpa")
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=lora.target_modules, task_type="CAUSAL_LM"))
    return tokenizer, model


def train_device(args) -> str:
    """"cuda" or "cpu": where the Trainer will put the model."""
    import torch

    return "cuda" if torch.cuda.is_available() and not getattr(args, "use_cpu", False) else "cpu"


def fingerprint(recipe: Recipe, conversations: list) -> str:
    """Hash of the recipe's settings and the training data: a rerun with both unchanged skips."""
    args = recipe.train.to_dict()
    for volatile in ("output_dir", "logging_dir", "run_name"):
        args.pop(volatile, None)
    # Fields added later are left out at their defaults, so a finished fp32 run still matches;
    # a bf16 run now trains fp32 weights, so one finished before that is done again.
    for name, default in (("packed_attention", "auto"), ("weights_dtype", "float32"),
                          ("save_dtype", "auto")):
        if args.get(name) == default:
            args.pop(name)
    if args.get("bf16") and "weights_dtype" not in args:
        args["precision"] = "fp32 weights, bf16 autocast"
    blob = json.dumps({"model": recipe.model, "lora": recipe.lora and asdict(recipe.lora),
                       "train": args, "data": conversations}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train(recipe, data=None, progress: bool = True, force: bool = False, **overrides) -> TrainResult:
    """Fine-tune ``recipe.model`` on conversations; save the (merged) model to
    ``<output_dir>/final``, loadable with ``lw.llm.load("hf:<that folder>")``.

    Args:
        recipe: a Recipe, a recipe file or a dict.
        data: conversations (list of ``{"messages"}``) or a source for ``lw.sft.data.load``;
            default the recipe's ``data`` section.
        force: train again even if a finished run with the same fingerprint exists.
        overrides: recipe overrides (train fields, or model/lora/data).
    """
    from lw.sft.data import conversations_for

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, **overrides)
    elif overrides:
        raise LwError("pass overrides with a recipe file or dict, not with a parsed Recipe.")
    args = recipe.train
    args.disable_tqdm = not progress
    convs = conversations_for(recipe.data, data)
    key = fingerprint(recipe, convs)
    if (done := finished(args.output_dir, key)) and not force:
        return done
    out = Path(args.output_dir)

    plan = precision.plan(args)
    tokenizer, model = load_model(recipe.model, args, recipe.lora, plan)
    examples, tstats = tokenize(convs, tokenizer, args.max_length, args.overflow)
    if not examples:
        raise LwError(f"no training example left of {tstats.conversations} conversations "
                      f"({tstats.dropped_too_long} longer than max_length {args.max_length}): "
                      "raise max_length or use overflow='truncate'.")
    rows = pack(examples, args.max_length) if args.packing else [[ex] for ex in examples]
    path, isolate = None, "mask"  # unpacked rows: sdpa with a 2D padding mask
    if args.packing:
        path = attention.choose(args.packed_attention, train_device(args),
                                half=plan.compute.startswith(("bf16", "fp16")))
        isolate = attention.setup(model, path)
    elif args.packed_attention != "auto":
        warnings.warn(f"packed_attention {args.packed_attention!r} is not used: packing is off.",
                      stacklevel=2)
    trainer = _trainer_class()(model=model, args=args, train_dataset=rows,
                               data_collator=Collator(tokenizer.pad_token_id, isolate=isolate),
                               processing_class=tokenizer)
    checkpoint = _last_checkpoint(out, key)
    trainer.train(resume_from_checkpoint=checkpoint)
    if path:
        attention.restore(model, path)  # generation with a cache needs ordinary attention
    stats = {**{k: v for k, v in asdict(tstats).items() if k != "lengths"},
             "rows": len(rows), "packing": args.packing, "packed_attention": path,
             "max_length": args.max_length, "loss_weighting": args.loss_weighting,
             "lora": recipe.lora is not None, **plan.stats(), "resumed_from": checkpoint,
             "train_seconds": _runtime(trainer.state.log_history)}
    return save(trainer, tokenizer, recipe, key, stats, plan)


def finished(output_dir, key: str) -> TrainResult | None:
    """The result of a finished run in ``output_dir`` with fingerprint ``key``, else None."""
    out = Path(output_dir)
    meta = out / "final" / "lw_train.json"
    if not meta.exists():
        return None
    saved = json.loads(meta.read_text())
    if saved.get("fingerprint") != key:
        return None
    return TrainResult(out / "final", out, saved["stats"], saved["log_history"], skipped=True)


def save(trainer, tokenizer, recipe: Recipe, key: str, stats: dict,
         plan: precision.Precision | None = None) -> TrainResult:
    """Save the trained model to ``<output_dir>/final`` in ``plan.save``'s dtype, with
    ``lw_train.json`` (fingerprint, recipe, stats incl. ``saved_dtype``, loss history), and
    return the result."""
    out = Path(trainer.args.output_dir)
    plan = plan or precision.plan(trainer.args)
    _save_final(trainer, tokenizer, out / "final", plan)
    stats = {**plan.stats(), **stats}
    history = trainer.state.log_history
    rates = [h["learning_rate"] for h in history if "learning_rate" in h]
    if rates and not any(rates):
        warnings.warn(f"every logged step of {out} ran at learning rate 0, so the weights did not "
                      "change: the run is shorter than its warmup/decay. Use more data or epochs, "
                      "or lr_scheduler_type constant with warmup_steps 0.", stacklevel=2)
    if trainer.is_world_process_zero():
        stats["saved_dtype"] = precision.saved_dtype(out / "final")
        (out / "final" / "lw_train.json").write_text(json.dumps(
            {"fingerprint": key, "recipe": recipe.source, "model": recipe.model, "stats": stats,
             "log_history": history}, indent=1, default=str))
    return TrainResult(out / "final", out, stats, history)


def _last_checkpoint(out: Path, key: str | None = None):
    """The checkpoint to resume from: only one written by a run with the same fingerprint.
    Checkpoints of a run with other settings or data are removed (with a note), never resumed."""
    import shutil

    from transformers.trainer_utils import get_last_checkpoint

    marker = out / "lw_run.json"
    if out.is_dir() and key is not None:
        old = json.loads(marker.read_text()).get("fingerprint") if marker.exists() else None
        stale = sorted(out.glob("checkpoint-*"))
        if stale and old != key:
            print(f"[lw.sft] {out} holds checkpoints of another run (other recipe or data): "
                  "removed, training starts afresh.")
            for path in stale:
                shutil.rmtree(path)
    if key is not None:
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"fingerprint": key}))
    return get_last_checkpoint(str(out)) if out.is_dir() else None


def _runtime(history: list) -> float | None:
    return next((h["train_runtime"] for h in history if "train_runtime" in h), None)


def _save_final(trainer, tokenizer, final: Path, plan: precision.Precision) -> None:
    model = trainer.model
    if hasattr(model, "merge_and_unload"):  # LoRA: keep the adapters, save the merged model
        trainer.save_model(str(final.parent / "adapter"))
        merged = model.merge_and_unload()
        precision.cast_for_save(merged, plan)
        if trainer.is_world_process_zero():
            merged.save_pretrained(final, safe_serialization=True)
            tokenizer.save_pretrained(final)
    else:  # save_model gathers ZeRO-3/FSDP shards and writes the tokenizer too
        precision.cast_for_save(model, plan)
        trainer.save_model(str(final))
    if plan.sharding and trainer.is_world_process_zero() and (
            precision.saved_dtype(final) != plan.save):
        precision.rewrite_saved(final, plan.save)  # as DeepSpeed/FSDP gathered it, in plan.save
