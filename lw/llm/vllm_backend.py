"""In-process vLLM backend (GPU extra): ``lw.llm.load("vllm:<id or path>", **engine_args)``.

Needs CUDA and ``pip install 'lw[gpu]'``. Without them ``load`` stops at once with a message
saying so; nothing else in the kit depends on vLLM. For a vLLM *server*, use ``openai:`` with
``base_url=...`` and ``continue_final_message=True`` instead.
"""

from lw.errors import LwError
from lw.llm.base import ChatModel, Generation, clock


def vllm_available() -> str | None:
    """None if vLLM can run here, else the reason it cannot."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "vLLM needs a CUDA GPU and none is visible on this machine"
    try:
        import vllm  # noqa: F401
    except ImportError:
        return "vLLM is not installed: pip install 'lw[gpu]'"
    return None


class VLLMChatModel(ChatModel):
    """A vLLM engine as a chat model; ``engine_args`` go to ``vllm.LLM``."""

    supports_prefix = True

    def __init__(self, model: str, spec: str | None = None, **engine_args):
        super().__init__(spec or f"vllm:{model}")
        reason = vllm_available()
        if reason:
            raise LwError(f"cannot load {self.spec}: {reason}. On CPU use hf:{model} instead, or "
                          "openai:<model> against a vLLM server running elsewhere.")
        import vllm

        engine_args.pop("batch_size", None)  # vLLM schedules its own batches
        self.llm = vllm.LLM(model=model, **engine_args)

    def _generate(self, convs, prefixes, cfg, *, progress, errors):
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty,
                                seed=cfg.seed, stop=list(cfg.stop) or None,
                                min_tokens=cfg.min_new_tokens)
        results: list[Generation | None] = [None] * len(convs)
        # vLLM takes the continue-the-last-message switch per call: one call with, one without.
        for with_prefix in (False, True):
            idx = [i for i, p in enumerate(prefixes) if bool(p) == with_prefix]
            if not idx:
                continue
            msgs = [convs[i] + ([{"role": "assistant", "content": prefixes[i]}]
                                if with_prefix else []) for i in idx]
            start = clock()
            outs = self.llm.chat(msgs, params, use_tqdm=bool(progress),
                                 add_generation_prompt=not with_prefix,
                                 continue_final_message=with_prefix)
            seconds = clock() - start
            for i, out in zip(idx, outs, strict=True):
                o = out.outputs[0]
                reason = "length" if o.finish_reason == "length" else "stop"
                results[i] = Generation(o.text, len(out.prompt_token_ids), len(o.token_ids),
                                        reason, seconds)
        return results
