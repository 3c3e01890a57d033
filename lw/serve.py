"""Serve any lw chat model over an OpenAI-compatible HTTP API (chat completions).

    python -m lw.serve --model smollm2-135m --port 8000          # then, from anywhere:
    lw.llm.load("openai:smollm2-135m", base_url="http://127.0.0.1:8000/v1")

Useful for sharing one loaded model between notebooks or machines, and it is the real server the
kit's tests talk to. Requests arriving together are generated as one batch (``--batch-wait``).
Supports ``GET /v1/models``, ``POST /v1/chat/completions`` (no streaming), ``POST /tokenize``
(vLLM's: a chat prompt's token count and the model's context), an optional API key,
and vLLM's ``continue_final_message`` extension for assistant prefixes.

It identifies itself in ``/v1/models`` (``owned_by: "lw"``) with an ``lw`` entry saying what the
model it serves does (``continues_prefix`` and the ``settings`` it applies), so the kit's client
knows; a request asking for what that model cannot do gets a 400 saying so, never a reply made
without it.
"""

import argparse
import json
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lw.errors import LwError
from lw.llm.base import ChatModel, GenerationConfig


class Batcher:
    """Collects requests for ``wait`` seconds and generates those with equal settings together."""

    def __init__(self, model: ChatModel, wait: float = 0.02, max_batch: int = 32):
        self.model, self.wait, self.max_batch = model, wait, max_batch
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, daemon=True).start()

    def submit(self, conv, prefix, cfg):
        done = threading.Event()
        slot = {"conv": conv, "prefix": prefix, "cfg": cfg, "done": done}
        self.queue.put(slot)
        done.wait()
        if "error" in slot:
            raise slot["error"]
        return slot["result"]

    def _loop(self):
        while True:
            batch = [self.queue.get()]
            deadline = time.monotonic() + self.wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            groups: dict = {}
            for slot in batch:
                groups.setdefault(slot["cfg"], []).append(slot)
            for cfg, slots in groups.items():
                try:
                    outs = self.model.generate([s["conv"] for s in slots], cfg,
                                               prefix=[s["prefix"] for s in slots], progress=False)
                    for s, out in zip(slots, outs, strict=True):
                        s["result"] = out
                except Exception as exc:  # reported to each waiting request as a 500
                    for s in slots:
                        s["error"] = exc
                for s in slots:
                    s["done"].set()


