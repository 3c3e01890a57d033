"""One served model per process, and the engine a trained checkpoint is evaluated on.

    from lw.llm import lifecycle

    model = lifecycle.use("vllm:Qwen/Qwen2.5-7B-Instruct")   # starts its vLLM server
    judge = lifecycle.use("openai:gpt-4o")       # stops that server first, then loads the judge
    lifecycle.use("openai:gpt-4o") is judge      # same spec and options: the loaded one again
    lifecycle.release()                          # closes it: the GPU is free for training

A kit-managed vLLM server claims 90% of the GPU's memory by default, so a second one started on
the same GPU fails or starves; the kit's own engine keeps weights, a static cache and CUDA graphs
on the GPU. ``use`` keeps one model loaded at a time instead of asking every caller to split the
GPU by hand (``gpu_memory_utilization``): it closes the model it loaded before (``model.close()``
stops a server, frees the local engine's caches; dropping the last reference frees the weights)
unless the same spec and options are asked for again, which return the loaded model. Models
loaded with ``lw.llm.load`` directly are not tracked, and vLLM in process (``server=False``)
cannot be closed: it holds the GPU until the process ends, so only the server path takes turns. ``lw.longbench.run_models`` orders its work
(all answers first, the judge once at the end) so that this costs as few loads as possible.

``checkpoint_spec(spec, like=base)`` picks the engine for a checkpoint the kit trained
(``hf:<folder>``): ``vllm:<folder>`` where the base it is compared with runs on vLLM and vLLM can
run here, so both answer on the same engine with the same settings; else ``spec`` unchanged.
"""

import gc
import json
import os
import sys

from lw.llm.base import ChatModel


def _load(spec: str, **options) -> ChatModel:
    import lw.llm

    return lw.llm.load(spec, **options)


class ModelSlot:
    """Holds at most one loaded model (see the module docstring); ``loader`` defaults to
    ``lw.llm.load`` (tests pass a recording one)."""

    def __init__(self, loader=None):
        self._loader = loader or _load
        self.model: ChatModel | None = None
        self._key: str | None = None

    def use(self, spec: str, batch_size: int | None = None, **options) -> ChatModel:
        """The model for ``spec`` loaded with ``options``: the one held if it is that model and
        still serving, else a fresh load, after the one held is closed. ``batch_size`` goes to
        every backend (``lw.llm.load`` makes it an ``openai:`` server's requests in flight)."""
        if batch_size is not None:
            options["batch_size"] = batch_size
        key = json.dumps([spec, options], sort_keys=True, default=repr)
        if self.model is not None and key == self._key and _serving(self.model):
            return self.model
        self.release()
        self.model = self._loader(spec, **options)
        self._key = key
        return self.model

    def release(self) -> None:
        """Close the model held, if any, and let go of it. Safe to call twice."""
        model, self.model, self._key = self.model, None, None
        if model is None:
            return
        model.close()
        del model
        # The local engine's weights are freed only once nothing refers to them; collect now so
        # the next model finds the memory free rather than at some later collection.
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()


def _serving(model: ChatModel) -> bool:
    """False for a kit-managed server that was stopped or died since it was loaded."""
    server = getattr(model, "server", None)
    return server is None or not hasattr(server, "running") or server.running()


_SLOT = ModelSlot()


def use(spec: str, batch_size: int | None = None, **options) -> ChatModel:
    """``lw.llm.load(spec, **options)``, closing the model this process loaded through ``use``
    before, unless it is the same spec with the same options (then that model is returned).
    ``batch_size`` goes to every backend (see ``lw.llm.load``)."""
    return _SLOT.use(spec, batch_size, **options)


def release() -> None:
    """Close the model loaded through ``use``, if any (before training, or at the end)."""
    _SLOT.release()


def held() -> ChatModel | None:
    """The model loaded through ``use`` and not yet released, or None."""
    return _SLOT.model


def checkpoint_spec(spec: str, like: str) -> str:
    """The spec to evaluate a trained checkpoint ``spec`` (``hf:<folder>``) with, compared with
    the model ``like`` (its base): ``vllm:<folder>`` where ``like`` is a ``vllm:`` spec and vLLM
    can run here (same engine as the base; vLLM is ~10x faster at long outputs than the kit's
    engine), else ``spec``. Prints the choice for ``hf:<folder>`` specs; others pass unchanged."""
    from lw.llm.vllm_backend import vllm_available

    kind, _, folder = spec.partition(":")
    if kind != "hf" or not os.path.isdir(folder):
        return spec
    if not like.startswith("vllm:"):
        print(f"[lw] checkpoint {folder}: evaluated on the kit's engine ({spec}), as its base "
              f"{like}")
        return spec
    reason = vllm_available()
    if reason is not None:
        print(f"[lw] checkpoint {folder}: evaluated on the kit's engine ({spec}): {reason}")
        return spec
    print(f"[lw] checkpoint {folder}: evaluated through vLLM (vllm:{folder}), as its base {like}, "
          "with the same settings")
    return f"vllm:{folder}"
