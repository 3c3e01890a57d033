"""How much memory a training recipe needs per GPU, worked out from the model's config.json alone.

    est = memory.estimate(load_recipe("recipes/qwen2.5-7b/sft/config_full.yaml"), gpus=8,
                          gpu_memory_gb=80, sharding="zero3")
    print(est.table())          # weights, gradients, optimizer state, activations, logits+loss
    est.fits, est.shortfall_gb

    python -m lw.sft recipes/qwen2.5-1.5b/sft/config_lora.yaml --dry-run --gpus 1 --gpu-memory 24

Nothing is loaded but the config: the parameters are counted on a model built on the meta
device, so a folder holding only config.json is enough (offline). ``lw.sft.train`` calls
``check`` before it loads weights and refuses a run its own estimate says cannot fit on the
visible GPU(s); ``--ignore-memory-check`` (or ``LW_IGNORE_MEMORY_CHECK=1``, which the flag sets
so every ``accelerate launch`` rank sees it) skips that.
On CPU it refuses only what clearly exceeds system RAM (see ``CPU_CLEARLY_OVER``).

The figures are an estimate of the peak, not a measurement. Per GPU:

* weights, gradients, optimizer state: bytes per parameter from the kit's precision plan
  (``lw.sft.precision``): fp32 weights (4) + fp32 gradients (4) + AdamW's two fp32 moments (8) =
  16 bytes per trained parameter; with bf16 autocast and unsharded weights, autocast also keeps a
  bf16 copy (2) of every trained weight it casts until the forward pass ends. Under DeepSpeed
  with bf16 the model is bf16 (2) and the optimizer holds fp32 master weights and moments (12);
  gradients are counted at 4, which is DeepSpeed's own 18 bytes per parameter
  (``estimate_zero3_model_states_mem_needs``). ZeRO-3 and FSDP divide all three by the GPU count
  and add the parameters they gather for the layer being computed. LoRA trains only its
  adapters (r x (in + out) per targeted linear); the frozen base keeps its weights only.
* activations: with gradient checkpointing, transformers keeps each decoder layer's input (one
  hidden-state vector per token per layer, in the residual stream's dtype: fp32 under autocast
  with fp32 weights, since the embedding output is fp32 and bf16 layer outputs are added to it),
  plus the working set of the one layer being recomputed during backward. That working set
  counts the tensors a Llama/Qwen layer saves for backward per token (after Korthikanti et al.
  2022, "Reducing Activation Recomputation in Large Transformer Models", sec. 4, adapted to
  RMSNorm, grouped-query attention and a SwiGLU MLP, with a flash/varlen attention kernel so no
  sequence-squared term): 2 RMSNorms (fp32 upcast + output), q/k/v, rotated q/k, attention
  output, o_proj output, MLP input, gate/up/SiLU/product (4 x intermediate) and down output.
  Without checkpointing every layer keeps its working set.
* logits and loss: the full-logits loss (``lw.sft.loss.weighted_loss``) takes the full-vocabulary logits in
  the compute dtype, upcasts them to fp32 for log-softmax, and backward makes an fp32 gradient of
  the same size: (compute bytes + 4 + 4) x tokens x vocab. ``loss_chunk_tokens`` (an argument,
  default the recipe's ``train.loss_chunk_tokens``; 0 or None: full logits) counts that many
  tokens at a time instead, as ``lw.sft.loss``'s chunked loss does. DPO recipes (TRL's loss)
  have no such field and are counted with full logits.
* total: weights + optimizer + activations + the larger of (logits and loss, gradients): the
  logits are freed when the backward pass leaves the output layer, before most gradients exist.

Checked against a measured CPU peak in tests/test_sft_memory.py (process RSS high-water mark of
one fp32 training step of a small Llama; the factor found is stated there).
"""

import os
import re
from dataclasses import dataclass, field

from lw.errors import LwError

GB = 1e9
SHARDINGS = ("single", "ddp", "zero3", "fsdp")
OFFLOADS = (None, "optimizer", "param")
IGNORE_VAR = "LW_IGNORE_MEMORY_CHECK"
# On CPU a run is refused only when the estimate exceeds RAM by this much: the figures are made
# for a GPU allocator, RAM is shared with whatever else runs, and being a little over slows a
# run (swap, or the kernel reclaiming caches) rather than failing it at once.
CPU_CLEARLY_OVER = 1.5


