"""Runs one server command and ends it when the kit process that started it goes away.

    python _watchdog.py GRACE_SECONDS -- COMMAND [ARGS...]

Started by ``lw.llm.managed_server.ManagedServer`` as the leader of a new process group, with a
pipe as stdin whose other end only the kit process holds. The pipe reaches end-of-file when the
kit closes it or dies in any way (SIGKILL and a kernel restart included, where no ``atexit`` runs);
the watchdog then sends the command SIGTERM, waits GRACE_SECONDS, and SIGKILLs the whole group
(the server's own children included). A SIGTERM sent to the watchdog is passed on to the command
alone, so the server gets exactly one (uvicorn, under vLLM, takes a second one as "exit now").
The exit status is the command's. Standard library only: run by path, no kit import.
"""

import os
import signal
import subprocess
import sys
import threading


def main(argv: list[str]) -> int:
    grace = float(argv[0])
    command = argv[argv.index("--") + 1:]
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))

    def end_when_parent_gone():
        while os.read(0, 4096):  # b"" only at end-of-file: the kit closed the pipe or died
            pass
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(grace)
        finally:
            os.killpg(0, signal.SIGKILL)  # our own group: the server's children, and us

    threading.Thread(target=end_when_parent_gone, daemon=True).start()
    code = child.wait()
    return code if code >= 0 else 128 - code  # a signal N reads as 128+N, as in a shell


if __name__ == "__main__":
    # os._exit: a normal exit would wait on the stdin reader thread at interpreter shutdown.
    os._exit(main(sys.argv[1:]))
