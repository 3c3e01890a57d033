"""What a run will ask of this machine, told before any work: ``python -m lw.run --check``.

    python -m lw.run --size full --check
    python -m lw.run --size small --check -p MODEL openai:my-model

For each generating notebook it names the model and where it runs (a vLLM server the kit
starts, the kit's engine, a server already running), its context and how the kit knows it, the
prompts, the requests and the tokens they may take, and what the context will cap or cannot
hold; then the GPU, vLLM and the one-model-at-a-time rule. Nothing is loaded: a local model's
context comes from its ``config.json`` where it is on disk (rope scaling the size applies
included), a server is asked for its ``/v1/models`` only. Training memory is not estimated here.
"""

from dataclasses import dataclass
from types import SimpleNamespace

from lw import data, profiles
from lw.llm.base import byte_bound
from lw.llm.context import TOKENS_PER_WORD, plan
from lw.paper import benchmarks


@dataclass
class _Static:
    """What ``lw.llm.context.plan`` reads of a model, without loading it."""

    spec: str
    context: int | None
    how: str

    @property
    def capabilities(self):
        return SimpleNamespace(context=self.context)  # the one field plan() reads

    def context_how(self) -> str:
        return self.how

    def prompt_token_bound(self, conv, prefix=None) -> int:
        return byte_bound(conv, prefix)


def model_context(spec: str, options: dict) -> tuple[int | None, str, str]:
    """(context, how known, where it runs) for ``spec`` loaded with ``options``, loading
    nothing: a local model's config where it is on disk, a server's ``/v1/models``."""
    kind, _, rest = spec.removeprefix("agentwrite:").partition(":")
    if kind == "openai":
        from lw import llm

        try:
            model = llm.load(spec, **{k: v for k, v in options.items()
                                         if k in ("base_url", "api_key", "context", "server")})
            caps = model.capabilities
            return caps.context, model.context_how(), f"the server at {model.base_url}"
        except Exception as exc:  # a plan reports what it cannot reach, it does not stop
            return None, f"server not reachable ({str(exc)[:80]})", "a server (not reachable)"
    if kind == "vllm":
        where = "a vLLM server the kit starts (one at a time)"
    elif kind == "fake":
        return None, "a scripted fake", "this process"
    else:
        where = "the kit's engine in this process"
    if "max_model_len" in options:
        return int(options["max_model_len"]), "vLLM --max-model-len", where
    config = _local_config(spec)
    if config is None:
        from lw.llm.context import PUBLISHED

        known = PUBLISHED.get(rest)
        if known is None:
            return None, "its config.json is not on this machine yet", where
        if options.get("rope_scaling"):
            scale = options["rope_scaling"]
            known = max(known, int(scale["factor"] * scale["original_max_position_embeddings"]))
        return known, "published config" + (" + YaRN" if options.get("rope_scaling") else ""), \
            where
    from lw.llm.hf import model_context as from_config

    if options.get("rope_scaling"):
        config.rope_parameters = {**(getattr(config, "rope_parameters", None) or {}),
                                  **options["rope_scaling"]}
    return from_config(config), "model config" + (" + YaRN" if options.get("rope_scaling")
                                                  else ""), where


def _local_config(spec: str):
    from transformers import AutoConfig

    kind, _, rest = spec.partition(":")
    if spec == "smollm2-135m" or spec == "tiny-random" or kind == "tiny-random":
        from lw.llm import embedded

        folder = embedded.smollm2_dir() if spec == "smollm2-135m" else \
            embedded.tiny_random_dir(int(rest or 0))
        return AutoConfig.from_pretrained(str(folder))
    try:
        return AutoConfig.from_pretrained(rest, local_files_only=True)
    except (OSError, ValueError):
        return None


