"""The fork server behind the tests' ``cli`` (tests/forkserver.py) against its plain twin, a
fresh ``python -m``: the same exit status, stdout and stderr for every way a command ends, the
working directory first on the path, the environment as given, and a timeout that kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from conftest import cli, command_env, wait_for

import forkserver

ENDINGS = {
    "clean": "print('out'); print('err', file=__import__('sys').stderr)",
    "status": "import sys; print('bye'); sys.exit(3)",
    "text_exit": "import sys; sys.exit('a message as the exit value')",
    "crash": "raise ValueError('a bug')",
    "atexit": "import atexit; atexit.register(lambda: print('at exit'))",
    "cwd_first": "import sys, os; print(sys.path[0] == os.getcwd(), os.getcwd())",
    "environment": "import os; print(os.environ.get('NETLAB_OFFLINE'), os.environ.get('PYTEST_CURRENT_TEST', '')[:5])",
    "argv": "import sys; print(sys.argv[1:], sys.argv[0].endswith('ending.py'))",
    "stdin": "import sys; print(repr(sys.stdin.read()))",
    # Python waits for threads that are not daemons, then stops executors, before it exits.
    "thread": "import threading, time; threading.Thread(target=lambda: (time.sleep(0.5), print('thread done'))).start()",
    "pool": "import concurrent.futures as f; pool = f.ProcessPoolExecutor(1); print(pool.submit(abs, -3).result())",
}


@pytest.fixture(scope="module")
def client():
    forks = forkserver.Client(command_env())
    yield forks
    forks.close()


@pytest.mark.parametrize("name", sorted(ENDINGS))
def test_a_forked_command_ends_as_a_fresh_python_would(client, tmp_path, name):
    # A module in the working directory, as a user's file there would be.
    (tmp_path / "ending.py").write_text(ENDINGS[name] + "\n")
    args = ["ending", "x=1", "y=2"]
    env = command_env()
    forked = client.run(args, tmp_path, env, timeout=60)
    plain = subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
    assert forked is not None, "the server refused a command in its own environment"
    assert (forked.returncode, forked.stdout) == (plain.returncode, plain.stdout)
    # Tracebacks name the runner's frames differently; the last line is the error itself.
    assert forked.stderr.strip().splitlines()[-1:] == plain.stderr.strip().splitlines()[-1:]
    assert plain.returncode == {"status": 3, "text_exit": 1, "crash": 1}.get(name, 0)


def test_another_environment_is_left_to_a_fresh_process(client, tmp_path):
    assert client.run(["ending"], tmp_path, command_env({"OMP_NUM_THREADS": "1"}), timeout=60) is None


def test_a_missing_working_directory_is_refused_as_subprocess_refuses_it(client, tmp_path):
    assert client.run(["ending"], tmp_path / "missing", command_env(), timeout=60) is None
    with pytest.raises(FileNotFoundError):
        cli("netlab.train", "--help", cwd=tmp_path / "missing")


def test_a_server_that_died_is_said_and_the_next_command_gets_a_new_one(tmp_path):
    forks = forkserver.Client(command_env())
    (tmp_path / "ending.py").write_text(ENDINGS["status"] + "\n")
    assert forks.run(["ending"], tmp_path, command_env(), timeout=60).returncode == 3
    forks.proc.kill()
    forks.proc.wait()
    assert forks.run(["ending"], tmp_path, command_env(), timeout=60).returncode == 3  # restarted
    # The server ending in the middle of a command is one clear error, not a JSON one.
    (tmp_path / "sleeper.py").write_text("import os, time\nopen('pid', 'w').write(str(os.getpid()))\ntime.sleep(600)\n")
    threading.Timer(1.0, forks.proc.kill).start()
    try:
        with pytest.raises(RuntimeError, match="the fork server .* ended"):
            forks.run(["sleeper"], tmp_path, command_env(), timeout=60)
    finally:  # whatever happened, the orphaned command does not outlive the test
        wait_for(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), "the command's pid")
        os.kill(int((tmp_path / "pid").read_text()), signal.SIGKILL)
        forks.close()


def test_a_command_past_its_timeout_is_killed(client, tmp_path):
    (tmp_path / "sleeper.py").write_text(textwrap.dedent("""
        import os, time
        open('pid', 'w').write(str(os.getpid()))
        time.sleep(600)
    """))
    with pytest.raises(subprocess.TimeoutExpired):
        client.run(["sleeper"], tmp_path, command_env(), timeout=2)
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped by the server
    # The server goes on serving.
    (tmp_path / "ending.py").write_text(ENDINGS["status"] + "\n")
    assert client.run(["ending"], tmp_path, command_env(), timeout=60).returncode == 3


def test_the_server_stops_when_closed(tmp_path):
    forks = forkserver.Client(command_env())
    (tmp_path / "ending.py").write_text(ENDINGS["clean"] + "\n")
    assert forks.run(["ending"], tmp_path, command_env(), timeout=60).stdout == "out\n"
    server = forks.proc
    forks.close()
    assert server.poll() is not None
