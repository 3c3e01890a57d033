"""Local transformers backend: any causal LM folder or hub id, batched generation.

Conversations are rendered with the model's chat template and decoded with continuous batching
(``lw.llm.engine``): up to ``batch_size`` rows at once, a finished row leaves at once and the next
prompt takes its place. ``engine="hf"`` uses transformers' own ``generate`` instead (prompts
sorted by length, cut into fixed batches, each run until its longest reply ends); models whose
cache the engine cannot edit (e.g. sliding-window layers) use it automatically. On CUDA the model
runs in bf16 where supported; on CPU in fp32 unless ``dtype`` says otherwise (``"bfloat16"``:
about twice fp32's tokens/s on a CPU with AVX-512 BF16 or AMX, what ``small`` uses there), or
with ``quantize="int8"``: torch's dynamic int8 linear layers, about 3x fp32's tokens/s on two
cores but lossy for a small model (SmolLM2-135M's answers loop about three times sooner;
``benchmarks/bench_cpu_routes.py``, docs/BENCHMARKS.md). In bf16 and int8 an answer depends a
little on the rows decoding beside it (rounding varies with the batch's shape; int8 quantises a
layer's input with one scale for the whole batch): a rerun with the same seeds is identical, a
run resumed after a crash gives answers as valid as, not identical to, an uninterrupted run's.
The engine reuses the keys and values of earlier
replies for prompts that start the same way (``lw.llm.prefix``; ``prefix_cache_bytes=0`` turns
it off, ``model.prefixes.clear()`` forgets them after the weights change).

``prompt_format="inst"`` prompts as the paper's ``evaluation/pred.py`` prompts
LongWriter-llama3.1-8b: the raw text ``[INST]<prompt>[/INST]`` tokenized with the tokenizer's
defaults (so with the BOS token where the tokenizer adds one), no chat template.
``trust_remote_code=True`` lets a checkpoint with its own modelling code load (LongWriter-glm4-9b);
it runs that code, so only for checkpoints you trust.

    model = HFChatModel.from_pretrained("HuggingFaceTB/SmolLM2-360M-Instruct", batch_size=16)
    llama = HFChatModel.from_pretrained("THUDM/LongWriter-llama3.1-8b", prompt_format="inst")
"""

import os

from lw.errors import LwError
from lw.llm import prepacked
from lw.llm.attention import use_for_decoding
from lw.llm.base import (
    Capabilities,
    ChatModel,
    Generation,
    GenerationConfig,
    check_prompt_format,
    clock,
    inst_prompt,
    setting_names,
)
from lw.llm.engine import Engine, Job, supported
from lw.llm.prefix import PrefixStore


