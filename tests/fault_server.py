"""A real lw.serve server process that misbehaves on purpose, for the OpenAI backend's tests.

    python tests/fault_server.py --model tiny-random --port 0 --api-key-env KEY_VAR

Tests arm it with ``POST /_faults {"plan": [...], "delay": 3}``: the n-th chat request after that
gets the n-th fault of the plan, then normal service. Faults: "429" (with Retry-After: 0),
"500", "503", "400" (the request refused as too long for the model's context, as vLLM says it),
"delay" (sleeps ``delay`` seconds, then answers), "malformed" (a 200 whose body is
cut-off JSON), "drop" (closes the connection unanswered). ``GET /_faults`` reports how many chat
requests arrived since arming.
"""

import json
import threading
import time

from lw.serve import Handler, main

STATE = {"plan": [], "delay": 3.0, "seen": 0}
LOCK = threading.Lock()


class FaultyHandler(Handler):
    def do_POST(self):
        if self.path == "/_faults":
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with LOCK:
                STATE.update(json.loads(raw), seen=0)
            self.send_json(200, STATE)
        else:
            super().do_POST()

    def do_GET(self):
        if self.path == "/_faults":
            self.send_json(200, STATE)
        else:
            super().do_GET()

    def complete(self, req, conv, prefix, cfg):
        with LOCK:
            k = STATE["seen"]
            STATE["seen"] += 1
            fault = STATE["plan"][k] if k < len(STATE["plan"]) else ""
        if fault == "400":
            self.send_error_json(400, "This model's maximum context length is 2048 tokens. "
                                 "However, you requested 4096 tokens (injected 400).",
                                 "invalid_request_error")
        elif fault in ("429", "500", "503"):
            headers = {"Retry-After": "0"} if fault == "429" else None
            self.send_error_json(int(fault), f"injected {fault}", "injected", headers)
        elif fault == "malformed":
            body = b'{"id": "x", "choices": [{"message": {"content": "tru'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif fault == "drop":
            self.close_connection = True
            self.connection.close()
        else:
            if fault == "delay":
                time.sleep(STATE["delay"])
            super().complete(req, conv, prefix, cfg)


if __name__ == "__main__":
    raise SystemExit(main(handler=FaultyHandler))
