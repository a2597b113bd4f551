"""How a command ends when something goes wrong: the exit policy that every command follows.

The rule (README, "Exit status"):
- 0: done;
- 2: bad input, said in one paragraph (``netlab: error: ...``): a value netlab checks, a
  file that is missing, corrupt or hostile, a full or read-only disk, and also what Hydra
  refuses while composing the config (an unknown option or key, a wrong type);
- 130: interrupted (Ctrl-C), saying where the run stopped and how to continue;
- 1: a crash, that is a bug in netlab (the traceback is shown).
``debug=true`` (or ``hydra.verbose=true``) shows the traceback of a netlab error instead.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from ..errors import NetlabError
from ..sweeps import FAILURE_FILE, run_job

log = logging.getLogger(__name__)

EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130
# A file system that refuses a write is the machine's state, not a bug in netlab.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


class _State:
    task_started = False


def user_errors(fn):
    """Run a command's task; a user-caused error ends it with one paragraph and a documented status."""

    @functools.wraps(fn)
    def wrapper(cfg):
        _State.task_started = True
        if _in_sweep():
            return run_job(fn, cfg)
        try:
            return fn(cfg)
        except NetlabError as exc:
            if cfg.get("debug") or _hydra_verbose():
                raise
            fail(str(exc), getattr(exc, "exit_code", EXIT_BAD_INPUT))
        except KeyboardInterrupt:
            fail("interrupted (Ctrl-C) before the command finished; nothing it had already written "
                 "was damaged (outputs are replaced atomically)", EXIT_INTERRUPTED)
        except OSError as exc:
            if exc.errno not in DISK_ERRORS or cfg.get("debug"):
                raise
            where = f" {exc.filename}" if exc.filename else ""
            fail(f"cannot write{where}: {exc.strerror}. Files already saved are intact (checkpoints and "
                 f"results are replaced atomically); free space or choose a writable folder "
                 f"(hydra.run.dir=...) and run again", EXIT_BAD_INPUT)

    return wrapper


def _in_sweep() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # no Hydra app running (the Python API)
        return False


def fail(message: str, status: int):
    """End the command: ``netlab: error: MESSAGE`` as one paragraph on stderr, and ``status``."""
    message = " ".join(message.split())
    log.debug("error: %s", message)
    print(f"netlab: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status) from None


class SweepReport(Callback):
    """A Hydra callback: at the end of a sweep, one paragraph naming the jobs that failed, and
    exit status 2 when any did (0 when all finished)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        root = Path(config.hydra.sweep.dir)
        jobs = [p for p in root.iterdir() if p.is_dir() and (p / ".hydra").is_dir()] if root.is_dir() else []
        failed = []
        for job in sorted(jobs):
            try:
                failed.append(json.loads((job / FAILURE_FILE).read_text()))
            except (OSError, ValueError):
                continue
        if failed:
            said = "; ".join(f"job {f.get('job')} ({' '.join(f.get('overrides', []))}): "
                             f"{str(f.get('message')).rstrip('.')}" for f in failed[:5])
            fail(f"{len(failed)} of {len(jobs)} jobs failed, the others finished: {said}"
                 f"{'; ...' if len(failed) > 5 else ''}. Each failed job's folder holds {FAILURE_FILE}; "
                 f"python -m netlab.summarize {root} shows them all", EXIT_BAD_INPUT)


def command(hydra_main):
    """Wrap a ``@hydra.main`` function so that Hydra's own refusals of the config (reported
    before the task starts, with Hydra's exit status 1) exit with :data:`EXIT_BAD_INPUT`
    like every other bad input; a crash inside the task keeps status 1."""

    @functools.wraps(hydra_main)
    def run(*args, **kwargs):
        _State.task_started = False
        try:
            return hydra_main(*args, **kwargs)
        except SystemExit as exc:
            if exc.code == 1 and not _State.task_started:
                raise SystemExit(EXIT_BAD_INPUT) from None
            raise

    return run


def _hydra_verbose() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig

        return bool(HydraConfig.get().verbose)
    except Exception:
        return False