def pick_device(device: str | None = None) -> tuple[str, "object"]:
    """(device, dtype): CUDA with bf16 where available, else CPU with fp32."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.float32
    return device, dtype


QUANTIZE = ("int8",)


def _quantized(model, quantize: str | None, device: str, spec: str) -> str | None:
    """Apply ``quantize`` to ``model`` in place (see the module docstring); returns it."""
    if quantize is None:
        return None
    if quantize not in QUANTIZE:
        raise LwError(f"{spec}: quantize={quantize!r} is not one of {QUANTIZE} (or None: the "
                      "weights as loaded).")
    if not device.startswith("cpu"):
        raise LwError(f"{spec}: quantize={quantize!r} is torch's dynamic int8 for CPUs; this "
                      f"model is on {device}, where it runs in bf16: leave quantize unset.")
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch 2.13 says torch.ao.quantization and quantized tensors move to torchao; they
        # still work, and the two messages would sit in every notebook's output.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.* deprecated", category=UserWarning)
        torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8,
                                               inplace=True)
    return quantize


class HFChatModel(ChatModel):
    """A transformers causal LM as a chat model.

    Args:
        model, tokenizer: loaded transformers objects.
        spec: the spec string recorded in results.
        batch_size: conversations decoding at once.
        engine: "continuous" (the kit's continuous batching) or "hf" (transformers' generate).
        prefix_cache_bytes: memory for reusable prompt caches (continuous engine only).
        cuda_graphs: decode with a static cache and CUDA graphs (``lw.llm.slots``); None: on
            wherever the model is on CUDA and the continuous engine runs it.
        prompt_format: "chat" (the tokenizer's chat template) or "inst" (pred.py's raw
            ``[INST]prompt[/INST]``, one user message only; see the module docstring).
        quantize: None, or "int8" on CPU (see the module docstring); refused on a GPU.
        prepack: linear layers multiply by weights laid out once for oneDNN
            (``lw.llm.prepacked``): None (default) on a CPU where memory allows, with the reason
            in ``info()`` where it does not; True insists (an error where it cannot); False off.
        decode_kernel: decoding attention through the kit's compiled CPU kernel
            (``lw.llm.cpu_kernel``, built once per machine): None (default) for a bf16 model on
            a CPU wherever it builds, with the reason in ``info()`` and a warning where it
            cannot; True insists; False keeps torch's products (the figures before 2026-12-03's
            seventh session came from them). The same switch gives prepacked bf16 linear
            layers the kernel's few-row product on CPUs with AVX-512 BF16 (``info()``'s
            ``linear_kernel``: "yes", or why not; ``lw.llm.prepacked``) and has the engine
            draw tokens with it (``info()``'s ``sampler``; ``lw.llm.engine.sample``); False
            keeps oneDNN's products and torch's sampling (the figures before 2026-12-04's
            eighth session).
    """

    def __init__(self, model, tokenizer, spec: str, batch_size: int = 8,
                 config: GenerationConfig | None = None, engine: str = "continuous",
                 prefix_cache_bytes: int = 1 << 30, cuda_graphs: bool | None = None,
                 prompt_format: str = "chat", quantize: str | None = None,
                 prepack: bool | None = None, decode_kernel: bool | None = None):
        super().__init__(spec, config)
        self.prompt_format = check_prompt_format(prompt_format)
        if engine not in ("continuous", "hf"):
            raise LwError(f"engine must be 'continuous' or 'hf', got {engine!r}.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.device = str(next(model.parameters()).device)
        self.quantize = _quantized(self.model, quantize, self.device, spec)
        # On a CPU, decoding steps pack grouped query heads instead of SDPA's slow enable_gqa
        # call: 2.1-5.6x faster unpadded steps at 250-3,000 cached tokens (lw.llm.attention).
        kernel, self.decode_kernel = self._decode_kernel(decode_kernel)
        use_for_decoding(self.model, kernel=kernel)
        # the same module draws the engine's tokens (lw.llm.engine.sample's compiled path)
        self._sampler = kernel
        self.prepacked = self._prepack(prepack)
        self.linear_kernel = self._linear_kernel(decode_kernel)
        self.engine = engine if engine == "hf" or supported(model) else "hf"
        self.prefixes = PrefixStore(prefix_cache_bytes)
        on_cuda = self.device.startswith("cuda")
        if cuda_graphs and not (on_cuda and self.engine == "continuous"):
            raise LwError(f"cuda_graphs=True needs the continuous engine on a CUDA device; this "
                          f"model runs engine={self.engine!r} on {self.device}. Leave "
                          "cuda_graphs unset (it turns on by itself on a GPU).")
        self.cuda_graphs = on_cuda and self.engine == "continuous" if cuda_graphs is None \
            else cuda_graphs
        self._slots = None  # the static-cache engine, kept: its buffers and graphs are reused

    def _decode_kernel(self, wanted: bool | None):
        """The compiled decoding kernel as ``wanted`` says, and what ``info()`` reports:
        ``(module, "yes")`` or ``(None, "no: <why>")``."""
        import torch

        from lw.llm import attention, cpu_kernel

        if wanted not in (None, True, False):
            raise LwError(f"decode_kernel must be None, True or False, got {wanted!r}.")
        if wanted is False:
            return None, "no: decode_kernel=False"
        config = self.model.config
        heads = getattr(config, "num_attention_heads", None) or 0
        head_dim = getattr(config, "head_dim", None) or (
            config.hidden_size // heads if heads and getattr(config, "hidden_size", None) else 0)
        groups = heads // (getattr(config, "num_key_value_heads", None) or heads or 1)
        applies = False  # would the kernel serve this model, were it built?
        if not self.device.startswith("cpu"):
            why = f"the model is on {self.device}, the kernel is for CPUs"
        elif self.model.dtype != torch.bfloat16:
            why = f"the model is {str(self.model.dtype).removeprefix('torch.')}, the kernel bf16"
        elif groups <= 1:
            why = "the model shares no key/value head among query heads"
        elif head_dim not in attention.KERNEL_HEAD_DIMS:
            why = f"head dimension {head_dim}, the kernel is built for 64 and 128"
        else:
            applies = True
            kernel, why = cpu_kernel.load()
            if why is None:
                return kernel, "yes"
        if wanted:
            raise LwError(f"{self.spec}: decode_kernel=True cannot apply: {why}. Leave "
                          "decode_kernel unset (used where it can be) or pass False.")
        if applies:
            import warnings

            warnings.warn(f"{self.spec}: the kit's CPU decoding kernel is not used ({why}); "
                          "bf16 decoding runs torch's products, ~2-3x slower attention at long "
                          "contexts.", stacklevel=3)
        return None, f"no: {why}"

    def _linear_kernel(self, wanted: bool | None) -> str:
        """Give the prepacked bf16 layers the kernel's few-row product where it can run; what
        ``info()`` reports: "yes", or "no: <why>". Not warned about: a bf16 model on a CPU
        without AVX-512 BF16 is warned about already (``lw.llm.cpu_bf16``)."""
        import torch

        from lw.llm import cpu_kernel

        if wanted is False:
            return "no: decode_kernel=False"
        if self.prepacked != "yes":
            return f"no: the layers are not prepacked ({self.prepacked})"
        if self.model.dtype != torch.bfloat16:
            return f"no: the model is {str(self.model.dtype).removeprefix('torch.')}, the kernel bf16"
        kernel, why = cpu_kernel.load()
        if why is None:
            why = prepacked.use_rows_kernel(self.model, kernel)
        return "yes" if why is None else f"no: {why}"

    def _prepack(self, prepack: bool | None) -> str:
        """Pack the linear layers' weights (``lw.llm.prepacked``) as ``prepack`` says; what
        ``info()`` reports: "yes", or "no: <why>"."""
        if prepack not in (None, True, False):
            raise LwError(f"prepack must be None, True or False, got {prepack!r}.")
        if prepack is False:
            return "no: prepack=False"
        why = ("the layers are int8 (quantize='int8')" if self.quantize
               else prepacked.prepack(self.model))
        if why and prepack:
            raise LwError(f"{self.spec}: prepack=True cannot apply: {why}. Leave prepack unset "
                          "(the kit packs where it can) or pass prepack=False.")
        if why and self.device.startswith("cpu") and not self.quantize:
            import warnings

            warnings.warn(f"{self.spec}: linear layers not prepacked ({why}); decoding on this "
                          "CPU runs at plain nn.Linear speed.", stacklevel=3)
        return f"no: {why}" if why else "yes"

    @property
    def capabilities(self) -> Capabilities:
        """``batch_size`` rows at once; prefixes, next-token probabilities (the weights are
        here) and every generation setting under its own name. Copies of a prompt in one call
        draw different samples: each reply's seed mixes in its request name
        (``lw.llm.engine.row_seed``; the "hf" engine draws a batch from one generator)."""
        return Capabilities(concurrency=max(1, self.batch_size), continues_prefix=True,
                            token_probabilities=True, settings=setting_names(),
                            distinct_copies=True, context=self.context)

    @property
    def context(self) -> int | None:
        """The positions the model was configured for (``model_context``)."""
        return model_context(self.model.config)

    def context_how(self) -> str:
        rope = getattr(self.model.config, "rope_parameters", None) or \
            getattr(self.model.config, "rope_scaling", None) or {}
        kind = rope.get("rope_type") or rope.get("type")
        return "model config" + (f" ({kind} rope scaling)" if kind and kind != "default" else "")

    def prompt_tokens(self, conv, prefix: str | None = None) -> int:
        return len(self.prompt_ids(conv, prefix))

    @classmethod
    def from_pretrained(cls, path: str, spec: str | None = None, device: str | None = None,
                        dtype=None, batch_size: int = 8, engine: str = "continuous",
                        prefix_cache_bytes: int = 1 << 30, cuda_graphs: bool | None = None,
                        prompt_format: str = "chat", trust_remote_code: bool = False,
                        rope_scaling: dict | None = None, quantize: str | None = None,
                        prepack: bool | None = None, decode_kernel: bool | None = None,
                        **kwargs) -> "HFChatModel":
        """Load a folder or hub id. Offline, a model missing from the local cache is a clear error.

        ``trust_remote_code`` goes to both the tokenizer's and the model's ``from_pretrained``;
        ``rope_scaling`` (e.g. ``lw.llm.context.YARN_4X``) is merged into the model's own rope
        settings, keeping its base frequency; other ``kwargs`` go to the model's
        ``from_pretrained`` only."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        check_prompt_format(prompt_format)
        _check_local(path)
        device, auto_dtype = pick_device(device)
        if isinstance(dtype, str):  # "bfloat16", as a profile or a notebook parameter says it
            import torch

            if not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise LwError(f"dtype {dtype!r} is not a torch dtype: use e.g. 'bfloat16', "
                              "'float16' or 'float32'.")
            dtype = getattr(torch, dtype)
        try:
            if rope_scaling:
                kwargs["config"] = scaled_config(path, rope_scaling, trust_remote_code)
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or auto_dtype,
                                                         trust_remote_code=trust_remote_code,
                                                         **kwargs)
        except OSError as exc:
            offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
            hint = (
                "HF_HUB_OFFLINE is set, so only local files are used: download the model on a "
                f"machine with internet (`hf download {path}`) or pass a local folder"
                if offline else "check the id or path, and your network or HF token"
            )
            raise LwError(f"cannot load model '{path}': {hint}. ({exc})") from exc
        return cls(model.to(device), tokenizer, spec or f"hf:{path}", batch_size=batch_size,
                   engine=engine, prefix_cache_bytes=prefix_cache_bytes, cuda_graphs=cuda_graphs,
                   prompt_format=prompt_format, quantize=quantize, prepack=prepack,
                   decode_kernel=decode_kernel)

    def render(self, conv, prefix: str | None = None) -> str:
        """The prompt text the model sees: chat template, generation prompt, then the prefix
        (``"inst"``: ``[INST]<message>[/INST]`` then the prefix; the tokenizer may add a BOS
        token to it, see ``prompt_ids``)."""
        if self.prompt_format == "inst":
            return inst_prompt(conv, prefix)
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(conv, add_generation_prompt=True,
                                                      tokenize=False)
        else:  # a base model without a template: a plain transcript
            text = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in conv)
            text += "Assistant:"
        return text + (prefix or "")

    def prompt_ids(self, conv, prefix: str | None = None) -> list[int]:
        """The token ids the model is given for ``conv`` (and an assistant ``prefix``).

        "chat": the rendered template, whose text already holds any special tokens, without
        adding more. "inst": the tokenizer's defaults, as pred.py calls it (BOS added where the
        tokenizer adds one: Llama 3.1's does)."""
        text = self.render(conv, prefix)
        if self.prompt_format == "inst":
            return self.tokenizer(text).input_ids
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _ids(self, conv, prefix) -> list[int]:
        return self.prompt_ids(conv, prefix)

    def _engine(self) -> Engine:
        if not self.cuda_graphs:
            return Engine(self.model, self.tokenizer, self.batch_size, self._eos(), self.prefixes,
                          sampler=self._sampler)
        from lw.llm.slots import SlotEngine

        if self._slots is None or self._slots.batch_size != max(1, self.batch_size):
            self._slots = None  # free the old buffers before allocating new ones
            self._slots = SlotEngine(self.model, self.tokenizer, self.batch_size, self._eos(),
                                     self.prefixes, graphs=True)
        return self._slots

    def _eos(self) -> set:
        return set(_as_list(self.model.generation_config.eos_token_id)) | {
            self.tokenizer.pad_token_id}

    def stream(self, requests, on_done, *, progress=False, errors="return", desc=None) -> None:
        """Continuous batching across rounds: a request returned by ``on_done`` starts as soon
        as a row is free (see ``ChatModel.stream``)."""
        if self.engine == "hf":
            return super().stream(requests, on_done, progress=progress, errors=errors, desc=desc)
        from lw.progress import bar as tqdm

        count = iter(range(1 << 62))

        capped: dict[int, dict] = {}

        def job(r):
            r = self._checked(r)
            name = r.name if r.name is not None else str(next(count))
            ids = self._ids(r.conversation, r.prefix)
            cfg, note = self.fit(r.conversation, r.prefix, r.config, prompt_tokens=len(ids))
            if note:
                capped[id(r)] = note
            return Job(r, ids, cfg, name)

        def done(j, gen):
            note = capped.pop(id(j.key), None)
            if note:
                gen.extra["capped"] = note
            return [job(r) for r in on_done(j.key, gen) or ()]

        with tqdm(desc=desc or f"generate {self.spec}", unit="reply", disable=not progress) as bar:
            self._engine().run([job(r) for r in requests], done, errors=errors, bar=bar)

    def _generate(self, convs, prefixes, cfg, *, progress, errors):
        from lw.progress import bar as tqdm

        ids = [self._ids(c, p) for c, p in zip(convs, prefixes, strict=True)]
        fitted = [self.fit(c, p, cfg, prompt_tokens=len(x))
                  for c, p, x in zip(convs, prefixes, ids, strict=True)]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        results: list[Generation | None] = [None] * len(ids)
        if self.engine == "continuous":
            def keep(job, gen):
                if fitted[job.key][1]:
                    gen.extra["capped"] = fitted[job.key][1]
                results[job.key] = gen

            with tqdm(total=len(ids), desc=f"generate {self.spec}", unit="conv",
                      disable=not (progress if progress is not None
                                   else len(ids) > self.batch_size)) as bar:
                self._engine().run([Job(i, ids[i], fitted[i][0], str(i)) for i in order], keep,
                                   errors, bar)
            return results
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        show = progress if progress is not None else len(batches) > 1
        with tqdm(total=len(ids), desc=f"generate {self.spec}", unit="conv",
                  disable=not show) as bar:
            for batch in batches:
                # transformers' generate takes one budget a batch: the smallest any row's
                # context leaves (each row's own cap is noted below).
                batch_cfg = min((fitted[i][0] for i in batch), key=lambda c: c.max_new_tokens)
                try:
                    outs = self._generate_batch([ids[i] for i in batch], batch_cfg)
                except Exception as exc:  # e.g. out of memory: report per item or raise
                    if errors == "raise":
                        raise
                    outs = [Generation("", len(ids[i]), 0, "error", 0.0, error=repr(exc))
                            for i in batch]
                for i, out in zip(batch, outs, strict=True):
                    if batch_cfg.max_new_tokens < cfg.max_new_tokens:
                        out.extra["capped"] = {"asked": cfg.max_new_tokens,
                                               "allowed": batch_cfg.max_new_tokens,
                                               "context": self.context,
                                               "prompt_tokens": len(ids[i])}
                    results[i] = out
                bar.update(len(batch))
        return results

    def _generate_batch(self, batch_ids: list[list[int]], cfg: GenerationConfig):
        import torch

        tok = self.tokenizer
        width = max(len(x) for x in batch_ids)
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in batch_ids])
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in batch_ids])
        kwargs = dict(max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.min_new_tokens or None,
                      repetition_penalty=cfg.repetition_penalty, pad_token_id=pad,
                      do_sample=cfg.temperature > 0)
        if cfg.temperature > 0:
            kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if cfg.stop:
            kwargs.update(stop_strings=list(cfg.stop), tokenizer=tok)
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        start = clock()
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids.to(self.device),
                                      attention_mask=mask.to(self.device), **kwargs)
        seconds = clock() - start
        return [self._decode(row[width:].tolist(), len(x), self._eos(), cfg, seconds)
                for row, x in zip(out, batch_ids, strict=True)]

    def _decode(self, new: list[int], n_prompt: int, eos: set, cfg, seconds) -> Generation:
        end = next((k for k, t in enumerate(new) if t in eos), None)
        body = new if end is None else new[:end]
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        cut = min((text.find(s) for s in cfg.stop if s in text), default=-1)
        if cut >= 0:
            # Stopped by a stop string: generation ended on the token that completed it, and
            # anything after is padding, so `body` holds exactly the generated tokens.
            return Generation(text[:cut], n_prompt, len(body), "stop", seconds)
        if end is not None:  # the end-of-text token was generated too
            return Generation(text, n_prompt, end + 1, "stop", seconds)
        return Generation(text, n_prompt, len(new), "length", seconds)

    def close(self) -> None:
        """Free the static cache's buffers and CUDA graphs and the kept prefixes (GPU memory a
        training run or another model may need); the model stays usable and rebuilds them."""
        self._slots = None
        self.prefixes.clear()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def load_identity(self) -> dict:
        # What changes the text beyond the spec: int8, or a CPU dtype other than fp32 (on CUDA
        # the dtype is the device's own choice, and files made there before keep their names).
        out = {"quantize": self.quantize} if self.quantize else {}
        dtype = str(self.model.dtype).removeprefix("torch.")
        if self.device.startswith("cpu") and dtype != "float32":
            out["dtype"] = dtype
        return out

    def info(self) -> dict:
        return {**super().info(), "device": self.device, "dtype": str(self.model.dtype),
                **({"quantize": self.quantize} if self.quantize else {}),
                "batch_size": self.batch_size, "engine": self.engine,
                "prompt_format": self.prompt_format,
                "prefix_cache_bytes": self.prefixes.max_bytes, "cuda_graphs": self.cuda_graphs,
                "prepacked": self.prepacked, "decode_kernel": self.decode_kernel,
                "linear_kernel": self.linear_kernel,
                "sampler": ("kernel" if self._sampler is not None and self.engine == "continuous"
                            and not self.cuda_graphs else "torch")}