@dataclass
class Shape:
    """What the estimate needs from a model's config (counted on the meta device)."""

    params: int  # distinct parameters (tied embeddings once)
    linear_params: int  # weights of nn.Linear layers, which autocast casts to bf16
    layers: int
    hidden: int
    kv_dim: int  # key/value heads x head dim
    intermediate: int
    vocab: int
    largest_module: int  # parameters of the largest leaf module (ZeRO-3 gathers it whole)
    layer_params: int  # parameters of one decoder layer (FSDP's wrapping unit)
    root_params: int  # parameters outside the decoder layers (embeddings, norm, lm_head)
    lora_params: int = 0  # trainable LoRA parameters for the recipe's settings


@dataclass
class Estimate:
    """Per-GPU peak memory of one training step, in GB (1e9 bytes)."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits_loss: float
    total: float
    gpu_memory_gb: float | None
    gpus: int
    sharding: str
    offload: str | None
    tokens: int  # tokens in one micro-batch on one GPU
    params: int
    trainable: int
    cpu_offloaded_gb: float = 0.0  # held in host RAM per machine (all its GPUs' shards)
    loss_chunk_tokens: int | None = None
    notes: list = field(default_factory=list)

    @property
    def shortfall_gb(self) -> float:
        """GB missing per GPU (0 when it fits or no GPU size was given)."""
        if self.gpu_memory_gb is None:
            return 0.0
        return max(0.0, self.total - self.gpu_memory_gb)

    @property
    def fits(self) -> bool | None:
        return None if self.gpu_memory_gb is None else self.total <= self.gpu_memory_gb

    def table(self) -> str:
        rows = [("weights", self.weights), ("gradients", self.gradients),
                ("optimizer state", self.optimizer), ("activations", self.activations),
                ("logits and loss", self.logits_loss)]
        chunk = f", loss chunks of {self.loss_chunk_tokens}" if self.loss_chunk_tokens else ""
        lines = [f"{self.params / 1e9:.3f}B parameters, {self.trainable / 1e9:.3f}B trained; "
                 f"{self.tokens} tokens per GPU per micro-batch{chunk}; {self.gpus} GPU(s), "
                 f"{self.sharding}" + (f", offload {self.offload}" if self.offload else ""),
                 f"  {'per GPU':<18}{'GB':>9}"]
        lines += [f"  {name:<18}{value:>9.1f}" for name, value in rows]
        lines.append(f"  {'total (peak)':<18}{self.total:>9.1f}")
        if self.cpu_offloaded_gb:
            lines.append(f"  {'host RAM (node)':<18}{self.cpu_offloaded_gb:>9.1f}")
        if self.gpu_memory_gb is not None:
            verdict = ("fits" if self.fits else f"short by {self.shortfall_gb:.1f} GB per GPU")
            lines.append(f"  {'GPU memory':<18}{self.gpu_memory_gb:>9.1f}  {verdict}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def model_config(spec: str):
    """transformers config of a recipe's model spec (a folder holding only config.json will do)."""
    from transformers import AutoConfig

    from lw.sft.config import model_path

    path = model_path(spec)
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise LwError(f"cannot read the config of {spec!r} ({path}): {exc}. The memory estimate "
                      "needs only its config.json: download it (huggingface-cli download <id> "
                      "config.json) or point the recipe's model at a folder holding it "
                      "(--set model=hf:<folder>).") from exc


