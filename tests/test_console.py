"""What a person at a terminal sees and does during a run (netlab.console): the progress bar
with a live loss and each evaluation shown once, and Ctrl-C taking effect between steps."""

from __future__ import annotations

import os
import re
import signal

import pytest

from netlab import console
from conftest import SMALL, wait_for


# -------------------------------------------------------------------------------------------- Ctrl-C
def test_a_ctrl_c_waits_for_a_safe_point_and_a_second_one_does_not(default_sigint):
    """The first SIGINT is held until the loop's next check; a second interrupts at once; the
    handler is Python's default again afterwards."""
    with console.DeferredInterrupt() as interrupt:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            wait_for(lambda: interrupt.pending, "the first Ctrl-C to be held", timeout=10, interval=0.001)
        except KeyboardInterrupt:
            pytest.fail("the first Ctrl-C interrupted at once instead of waiting for a check")
        assert interrupt.pending
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            # nothing to poll for but the KeyboardInterrupt itself, which ends this wait
            wait_for(lambda: False, "the second Ctrl-C to interrupt", timeout=10, interval=0.001)
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---------------------------------------------------------------------------------- the progress bar
def test_the_bar_refreshes_the_loss_every_few_steps_without_a_sync_per_step():
    from netlab.console import Progress

    class Bar:
        def __init__(self):
            self.updates, self.postfix = 0, None

        def update(self, n):
            self.updates += n

        def set_postfix_str(self, text, refresh):
            self.postfix = text

    class Running:  # counts host syncs
        count, syncs = 64, 0

        def total_loss(self):
            self.syncs += 1
            return 64 * 0.25

    progress, running = Progress(enabled=False, total=100, initial=0, every=20), Running()
    progress.bar = Bar()
    for step in range(1, 60):
        progress.step(step, running)
    assert progress.bar.updates == 59 and running.syncs == 2  # steps 20 and 40 only
    assert progress.bar.postfix == "loss 0.2500"
    progress.evaluated(0.5, 0.9712)
    assert progress.bar.postfix == "loss 0.5000 val 97.12%"
    progress.bar = None  # what a run off a terminal has: nothing to draw, nothing synced
    progress.step(80, running)
    assert running.syncs == 2


def run_on_a_terminal(spawn, args, cwd, size=(40, 160), timeout=120) -> str:
    """Run ``python -m ARGS`` with stdout and stderr on a pseudo-terminal of ``size`` (rows,
    columns; (0, 0) as some terminals report); returns what it showed."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    proc = spawn(*args, cwd=cwd, env={"COLUMNS": "160"}, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.time() + timeout
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=30)
    finally:  # the spawn fixture stops the command if it still runs
        os.close(master)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("size", [(40, 160), (0, 0)])
def test_a_terminal_shows_each_evaluation_once_and_a_live_loss(tmp_path, spawn, size):
    shown = run_on_a_terminal(spawn, ["netlab.train", *SMALL[:-1], "train.epochs=3", "train.max_steps=45",
                                      "train.eval_every=15", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, size)
    for step in (15, 17, 30, 34, 45):  # every 15 steps and at each epoch's end (17 batches an epoch)
        assert len(re.findall(rf"\] {step:7d} +\d+\.\d\d ", shown)) == 1, shown  # its row of the table
    assert "/45 [" in shown and "step/s" in shown  # tqdm's bar itself
    assert any(", loss " in part.split("]")[0] for part in shown.split("/45 [")[1:])  # with the loss
    assert "up to 0.003 (optimizer.lr)" in shown
