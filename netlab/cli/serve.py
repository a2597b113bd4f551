"""``python -m netlab.serve checkpoint=RUN_DIR`` (``netlab-serve``): the draw-a-digit page in a
browser, served on this machine only unless ``host=`` says otherwise. The app is
:func:`netlab.web.app.make_app`; this command loads the model and runs it under uvicorn."""

from __future__ import annotations

import ipaddress
import socket
import sys

import hydra
from omegaconf import DictConfig

from .. import saved
from ..config import ServeConfig, validate
from ..errors import BackendError, ConfigError
from ..inference import Predictor
from . import CONF
from .exits import command, user_errors


@user_errors
def serve(raw: DictConfig) -> None:
    cfg = validate(raw, ServeConfig)
    try:
        import uvicorn  # noqa: F401

        from ..web import server
        from ..web.app import LOOPBACK_HOSTS, make_app
    except ImportError:
        raise BackendError("netlab.serve needs Starlette and uvicorn: pip install -e '.[serve]'") from None
    predictor = Predictor(saved.open_for(cfg))
    sock = _bind(cfg.host, cfg.port)
    host, port = sock.getsockname()[:2]
    if not _loopback(cfg.host):
        print(f"netlab: warning: host={cfg.host} opens the page to every machine that can reach this one",
              file=sys.stderr)
    trained = predictor.trained
    print(f"netlab: serving {trained.config.model.name} ({trained.path}) at http://{_shown(host)}:{port}/ "
          f"(Ctrl-C stops)", flush=True)
    hosts = cfg.allowed_hosts or (LOOPBACK_HOSTS if _loopback(cfg.host) else ["*"])
    server.run(make_app(predictor, hosts), sock)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another port (port=0 picks "
                          f"a free one) or host") from None
    sock.listen(64)
    return sock


@command(ServeConfig)
@hydra.main(version_base="1.3", config_path=CONF, config_name="serve")
def main(cfg: DictConfig) -> None:
    serve(cfg)

