"""What a person at a terminal sees and does during a run (netlab.console): the progress bar
with a live loss and each evaluation shown once, and Ctrl-C taking effect between steps."""

from __future__ import annotations

import os
import re
import signal
import subprocess

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


# ------------------------------------------------------------ adversarial: every stop signal, between steps
SIGNALS = [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")]


@pytest.fixture
def default_handlers():
    """Each stop signal at its default disposition (as in a terminal), restored afterwards."""
    before = {s: signal.getsignal(s) for s, _, _ in SIGNALS}
    for s in before:
        signal.signal(s, console.DeferredInterrupt.DEFAULTS[s])
    yield
    for s, h in before.items():
        signal.signal(s, h)


@pytest.mark.parametrize("signum,status,name", SIGNALS)
def test_a_stop_signal_is_held_until_the_next_check(default_handlers, signum, status, name):
    """SIGINT, SIGTERM and SIGHUP: remembered, raised as Stop(signum) at check(), a second one at once."""
    with console.DeferredInterrupt() as interrupt:
        signal.raise_signal(signum)  # the handler runs before raise_signal returns
        assert interrupt.pending == signum
        with pytest.raises(console.Stop) as stop:
            interrupt.check()
        assert stop.value.signum == signum and stop.value.args[0] == signal.Signals(signum).name
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signum)
    assert signal.getsignal(signum) is console.DeferredInterrupt.DEFAULTS[signum]


@pytest.mark.parametrize("signum,status,name", SIGNALS)
def test_the_exit_status_is_the_shell_s_for_the_signal(signum, status, name):
    """Interrupted(.., signum).exit_code is 128 + signum: 130, 143, 129."""
    from netlab.errors import Interrupted

    assert Interrupted("stopped", signum).exit_code == status


@pytest.mark.parametrize("signum,status,name", SIGNALS)
def test_a_signal_with_its_own_handler_is_left_alone(signum, status, name):
    """A handler someone else set (or nohup's SIG_IGN) is not replaced."""
    before = signal.getsignal(signum)
    mine = signal.SIG_IGN
    signal.signal(signum, mine)
    try:
        with console.DeferredInterrupt() as interrupt:
            assert signal.getsignal(signum) is mine
            signal.raise_signal(signum)  # ignored
            assert interrupt.pending is None
    finally:
        signal.signal(signum, before)


@pytest.mark.parametrize("signum,status,name", SIGNALS)
def test_training_stopped_by_a_signal_saves_that_step(tmp_path, default_handlers, signum, status, name):
    """A stop signal mid-run: checkpoint at the step it stopped, a message naming the signal, status 128+n."""
    from netlab import checkpoint, training
    from netlab.errors import Interrupted
    from conftest import small_config

    trainer = training.Trainer(small_config("train.max_steps=20", "train.checkpoint_every=100",
                                            "train.eval_every=100"), tmp_path / "run")
    real = trainer.opt.step

    def stepped():
        real()
        if trainer.at.step == 3:
            signal.raise_signal(signum)
    trainer.opt.step = stepped
    with pytest.raises(Interrupted) as caught:
        trainer.fit()
    assert caught.value.exit_code == status
    assert f"interrupted ({name}) at step 4 of 20" in str(caught.value)
    assert f"train.resume={tmp_path / 'run'}" in str(caught.value)
    assert checkpoint.read(tmp_path / "run" / "checkpoints" / "last.npz").counters["step"] == 4


def test_sigterm_stops_the_train_command_with_status_143(tmp_path, spawn):
    """The real command: SIGTERM (docker stop, Slurm) ends it between steps, with 143 and how to continue."""
    proc = spawn("netlab.train", *SMALL, "train.max_steps=100000", "train.checkpoint_every=1", "train.eval_every=100000",
                 "hydra.run.dir=run", cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (tmp_path / "run" / "checkpoints" / "last.npz").exists(), "a first checkpoint", proc=proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert re.search(r"interrupted \(SIGTERM\) at step \d+ of \d+; the last checkpoint is from step \d+: "
                     r"continue with python -m netlab.train train.resume=", err), err
