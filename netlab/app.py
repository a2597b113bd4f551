"""What the command-line apps share: how a run ends when something goes wrong.

The rule every command follows (README, "Exit status"):
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
import logging
import sys

from .errors import NetlabError

log = logging.getLogger(__name__)

EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130
# A file system that refuses a write is the machine's state, not a bug in netlab.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


class _State:
    task_started = False


def user_errors(fn):
    """Run an app's task; a user-caused error ends it with one paragraph and a documented status."""

    @functools.wraps(fn)
    def wrapper(cfg):
        _State.task_started = True
        try:
            return fn(cfg)
        except NetlabError as exc:
            if cfg.get("debug") or _hydra_verbose():
                raise
            _fail(str(exc), getattr(exc, "exit_code", EXIT_BAD_INPUT))
        except KeyboardInterrupt:
            _fail("interrupted (Ctrl-C) before the command finished; nothing it had already written "
                  "was damaged (outputs are replaced atomically)", EXIT_INTERRUPTED)
        except OSError as exc:
            if exc.errno not in DISK_ERRORS or cfg.get("debug"):
                raise
            where = f" {exc.filename}" if exc.filename else ""
            _fail(f"cannot write{where}: {exc.strerror}. Files already saved are intact (checkpoints and "
                  f"results are replaced atomically); free space or choose a writable folder "
                  f"(hydra.run.dir=...) and run again", EXIT_BAD_INPUT)

    return wrapper


def _fail(message: str, status: int):
    message = " ".join(message.split())
    log.debug("error: %s", message)
    print(f"netlab: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status) from None


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
