"""Where the apps write, and how: atomically, so a crash leaves the old file or the new one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def output_dir() -> Path:
    """The running Hydra app's output folder (``hydra.run.dir``, or the job's sweep subfolder)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def atomic_write(path, write) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, flush it to disk and rename it
    over ``path``: a crash at any moment leaves either the old file or the new one, and no
    temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path, obj) -> Path:
    """``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))
