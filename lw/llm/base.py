"""The chat-model interface every backend implements, and the records it returns.

A chat model takes a batch of conversations (each a list of ``{"role", "content"}`` messages,
or a plain string meaning one user message) and returns one ``Generation`` per conversation:

    outs = model.generate(["Write a limerick.", "Name three rivers."], max_new_tokens=64)
    outs[0].text, outs[0].completion_tokens, outs[0].finish_reason, outs[0].seconds

``prefix`` starts the assistant's reply with given text and lets the model continue it (where
the backend allows: ``model.capabilities.continues_prefix``); the returned text is the
continuation only.

Every backend declares what it does in ``model.capabilities`` (a ``Capabilities``): how many
requests it runs at once, whether it continues a prefix, whether it gives next-token
probabilities, and under which name it applies each generation setting. Callers ask it instead of
probing attributes, and ``generate``/``stream`` refuse a setting the backend cannot apply
(``model.check_settings``) before the first request rather than drop it.

``stream`` is for work that grows as replies arrive (AgentWrite's next paragraph needs the
previous one): it takes ``Request``s and a callback that may return more, and backends that can
keep their batch or connections busy (local transformers, OpenAI-compatible) start new work the
moment a reply ends instead of waiting for a whole round.
"""

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace

from lw.errors import LwError

Message = dict[str, str]
Conversation = list[Message]


@dataclass(frozen=True)
class GenerationConfig:
    """Generation settings shared by all backends.

    temperature 0 means greedy decoding. ``stop`` strings end a reply and are not part of its
    text. ``min_new_tokens`` exists for benchmarks that need equal-length replies.
    """

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    min_new_tokens: int = 0

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple(self.stop or ()))
        if self.max_new_tokens < 1:
            raise LwError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}.")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise LwError(
                "need temperature >= 0, 0 < top_p <= 1 and repetition_penalty > 0; got "
                f"{self.temperature}, {self.top_p}, {self.repetition_penalty}."
            )

    def updated(self, **settings) -> "GenerationConfig":
        known = {f.name for f in fields(self)}
        unknown = set(settings) - known
        if unknown:
            raise LwError(f"unknown generation setting(s) {sorted(unknown)}; known: {sorted(known)}")
        return replace(self, **settings)


# Tokens a server's chat template (and a default system prompt it may add) can put around the
# messages; only used where the kit cannot count a prompt's tokens exactly.
TEMPLATE_ALLOWANCE = 96

NEUTRAL = GenerationConfig()  # each setting's value that changes nothing (max_new_tokens aside)
SETTINGS = tuple(f.name for f in fields(GenerationConfig))


def setting_names(**overrides) -> dict:
    """A ``Capabilities.settings`` map: every GenerationConfig field under its own name, except
    ``overrides`` (field -> the backend's parameter name, or None where it cannot apply it)."""
    unknown = set(overrides) - set(SETTINGS)
    if unknown:
        raise LwError(f"unknown generation setting(s) {sorted(unknown)}; known: {list(SETTINGS)}")
    return {**{name: name for name in SETTINGS}, **overrides}


@dataclass(frozen=True)
class Capabilities:
    """What a chat model does, declared by its backend (``model.capabilities``).

    Attributes:
        concurrency: requests the backend runs at once (batch rows, connections in flight).
        continues_prefix: it continues an assistant prefix (``generate(..., prefix=...)``).
        token_probabilities: it gives next-token probabilities (the judge's ``mode="prob"``).
        settings: GenerationConfig field -> the backend's own parameter name, or None where it
            cannot apply that setting (a value other than ``NEUTRAL``'s is then refused).
        distinct_copies: copies of one prompt in one call draw different samples under one
            seed (the local engine mixes each request's position into its seed); False where
            copies sharing a seed come back alike (servers, in-process vLLM, the fake).
        context: tokens one request may span, prompt and reply together (a local model's
            positions after rope scaling, vLLM's ``max_model_len``, llama.cpp's ``n_ctx``);
            None where the backend cannot tell (``context=`` at load time asserts it).
    """

    concurrency: int
    continues_prefix: bool
    token_probabilities: bool
    settings: dict
    distinct_copies: bool = False
    context: int | None = None

    def applies(self, setting: str) -> bool:
        """Whether the backend applies ``setting`` (a GenerationConfig field name)."""
        return self.settings.get(setting) is not None


