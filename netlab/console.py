"""What a person at a terminal sees and does during a run: the progress bar, and Ctrl-C
taking effect between steps."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading


class LogFormatter(logging.Formatter):
    """``[14:02:11] message`` (``stamp=False``: the message alone), with ``warning:`` (or
    ``error:``) before what is not plain information."""

    def __init__(self, stamp: bool = True):
        super().__init__("[%(asctime)s] %(message)s" if stamp else "%(message)s", "%H:%M:%S")

    def formatMessage(self, record):
        if record.levelno >= logging.WARNING:
            record = logging.makeLogRecord({**record.__dict__, "message": f"{record.levelname.lower()}: {record.message}"})
        return super().formatMessage(record)


class Stop(KeyboardInterrupt):
    """A stop request taken between two steps (where the run's state is whole): ``signum`` says
    which signal asked for it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class DeferredInterrupt:
    """Ctrl-C, SIGTERM and SIGHUP during the loop take effect between steps, never inside a
    checkpoint write or an evaluation: the first signal is remembered and raised as
    :class:`Stop` at the next :meth:`check`; a second one interrupts at once. (A SIGINT landing
    inside OmegaConf while a checkpoint was being assembled turned into an AttributeError crash,
    exit 1.) Off the main thread nothing changes, nor for a signal that has a handler of its own
    or is ignored (``nohup`` ignores SIGHUP, and so does netlab then)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    DEFAULTS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL,
                signal.SIGHUP: signal.SIG_DFL}

    def __init__(self):
        self.pending = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                if signal.getsignal(signum) is self.DEFAULTS[signum]:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.pending is not None:  # asked twice: stop now
            raise KeyboardInterrupt
        self.pending = signum

    def check(self) -> None:
        if self.pending is not None:
            raise Stop(self.pending)

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where tqdm draws its bar as a notebook widget)."""
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except AttributeError:
        return False


class Progress:
    """A tqdm bar whose postfix shows the running training loss, refreshed every ``every``
    steps (one host sync per refresh, none per step), with log lines printed above it, once
    each, through tqdm's logging redirection. Off a terminal (or when not ``enabled``) there is
    no bar and no extra sync."""

    def __init__(self, enabled: bool, total: int, initial: int, every: int = 20):
        self.every, self.bar, self._redirect = every, None, None
        self.val = ""
        if not enabled:
            return
        if sys.stderr.isatty():
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            # A terminal that reports a size of 0 (some pseudo-terminals) would get an invisible bar.
            size = os.terminal_size((0, 0))
            with contextlib.suppress(OSError):
                size = os.get_terminal_size(sys.stderr.fileno())
            known = size.columns > 0 and size.lines > 0
            fallback = shutil.get_terminal_size()
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=known,
                            ncols=None if known else fallback.columns, nrows=None if known else fallback.lines)
            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()
        elif in_notebook() and _has("ipywidgets"):  # a widget: log lines print beside it untouched
            from tqdm.notebook import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step")

    def step(self, step: int, running) -> None:
        """One step done; ``running`` is the loop's :class:`~netlab.metrics.Running` sums."""
        if self.bar is None:
            return
        self.bar.update(1)
        if step % self.every == 0 and running.count:
            self._show(running.total_loss() / running.count)

    def evaluated(self, train_loss: float, val_accuracy: float) -> None:
        if self.bar is not None:
            self.val = f" val {100 * val_accuracy:.2f}%"
            self._show(train_loss)

    def _show(self, loss: float) -> None:
        self.bar.set_postfix_str(f"loss {loss:.4f}{self.val}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            if self._redirect is not None:
                self._redirect.__exit__(None, None, None)
            self.bar = None


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
