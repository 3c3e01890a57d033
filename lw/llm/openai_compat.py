"""OpenAI-compatible backend: vLLM, Ollama, llama.cpp server, SGLang, hosted APIs.

    model = lw.llm.load("openai:gpt-4o")                       # $OPENAI_API_KEY, api.openai.com
    model = lw.llm.load("openai:Qwen/Qwen2.5-7B-Instruct", base_url="http://gpu-box:8000/v1")

Requests run concurrently (``concurrency`` at a time); ``stream`` sends a follow-up request the
moment the one it depends on returns. 429s, 5xx answers, timeouts, dropped
connections and malformed bodies are retried with exponential backoff (honouring Retry-After);
after ``max_retries`` the reply fails. Before the first request the server is asked for its model
list, so a wrong key, an unknown model or an unreachable server stops the run at once with a
message saying what to fix. The API key is never part of ``info()``, ``repr`` or any record.

Assistant prefixes use vLLM's ``continue_final_message`` extension: pass
``continue_final_message=True`` for servers that have it (vLLM, ``python -m lw.serve``).
"""

import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, ThreadPoolExecutor, wait

from lw.errors import LwError
from lw.llm.base import ChatModel, Generation, clock

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIChatModel(ChatModel):
    """Chat completions against an OpenAI-compatible endpoint.

    Args:
        model: the model name the server knows.
        base_url: endpoint ending in /v1 (default $OPENAI_BASE_URL, else OpenAI's).
        api_key: default $OPENAI_API_KEY; local servers that need none get a placeholder.
        concurrency: requests in flight at once.
        max_retries: retries of one request on 429/5xx/timeouts/malformed bodies.
        backoff: first retry delay in seconds, doubled each time (with jitter), capped at 60.
        timeout: seconds for one request.
        continue_final_message: the server supports vLLM's assistant-prefix extension.
        check: ask the server for its models before the first request.
    """

    def __init__(self, model: str, spec: str | None = None, base_url: str | None = None,
                 api_key: str | None = None, concurrency: int = 8, max_retries: int = 5,
                 backoff: float = 1.0, timeout: float = 600.0,
                 continue_final_message: bool = False, check: bool = True):
        import openai

        super().__init__(spec or f"openai:{model}")
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL)
        self.base_url = self.base_url.rstrip("/")
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if self.base_url == DEFAULT_BASE_URL:
                raise LwError("no API key: set OPENAI_API_KEY in the environment (never in a "
                              "notebook parameter), or pass base_url= for a local server.")
            key = "no-key"  # vLLM, Ollama and llama.cpp accept any key unless told otherwise
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.supports_prefix = continue_final_message
        self._check_pending = check
        self._lock = threading.Lock()
        self._client = openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0,
                                     timeout=timeout)

    def info(self) -> dict:
        return {**super().info(), "base_url": self.base_url, "model": self.model}

    # -- set-up checks -------------------------------------------------------------------
    def check(self) -> list[str]:
        """Ask the server for its models; raise LwError naming the fix if something is wrong.

        Returns the model names the server lists (empty if it has no /models route).
        """
        import openai

        try:
            names = [m.id for m in self._client.models.list()]
        except openai.AuthenticationError as exc:
            raise LwError(f"{self.base_url} rejected the API key (401). Set OPENAI_API_KEY to a "
                          "valid key for this server.") from exc
        except openai.PermissionDeniedError as exc:
            raise LwError(f"{self.base_url} refused access (403): the key lacks permission "
                          f"for this API. ({_short(exc)})") from exc
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise LwError(f"cannot reach the server at {self.base_url}: is it running, and is "
                          "base_url (or OPENAI_BASE_URL) right? It should end in /v1.") from exc
        except (openai.NotFoundError, openai.APIStatusError, ValueError, TypeError):
            return []  # no usable /models route: learn about the model from the first request
        if names and self.model not in names:
            raise LwError(f"model {self.model!r} is not served at {self.base_url}; it serves: "
                          f"{', '.join(sorted(names)[:20])}.")
        return names

    # -- generation ----------------------------------------------------------------------
    def _check_once(self) -> None:
        with self._lock:
            if self._check_pending:
                self.check()
                self._check_pending = False

    def stream(self, requests, on_done, *, progress=False, errors="return", desc=None) -> None:
        """Up to ``concurrency`` requests in flight; the follow-ups ``on_done`` returns are sent
        as soon as it returns them (see ``ChatModel.stream``)."""
        from tqdm.auto import tqdm

        self._check_once()
        with ThreadPoolExecutor(self.concurrency) as pool, \
                tqdm(desc=desc or f"generate {self.spec}", unit="reply",
                     disable=not progress) as bar:
            def submit(r):
                r = self._checked(r)
                return pool.submit(self._one, r.conversation, r.prefix, r.config), r

            futures = dict(submit(r) for r in requests)
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    request = futures.pop(fut)
                    exc = fut.exception()
                    if exc is not None and (errors == "raise" or isinstance(exc, LwError)):
                        for other in futures:
                            other.cancel()
                        raise exc
                    gen = fut.result() if exc is None else Generation(
                        "", 0, 0, "error", 0.0, error=str(exc))
                    bar.update(1)
                    futures.update(submit(r) for r in on_done(request, gen) or ())

    def _generate(self, convs, prefixes, cfg, *, progress, errors):
        from tqdm.auto import tqdm

        self._check_once()
        results: list[Generation | None] = [None] * len(convs)
        show = progress if progress is not None else len(convs) > self.concurrency
        with ThreadPoolExecutor(self.concurrency) as pool, \
                tqdm(total=len(convs), desc=f"generate {self.spec}", unit="conv",
                     disable=not show) as bar:
            futures = {pool.submit(self._one, c, p, cfg): i
                       for i, (c, p) in enumerate(zip(convs, prefixes, strict=True))}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    exc = fut.exception()
                    if exc is not None and (errors == "raise" or isinstance(exc, LwError)):
                        for other in pending:
                            other.cancel()
                        raise exc
                    i = futures[fut]
                    results[i] = fut.result() if exc is None else Generation(
                        "", 0, 0, "error", 0.0, error=str(exc))
                    bar.update(1)
        return results

    def _one(self, conv, prefix, cfg) -> Generation:
        start = clock()
        last = None
        for attempt in range(self.max_retries + 1):
            try:
                gen = self._request(conv, prefix, cfg)
                gen.seconds = clock() - start
                gen.extra["attempts"] = attempt + 1
                return gen
            except _Retryable as exc:
                last = exc
                if attempt < self.max_retries:
                    delay = min(60.0, self.backoff * 2 ** attempt) * (0.5 + random.random() / 2)
                    time.sleep(max(delay, exc.retry_after or 0.0))
        raise RuntimeError(f"gave up after {self.max_retries + 1} attempts: {last}")

    def _request(self, conv, prefix, cfg) -> Generation:
        messages = list(conv)
        kwargs, body = self._sampling(cfg)
        if prefix:
            messages.append({"role": "assistant", "content": prefix})
            body.update(continue_final_message=True, add_generation_prompt=False)
        resp = self._send(self._client.chat.completions.create, messages=messages, **kwargs,
                          extra_body=body or None)
        try:
            choice = resp.choices[0]
            text = choice.message.content or ""
        except (AttributeError, IndexError, TypeError) as exc:
            raise _Retryable(f"malformed response: {str(resp)[:200]}") from exc
        return self._generation(resp, text)

    def _sampling(self, cfg) -> tuple[dict, dict]:
        """(standard request fields, server extensions) for ``cfg``."""
        body: dict = {}
        if cfg.repetition_penalty != 1.0:
            body["repetition_penalty"] = cfg.repetition_penalty  # vLLM / llama.cpp extension
        if cfg.min_new_tokens:
            body["min_tokens"] = cfg.min_new_tokens
        kwargs = dict(model=self.model, max_tokens=cfg.max_new_tokens,
                      temperature=cfg.temperature, top_p=cfg.top_p)
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed
        if cfg.stop:
            kwargs["stop"] = list(cfg.stop)
        return kwargs, body

    def _send(self, create, **kwargs):
        """``create(**kwargs)`` (a client endpoint), its failures sorted into retryable ones
        (``_Retryable``), setup problems (``LwError``) and wrong requests (``RuntimeError``)."""
        import openai

        try:
            return create(**kwargs)
        except openai.RateLimitError as exc:
            raise _Retryable(f"429 rate limited: {_short(exc)}", _retry_after(exc)) from exc
        except openai.InternalServerError as exc:
            raise _Retryable(f"{exc.status_code} server error: {_short(exc)}") from exc
        except openai.APITimeoutError as exc:
            raise _Retryable("request timed out") from exc
        except openai.APIConnectionError as exc:
            raise _Retryable(f"connection failed: {_short(exc)}") from exc
        except openai.AuthenticationError as exc:
            raise LwError(f"{self.base_url} rejected the API key (401): set OPENAI_API_KEY.") \
                from exc
        except openai.NotFoundError as exc:
            raise LwError(f"{self.base_url} does not know model {self.model!r} (404): check the "
                          "name against the server's /v1/models.") from exc
        except openai.APIStatusError as exc:  # 400/422...: this request is wrong; do not retry
            raise RuntimeError(f"{exc.status_code} from server: {_short(exc)}") from exc
        except (ValueError, TypeError) as exc:  # a body that is not the JSON promised
            raise _Retryable(f"malformed response: {exc}") from exc

    @staticmethod
    def _generation(resp, text: str) -> Generation:
        """A Generation from a completion response whose reply text is ``text``."""
        try:
            reason = resp.choices[0].finish_reason or "stop"
            usage = resp.usage
        except (AttributeError, IndexError, TypeError) as exc:
            raise _Retryable(f"malformed response: {str(resp)[:200]}") from exc
        reason = "length" if reason == "length" else "stop"
        return Generation(text, getattr(usage, "prompt_tokens", 0) or 0,
                          getattr(usage, "completion_tokens", 0) or 0, reason, 0.0)


def _short(exc) -> str:
    return str(getattr(exc, "message", exc))[:300]


def _retry_after(exc) -> float | None:
    try:
        return float(exc.response.headers.get("retry-after"))
    except (AttributeError, TypeError, ValueError):
        return None
