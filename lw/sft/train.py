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
import os
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from lw.errors import LwError
from lw.sft import attention, loss, memory, precision
from lw.sft.config import Recipe, load_recipe, model_path, train_device
from lw.sft.loss import weighted_loss  # noqa: F401  (lw.sft.weighted_loss, tests)
from lw.sft.tokens import Collator, load_examples, pack, save_examples, tokenize


def _trainer_class():
    from transformers import Trainer

    class LwTrainer(Trainer):
        """Trainer whose loss follows ``args.loss_weighting`` and ignores ``seq_ids``."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # Our loss is a per-micro-batch mean: let the Trainer divide by accumulation steps.
            self.model_accepts_loss_kwargs = False

        loss_path = None  # which loss ran ("chunked", "liger", "full"; lw.sft.loss)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels, seq_ids = inputs.pop("labels"), inputs.pop("seq_ids")
            # Recipes written before loss_chunk_tokens existed parse with its default.
            chunk = getattr(self.args, "loss_chunk_tokens", loss.DEFAULT_CHUNK_TOKENS)
            value, outputs, path = loss.compute(model, inputs, labels, seq_ids,
                                                self.args.loss_weighting, chunk,
                                                want_outputs=return_outputs)
            if path != self.loss_path and not return_outputs:
                loss.log.info("training loss: %s (loss_chunk_tokens=%s, weighting %s)", path,
                              chunk, self.args.loss_weighting)
                self.loss_path = path
            return (value, outputs) if return_outputs else value

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


def fingerprint(recipe: Recipe, conversations: list) -> str:
    """Hash of the recipe's settings and the training data: a rerun with both unchanged skips."""
    args = recipe.train.to_dict()
    for volatile in ("output_dir", "logging_dir", "run_name"):
        args.pop(volatile, None)
    # Fields added later are left out at their defaults, so a finished fp32 run still matches;
    # a bf16 run now trains fp32 weights, so one finished before that is done again.
    for name, default in (("packed_attention", "auto"), ("weights_dtype", "float32"),
                          ("save_dtype", "auto"), ("loss_chunk_tokens", loss.DEFAULT_CHUNK_TOKENS),
                          ("memory_check", True)):
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
        data: conversations (list of ``{"messages"}``) or a source for ``lw.conversations.load``;
            default the recipe's ``data`` section.
        force: train again even if a finished run with the same fingerprint exists.
        overrides: recipe overrides (train fields, or model/lora/data).
    """
    from lw.conversations import conversations_for

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

    memory.check(recipe, train_device(args))  # refuse what cannot fit before loading weights
    plan = precision.plan(args)
    tokenizer, model = load_model(recipe.model, args, recipe.lora, plan)
    examples, tstats = _tokenize_once(convs, tokenizer, args, out)
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
    checkpoint = _last_checkpoint(out, key, args)
    trainer.train(resume_from_checkpoint=checkpoint)
    if path:
        attention.restore(model, path)  # generation with a cache needs ordinary attention
    stats = {**{k: v for k, v in asdict(tstats).items() if k != "lengths"},
             "rows": len(rows), "packing": args.packing, "packed_attention": path,
             "max_length": args.max_length, "loss_weighting": args.loss_weighting,
             "loss_path": trainer.loss_path,
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
    # How the run was really spread: FSDP asked for on CPU processes runs as plain data
    # parallel (accelerate keeps MULTI_CPU), so "sharding" alone could claim what did not happen.
    ran = getattr(getattr(getattr(trainer, "accelerator", None), "distributed_type", None),
                  "value", "NO")
    stats = {**plan.stats(), **stats, "processes": trainer.args.world_size, "distributed": ran}
    if plan.sharding and ran not in ("FSDP", "DEEPSPEED") and trainer.is_world_process_zero():
        warnings.warn(f"the recipe asks for {plan.sharding} sharding but the run was {ran} "
                      "(each process held the whole model).", stacklevel=2)
    history = trainer.state.log_history
    rates = [h["learning_rate"] for h in history if "learning_rate" in h]
    if rates and not any(rates) and trainer.is_world_process_zero():
        warnings.warn(f"every logged step of {out} ran at learning rate 0, so the weights did not "
                      "change: the run is shorter than its warmup/decay. Use more data or epochs, "
                      "or lr_scheduler_type constant with warmup_steps 0.", stacklevel=2)
    if trainer.is_world_process_zero():
        stats["saved_dtype"] = precision.saved_dtype(out / "final")
        _write_atomic(out / "final" / "lw_train.json", json.dumps(
            {"fingerprint": key, "recipe": recipe.source, "model": recipe.model, "stats": stats,
             "log_history": history}, indent=1, default=str))
        # A finished run is skipped, not tokenized again: its stored tokens and pairs can go.
        for cache in out.glob("lw_tokens-*.npz"):
            cache.unlink()
        for cache in out.glob("lw_pairs-*"):
            shutil.rmtree(cache)
    # The other ranks return once the record exists, with the same stats as rank 0.
    _barrier(trainer.args)
    if not trainer.is_world_process_zero():
        stats = json.loads((out / "final" / "lw_train.json").read_text())["stats"]
    return TrainResult(out / "final", out, stats, history)


def _last_checkpoint(out: Path, key: str | None = None, args=None):
    """The checkpoint to resume from: only one written by a run with the same fingerprint.
    Checkpoints of a run with other settings or data are removed (with a note), never resumed;
    so are torn ones (a run killed while saving), which have no readable trainer state.

    With ``args`` (the Trainer's arguments) under several processes, rank 0 alone removes and
    writes the marker while the others wait, then every rank picks the same checkpoint."""
    from transformers.trainer_utils import get_last_checkpoint

    marker = out / "lw_run.json"
    with _rank0_first(args) as rank0:
        if rank0 and out.is_dir() and key is not None:
            old = json.loads(marker.read_text()).get("fingerprint") if marker.exists() else None
            stale = sorted(out.glob("checkpoint-*"))
            if stale and old != key:
                print(f"[lw.sft] {out} holds checkpoints of another run (other recipe or data): "
                      "removed, training starts afresh.")
                for path in stale:
                    shutil.rmtree(path)
            for path in sorted(out.glob("checkpoint-*")):
                if path.is_dir() and not _complete(path):
                    print(f"[lw.sft] {path.name} was not saved to the end (the run stopped while "
                          "saving it): removed, resuming from an earlier one.")
                    shutil.rmtree(path)
        if rank0 and key is not None:
            out.mkdir(parents=True, exist_ok=True)
            _write_atomic(marker, json.dumps({"fingerprint": key}))
    return get_last_checkpoint(str(out)) if out.is_dir() else None


def _complete(checkpoint: Path) -> bool:
    """Whether the Trainer finished saving ``checkpoint``: it writes the trainer state last."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so a reader (another rank, a rerun after a
    kill) sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _world_size(args) -> int:
    return getattr(args, "world_size", 1) if args is not None else 1


