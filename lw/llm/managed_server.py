"""A server process the kit starts, waits for and stops itself, on 127.0.0.1.

    with ManagedServer(lambda port: ["python", "-m", "lw.serve", "--port", str(port)]) as srv:
        lw.llm.load("openai:smollm2-135m", base_url=srv.base_url)   # http://127.0.0.1:P/v1

``ManagedServer(command)`` picks a free port, runs ``command(port)`` and returns once
``GET <base_url>/models`` answers 200 (sending ``api_key`` as a bearer token if given). If the
process exits first, or ``start_timeout`` passes, it is stopped and an ``LwError`` carries the
last lines it printed. All it prints goes to a log file (``log_path``), never to a pipe that
could fill up and block it.

No orphans: the command runs under ``_watchdog.py`` in a process group of its own. ``close()``
(also on ``with`` exit, garbage collection and interpreter exit) sends it SIGTERM, waits
``stop_grace`` seconds, then SIGKILLs the group, children of the server included. If the kit's
process dies without running any of that (SIGKILL, a kernel restart), the watchdog sees its
stdin pipe close and does the same. Linux and macOS (process groups); not Windows.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

from lw.errors import LwError

WATCHDOG = Path(__file__).with_name("_watchdog.py")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS's pick; another process could take it before
    the server binds it, in which case the server exits and the start error says so)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ManagedServer:
    """A server process bound to this object's lifetime (see the module docstring).

    Args:
        command: called with the chosen port; returns the argv to run.
        name: what messages call it ("vLLM server").
        host: the address it listens on and clients use.
        env: variables added to this process's environment for it (secrets belong here, not
            in argv, which other local users can read with ``ps``).
        api_key: bearer token the readiness check sends.
        start_timeout: seconds to wait for ``/models`` to answer.
        stop_grace: seconds between SIGTERM and SIGKILL on close.
        log_path: where its output goes (default: a new file in the temp folder, kept after
            close for reading).
        ready_path: the route that answers 200 once it serves, relative to the host.
    """

    def __init__(self, command: Callable[[int], Sequence[str]], *, name: str = "server",
                 host: str = "127.0.0.1", env: dict | None = None, api_key: str | None = None,
                 start_timeout: float = 600.0, stop_grace: float = 30.0,
                 log_path: str | os.PathLike | None = None, ready_path: str = "/v1/models",
                 cwd: str | os.PathLike | None = None):
        self.name, self.host, self.port = name, host, free_port(host)
        self.base_url = f"http://{host}:{self.port}/v1"
        self.api_key = api_key
        self.command = [str(a) for a in command(self.port)]
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix=f"lw-{name.split()[0].lower()}-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, str(WATCHDOG), str(stop_grace), "--", *self.command],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        self.pid = self._proc.pid  # also the process group's id
        self._stop = weakref.finalize(self, _stop_group, self._proc, stop_grace)
        started = time.monotonic()
        print(f"lw: starting {name} on {host}:{self.port} (log: {self.log_path})", flush=True)
        try:
            self._wait_ready(ready_path, start_timeout)
        except BaseException:  # a failed start, or Ctrl-C while waiting: leave nothing behind
            self.close()
            raise
        self.start_seconds = time.monotonic() - started
        print(f"lw: {name} ready after {self.start_seconds:.0f} s", flush=True)

    def _wait_ready(self, path: str, timeout: float) -> None:
        url = f"http://{self.host}:{self.port}{path}"
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        deadline = time.monotonic() + timeout
        while True:
            if _exited(self._proc):
                raise LwError(f"the {self.name} exited during start-up "
                              f"({_status(self._proc)}). Its last output:\n{self.tail()}\n"
                              f"Full log: {self.log_path}")
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                            timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass  # not listening yet, or loading (some servers answer 503 meanwhile)
            if time.monotonic() > deadline:
                raise LwError(f"the {self.name} did not answer {url} within {timeout:.0f} s, so "
                              f"it was stopped. Its last output:\n{self.tail()}\nIf it was "
                              "still loading (a first download, a large model), pass a longer "
                              f"start_timeout. Full log: {self.log_path}")
            time.sleep(0.25)

    def running(self) -> bool:
        """Whether the server process is still alive (and not closed)."""
        return self._stop.alive and not _exited(self._proc)

    def check_alive(self) -> None:
        """Raise LwError with the server's last output if it has exited or been closed."""
        if not self._stop.alive:
            raise LwError(f"the {self.name} at {self.base_url} was closed; load the model again.")
        if _exited(self._proc):
            raise LwError(f"the {self.name} at {self.base_url} exited ({_status(self._proc)}). "
                          f"Its last output:\n{self.tail()}\nFull log: {self.log_path}")

    def tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines the server printed."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
                text = f.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"

    def close(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL to its whole process group after the grace
        period. Safe to call twice; also runs on garbage collection and at interpreter exit."""
        self._stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"<ManagedServer {self.name} {self.base_url} pid {self.pid} {state}>"


def _exited(proc: subprocess.Popen) -> bool:
    """Whether ``proc`` has exited, without reaping it where the OS allows: an unreaped leader
    keeps its process-group id reserved, so the group SIGKILL can never hit a reused id."""
    if proc.returncode is not None:
        return True
    if hasattr(os, "waitid"):
        try:
            return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True
    return proc.poll() is not None


def _status(proc: subprocess.Popen) -> str:
    if hasattr(os, "waitid") and proc.returncode is None:
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            info = None
        if info is not None:
            return f"exit status {info.si_status}"
    return f"exit status {proc.poll()}"


def _stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the watchdog (which passes it to the server), wait, SIGKILL the group, reap."""
    if not _exited(proc):
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while not _exited(proc) and time.monotonic() < deadline:
            time.sleep(0.05)
    try:  # whatever is left: the server if it ignored SIGTERM, and any child it started
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    if proc.stdin:
        proc.stdin.close()  # only now: an earlier end-of-file would make the watchdog act too
