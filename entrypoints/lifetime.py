"""A command's temporary Prefect server dies with the command, even when the command is SIGKILLed.

With no ``PREFECT_API_URL``, a flow run started by ``payer-scoring score`` /
``retrain`` / ``demo`` makes Prefect 3.9 start a temporary API server:
``python -m uvicorn ...`` in a child process
(``prefect.server.api.server.SubprocessASGIServer``), stopped by an
``atexit`` hook.  A SIGKILLed command runs no ``atexit`` hook, so the server
(~195 MB) was left running, re-parented to init.  Prefect 3.9 has no setting
for this (only ``PREFECT_SERVER_EPHEMERAL_ENABLED`` / ``..._STARTUP_TIMEOUT_SECONDS``).

:func:`tie_ephemeral_server_to_this_process` makes Prefect start that child
through a tiny watchdog (:data:`WATCHDOG`): it runs uvicorn in the same
process and a daemon thread polls ``os.getppid()`` every 0.5 s; once the
command that started it is gone (parent changed), it sends itself SIGTERM
(uvicorn shuts down cleanly) and exits hard 10 s later if still alive.
Polling the parent, rather than ``PR_SET_PDEATHSIG``, because that signal
fires when the *thread* that forked the child ends, and Prefect may start the
server from a worker thread.  Nothing else about the server changes.
"""

from __future__ import annotations

import os
import subprocess

# Runs as `python -c WATCHDOG <parent pid> <uvicorn args...>`.
WATCHDOG = """
import os, runpy, signal, sys, threading, time
parent = int(sys.argv[1])
def _watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    os._exit(1)
threading.Thread(target=_watch, name="die-with-parent", daemon=True).start()
sys.argv = ["uvicorn", *sys.argv[2:]]
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


class _SubprocessWithWatchdog:
    """Stands in for the ``subprocess`` module inside Prefect's server module: ``Popen`` of uvicorn gets the watchdog."""

    def __getattr__(self, name: str):
        return getattr(subprocess, name)

    @staticmethod
    def Popen(args, *rest, **kwargs):  # noqa: N802 - same name and signature as subprocess.Popen
        command = list(args)
        if command[1:3] == ["-m", "uvicorn"]:
            command = [command[0], "-c", WATCHDOG, str(os.getpid()), *command[3:]]
        return subprocess.Popen(command, *rest, **kwargs)


def tie_ephemeral_server_to_this_process() -> bool:
    """Route Prefect's temporary-server start through the watchdog; return True when installed (idempotent).

    Only touches ``prefect.server.api.server`` (Prefect 3.9 starts the server
    with ``subprocess.Popen([sys.executable, "-m", "uvicorn", ...])``); a
    Prefect without that module attribute is left alone (False).
    """
    from prefect.server.api import server

    if isinstance(getattr(server, "subprocess", None), _SubprocessWithWatchdog):
        return True
    if getattr(server, "subprocess", None) is not subprocess:
        return False
    server.subprocess = _SubprocessWithWatchdog()
    return True


