"""A fork server for the tests' netlab commands: ``python -m netlab.X`` without paying for the
imports each time.

Why: about 250 command runs in the suite each spent ~1 s of their ~1.8 s importing NumPy,
Hydra and netlab's schema before doing anything. The server is one Python process, started
as ``python tests/forkserver.py`` with the commands' environment, that imports the command
modules once and then forks a child per command. A child is a fresh process as far as the
command can tell: its own pid, working directory, environment, ``sys.argv``, stdout and
stderr (files the caller reads back), Python's default exit handling (``SystemExit`` codes,
a traceback and status 1 for an uncaught exception, atexit handlers), and the exit status is
the child's own, read with ``waitpid`` (a signal death is ``-signum`` as in subprocess).

What a fork cannot give a command, the caller runs as a plain subprocess instead (see
``conftest.cli``): an environment that differs from the server's, where a variable may have
been read at import time (thread counts, PYTHONPATH), and a second command while one is
running. Protocol: one JSON line per request on stdin (argv, cwd, env, stdout/stderr paths),
one JSON line per answer on stdout: ``{"pid": P}`` when the child starts, then
``{"status": S}`` when it ends. EOF on stdin ends the server.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading

# The command modules (what each netlab/<command>.py shim imports), nothing heavier: a module
# that a command imports lazily (matplotlib, torch, the web stack) stays lazy in the child.
COMMANDS = ("train", "evaluate", "predict", "export", "serve", "bench", "summarize", "lr_find")


def _child(request: dict) -> None:
    """Become the command: never returns."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(out, fd)
            os.close(out)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own stdin
        # `python -m` puts the working directory first on sys.path.
        sys.path[0] = os.getcwd()
        sys.argv = ["-m", *request["args"][1:]]
        import runpy

        try:
            runpy.run_module(request["args"][0], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as stop:
            # What Python does with SystemExit at top level.
            if stop.code is None:
                code = 0
            elif isinstance(stop.code, int):
                code = stop.code & 0xFF
            else:
                print(stop.code, file=sys.stderr)
                code = 1
        except BaseException:  # an uncaught exception: traceback and status 1, as Python does
            import traceback

            traceback.print_exc()
            code = 1
        # Python's own shutdown order: wait for the threads that are not daemons and run the
        # threading module's exit hooks (concurrent.futures and loky stop their executors
        # there), then the atexit handlers. atexit alone leaves a sweep's process pool waiting.
        import atexit
        import threading

        threading._shutdown()
        atexit._run_exitfuncs()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve() -> None:
    import importlib

    for name in COMMANDS:
        importlib.import_module(f"netlab.cli.{name}")
    answer = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        answer.write(json.dumps({"pid": pid}) + "\n")
        answer.flush()
        _, status = os.waitpid(pid, 0)
        answer.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
        answer.flush()


def _imported_with(env: dict[str, str]) -> dict[str, str]:
    """The part of an environment that the server's imports may have read: all of it, but the
    name of the running test, which pytest sets per test (the child gets it as given)."""
    return {k: v for k, v in env.items() if k != "PYTEST_CURRENT_TEST"}


class Client:
    """The caller's side: one server per test process, started on first use with the
    environment ``env``, stopped (and reaped) when the process exits or :meth:`close` is called."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        atexit.register(self.close)

    def run(self, args: list[str], cwd, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess | None:
        """Run ``python -m ARGS`` as a forked child; None where a fork would not be the same
        as a fresh process (another environment, a working directory that is not one, which
        subprocess refuses in the caller) or the server is busy, so the caller starts a plain
        subprocess instead."""
        if (_imported_with(env) != _imported_with(self.env) or not os.path.isdir(cwd)
                or not self.lock.acquire(blocking=False)):
            return None
        try:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = subprocess.Popen([sys.executable, __file__], env=self.env, stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, text=True)
            with tempfile.TemporaryDirectory(prefix="netlab-fork-") as tmp:
                out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
                self.proc.stdin.write(json.dumps({"args": args, "cwd": str(cwd), "env": env,
                                                  "stdout": out, "stderr": err}) + "\n")
                self.proc.stdin.flush()
                pid = self._answer("pid")
                killed = []
                deadline = threading.Timer(timeout, lambda: (killed.append(pid), os.kill(pid, signal.SIGKILL)))
                deadline.start()
                try:
                    status = self._answer("status")
                finally:
                    deadline.cancel()
                stdout, stderr = (self._text(path) for path in (out, err))
            if killed:
                raise subprocess.TimeoutExpired(args, timeout, stdout, stderr)
            return subprocess.CompletedProcess(args, status, stdout, stderr)
        finally:
            self.lock.release()

    def _answer(self, key: str) -> int:
        line = self.proc.stdout.readline()
        if not line:  # the server itself ended: say so, not a JSON error
            raise RuntimeError(f"the fork server (tests/forkserver.py) ended with status {self.proc.wait()}")
        return json.loads(line)[key]

    @staticmethod
    def _text(path: str) -> str:
        # What subprocess.run(text=True) gives: the locale's encoding, universal newlines.
        with open(path, encoding=None, newline=None) as f:
            return f.read()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.proc = None


if __name__ == "__main__":
    serve()
