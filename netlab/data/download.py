"""Where a dataset's files live, and how missing ones are fetched and checked against the official checksums."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import DataError
from .idx import read_bytes

log = logging.getLogger(__name__)

def default_root(dataset: str) -> Path:
    """``$NETLAB_DATA/<dataset>`` when NETLAB_DATA is set, else the per-user cache folder."""
    if os.environ.get("NETLAB_DATA"):
        return Path(os.environ["NETLAB_DATA"]) / dataset
    return cache_dir(dataset)


def find_file(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_dir(dataset: str) -> Path:
    """netlab's own download cache for ``dataset``: the only folder netlab writes data into."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "netlab" / dataset


def locate(spec, root: Path | None, download: bool) -> Path:
    """The folder holding all four files: ``root`` (or the default), a system folder, or a fresh download."""
    names = [n for pair in spec.files.values() for n in pair]
    roots = [Path(root).expanduser()] if root else [default_root(spec.name)]
    roots += [Path(d) for d in spec.system_dirs]
    for r in roots:
        if all(find_file(r, n) for n in names):
            return r
    target = roots[0]
    missing = [n for n in names if not find_file(target, n)]
    if not download:
        raise DataError(missing_message(spec, target, missing, "downloading is off (data.download=false)"))
    for name in missing:
        fetch(spec, name, target)
    return target


def missing_message(spec, target, missing, why):
    return (f"{spec.name}: {', '.join(missing)} not found in {target} and {why}. Put the four "
            f"files (gzip or raw) in that folder, point data.root at the folder that holds them, "
            f"or set NETLAB_DATA to a folder with a '{spec.name}' subfolder.")


def fetch(spec, name: str, target: Path) -> Path:
    """Download ``name``.gz from the first mirror that answers, atomically, with a progress bar."""
    from tqdm.auto import tqdm

    if os.environ.get("NETLAB_OFFLINE"):  # set by the test suite, or by anyone on an air-gapped machine
        raise DataError(missing_message(spec, target, [name], "downloads are off (NETLAB_OFFLINE is set)"))
    target.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in spec.mirrors:
        url = mirror + name + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tempfile.NamedTemporaryFile(dir=target, prefix=f".{name}.", delete=False) as tmp, \
                        tqdm(total=total, unit="B", unit_scale=True, desc=name, leave=False) as bar:
                    while chunk := response.read(1 << 16):
                        tmp.write(chunk)
                        bar.update(len(chunk))
            dest = target / (name + ".gz")
            expected = spec.sha256.get(name)
            if expected and sha256(read_bytes(Path(tmp.name))) != expected:
                os.unlink(tmp.name)
                errors.append(f"{url}: checksum mismatch")
                continue
            shutil.move(tmp.name, dest)
            return dest
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
    raise DataError(missing_message(spec, target, [name], "it could not be downloaded (" + "; ".join(errors) + ")"))
