"""vLLM (GPU extra): ``lw.llm.load("vllm:<id or path>", **options)`` on a kit-managed server.

    model = lw.llm.load("vllm:Qwen/Qwen2.5-7B-Instruct", max_model_len=32768)
    model.generate(["Write 2,000 words on tides."], max_new_tokens=4096)
    model.close()                      # stops the server (so does the end of the kernel)

``load`` starts ``vllm serve`` (vLLM's OpenAI-compatible server, ``VLLMServer``) on a free
127.0.0.1 port with prefix caching on and ``max_num_seqs`` sequences batched at once, waits until
it serves, and returns an ``OpenAIChatModel`` bound to it (``VLLMServerChatModel``): AgentWrite's
``stream`` keeps ``concurrency`` requests in flight and sends each follow-up the moment its reply
ends, so the server's continuous batching stays full; plans, paragraphs and the judge share one
cache of prompt prefixes. Assistant prefixes work (vLLM's ``continue_final_message``). The server
runs with a random API key and ``--generation-config vllm``, so the kit's generation settings,
not the model's ``generation_config.json``, decide sampling, as on the other backends.

Options: ``concurrency`` (default = ``max_num_seqs``), ``max_retries``, ``backoff``, ``timeout``
go to the client; ``start_timeout`` (s, default 1800: first downloads are slow), ``stop_grace``
and ``log_path`` to the process manager; ``name`` is the served model name (default: the id);
every other option is a vLLM engine argument, passed as a flag: ``gpu_memory_utilization=0.5``
-> ``--gpu-memory-utilization 0.5``, ``True`` -> ``--flag``, ``False`` -> ``--no-flag``, a dict
-> JSON, a list -> several values, ``None`` -> omitted (``vllm_command`` builds the line). vLLM
refuses unknown flags at start-up, and the error shows its message. ``batch_size``, which the
kit passes to every backend, has no meaning here (vLLM schedules its own batches up to
``max_num_seqs``) and is dropped. ``server=False`` keeps the old in-process ``vllm.LLM`` engine
(``VLLMChatModel``; options are then ``vllm.LLM`` arguments).

``prompt_format="inst"`` (the paper's ``pred.py`` format for LongWriter-llama3.1-8b, see
``lw.llm.base.inst_prompt``): the server is sent the raw text ``[INST]<prompt>[/INST]`` on its
``/v1/completions`` route with ``add_special_tokens`` on, so vLLM tokenizes it as the tokenizer's
defaults do (BOS added) and applies no chat template; in process, the kit tokenizes it with
vLLM's tokenizer's defaults and passes the ids. ``trust_remote_code=True`` becomes
``--trust-remote-code`` (in process: ``vllm.LLM(trust_remote_code=True)``).

Needs CUDA and ``pip install 'lw[gpu]'``; without them ``load`` stops at once saying so.
"""

import importlib.metadata
import importlib.util
import json
import secrets
import sys

from lw.errors import LwError
from lw.llm.base import (
    Capabilities,
    ChatModel,
    Generation,
    check_prompt_format,
    clock,
    inst_prompt,
    setting_names,
)
from lw.llm.managed_server import ManagedServer
from lw.llm.openai_compat import OpenAIChatModel

CLIENT_OPTIONS = ("concurrency", "max_retries", "backoff", "timeout")