class Handler(BaseHTTPRequestHandler):
    """OpenAI-style routes; ``server.batcher``, ``server.model_name``, ``server.api_key``."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet by default; --verbose turns it on
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def send_json(self, status: int, payload: dict, headers: dict | None = None):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_error_json(self, status: int, message: str, kind: str, headers=None):
        self.send_json(status, {"error": {"message": message, "type": kind, "code": status}},
                       headers)

    def authorised(self) -> bool:
        key = self.server.api_key
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            self.send_error_json(401, "Incorrect API key provided.", "invalid_request_error")
            return False
        return True

    def do_GET(self):
        if not self.authorised():
            return
        if self.path.rstrip("/") == "/v1/models":
            caps = self.server.batcher.model.capabilities
            self.send_json(200, {"object": "list", "data": [
                {"id": self.server.model_name, "object": "model", "owned_by": "lw",
                 "lw": {"continues_prefix": caps.continues_prefix, "context": caps.context,
                        "settings": sorted(k for k, v in caps.settings.items() if v)}}]})
        else:
            self.send_error_json(404, f"no route {self.path}", "not_found_error")

    def tokenize(self, raw: bytes) -> None:
        try:
            self.send_json(200, _count(self.server.batcher.model, json.loads(raw)))
        except (ValueError, KeyError, TypeError) as exc:
            self.send_error_json(400, f"bad request: {exc}", "invalid_request_error")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.authorised():
            return
        if self.path.rstrip("/") == "/tokenize":  # vLLM's route and fields: the kit counts
            self.tokenize(raw)                     # prompts before sending them
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self.send_error_json(404, f"no route {self.path}", "not_found_error")
            return
        try:
            req = json.loads(raw)
            conv, prefix, cfg = parse_request(req)
        except (ValueError, KeyError, TypeError) as exc:
            self.send_error_json(400, f"bad request: {exc}", "invalid_request_error")
            return
        if req.get("model") != self.server.model_name:
            self.send_error_json(404, f"The model `{req.get('model')}` does not exist.",
                                 "not_found_error")
            return
        model = self.server.batcher.model
        try:  # refuse here what the model cannot do, rather than fail (500) or drop it
            if prefix and not model.capabilities.continues_prefix:
                raise LwError(f"{model.spec} cannot continue an assistant prefix.")
            model.check_settings(cfg)
        except LwError as exc:
            self.send_error_json(400, str(exc), "invalid_request_error")
            return
        self.complete(req, conv, prefix, cfg)

    def complete(self, req, conv, prefix, cfg):
        try:
            out = self.server.batcher.submit(conv, prefix, cfg)
        except Exception as exc:
            self.send_error_json(500, f"generation failed: {exc}", "server_error")
            return
        self.send_json(200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
            "created": int(time.time()), "model": req["model"],
            "choices": [{"index": 0, "finish_reason": out.finish_reason,
                         "message": {"role": "assistant", "content": out.text}}],
            "usage": {"prompt_tokens": out.prompt_tokens,
                      "completion_tokens": out.completion_tokens,
                      "total_tokens": out.prompt_tokens + out.completion_tokens}})


def _count(model: ChatModel, req: dict) -> dict:
    """vLLM's ``/tokenize`` answer for a chat body: ``count`` (the prompt's tokens as the model
    sees them, template included; None where the model cannot count) and ``max_model_len``."""
    messages, prefix, _ = parse_request({**req, "max_tokens": 1})
    return {"count": model.prompt_tokens(messages, prefix),
            "max_model_len": model.capabilities.context}


def parse_request(req: dict):
    """(conversation, assistant prefix or None, GenerationConfig) from a request body."""
    messages = [{"role": m["role"], "content": m["content"]} for m in req["messages"]]
    prefix = None
    if req.get("continue_final_message") and messages and messages[-1]["role"] == "assistant":
        prefix = messages.pop()["content"]
    stop = req.get("stop") or ()
    cfg = GenerationConfig(
        max_new_tokens=int(req.get("max_tokens") or req.get("max_completion_tokens") or 512),
        temperature=float(req.get("temperature", 1.0)), top_p=float(req.get("top_p", 1.0)),
        repetition_penalty=float(req.get("repetition_penalty", 1.0)), seed=req.get("seed"),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        min_new_tokens=int(req.get("min_tokens") or 0))
    return messages, prefix, cfg


def make_server(model: ChatModel, host: str = "127.0.0.1", port: int = 8000,
                name: str | None = None, api_key: str | None = None, batch_wait: float = 0.02,
                handler=Handler) -> ThreadingHTTPServer:
    """A ready (not yet serving) HTTP server; call ``serve_forever()`` on it."""
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.batcher = Batcher(model, wait=batch_wait)
    server.model_name = name or model.spec
    server.api_key = api_key
    return server


def main(argv=None, handler=Handler):
    import os

    from lw import llm

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="lw model spec to serve")
    ap.add_argument("--name", help="model name clients ask for (default: the spec)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    ap.add_argument("--api-key-env", help="environment variable holding the key clients must send")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batch-wait", type=float, default=0.02, help="seconds to gather a batch")
    ap.add_argument("--verbose", action="store_true")
    args, extra = ap.parse_known_args(argv)
    model = llm.load(args.model, batch_size=args.batch_size) \
        if not args.model.startswith("openai:") else llm.load(args.model)
    key = os.environ.get(args.api_key_env) if args.api_key_env else None
    server = make_server(model, args.host, args.port, args.name, key, args.batch_wait, handler)
    server.verbose = args.verbose
    server.extra_args = extra
    host, port = server.server_address[:2]
    print(f"lw.serve: {server.model_name} at http://{host}:{port}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
