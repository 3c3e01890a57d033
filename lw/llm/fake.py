"""A scripted chat model for unit tests and dry runs: no weights, fully predictable.

    fake = ScriptedChatModel(["plan text", "paragraph 1"])       # replies in order
    fake = ScriptedChatModel(lambda conv, prefix: "echo: " + conv[-1]["content"])
    fake.calls  # [(conversation, prefix, config), ...] in the order they were made
    fake.batches  # how many conversations each generate() call carried

A reply that is an Exception instance is raised for that call (to test error handling); with
``errors="return"`` it becomes a failed reply (``lw.llm.failures``): a ``ConnectionError`` or
``TimeoutError`` stands for a server outage (kind "transport", its error reading like the
OpenAI-compatible backend's "gave up after 1 attempt: ..."), any other exception for a request
the backend refused (kind "request").

Its ``capabilities`` say what it is told to: by default it continues prefixes and takes every
generation setting (it applies ``max_new_tokens``, one word per token, and ``stop``; it records
the others in ``calls`` for tests to check, since the script decides the text). To stand in for
a backend that lacks something, pass ``supports_prefix=False`` or ``settings={"repetition_penalty":
None}``: such a setting is then refused as that backend would refuse it.
"""

from collections.abc import Callable, Sequence

from lw.errors import LwError
from lw.llm.base import Capabilities, ChatModel, Generation, setting_names
from lw.llm.failures import REQUEST, TRANSPORT
from lw.text import count_words


def _failed(exc: Exception) -> Generation:
    """The failed reply a scripted exception stands for (see the module docstring)."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return Generation("", 0, 0, "error", 0.0, error=f"gave up after 1 attempt: {exc!r}",
                          extra={"error_kind": TRANSPORT})
    return Generation("", 0, 0, "error", 0.0, error=repr(exc), extra={"error_kind": REQUEST})


class ScriptedChatModel(ChatModel):
    """Answers from a list (in call order), a function of (conversation, prefix), or one string.

    Args:
        replies: the script (see the module docstring).
        spec: the spec recorded in results.
        supports_prefix: declare that it continues assistant prefixes.
        batch_size: its declared ``capabilities.concurrency`` (nothing is batched).
        settings: GenerationConfig field -> name, or None for a setting to refuse.
    """

    def __init__(self, replies: str | Sequence | Callable, spec: str = "fake",
                 supports_prefix: bool = True, batch_size: int = 8,
                 settings: dict | None = None):
        super().__init__(spec)
        self.batch_size = batch_size
        self.replies = replies
        self._continues_prefix = supports_prefix
        self._settings = setting_names(**(settings or {}))
        self.calls: list = []
        self.batches: list[int] = []  # conversations per generate() call

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(concurrency=max(1, self.batch_size),
                            continues_prefix=self._continues_prefix, token_probabilities=False,
                            settings=dict(self._settings))

    @property
    def supports_prefix(self) -> bool:
        """Settable here (tests switch it), unlike on real backends."""
        return self._continues_prefix

    @supports_prefix.setter
    def supports_prefix(self, value: bool) -> None:
        self._continues_prefix = bool(value)

    def _next(self, conv, prefix):
        if callable(self.replies):
            return self.replies(conv, prefix)
        if isinstance(self.replies, str):
            return self.replies
        k = len(self.calls) - 1
        if k >= len(self.replies):
            raise LwError(f"ScriptedChatModel ran out of replies after {len(self.replies)} calls.")
        return self.replies[k]

    def _generate(self, convs, prefixes, cfg, *, progress, errors):
        self.batches.append(len(convs))
        out = []
        for conv, prefix in zip(convs, prefixes, strict=True):
            self.calls.append((conv, prefix, cfg))
            reply = self._next(conv, prefix)
            if isinstance(reply, Exception):
                if errors == "raise":
                    raise reply
                out.append(_failed(reply))
                continue
            text, reason = str(reply), "stop"
            for s in cfg.stop:
                if s in text:
                    text = text[: text.index(s)]
            words = text.split()
            if len(words) > cfg.max_new_tokens:  # one "token" per word, roughly
                text, reason = " ".join(words[: cfg.max_new_tokens]), "length"
            prompt = " ".join(m["content"] for m in conv)
            out.append(Generation(text, count_words(prompt), len(text.split()), reason, 0.0))
        return out
