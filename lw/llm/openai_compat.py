"""OpenAI-compatible backend: vLLM, Ollama, llama.cpp server, SGLang, hosted APIs.

    model = lw.llm.load("openai:gpt-4o")                       # $OPENAI_API_KEY, api.openai.com
    model = lw.llm.load("openai:Qwen/Qwen2.5-7B-Instruct", base_url="http://gpu-box:8000/v1")

Requests run concurrently (``concurrency`` at a time); ``stream`` sends a follow-up request the
moment the one it depends on returns. 429s, 5xx answers, timeouts, dropped
connections and malformed bodies are retried with exponential backoff (honouring Retry-After);
after ``max_retries`` the reply fails ("gave up after N attempts"). With ``errors="return"`` a
failed reply carries its kind in ``extra["error_kind"]`` (``lw.llm.failures``): "transport" for
those spent retries, "request" for an answer saying the request is wrong (400/422), which is
never retried. Before the first request the server is asked for its model
list, so a wrong key, an unknown model or an unreachable server stops the run at once with a
message saying what to fix. The API key is never part of ``info()``, ``repr`` or any record.

The same first look at ``/v1/models`` identifies the server (vLLM, SGLang, llama.cpp's server,
llama-cpp-python's, Ollama, hosted OpenAI-style APIs, ``lw.serve``; see ``lw.llm.server_kinds``),
or ``server=`` names it. ``model.capabilities`` then says which settings it applies under which
parameter (``repetition_penalty`` goes out as vLLM's ``repetition_penalty`` but llama.cpp's
``repeat_penalty``), and a setting the server has no parameter for is refused before any
request. A server that does not identify itself gets only the standard parameters.

Assistant prefixes use the ``continue_final_message`` extension where the server has it (vLLM,
SGLang, lw.serve); ``continue_final_message=True`` asserts it for a server the kit cannot
identify, ``False`` turns prefixes off.
"""

import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, ThreadPoolExecutor, wait