def vllm_available() -> str | None:
    """None if vLLM can run here, else the reason it cannot (vLLM is found, not imported)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "vLLM needs a CUDA GPU and none is visible on this machine"
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed: pip install 'lw[gpu]'"
    return None


def vllm_command(model: str, port: int, host: str = "127.0.0.1", **engine_args) -> list[str]:
    """The ``vllm serve`` command line for ``model`` on ``host:port`` (see the module docstring
    for how ``engine_args`` become flags). Runs vLLM's CLI with this interpreter, so the
    environment the kit runs in is the one vLLM runs in."""
    clash = sorted(set(engine_args) & {"model", "host", "port", "api_key", "uds"})
    if clash:
        raise LwError(f"{clash} are set by the kit for the server it manages; to serve vLLM "
                      "yourself, start it and use openai:<model> with base_url=...")
    argv = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", model,
            "--host", host, "--port", str(port)]
    for key, value in engine_args.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append("--no-" + flag[2:])
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        elif isinstance(value, list | tuple):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


class VLLMServer(ManagedServer):
    """``vllm serve <model>`` on a free 127.0.0.1 port, up until ``close()``.

    Args:
        model: hub id or local folder.
        name: the model name clients ask for (default: ``model``).
        max_num_seqs: sequences vLLM batches at once.
        enable_prefix_caching: reuse the KV cache of shared prompt prefixes.
        generation_config: "vllm" ignores the model's sampling defaults (the kit sends its own).
        start_timeout, stop_grace, log_path: see ``ManagedServer``.
        engine_args: further vLLM engine arguments (dtype, max_model_len, tensor_parallel_size,
            gpu_memory_utilization, enforce_eager, ...), as flags.
    """

    def __init__(self, model: str, *, name: str | None = None, max_num_seqs: int = 128,
                 enable_prefix_caching: bool = True, generation_config: str = "vllm",
                 start_timeout: float = 1800.0, stop_grace: float = 30.0, log_path=None,
                 **engine_args):
        reason = vllm_available()
        if reason:
            raise LwError(f"cannot load vllm:{model}: {reason}. On CPU use hf:{model} instead, "
                          "or openai:<model> against a vLLM server running elsewhere.")
        if "served_model_name" in engine_args:
            raise LwError("pass the served model name as name=..., not served_model_name.")
        self.model, self.model_name = model, name or model
        self.engine_args = dict(served_model_name=self.model_name, max_num_seqs=max_num_seqs,
                                enable_prefix_caching=enable_prefix_caching,
                                generation_config=generation_config, **engine_args)
        key = secrets.token_hex(16)  # other local users must not use (or stop) this server
        super().__init__(lambda port: vllm_command(model, port, **self.engine_args),
                         name="vLLM server", env={"VLLM_API_KEY": key}, api_key=key,
                         start_timeout=start_timeout, stop_grace=stop_grace, log_path=log_path)


class VLLMServerChatModel(OpenAIChatModel):
    """An ``OpenAIChatModel`` bound to a server the kit manages; ``close()`` stops it.

    Generic over the server (``VLLMServer`` in use, any ``ManagedServer`` serving
    ``server.model_name`` with the assistant-prefix extension in tests)."""

    def __init__(self, server: ManagedServer, spec: str, concurrency: int = 128,
                 prompt_format: str = "chat", **client):
        client.setdefault("timeout", 3600.0)  # a 10,000-word reply takes minutes in a full batch
        super().__init__(server.model_name, spec=spec, base_url=server.base_url,
                         api_key=server.api_key, concurrency=concurrency,
                         continue_final_message=True, server="vllm", **client)
        self.server = server
        self.prompt_format = check_prompt_format(prompt_format)

    def _request(self, conv, prefix, cfg) -> Generation:
        try:
            if self.prompt_format == "inst":
                return self._complete(inst_prompt(conv, prefix), cfg)
            return super()._request(conv, prefix, cfg)
        except Exception:
            self.server.check_alive()  # a dead server: say so with its output, do not retry
            raise

    def _complete(self, prompt: str, cfg) -> Generation:
        """One raw-text request on /v1/completions: no chat template; vLLM's
        ``add_special_tokens`` (its default there, set anyway) adds the BOS token as the
        tokenizer's defaults do."""
        kwargs, body = self._sampling(cfg)
        resp = self._send(self._client.completions.create, prompt=prompt, **kwargs,
                          extra_body={**body, "add_special_tokens": True})
        try:
            text = resp.choices[0].text or ""
        except (AttributeError, IndexError, TypeError) as exc:
            raise RuntimeError(f"malformed completion from the vLLM server: {str(resp)[:200]}") \
                from exc
        return self._generation(resp, text)

    def close(self) -> None:
        """Stop the server and release its GPU memory. Safe to call twice."""
        self.server.close()
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def info(self) -> dict:
        try:
            version = importlib.metadata.version("vllm")
        except importlib.metadata.PackageNotFoundError:
            version = None
        return {**super().info(), "server": f"kit-managed {self.server.name}",
                "vllm_version": version, "prompt_format": self.prompt_format,
                "engine_args": dict(getattr(self.server, "engine_args", {}))}

    def __repr__(self) -> str:
        state = "running" if self.server.running() else "stopped"
        return (f"<{type(self).__name__} {self.spec} (kit-managed {self.server.name} at "
                f"{self.server.base_url}, {state})>")


def load_vllm(model: str, spec: str | None = None, server: bool = True,
              prompt_format: str = "chat", trust_remote_code: bool = False,
              **options) -> ChatModel:
    """``lw.llm.load("vllm:...")``: a chat model on a kit-managed vLLM server, or with
    ``server=False`` the in-process engine (see the module docstring for the options)."""
    spec = spec or f"vllm:{model}"
    check_prompt_format(prompt_format)
    options.pop("batch_size", None)  # vLLM schedules its own batches (module docstring)
    if not server:
        return VLLMChatModel(model, spec=spec, prompt_format=prompt_format,
                             trust_remote_code=trust_remote_code, **options)
    if trust_remote_code:  # only the flag: an absent flag is vLLM's own default (False)
        options["trust_remote_code"] = True
    client = {k: options.pop(k) for k in CLIENT_OPTIONS if k in options}
    served = VLLMServer(model, **options)
    client.setdefault("concurrency", served.engine_args["max_num_seqs"])
    try:
        return VLLMServerChatModel(served, spec, prompt_format=prompt_format, **client)
    except BaseException:
        served.close()
        raise