def _barrier(args) -> None:
    """Wait until every process gets here (nothing to wait for in a single process)."""
    if _world_size(args) > 1:
        args.distributed_state.wait_for_everyone()


@contextmanager
def _rank0_first(args):
    """Rank 0 runs the body first (yielding True); the others wait at a barrier, then run it
    (yielding False). Rank 0 reaches the barrier even if its body fails, so no rank hangs:
    they go on, find what rank 0 did not write, and stop with an error of their own."""
    _check_ranks(args)
    rank0 = args is None or args.process_index == 0
    if not rank0:
        _barrier(args)
    try:
        yield rank0
    finally:
        if rank0:
            _barrier(args)


def _check_ranks(args) -> None:
    """Refuse a launch whose processes did not form one job (the launcher says WORLD_SIZE=N, the
    Trainer set up a world of another size): each would train on all the data and write the
    same files."""
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if args is not None and launched > 1 and _world_size(args) != launched:
        raise LwError(f"launched as {launched} processes, but training sees "
                      f"{_world_size(args)}: on CPUs set ACCELERATE_USE_CPU=1 for the launch "
                      "(see recipes/accelerate_configs/multi_cpu.yaml), else check the "
                      "accelerate config.")
    if (args is not None and _world_size(args) == 1 and "MASTER_PORT" in os.environ
            and "ACCELERATE_MIXED_PRECISION" in os.environ and "WORLD_SIZE" not in os.environ
            and not any(k in os.environ for k in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"))):
        # accelerate's plain launcher sets MASTER_PORT only when asked for several processes;
        # with distributed_type MULTI_CPU and no mpirun it then starts just this one.
        warnings.warn("accelerate launch was asked for several processes but started one (its "
                      "MULTI_CPU type needs mpirun): training runs in a single process. Use "
                      "recipes/accelerate_configs/multi_cpu.yaml for CPU processes.", stacklevel=3)


def _token_key(convs: list, tokenizer, args) -> str:
    """Fingerprint of what tokenization depends on: data, tokenizer and length settings."""
    blob = json.dumps({"data": convs, "tokenizer": [type(tokenizer).__name__, len(tokenizer),
                                                    tokenizer.name_or_path,
                                                    tokenizer.chat_template],
                       "max_length": args.max_length, "overflow": args.overflow},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _tokenize_once(convs: list, tokenizer, args, out: Path):
    """``tokenize`` run by rank 0 only: it stores the examples in
    ``<out>/lw_tokens-<fingerprint>.npz``, the other ranks wait for it and load them (on long
    data, tokenizing once per process multiplies minutes of CPU by the number of GPUs). A rerun
    after an interruption loads the stored tokens too; ``save`` removes them when done."""
    cache = out / f"lw_tokens-{_token_key(convs, tokenizer, args)}.npz"
    several = _world_size(args) > 1
    with _rank0_first(args) as rank0:
        if rank0 and not cache.exists():
            examples, tstats = tokenize(convs, tokenizer, args.max_length, args.overflow)
            out.mkdir(parents=True, exist_ok=True)
            for old in out.glob("lw_tokens-*.npz"):  # other data or settings
                old.unlink()
            save_examples(cache, examples, tstats)
            if several:
                print(f"[lw.sft] rank 0 tokenized {tstats.conversations} conversations into "
                      f"{cache.name}")
            return examples, tstats
        if not cache.exists():
            raise LwError(f"rank {args.process_index} found no tokens from rank 0 in {cache}: "
                          "see rank 0's error.")
        examples, tstats = load_examples(cache)
        if several:
            print(f"[lw.sft] rank {args.process_index} loaded the tokens from {cache.name}")
        return examples, tstats


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