from lw.errors import LwError
from lw.llm.base import NEUTRAL, Capabilities, ChatModel, Generation, clock
from lw.llm.failures import REQUEST, TRANSPORT
from lw.llm.server_kinds import (
    KINDS,
    STANDARD,
    has_api_version,
    identify,
    missing_v1,
    unsupported_hint,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _GaveUp(RuntimeError):
    """Every retry of a request went unanswered (a transport outage, not a wrong request)."""


def _failed(exc: BaseException) -> Generation:
    """The error Generation for a request that raised ``exc``, marked with its kind
    (``lw.llm.failures``): callers keep a transport outage pending and store the rest."""
    kind = TRANSPORT if isinstance(exc, _GaveUp) else REQUEST
    return Generation("", 0, 0, "error", 0.0, error=str(exc), extra={"error_kind": kind})


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
        continue_final_message: None: continue assistant prefixes where the server is known to
            (vLLM, SGLang, lw.serve); True: the server has vLLM's extension (an error for a
            server known not to); False: never send prefixes.
        check: ask the server for its models before the first request.
        server: "vllm", "sglang", "llamacpp", "llama-cpp-python", "ollama", "openai" or "lw":
            which server this is (default: identified from /v1/models).
        http_client: an ``httpx.Client`` for the requests (proxies, certificates; tests pass
            one with a stub transport).
    """

    def __init__(self, model: str, spec: str | None = None, base_url: str | None = None,
                 api_key: str | None = None, concurrency: int = 8, max_retries: int = 5,
                 backoff: float = 1.0, timeout: float = 600.0,
                 continue_final_message: bool | None = None, check: bool = True,
                 server: str | None = None, http_client=None, context: int | None = None):
        import openai

        super().__init__(spec or f"openai:{model}")
        self.model = model
        url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        # Requests go to the URL as given (credentials in it included); everything the kit
        # shows or stores names it without them.
        self.base_url = public_url(url)
        if context is not None and (not isinstance(context, int) or context < 2):
            raise LwError(f"context must be the server's context in tokens (an int), got "
                          f"{context!r}.")
        self._context_given = context
        self._context, self._context_how = None, "not reported by the server"
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            if url == DEFAULT_BASE_URL:
                raise LwError("no API key: set OPENAI_API_KEY in the environment (never in a "
                              "notebook parameter), or pass base_url= for a local server.")
            key = "no-key"  # vLLM, Ollama and llama.cpp accept any key unless told otherwise
        if server is not None and server not in KINDS:
            raise LwError(f"server must be one of {sorted(KINDS)} (or None: identify it from "
                          f"/v1/models), got {server!r}.")
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self._prefix_option = continue_final_message
        self._kind, self._how_told = server, f"given: server={server!r}"
        self._identified = server is not None
        self._wrapped: dict | None = None  # lw.serve's word on the model it serves
        self._check_pending = check
        self._lock = threading.RLock()
        self._client = openai.OpenAI(base_url=url, api_key=key, max_retries=0,
                                     timeout=timeout, http_client=http_client)
        self._root = url.removesuffix("/v1")  # vLLM and llama.cpp count tokens off /v1
        if server is not None:
            self._check_prefix_option()

    # -- what the server does ------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        """``concurrency`` connections; prefixes and settings as the server kind allows (it is
        identified on first use, see ``server_kind``); no token probabilities."""
        kind = KINDS.get(self.server_kind(), KINDS["openai"])
        settings, prefix = kind.settings(), kind.continues_prefix
        if self._wrapped is not None:  # lw.serve: what the model behind it applies
            applied = set(self._wrapped.get("settings", settings))
            settings = {k: v if k in applied else None for k, v in settings.items()}
            prefix = bool(self._wrapped.get("continues_prefix", prefix))
        if self._prefix_option is not None:
            prefix = self._prefix_option
        return Capabilities(concurrency=max(1, self.concurrency), continues_prefix=prefix,
                            token_probabilities=False, settings=settings,
                            context=self._server_context()[0])

    def context_how(self) -> str:
        return self._server_context()[1]

    def _server_context(self) -> tuple[int | None, str]:
        """(tokens one request may span, how the kit knows): ``context=`` as given, else what
        the server reports (vLLM and SGLang: ``max_model_len`` in /v1/models; llama.cpp's
        server: ``n_ctx`` in /props; lw.serve: its model's), else what the server showed by
        shortening a reply to fit (llama-cpp-python reports nothing but cuts ``max_tokens``
        to its ``n_ctx``); (None, why) while unknown."""
        if self._context_given is not None:
            return self._context_given, "given: context=" + str(self._context_given)
        self.server_kind()
        with self._lock:
            if self._context is None and self._kind == "llamacpp" and \
                    self._context_how == "not reported by the server":
                props = self._get_root("/props") or {}
                n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx") or \
                    props.get("n_ctx")
                if isinstance(n_ctx, int) and n_ctx > 0:
                    self._context, self._context_how = n_ctx, "llama.cpp /props n_ctx"
                else:
                    self._context_how = "llama.cpp's /props did not say n_ctx"
        return self._context, self._context_how

    def prompt_tokens(self, conv, prefix: str | None = None) -> int | None:
        """The prompt's tokens as the server counts them, where it can: vLLM's, SGLang's and
        lw.serve's ``/tokenize`` (chat template applied), llama.cpp's ``/apply-template`` then
        ``/tokenize``; None elsewhere (then ``prompt_token_bound`` bounds them)."""
        messages = list(conv) + ([{"role": "assistant", "content": prefix}] if prefix else [])
        if self._kind in ("vllm", "sglang", "lw"):
            body = {"model": self.model, "messages": messages,
                    **({"continue_final_message": True, "add_generation_prompt": False}
                       if prefix else {"add_generation_prompt": True})}
            got = self._post_root("/tokenize", body) or {}
            return got.get("count") if isinstance(got.get("count"), int) else None
        if self._kind == "llamacpp":
            text = (self._post_root("/apply-template", {"messages": messages}) or {}).get("prompt")
            got = self._post_root("/tokenize", {"content": text}) if isinstance(text, str) else None
            tokens = (got or {}).get("tokens")
            return len(tokens) if isinstance(tokens, list) else None
        return None

    def _get_root(self, path: str) -> dict | None:
        return self._root_call("get", path)

    def _post_root(self, path: str, body: dict) -> dict | None:
        return self._root_call("post", path, body)

    def _root_call(self, method: str, path: str, body: dict | None = None) -> dict | None:
        """A JSON call to a route beside /v1 (token counts, server properties); None when the
        server has no such route or does not answer: callers fall back to a bound."""
        import httpx

        try:
            client = self._client._client  # the client's own httpx.Client: proxies, tests
            headers = {"Authorization": f"Bearer {self._client.api_key}"}
            url = self._root + path
            resp = client.get(url, headers=headers) if method == "get" else \
                client.post(url, json=body, headers=headers)
            return resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None

    def server_kind(self) -> str | None:
        """The server's kind (a key of ``lw.llm.server_kinds.KINDS``), or None where it did not
        say (then treated as a hosted OpenAI-style API). Asks /v1/models once, with the
        set-up check where ``check`` is on."""
        with self._lock:
            if not self._identified:
                if self._check_pending:
                    self._check_once()
                else:
                    self._cards(strict=False)
                self._identified = True
        return self._kind

    def _identify(self, cards: list[dict], failure: str | None = None) -> None:
        kind, how = identify(cards, self.model)
        if failure:
            how = f"/v1/models could not be read ({failure})"
        if self._kind is None:
            self._kind, self._how_told = kind, how
        elif kind is not None and kind != self._kind:
            self._how_told += f"; the server reports {how}"
        card = next((c for c in cards if c.get("id") == self.model), None)
        lw_entry = card.get("lw") if card and isinstance(card.get("lw"), dict) else {}
        reported = (card or {}).get("max_model_len") or lw_entry.get("context")
        if isinstance(reported, int) and reported > 0:
            self._context, self._context_how = reported, f"{self._kind or 'server'} /v1/models"
        if self._kind == "lw" and card and isinstance(card.get("lw"), dict):
            self._wrapped = card["lw"]
        self._identified = True
        self._check_prefix_option()

    def _check_prefix_option(self) -> None:
        kind = KINDS.get(self._kind)
        if self._prefix_option and kind is not None and not kind.continues_prefix:
            raise LwError(f"continue_final_message=True, but {self.base_url} is {kind.label} "
                          f"({self._how_told}), and {kind.prefix_note}. Leave it unset (prefixes "
                          "are then refused before sending), or serve the model with vLLM, "
                          "SGLang or lw.serve.")
        if self._prefix_option and self._wrapped is not None and \
                not self._wrapped.get("continues_prefix", True):
            raise LwError(f"continue_final_message=True, but the model lw.serve serves at "
                          f"{self.base_url} cannot continue an assistant prefix.")

    def _setting_hint(self, name: str, neutral) -> str:
        if self._wrapped is not None:
            return (f"the model lw.serve serves at {self.base_url} cannot apply it: use "
                    f"{name}={neutral!r}, or serve a model that applies it.")
        return unsupported_hint(self._kind, name, neutral, self._how_told)

    def _prefix_hint(self) -> str:
        if self._prefix_option is False:
            return ("continue_final_message=False was given; leave it unset where the server "
                    "continues a final assistant message (vLLM, SGLang, lw.serve).")
        kind = KINDS.get(self._kind)
        if kind is None:
            return (f"The server did not say which it is ({self._how_told}): if it continues a "
                    "final assistant message as vLLM does, pass server='vllm' or 'sglang', or "
                    "continue_final_message=True.")
        why = f": {kind.prefix_note}" if kind.prefix_note else ""
        return (f"It is {kind.label} ({self._how_told}){why}. Use a vLLM, SGLang or lw.serve "
                "server, or a local backend (hf:, vllm:).")

    def info(self) -> dict:
        """Spec, base_url, model and (once identified) the server's kind and how it was told;
        never the key."""
        out = {**super().info(), "base_url": self.base_url, "model": self.model}
        if self._identified:
            out["server_kind"] = self._kind or "unidentified, treated as a hosted OpenAI-style API"
            out["server_identified_by"] = self._how_told
        return out

    # -- set-up checks -------------------------------------------------------------------
    def check(self) -> list[str]:
        """Ask the server for its models (identifying the server from them); raise LwError
        naming the fix if something is wrong.

        Returns the model names the server lists (empty if it has no /models route).
        """
        names = [str(c.get("id")) for c in self._cards(strict=True)]
        if names and self.model not in names:
            raise LwError(f"model {self.model!r} is not served at {self.base_url}; it serves: "
                          f"{', '.join(sorted(names)[:20])}.")
        return names

    def _cards(self, strict: bool) -> list[dict]:
        """The server's /v1/models cards as sent (identifying the server from them). A 404 where
        base_url has no /v1 always raises; other failures raise only if ``strict``."""
        import openai

        cards: list[dict] = []
        failure = None
        try:
            raw = self._client.models.with_raw_response.list()
            data = raw.http_response.json().get("data")
            cards = [c for c in data if isinstance(c, dict)] if isinstance(data, list) else []
        except openai.AuthenticationError as exc:
            failure = "401"
            if strict:
                raise LwError(f"{self.base_url} rejected the API key (401). Set OPENAI_API_KEY "
                              "to a valid key for this server.") from exc
        except openai.PermissionDeniedError as exc:
            failure = "403"
            if strict:
                raise LwError(f"{self.base_url} refused access (403): the key lacks permission "
                              f"for this API. ({_short(exc)})") from exc
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            failure = "unreachable"
            if strict:
                raise LwError(f"cannot reach the server at {self.base_url}: is it running, and "
                              "is base_url (or OPENAI_BASE_URL) right? It should end in /v1.") \
                    from exc
        except openai.NotFoundError as exc:
            if not has_api_version(self.base_url):
                raise LwError(missing_v1(self.base_url, "models")) from exc
            failure = "404"  # no /models route: learn about the model from the first request
        except (openai.APIStatusError, ValueError, TypeError, AttributeError) as exc:
            failure = _short(exc)[:80]  # no usable /models route, as above
        self._identify(cards, failure)
        return cards

    # -- generation ----------------------------------------------------------------------
    def _check_once(self) -> None:
        with self._lock:
            if self._check_pending:
                self.check()
                self._check_pending = False

    def stream(self, requests, on_done, *, progress=False, errors="return", desc=None) -> None:
        """Up to ``concurrency`` requests in flight; the follow-ups ``on_done`` returns are sent
        as soon as it returns them (see ``ChatModel.stream``)."""
        from lw.progress import bar as tqdm

        self._check_once()
        with ThreadPoolExecutor(self.concurrency) as pool, \
                tqdm(desc=desc or f"generate {self.spec}", unit="reply",
                     disable=not progress) as bar:
            def submit(r):
                r = self._checked(r)
                return pool.submit(self._one, r.conversation, r.prefix, r.config), r

            requests = [self._checked(r) for r in requests]  # all refusals before any request
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
                    gen = fut.result() if exc is None else _failed(exc)
                    bar.update(1)
                    futures.update(submit(r) for r in on_done(request, gen) or ())

    def _generate(self, convs, prefixes, cfg, *, progress, errors):
        from lw.progress import bar as tqdm

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
                    results[i] = fut.result() if exc is None else _failed(exc)
                    bar.update(1)
        return results

    def _one(self, conv, prefix, cfg) -> Generation:
        start = clock()
        cfg, capped = self.fit(conv, prefix, cfg)  # LwError where the prompt fills the context
        last = None
        for attempt in range(self.max_retries + 1):
            try:
                gen = self._request(conv, prefix, cfg)
                gen.seconds = clock() - start
                gen.extra["attempts"] = attempt + 1
                self._note_cap(gen, cfg, capped)
                return gen
            except _Retryable as exc:
                last = exc
                if attempt < self.max_retries:
                    delay = min(60.0, self.backoff * 2 ** attempt) * (0.5 + random.random() / 2)
                    time.sleep(max(delay, exc.retry_after or 0.0))
        raise _GaveUp(f"gave up after {self.max_retries + 1} attempts: {last}")

    def _note_cap(self, gen: Generation, cfg, capped: dict | None) -> None:
        """Put the kit's cap on the reply; or, where the server itself cut the reply short of
        ``max_tokens`` (llama-cpp-python shortens it to fit its ``n_ctx`` without a word),
        record that cap and learn the context from it."""
        if capped:
            gen.extra["capped"] = capped
        elif gen.finish_reason == "length" and 0 < gen.completion_tokens < cfg.max_new_tokens \
                and (self._context is None or self._context_how.startswith("learned")):
            total = gen.prompt_tokens + gen.completion_tokens
            gen.extra["capped"] = {"asked": cfg.max_new_tokens, "allowed": gen.completion_tokens,
                                   "context": total, "prompt_tokens": gen.prompt_tokens,
                                   "by": "server"}
            with self._lock:
                if self._context is None and self._context_given is None:
                    self._context = total
                    self._context_how = "learned: the server cut a reply to fit its context"

    def _request(self, conv, prefix, cfg) -> Generation:
        messages = list(conv)
        kwargs, body = self._sampling(cfg)
        if prefix:  # capabilities.continues_prefix was checked before sending (base._prefixes)
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
        """(standard request fields, server extensions) for ``cfg``: each extension under the
        server's own name (``capabilities.settings``), sent only when it changes something."""
        self.check_settings(cfg)  # done before sending already; cheap, and never sends None
        names = self.capabilities.settings
        body = {names[k]: v for k, v in vars(cfg).items()
                if k not in STANDARD and v != _NEUTRAL[k]}
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
            if not has_api_version(self.base_url):
                raise LwError(missing_v1(self.base_url, "chat/completions")) from exc
            raise LwError(f"{self.base_url} does not know model {self.model!r} (404): check the "
                          "name against the server's /v1/models.") from exc
        except openai.APIStatusError as exc:  # 400/422...: this request is wrong; do not retry
            # (a plain RuntimeError: the reply it becomes is marked a "request" failure)
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


_NEUTRAL = vars(NEUTRAL)


def public_url(url: str) -> str:
    """``url`` without credentials: no ``user:password@`` and no query string (where some
    gateways take ``?api-key=``), so a key written into ``base_url`` never reaches a record,
    a message or a file name."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _short(exc) -> str:
    return str(getattr(exc, "message", exc))[:300]


def _retry_after(exc) -> float | None:
    try:
        return float(exc.response.headers.get("retry-after"))
    except (AttributeError, TypeError, ValueError):
        return None