def model_context(config) -> int | None:
    """Positions a transformers config says the model handles: ``max_position_embeddings``, or
    more where its rope settings scale the original window (YaRN, linear, dynamic: ``factor`` x
    ``original_max_position_embeddings``; Llama 3.1's "llama3" already counts in the first)."""
    window = getattr(config, "max_position_embeddings", None)
    if window is None:
        text = getattr(config, "get_text_config", lambda: None)()
        window = getattr(text, "max_position_embeddings", None) if text is not None else None
    if window is None:
        return None
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    kind = rope.get("rope_type") or rope.get("type")
    if kind in ("yarn", "linear", "dynamic") and rope.get("factor"):
        original = rope.get("original_max_position_embeddings") or window
        return max(int(window), int(rope["factor"] * original))
    return int(window)


def scaled_config(path: str, rope_scaling: dict, trust_remote_code: bool = False):
    """The model's config with ``rope_scaling`` merged into its rope settings (the model's own
    base frequency and other fields kept: transformers would otherwise fill them with its
    defaults)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    if hasattr(config, "rope_parameters"):
        config.rope_parameters = {**(config.rope_parameters or {}), **rope_scaling}
    else:
        config.rope_scaling = {**(getattr(config, "rope_scaling", None) or {}), **rope_scaling}
    return config


def _check_local(path: str) -> None:
    """A spec that names a folder (starts with /, ., ~ or has more than one /: a hub id is
    ``namespace/name``) must be one holding a model, else an error about the folder, not advice
    to download a hub id that cannot exist."""
    if not (path.startswith(("/", ".", "~")) or path.count("/") > 1 or os.path.isdir(path)):
        return
    folder = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(folder):
        raise LwError(f"no folder {folder}: check the path of hf:{path} (a hub id has the form "
                      "namespace/name, e.g. hf:Qwen/Qwen2.5-0.5B-Instruct).")
    if not os.path.exists(os.path.join(folder, "config.json")):
        raise LwError(f"{folder} holds no config.json, so it is not a saved transformers model: "
                      "point hf: at the folder save_pretrained wrote (e.g. <output_dir>/final).")


def _as_list(x) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]