@dataclass
class Generation:
    """One reply. ``finish_reason`` is "stop" (end of text or a stop string), "length" (hit
    max_new_tokens) or "error" (only with ``errors="return"``; ``error`` says why).
    ``seconds`` is the wall time of the call that produced it (a whole batch on local backends)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    seconds: float
    error: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Request:
    """One reply wanted from ``ChatModel.stream``: ``key`` is how the caller recognises it;
    ``name``, a stable string, seeds its sampling on local backends (so a reply is the same
    however the work was batched or resumed); default: its position among the requests."""

    key: object
    conversation: "str | Sequence[Message]"
    config: GenerationConfig
    prefix: str | None = None
    name: str | None = None


def as_conversation(item: str | Sequence[Message]) -> Conversation:
    """A plain string becomes one user message; a conversation is checked and copied."""
    if isinstance(item, str):
        if not item.strip():
            raise LwError("empty prompt: give the model something to answer.")
        return [{"role": "user", "content": item}]
    conv = [dict(m) for m in item]
    if not conv or any(not isinstance(m.get("content"), str) or "role" not in m for m in conv):
        raise LwError(
            "a conversation is a non-empty list of {'role': ..., 'content': str} messages; "
            f"got {item!r:.200}"
        )
    return conv


PROMPT_FORMATS = ("chat", "inst")


def check_prompt_format(prompt_format: str) -> str:
    """``prompt_format`` if it is one the kit knows ("chat" or "inst"), else an LwError."""
    if prompt_format not in PROMPT_FORMATS:
        raise LwError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}: "
                      "'chat' renders the model's chat template, 'inst' the raw "
                      "'[INST]prompt[/INST]' text of the paper's pred.py.")
    return prompt_format


def inst_prompt(conv: Conversation, prefix: str | None = None) -> str:
    """The ``"inst"`` prompt format: the raw text ``[INST]<user message>[/INST]``, as the
    official ``evaluation/pred.py`` prompts LongWriter-llama3.1-8b (no chat template, no system
    message), then the assistant ``prefix`` if any, since the reply follows ``[/INST]`` directly.

    The format has one user turn only: anything else is refused rather than guessed at.
    """
    if len(conv) != 1 or conv[0]["role"] != "user":
        roles = [m["role"] for m in conv]
        raise LwError(f"prompt_format='inst' takes exactly one user message (pred.py's "
                      f"'[INST]prompt[/INST]' has no system message and no earlier turns); got "
                      f"roles {roles}. Join them into one user message, or load the model with "
                      "prompt_format='chat'.")
    return f"[INST]{conv[0]['content']}[/INST]" + (prefix or "")


class ChatModel(ABC):
    """Base class: argument checking and settings here, generation in ``_generate``; each
    backend declares ``capabilities``."""

    spec: str = "?"
    prompt_format: str = "chat"  # "inst": pred.py's raw [INST] text (hf:, vllm: only)

    def __init__(self, spec: str, config: GenerationConfig | None = None):
        self.spec = spec
        self.config = config or GenerationConfig()

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend does (see ``Capabilities``)."""

    @property
    def supports_prefix(self) -> bool:
        """Read-only alias of ``capabilities.continues_prefix`` for older callers."""
        return self.capabilities.continues_prefix

    def check_settings(self, config: GenerationConfig) -> None:
        """Raise LwError if ``config`` sets something (a value other than its neutral default)
        that this backend cannot apply; ``generate`` and ``stream`` call it before any
        request, so no setting is silently dropped."""
        settings, neutral_values = self.capabilities.settings, vars(NEUTRAL)
        for name, value in vars(config).items():
            neutral = neutral_values[name]
            if settings.get(name) is None and value != neutral:
                raise LwError(f"{self.spec} cannot apply {name}={value!r}: "
                              f"{self._setting_hint(name, neutral)}")

    # -- the context: what one request may span ---------------------------------------------
    def context_how(self) -> str:
        """How the kit knows ``capabilities.context`` (or why it does not)."""
        return "the backend does not report it"

    def prompt_tokens(self, conv: Conversation, prefix: str | None = None) -> int | None:
        """Tokens the model is given for ``conv`` (and an assistant ``prefix``), or None where
        the backend cannot count them exactly (see ``prompt_token_bound``)."""
        return None

    def prompt_token_bound(self, conv: Conversation, prefix: str | None = None) -> int:
        """The exact count where the backend has one, else an upper bound: byte-level and
        byte-fallback tokenizers never make more tokens than the text has UTF-8 bytes, plus an
        allowance for the chat template and a system prompt the server may add."""
        exact = self.prompt_tokens(conv, prefix)
        if exact is not None:
            return exact
        return byte_bound(conv, prefix)

    def fit(self, conv: Conversation, prefix: str | None, cfg: GenerationConfig,
            prompt_tokens: int | None = None) -> tuple[GenerationConfig, dict | None]:
        """``cfg`` with ``max_new_tokens`` lowered to what the context leaves after the prompt,
        and a note of the cap (None when nothing was cut), which backends put on the reply
        (``Generation.extra["capped"]``) and ``predict`` records.

        Raises LwError when the prompt alone fills the context: no reply could come back, and
        a server would reject the request."""
        context = self.capabilities.context
        if context is None:
            return cfg, None
        if prompt_tokens is None:
            # A cheap upper bound first: most requests fit by it, and a server need not be
            # asked to count their tokens.
            if byte_bound(conv, prefix) + cfg.max_new_tokens <= context:
                return cfg, None
            prompt_tokens = self.prompt_token_bound(conv, prefix)
        room = context - prompt_tokens
        if room < 1:
            raise LwError(f"a prompt of {prompt_tokens} tokens leaves no room for a reply in the "
                          f"{context}-token context of {self.spec}: shorten the prompt, or load "
                          "a model (or start the server) with a longer context (rope scaling "
                          "such as Qwen2.5's YaRN; vLLM --max-model-len; llama.cpp --ctx-size).")
        if cfg.max_new_tokens <= room:
            return cfg, None
        note = {"asked": cfg.max_new_tokens, "allowed": room, "context": context,
                "prompt_tokens": prompt_tokens}
        return cfg.updated(max_new_tokens=room,
                           min_new_tokens=min(cfg.min_new_tokens, room)), note

    def _setting_hint(self, name: str, neutral) -> str:
        """What to do about a setting this backend cannot apply (backends say more)."""
        return (f"set {name}={neutral!r}, or use a backend that applies it (hf:, "
                "smollm2-135m, vllm:).")

    def _prefix_hint(self) -> str:
        return ("Use a local backend (hf:, smollm2-135m, vllm:), or a server that continues "
                "the final message (vLLM, SGLang, lw.serve).")

    def generate(
        self,
        conversations: Sequence[str | Sequence[Message]],
        config: GenerationConfig | None = None,
        *,
        prefix: str | Sequence[str | None] | None = None,
        progress: bool | None = None,
        errors: str = "raise",
        **settings,
    ) -> list[Generation]:
        """Reply to each conversation.

        Args:
            conversations: conversations, or strings meaning one user message each.
            config: settings to start from (default: the model's own ``config``).
            prefix: assistant text to continue, one for all or one per conversation.
            progress: show a progress bar (default: only when the work is long).
            errors: "raise" stops at the first failed reply; "return" marks it
                ``finish_reason="error"`` and goes on. Setup problems (wrong key, unknown model,
                unreachable server) always raise.
            settings: GenerationConfig fields overriding ``config`` (e.g. max_new_tokens=64).

        Returns:
            One Generation per conversation, in input order.
        """
        if isinstance(conversations, str):
            raise LwError("generate() takes a list of prompts or conversations; wrap one in [ ].")
        convs = [as_conversation(c) for c in conversations]
        prefixes = self._prefixes(prefix, len(convs))
        if errors not in ("raise", "return"):
            raise LwError(f"errors must be 'raise' or 'return', got {errors!r}.")
        cfg = (config or self.config).updated(**settings)
        self.check_settings(cfg)
        if not convs:
            return []
        return self._generate(convs, prefixes, cfg, progress=progress, errors=errors)

    def stream(self, requests, on_done, *, progress: bool = False, errors: str = "return",
               desc: str | None = None) -> None:
        """Generate ``requests``, calling ``on_done(request, generation)`` as each reply ends;
        the requests it returns (a list, or None) are generated too.

        This base version works in rounds: each round's requests go out as one ``generate``
        call per setting, and the next round is what their callbacks returned. Local and
        OpenAI-compatible backends override it to start new requests as soon as a slot frees.
        """
        from lw.progress import bar as tqdm

        pending = [self._checked(r) for r in requests]
        # A round goes out in slices of about two batches, in request order, so callers that
        # store results as they arrive lose at most one slice to a crash.
        width = 2 * max(1, self.capabilities.concurrency)
        with tqdm(desc=desc or f"generate {self.spec}", unit="reply", disable=not progress) as bar:
            while pending:
                current, pending = pending, []
                for start in range(0, len(current), width):
                    groups: dict = {}
                    for r in current[start:start + width]:
                        groups.setdefault(r.config, []).append(r)
                    for cfg, group in groups.items():
                        outs = self.generate([r.conversation for r in group], cfg,
                                             prefix=[r.prefix for r in group], errors=errors,
                                             progress=False)
                        for r, out in zip(group, outs, strict=True):
                            bar.update(1)
                            pending += [self._checked(x) for x in on_done(r, out) or ()]

    def _checked(self, request: Request) -> Request:
        if not isinstance(request, Request):
            raise LwError(f"stream() takes lw.llm.Request objects, got {request!r:.100}.")
        if request.prefix and not self.capabilities.continues_prefix:
            self._prefixes(request.prefix, 1)  # raises the usual explanation
        self.check_settings(request.config)
        return Request(request.key, as_conversation(request.conversation), request.config,
                       request.prefix, request.name)

    def chat(self, prompt: str, **settings) -> str:
        """The reply text to one user message (a convenience for notebooks)."""
        return self.generate([prompt], **settings)[0].text

    def _prefixes(self, prefix, n: int) -> list[str | None]:
        if prefix is None or isinstance(prefix, str):
            prefixes = [prefix] * n
        else:
            prefixes = list(prefix)
            if len(prefixes) != n:
                raise LwError(f"got {len(prefixes)} prefixes for {n} conversations.")
        if any(prefixes) and not self.capabilities.continues_prefix:
            raise LwError(f"{self.spec} cannot continue an assistant prefix. "
                          f"{self._prefix_hint()}")
        return prefixes

    @abstractmethod
    def _generate(self, convs, prefixes, cfg, *, progress, errors) -> list[Generation]: ...

    def close(self) -> None:
        """Release what the model holds outside Python objects (a server process the kit
        started, its GPU memory). Most backends hold nothing of the kind: a no-op."""
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def load_identity(self) -> dict:
        """Load options that change what this model writes beyond its spec (``quantize``):
        ``lw.store.keyed_path`` names results files by them, so an int8 run never resumes an
        fp32 run's file. Empty for most models."""
        return {}

    def info(self) -> dict:
        """What a results record should say about this model (never any secret)."""
        return {"spec": self.spec, "backend": type(self).__name__}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"


def byte_bound(conv: Conversation, prefix: str | None = None) -> int:
    """An upper bound on a conversation's prompt tokens for byte-level and byte-fallback
    tokenizers (no token is shorter than one UTF-8 byte), with ``TEMPLATE_ALLOWANCE``."""
    text = "".join(m["content"] for m in conv) + (prefix or "")
    return len(text.encode("utf-8")) + TEMPLATE_ALLOWANCE + 8 * len(conv)


def clock() -> float:
    return time.perf_counter()