class VLLMChatModel(ChatModel):
    """A vLLM engine in this process as a chat model; ``engine_args`` go to ``vllm.LLM``.

    ``lw.llm.load("vllm:<id>", server=False)``. It holds the GPU until the process ends, and
    ``stream`` works in rounds; the server path (the default) has neither limit."""

    def __init__(self, model: str, spec: str | None = None, prompt_format: str = "chat",
                 trust_remote_code: bool = False, **engine_args):
        super().__init__(spec or f"vllm:{model}")
        self.prompt_format = check_prompt_format(prompt_format)
        reason = vllm_available()
        if reason:
            raise LwError(f"cannot load {self.spec}: {reason}. On CPU use hf:{model} instead, or "
                          "openai:<model> against a vLLM server running elsewhere.")
        import vllm

        engine_args.pop("batch_size", None)  # vLLM schedules its own batches
        # Sequences vLLM schedules at once: what ``stream``'s rounds should hold. 256 is the
        # engine's usual default where max_num_seqs is not given (it varies with version and
        # hardware; a larger round only queues inside vLLM).
        self.max_num_seqs = int(engine_args.get("max_num_seqs") or 256)
        self.llm = vllm.LLM(model=model, trust_remote_code=trust_remote_code, **engine_args)

    @property
    def capabilities(self) -> Capabilities:
        """``max_num_seqs`` at once, prefixes (``continue_final_message``), every setting under
        its ``SamplingParams`` name; copies of a prompt share the seed, so they come back alike
        when one is set."""
        return Capabilities(concurrency=self.max_num_seqs, continues_prefix=True,
                            token_probabilities=False,
                            settings=setting_names(max_new_tokens="max_tokens",
                                                   min_new_tokens="min_tokens"),
                            context=self._max_model_len())

    def _max_model_len(self) -> int | None:
        """The engine's ``max_model_len`` (where this vLLM version exposes it there)."""
        try:
            return int(self.llm.llm_engine.model_config.max_model_len)
        except (AttributeError, TypeError, ValueError):
            return None

    def context_how(self) -> str:
        return "vLLM max_model_len (in process)"

    def _generate(self, convs, prefixes, cfg, *, progress, errors):
        # One budget a call (vLLM takes one SamplingParams here): the smallest the context
        # leaves any prompt, bounded from above by its bytes; each reply notes its cap.
        asked = cfg.max_new_tokens
        cfg = min((self.fit(c, p, cfg)[0] for c, p in zip(convs, prefixes, strict=True)),
                  key=lambda c: c.max_new_tokens)
        results = self._generate_at(convs, prefixes, cfg, progress)
        for out in results:
            if cfg.max_new_tokens < asked:
                out.extra["capped"] = {"asked": asked, "allowed": cfg.max_new_tokens,
                                       "context": self.capabilities.context,
                                       "prompt_tokens": out.prompt_tokens}
        return results

    def _generate_at(self, convs, prefixes, cfg, progress) -> list[Generation]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                top_p=cfg.top_p, repetition_penalty=cfg.repetition_penalty,
                                seed=cfg.seed, stop=list(cfg.stop) or None,
                                min_tokens=cfg.min_new_tokens)
        if self.prompt_format == "inst":
            return self._generate_inst(convs, prefixes, params, progress)
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

    def info(self) -> dict:
        return {**super().info(), "prompt_format": self.prompt_format}

    def _generate_inst(self, convs, prefixes, params, progress) -> list[Generation]:
        """pred.py's format: ``[INST]...[/INST]`` (+ prefix) tokenized with the tokenizer's
        defaults (BOS added), given to vLLM as token ids so nothing else is added."""
        tokenizer = self.llm.get_tokenizer()
        prompts = [{"prompt_token_ids": tokenizer.encode(inst_prompt(c, p))}
                   for c, p in zip(convs, prefixes, strict=True)]
        start = clock()
        outs = self.llm.generate(prompts, params, use_tqdm=bool(progress))
        seconds = clock() - start
        return [Generation(o.outputs[0].text, len(o.prompt_token_ids), len(o.outputs[0].token_ids),
                           "length" if o.outputs[0].finish_reason == "length" else "stop", seconds)
                for o in outs]
