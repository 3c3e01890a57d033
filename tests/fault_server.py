"""A real lw.serve server process that misbehaves on purpose, for the OpenAI backend's tests.

    LW_FAULTS=429,500,malformed python tests/fault_server.py --model tiny-random --port 0

The n-th chat request gets the n-th fault of LW_FAULTS (then normal service):
429 (with Retry-After: 0), 500, 503, ``delay`` (sleeps LW_FAULT_DELAY seconds first),
``malformed`` (a 200 whose body is cut-off JSON), ``drop`` (closes the connection unanswered).
"""

import itertools
import os
import time

from lw.serve import Handler, main

FAULTS = [f for f in os.environ.get("LW_FAULTS", "").split(",") if f]
DELAY = float(os.environ.get("LW_FAULT_DELAY", "3"))
_counter = itertools.count()


class FaultyHandler(Handler):
    def complete(self, req, conv, prefix, cfg):
        k = next(_counter)
        fault = FAULTS[k] if k < len(FAULTS) else ""
        if fault in ("429", "500", "503"):
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
                time.sleep(DELAY)
            super().complete(req, conv, prefix, cfg)


if __name__ == "__main__":
    raise SystemExit(main(handler=FaultyHandler))
