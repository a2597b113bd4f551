"""What the command-line apps share: how a user-caused error ends a command."""

from __future__ import annotations

import functools
import logging
import sys

from .errors import NetlabError

log = logging.getLogger(__name__)


def user_errors(fn):
    """Run an app's task; a user-caused error ends it with one paragraph and exit status 2.

    ``debug=true`` (or ``hydra.verbose=true``) shows the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(cfg):
        try:
            return fn(cfg)
        except NetlabError as exc:
            if cfg.get("debug") or _hydra_verbose():
                raise
            message = " ".join(str(exc).split())
            log.debug("error: %s", message)
            print(f"netlab: error: {message}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    return wrapper


def _hydra_verbose() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig

        return bool(HydraConfig.get().verbose)
    except Exception:
        return False
