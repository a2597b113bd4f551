"""What the command-line apps share: error reporting and building objects from config."""

from __future__ import annotations

import functools
import logging
import sys

from . import optim
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


def make_schedule(cfg, total_steps: int):
    if cfg.name == "step":
        return optim.StepLR(cfg.step_size, cfg.gamma)
    if cfg.name == "cosine":
        return optim.Cosine(total_steps, cfg.warmup_steps, cfg.min_lr)
    if cfg.name == "onecycle":
        return optim.OneCycle(max(2, total_steps), cfg.pct_start, cfg.div_factor, cfg.final_div_factor)
    return optim.Constant()


def make_optimizer(cfg, model, total_steps: int):
    """The optimizer ``cfg.name`` names ("momentum" is SGD with momentum), with its schedule."""
    schedule = make_schedule(cfg.schedule, total_steps)
    common = dict(lr=cfg.lr, weight_decay=cfg.weight_decay, schedule=schedule)
    if cfg.name in ("sgd", "momentum"):
        return optim.SGD(model, momentum=cfg.momentum, nesterov=cfg.nesterov, **common)
    if cfg.name == "adam":
        return optim.Adam(model, betas=tuple(cfg.betas), eps=cfg.eps, **common)
    if cfg.name == "adagrad":
        return optim.Adagrad(model, eps=cfg.eps, **common)
    return optim.RMSprop(model, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum, **common)