def _work(size, parameters: dict) -> list[dict]:
    """Each generating notebook's models, prompts and budget at ``size`` (its profile, with the
    given parameters applied as the notebook applies them)."""
    get = parameters.get
    model = get("MODEL") or size.model
    out = []
    p = profiles.get("00", size)
    out.append(dict(notebook="00", models=[model], rows=[{"id": i, "prompt": "x" * 120,
                                                         "length": 2000} for i in range(3)],
                    budget=get("MAX_NEW_TOKENS") or p.max_new_tokens))
    p = profiles.get("01", size)
    rows = benchmarks.subset(benchmarks.load("longwrite_ruler"), n=get("N_PROMPTS") or p.n_prompts,
                           seed=0, max_length=get("MAX_LENGTH") or p.max_length,
                           languages=tuple(get("LANGUAGES") or p.languages))
    out.append(dict(notebook="01", models=get("MODELS") or [size.model], rows=rows,
                    budget=get("MAX_NEW_TOKENS") or p.max_new_tokens))
    p = profiles.get("02", size)
    rows = data.instructions("kit", min_words=2000, max_words=get("MAX_WORDS") or p.max_words,
                             n=get("N_INSTRUCTIONS") or p.n_instructions)
    out.append(dict(notebook="02", models=[model], rows=rows,
                    budget=get("DIRECT_MAX_NEW_TOKENS") or p.direct_max_new_tokens,
                    note="direct answers; AgentWrite's paragraphs are shorter requests"))
    p = profiles.get("03", size)
    released = [profiles.full_model(m) for m in _released()] if p.released_models else None
    rows = benchmarks.subset(benchmarks.load(get("BENCHMARK") or p.benchmark),
                           n=get("N_PROMPTS") or p.n_prompts, seed=0,
                           max_length=get("MAX_LENGTH") or p.max_length)
    out.append(dict(notebook="03", models=get("MODELS") or released or [size.model], rows=rows,
                    budget=get("MAX_NEW_TOKENS") or p.max_new_tokens, judge=get("JUDGE")))
    p = profiles.get("05", size)
    rows = benchmarks.subset(benchmarks.load("longbench_write_en"), n=get("N_PROMPTS") or p.n_prompts,
                           seed=0, min_length=2000)
    out.append(dict(notebook="05", models=[model], rows=rows,
                    budget=get("MAX_NEW_TOKENS") or p.max_new_tokens,
                    judge=get("JUDGE") or model, note="base and SFT models, each"))
    return out


def _released() -> list[str]:
    from lw.llm import RELEASED

    return list(RELEASED)


def check(size_name: str, parameters: dict | None = None) -> list[str]:
    """The plan of a run at ``size_name`` on this machine, as lines to print."""
    size = profiles.resolve_size(size_name, model=(parameters or {}).get("MODEL"))
    lines = [f"# plan of a `{size.name}` run on this machine (nothing loaded)", ""]
    problems = []
    contexts: dict = {}
    for work in _work(size, parameters or {}):
        rows, budget = work["rows"], work["budget"]
        lines.append(f"## {work['notebook']}: {len(rows)} prompts, budget {budget} tokens a reply"
                     + (f" ({work['note']})" if work.get("note") else ""))
        for spec in dict.fromkeys([*work["models"], *([work["judge"]] if work.get("judge")
                                                        else [])]):
            options = size.options(spec)
            if spec not in contexts:
                contexts[spec] = model_context(spec, options)
            context, how, where = contexts[spec]
            role = "judge" if spec == work.get("judge") and spec not in work["models"] else "model"
            lines.append(f"- {role} `{spec}` on {where}; context "
                         f"{context if context else 'unknown'} ({how})")
            if role == "judge":
                continue
            need = sum(byte_bound([{"role": "user", "content": r["prompt"]}]) for r in rows)
            lines.append(f"  {len(rows)} requests: prompts <= {need:,} tokens, replies <= "
                         f"{len(rows) * budget:,} tokens")
            found = plan(_Static(spec, context, how), rows, budget, TOKENS_PER_WORD).lines()
            lines += [f"  ! {x}" for x in found]
            problems += [f"{work['notebook']}: {x}" for x in found]
        lines.append("")
    machine = _machine(size)
    problems += [x for x in machine if x.startswith("- !")]
    lines += machine
    lines += ["", f"{len(problems)} finding(s) (marked !) to read before the run." if problems
              else "Every request fits its model's context, and the machine has what it needs."]
    return lines


def _machine(size) -> list[str]:
    from lw.llm.vllm_backend import vllm_available

    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        gpu = None
    reason = vllm_available()
    out = ["## this machine",
           f"- GPU: {gpu or 'none'}; vLLM: {'available' if reason is None else reason}",
           "- one served model at a time: each is closed before the next loads, a judge that is "
           "the model under test shares its load (lw.llm.lifecycle)"]
    if size.name == "full" and gpu is None:
        out.append("- ! full size without a GPU: 7B models on the kit's CPU engine take days; "
                   "use a GPU machine, or MODEL/JUDGE openai:<model> against a server elsewhere")
    return out


def main(size: str, parameters: dict | None = None) -> int:
    """Print the plan; 0 (a plan never fails: its findings are for the user to read)."""
    print("\n".join(check(size, parameters)))
    return 0
