"""Reading checkpoints back: the arrays, and the model they describe."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from . import backend, models
from .config import validate
from .errors import ConfigError

FORMAT = 1


def resolve(path) -> Path:
    """``path`` itself, or ``path/checkpoints/last.npz`` when it is a run directory."""
    path = Path(path).expanduser()
    return path / "checkpoints" / "last.npz" if path.is_dir() else path


def read_checkpoint(path) -> dict:
    """The arrays of a checkpoint; ``path`` may be a run directory or a .npz file."""
    path = resolve(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} not found; give a run directory (with checkpoints/last.npz) "
                          f"or a .npz file")
    try:
        st = backend.load_arrays(path)
    except Exception as exc:
        raise ConfigError(f"{path} is not a readable netlab checkpoint ({exc})") from None
    if "config" not in st or int(st.get("format", -1)) != FORMAT:
        raise ConfigError(f"{path} is not a netlab checkpoint (format {FORMAT})")
    return st


def load_model(path, xp):
    """``(model, config, mean, std)`` from a checkpoint: the model in eval mode on namespace
    ``xp``, the run's validated config, and the normalisation it trained with."""
    st = read_checkpoint(path)
    cfg = validate(OmegaConf.create(str(st["config"])))
    model = models.build(cfg.model)
    try:
        model.load_state_dict({k[len("model."):]: v for k, v in st.items() if k.startswith("model.")})
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{resolve(path)}: weights do not fit the model in its config ({exc})") from None
    return model.to(xp).eval(), cfg, float(st["data_mean"]), float(st["data_std"])