def shape(config, lora=None) -> Shape:
    """Count parameters of ``config``'s causal LM on the meta device (no memory, no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    params = sum(p.numel() for p in model.parameters())  # parameters() yields tied ones once
    out = model.get_output_embeddings()
    linear, lora_n, seen = 0, 0, set()
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and id(mod.weight) not in seen:
            seen.add(id(mod.weight))
            linear += mod.weight.numel()
            if lora is not None and mod is not out and _targets(name, lora.target_modules):
                lora_n += lora.r * (mod.in_features + mod.out_features)
    largest = max(sum(p.numel() for p in m.parameters(recurse=False))
                  for m in model.modules())
    layers = int(text.num_hidden_layers)
    blocks = [m for m in model.modules() if m.__class__.__name__.endswith("DecoderLayer")]
    layer_params = sum(p.numel() for p in blocks[0].parameters()) if blocks else params // layers
    heads = int(text.num_attention_heads)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv = int(getattr(text, "num_key_value_heads", None) or heads) * int(head_dim)
    return Shape(params=params, linear_params=linear, layers=layers, hidden=int(text.hidden_size),
                 kv_dim=kv, intermediate=int(text.intermediate_size),
                 vocab=int(text.vocab_size), largest_module=int(largest),
                 layer_params=int(layer_params), root_params=int(params - layers * layer_params),
                 lora_params=int(lora_n))


def _targets(name: str, targets) -> bool:
    """Whether peft's ``target_modules`` picks the linear ``name`` ("all-linear" picks every
    linear but the output layer, which the caller has excluded)."""
    if targets == "all-linear":
        return True
    if isinstance(targets, str):  # peft reads a plain string as a regex over the full name
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def layer_bytes_per_token(s: Shape, compute: int, residual: int) -> int:
    """Bytes one decoder layer keeps for backward per token (see the module docstring)."""
    h, kv, inter = s.hidden, s.kv_dim, s.intermediate
    norms = 2 * (4 * h + residual * h)  # RMSNorm upcasts its input to fp32 and saves it
    attention = compute * (h + (h + 2 * kv) + (h + kv) + h + h)  # in, qkv, rotated qk, out, o
    mlp = compute * (h + 4 * inter + h)  # in, gate/up/SiLU/product, down out
    return norms + attention + mlp


def estimate(recipe, gpus: int = 1, gpu_memory_gb: float | None = None,
             sharding: str | None = None, offload: str | None = None,
             loss_chunk_tokens: int | None = None, config=None) -> Estimate:
    """Per-GPU peak memory of training ``recipe`` (a parsed ``Recipe``).

    Args:
        gpus: GPUs the run is spread over (data parallel or sharded).
        gpu_memory_gb: memory of one GPU; sets ``shortfall_gb`` and ``fits``.
        sharding: "single", "ddp" (everything replicated), "zero3" (DeepSpeed ZeRO-3: weights,
            gradients and optimizer state divided by ``gpus``) or "fsdp" (full shard, the same
            division); default what the recipe's config says (``lw.sft.precision.sharding``),
            else "ddp" for several GPUs and "single" for one.
        offload: None, "optimizer" (optimizer state, and for ZeRO-3 its gradient partitions, in
            host RAM) or "param" (parameters too). Sharded runs only.
        loss_chunk_tokens: tokens whose logits the loss holds at once (0: all of them, as
            ``weighted_loss`` does); None reads the recipe's ``loss_chunk_tokens`` field, if any.
        config: a transformers config to use instead of reading the recipe's model's.
    """
    from lw.sft import precision

    args = recipe.train
    if gpus < 1:
        raise LwError(f"gpus must be at least 1, got {gpus}.")
    if sharding in ("deepspeed", "zero-3"):
        sharding = "zero3"
    if sharding is None:
        found = precision.sharding(args)
        sharding = {"deepspeed": "zero3", "fsdp": "fsdp"}.get(found) or (
            "ddp" if gpus > 1 else "single")
    if sharding not in SHARDINGS:
        raise LwError(f"sharding must be one of {SHARDINGS}, got {sharding!r}.")
    if offload not in OFFLOADS:
        raise LwError(f"offload must be one of {OFFLOADS[1:]} or None, got {offload!r}.")
    if offload and sharding not in ("zero3", "fsdp"):
        raise LwError(f"offload {offload!r} needs sharding 'zero3' or 'fsdp', not {sharding!r}.")
    if loss_chunk_tokens is None:
        loss_chunk_tokens = getattr(args, "loss_chunk_tokens", None)
    s = shape(config if config is not None else model_config(recipe.model), recipe.lora)
    notes = []

    bf16, fp16 = bool(getattr(args, "bf16", False)), bool(getattr(args, "fp16", False))
    pure_bf16 = getattr(args, "weights_dtype", "float32") == "bfloat16"
    half = bf16 or fp16
    compute = 2 if half else 4
    if pure_bf16:
        w, g, o = 2, 2, 4  # AdamW's moments take the parameters' dtype
    elif sharding == "zero3" and half:
        w, g, o = 2, 4, 12  # bf16 model; fp32 master + moments in DeepSpeed's optimizer
    else:
        w, g, o = 4, 4, 8
    residual = 4 if (w == 4 and half) or not half else 2  # fp32 residual stream under autocast
    lora = recipe.lora is not None
    trainable = s.lora_params if lora else s.params
    frozen = s.params if lora else 0
    tokens = int(args.max_length) * int(args.per_device_train_batch_size)
    dpo = recipe.stage == "dpo"
    if dpo:  # TRL concatenates chosen and rejected: twice the rows
        tokens *= 2
        if not lora:  # a frozen reference model beside the policy (LoRA disables adapters)
            frozen += s.params
            notes.append("DPO: a frozen reference copy of the model is counted in weights.")

    shards = gpus if sharding in ("zero3", "fsdp") else 1
    weights_b = (trainable + frozen) * w / shards
    grads_b = trainable * g / shards
    optim_b = trainable * o / shards
    cpu_b = 0.0
    if sharding == "ddp" and gpus > 1:
        grads_b *= 2  # DDP's gradient buckets are a second copy of the gradients
        notes.append("DDP: gradient buckets counted as a second copy of the gradients.")
    if offload:  # ZeRO-3 offloads gradient partitions with the optimizer; FSDP offloads all
        moved = optim_b + grads_b
        optim_b = grads_b = 0.0
        if offload == "param" or sharding == "fsdp":
            moved, weights_b = moved + weights_b, 0.0
        cpu_b = moved * gpus
    if sharding == "zero3":  # DeepSpeed's estimator: the largest layer gathered in fp32
        weights_b += 4 * s.largest_module
    elif sharding == "fsdp":  # two decoder layers (current + prefetched) + the unsharded root
        weights_b += compute * (2 * s.layer_params + s.root_params)
    elif half and w == 4:  # autocast caches a bf16 copy of each trained weight it casts
        weights_b += 2 * min(trainable, s.linear_params)
        notes.append("weights include autocast's bf16 copies of the trained fp32 weights.")

    layer = layer_bytes_per_token(s, compute, residual) * tokens
    hidden = s.hidden * residual * tokens
    # transformers 5 renames the field activation_checkpointing; recipes still use the old name.
    if getattr(args, "gradient_checkpointing", False) or getattr(
            args, "activation_checkpointing", False):
        acts = s.layers * hidden + layer + 2 * hidden  # checkpoints + one layer + its gradients
    else:
        acts = s.layers * layer + 2 * hidden
        notes.append("no gradient checkpointing: every layer keeps its activations.")
    held = min(tokens, loss_chunk_tokens) if loss_chunk_tokens else tokens
    logits = held * s.vocab * (compute + 4 + 4)
    total = weights_b + optim_b + acts + max(logits, grads_b)
    if sharding == "zero3":
        notes += _deepspeed_check(s, trainable, gpus, offload)
    return Estimate(weights=weights_b / GB, gradients=grads_b / GB, optimizer=optim_b / GB,
                    activations=acts / GB, logits_loss=logits / GB, total=total / GB,
                    gpu_memory_gb=gpu_memory_gb, gpus=gpus, sharding=sharding, offload=offload,
                    tokens=tokens, params=s.params, trainable=trainable,
                    cpu_offloaded_gb=cpu_b / GB, loss_chunk_tokens=loss_chunk_tokens,
                    notes=notes)


def _deepspeed_check(s: Shape, trainable: int, gpus: int, offload) -> list:
    """DeepSpeed's own ZeRO-3 model-state figure where DeepSpeed is installed (it is not a
    dependency of the kit; without it this says nothing)."""
    try:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    except Exception:  # not installed, or its import needs a GPU stack that is absent
        return []
    gpu_b, cpu_b = estimate_zero3_model_states_mem_needs(
        total_params=trainable, largest_layer_params=s.largest_module, num_gpus_per_node=gpus,
        num_nodes=1, cpu_offload=bool(offload), cpu_offload_params=offload == "param",
        zero_init=1)
    return [f"DeepSpeed's ZeRO-3 estimator: model states {gpu_b / GB:.1f} GB per GPU, "
            f"{cpu_b / GB:.1f} GB host RAM (without activations and logits)."]


def check(recipe, device: str | None = None) -> Estimate | None:
    """Refuse (LwError) a run whose estimate does not fit where it is about to load weights.

    ``device`` is "cuda" or "cpu", default where the Trainer will put the model. On CUDA:
    against the memory of this process's GPU, with the GPU count from ``WORLD_SIZE``
    (``accelerate launch``) and the sharding from the recipe's config. On CPU: only when the
    estimate exceeds system RAM by ``CPU_CLEARLY_OVER``. Skipped when ``LW_IGNORE_MEMORY_CHECK``
    is set (``--ignore-memory-check``) or the training config has ``memory_check`` false (read
    with getattr: DPO configs have no such field), and (with a warning) when the estimate
    cannot be made (no readable config.json, an architecture transformers cannot build): that is
    no reason to stop a run whose loading may still work.
    """
    import warnings

    if os.environ.get(IGNORE_VAR, "").lower() in ("1", "true", "yes") or getattr(
            recipe.train, "memory_check", True) is False:
        return None
    if device is None:
        from lw.sft.config import train_device

        device = train_device(recipe.train)
    gpus = max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    capacity = None
    if device == "cuda":
        import torch

        index = torch.cuda.current_device()
        capacity = torch.cuda.get_device_properties(index).total_memory / GB
    try:
        config = model_config(recipe.model)
        if device == "cuda":
            est = estimate(recipe, gpus=gpus, gpu_memory_gb=capacity,
                           offload=_accelerate_offload(), config=config)
        else:
            est = estimate(recipe, gpus=1, sharding="single", config=config)
    except Exception as exc:  # a model the estimate cannot read must not stop a run that loads
        warnings.warn(f"memory check skipped: {exc}", stacklevel=3)
        return None
    if device == "cuda":
        if not est.fits:
            raise LwError(
                f"this run needs about {est.total:.1f} GB per GPU and GPU {index} has "
                f"{capacity:.1f} GB (short by {est.shortfall_gb:.1f} GB):\n{est.table()}\n"
                "Lower max_length or per_device_train_batch_size, turn on "
                "gradient_checkpointing, use LoRA, or shard over more GPUs (accelerate launch "
                "--config_file recipes/accelerate_configs/deepspeed_zero3.yaml); "
                "--ignore-memory-check runs it anyway.")
        return est
    ram = _system_ram_gb()
    procs = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))  # they share one RAM
    if ram is not None and est.total * procs > CPU_CLEARLY_OVER * ram:
        raise LwError(
            f"this CPU run needs about {est.total * procs:.1f} GB ({procs} process(es)) and the "
            f"machine has {ram:.1f} GB of RAM:\n{est.table()}\nLower max_length or per_device_train_batch_size, turn on "
            "gradient_checkpointing or use LoRA; --ignore-memory-check runs it anyway.")
    return est


def _accelerate_offload() -> str | None:
    """The offload an ``accelerate launch`` DeepSpeed/FSDP config asked for (env it exports)."""
    env = os.environ
    if env.get("ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "none") not in ("none", ""):
        return "param"
    if env.get("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "none") not in ("none", ""):
        return "optimizer"
    if env.get("FSDP_OFFLOAD_PARAMS", "false").lower() in ("1", "true", "yes"):
        return "param"
    return None


def _system_ram_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    except (ValueError, OSError, AttributeError):
        return None


ACCELERATE_CONFIGS = {"ddp": "ddp.yaml", "zero3": "deepspeed_zero3.yaml", "fsdp": "fsdp.yaml"}


def launch_command(recipe_path, overrides: dict | None = None, data: str | None = None,
                   gpus: int = 8, sharding: str = "zero3") -> str:
    """The ``accelerate launch`` line that trains ``recipe_path`` (with ``overrides`` as
    ``--set``) on ``gpus`` GPUs of one machine, for notebooks to print beside their one-process
    run; ``python -m lw.sft ... --dry-run --gpus N --sharding S`` checks it first."""
    import shlex

    if sharding not in ACCELERATE_CONFIGS:
        raise LwError(f"sharding must be one of {sorted(ACCELERATE_CONFIGS)}, got {sharding!r}.")
    parts = ["accelerate", "launch", "--config_file",
             f"recipes/accelerate_configs/{ACCELERATE_CONFIGS[sharding]}",
             "--num_processes", str(gpus), "-m", "lw.sft", str(recipe_path)]
    if data:
        parts += ["--data", str(data)]
    for key, value in (overrides or {}).items():
        parts += ["--set", f"{key}={value}"]
    return " ".join(shlex.quote(p) for p in parts)

