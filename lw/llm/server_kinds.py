"""The OpenAI-compatible servers the kit knows: what each applies, under which names, and how
to tell which one is answering.

``OpenAIChatModel`` asks the server's ``GET /v1/models`` once and reads ``owned_by`` (or takes
``server=`` given explicitly); ``KINDS[kind].settings()`` then maps every ``GenerationConfig``
field to the request parameter that server reads, or None where it has none, and the model
refuses such a setting before the first request instead of sending a parameter the server
ignores. A server that does not identify itself is treated as a hosted OpenAI-style API: only
the standard parameters.

What each server reports and reads (from its source, read 2026-11-26):
    vLLM        entrypoints/openai/protocol.py: ModelCard ``owned_by="vllm"``; chat requests take
                ``repetition_penalty``, ``min_tokens``, ``continue_final_message`` with
                ``add_generation_prompt=false``.
    SGLang      srt/entrypoints/openai/protocol.py: ModelCard ``owned_by="sglang"``; chat
                requests take ``repetition_penalty``, ``min_tokens`` (its min_new_tokens),
                ``seed`` (its sampling_seed), ``continue_final_message``.
    llama.cpp   tools/server: ``/v1/models`` answers ``owned_by="llamacpp"``; requests are read
                by ``params_from_json_cmpl``: ``repeat_penalty``, ``seed``, ``n_predict`` or
                ``max_tokens``; it has no minimum length. Recent builds prefill a final
                assistant message unless started with ``--no-prefill-assistant``; the kit cannot
                see that flag, so it does not count on it (pass continue_final_message=True to
                rely on it).
    llama-cpp-python (0.3.36) server/app.py: ``owned_by="me"`` (and the model's file path as
                its id); server/types.py: ``repeat_penalty``, ``min_tokens`` (a logits
                processor), ``seed``. Its chat formats always add the generation prompt, so a
                final assistant message is answered afresh (measured on this machine).
    Ollama      openai/openai.go: ``owned_by`` is the model name's namespace, "library" for
                library models; docs.ollama.com/api/openai-compatibility lists the fields it
                reads: seed, stop, temperature, top_p, max_tokens, frequency/presence penalty;
                no repetition penalty (only its native API's ``repeat_penalty``), no minimum.
    OpenAI      ``owned_by`` "openai", "system", "openai-internal" or the organisation.
    lw.serve    ``owned_by="lw"`` and an ``lw`` entry saying what the model it wraps applies.
"""

import re
from dataclasses import dataclass, field
from urllib.parse import urlparse

from lw.llm.base import SETTINGS

# Parameters every OpenAI-compatible server reads under the same name.
STANDARD = {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p",
            "seed": "seed", "stop": "stop"}

WHAT = {"repetition_penalty": "repetition penalty", "min_new_tokens": "minimum reply length",
        "seed": "seed", "top_p": "top_p", "stop": "stop strings", "temperature": "temperature",
        "max_new_tokens": "maximum reply length"}


@dataclass(frozen=True)
class ServerKind:
    """One kind of server: ``extensions`` maps the non-standard GenerationConfig fields to its
    parameter names (None: it has none); ``prefix_note`` says why it cannot continue a prefix."""

    name: str
    label: str
    owned_by: tuple = ()
    extensions: dict = field(default_factory=dict)
    continues_prefix: bool = False
    prefix_note: str = ""
    plural: bool = False  # "hosted OpenAI-style APIs have", not "has"

    def settings(self) -> dict:
        """Every GenerationConfig field -> this server's parameter name, or None."""
        out = {name: STANDARD.get(name) for name in SETTINGS}
        out.update(self.extensions)
        return out


KINDS = {k.name: k for k in (
    ServerKind("vllm", "vLLM", ("vllm",),
               {"repetition_penalty": "repetition_penalty", "min_new_tokens": "min_tokens"},
               continues_prefix=True),
    ServerKind("sglang", "SGLang", ("sglang",),
               {"repetition_penalty": "repetition_penalty", "min_new_tokens": "min_tokens"},
               continues_prefix=True),
    ServerKind("llamacpp", "llama.cpp's server", ("llamacpp",),
               {"repetition_penalty": "repeat_penalty", "min_new_tokens": None},
               prefix_note="whether it prefills a final assistant message depends on its build "
                           "and its --no-prefill-assistant flag, which the kit cannot see"),
    ServerKind("llama-cpp-python", "llama-cpp-python's server", ("me",),
               {"repetition_penalty": "repeat_penalty", "min_new_tokens": "min_tokens"},
               prefix_note="it answers a final assistant message with a fresh reply"),
    ServerKind("ollama", "Ollama's OpenAI endpoint", ("library", "ollama"),
               {"repetition_penalty": None, "min_new_tokens": None},
               prefix_note="its OpenAI endpoint has no continue_final_message"),
    ServerKind("openai", "hosted OpenAI-style APIs", ("openai", "system", "openai-internal"),
               {"repetition_penalty": None, "min_new_tokens": None},
               prefix_note="the OpenAI API has no continue_final_message", plural=True),
    ServerKind("lw", "lw.serve", ("lw",),
               {"repetition_penalty": "repetition_penalty", "min_new_tokens": "min_tokens"},
               continues_prefix=True),
)}


def identify(cards: list[dict], model: str) -> tuple[str | None, str]:
    """(kind or None, how it was told) from ``/v1/models`` cards, ``model``'s card first."""
    ordered = sorted(cards, key=lambda c: c.get("id") != model)
    owners = [str(c.get("owned_by", "")) for c in ordered]
    for owner in owners:
        for kind in KINDS.values():
            if owner.lower() in kind.owned_by:
                return kind.name, f"/v1/models says owned_by={owner!r}"
    if not cards:
        return None, "/v1/models listed nothing"
    return None, f"unrecognised /v1/models owned_by={owners[0]!r}"


def has_api_version(base_url: str) -> bool:
    """Whether ``base_url``'s path holds an API version segment (/v1, /api/v1, /v1beta/...)."""
    return re.search(r"/v\d+[a-z0-9]*(/|$)", urlparse(base_url).path) is not None


def missing_v1(base_url: str, route: str) -> str:
    """The message for a 404 at ``base_url/route`` where base_url has no /v1."""
    return (f"the server answered 404 at {base_url}/{route}: base_url {base_url!r} has no /v1. "
            "OpenAI-compatible servers (vLLM, SGLang, llama.cpp, Ollama, lw.serve) serve their "
            f"API under /v1: use base_url='{base_url}/v1' (or set OPENAI_BASE_URL so).")


def unsupported_hint(kind: str | None, name: str, neutral, how_told: str) -> str:
    """What to do about a setting ``kind`` (None: an unidentified server) cannot apply."""
    server = KINDS.get(kind, KINDS["openai"])
    has = [k.label for k in KINDS.values() if k.name not in ("openai", "lw")
           and k.settings()[name] is not None]
    where = f"a server that has one ({', '.join(has)}) or " if has else ""
    text = (f"{server.label} {'have' if server.plural else 'has'} no {WHAT[name]}: use "
            f"{name}={neutral!r}, or {where}a local backend (hf:, vllm:).")
    if kind is None:
        text += (f" (The server did not say which it is: {how_told}; so only the standard "
                 "OpenAI parameters are sent. If you know it, pass server='vllm', 'sglang', "
                 "'llamacpp', 'llama-cpp-python' or 'ollama'.)")
    return text
