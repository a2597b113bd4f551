"""Where a dataset's files live, and how missing ones are fetched and checked against the
official checksums.

Files published one by one (MNIST, Fashion-MNIST, KMNIST) are downloaded from the first mirror
that answers and checked (SHA-256 of the contents, or MD5 of the published gzip file) before
they are renamed into place. Datasets published as one archive (EMNIST's zip, CIFAR-10's
tar.gz) are downloaded whole, checked against the archive's MD5 before it is opened, and only
the expected members are read out of it, each a regular file of bounded size written under
netlab's own name for it (never a path from the archive, never a link); the archive is then
deleted, and a manifest of what was unpacked (:data:`MANIFEST`) lets later runs check the files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from ..errors import DataError
from .idx import read_bytes

log = logging.getLogger(__name__)

MAX_FILE_DOWNLOAD = 256 << 20  # one published gzip file (KMNIST's largest is 18 MB)
MANIFEST = ".netlab-unpacked.json"  # name -> SHA-256 of each file netlab unpacked from a verified archive
MAX_MANIFEST_BYTES = 64 << 10
MAX_ARCHIVE_MEMBERS = 100_000
TAR_SLACK = 64 << 20  # what a tar may hold besides the expected members (CIFAR-10's readme and names)
CHUNK = 1 << 16


def default_root(dataset: str) -> Path:
    """``$NETLAB_DATA/<dataset>`` when NETLAB_DATA is set, else the per-user cache folder."""
    if os.environ.get("NETLAB_DATA"):
        return Path(os.environ["NETLAB_DATA"]) / dataset
    return cache_dir(dataset)


def find_file(root: Path, name: str, subdirs=()) -> Path | None:
    """``name`` (raw or .gz) in ``root`` or in one of its ``subdirs`` (where an archive unpacks it)."""
    for folder in (root, *(root / d for d in subdirs)):
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
    return None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of the file at ``path``, read in chunks (any size, constant memory)."""
    h = hashlib.new(algorithm, usedforsecurity=False) if algorithm == "md5" else hashlib.new(algorithm)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror})") from None
    return h.hexdigest()


def cache_dir(dataset: str) -> Path:
    """netlab's own download cache for ``dataset``: the only folder netlab writes data into."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "netlab" / dataset


def locate(spec, root: Path | None, download: bool) -> Path:
    """The folder holding all the dataset's files: ``root`` (or the default), a system folder, or a fresh download."""
    names = spec.all_files()
    roots = [Path(root).expanduser()] if root else [default_root(spec.name)]
    roots += [Path(d) for d in spec.system_dirs]
    for r in roots:
        if all(find_file(r, n, spec.subdirs) for n in names):
            return r
    target = roots[0]
    missing = [n for n in names if not find_file(target, n, spec.subdirs)]
    if not download:
        raise DataError(missing_message(spec, target, missing, "downloading is off (data.download=false)"))
    if spec.archive is not None:
        fetch_archive(spec, target, missing)
    else:
        for name in missing:
            fetch(spec, name, target)
    return target


def missing_message(spec, target, missing, why):
    files = spec.all_files()
    count = {4: "four", 6: "six"}.get(len(files), str(len(files)))
    if spec.archive is not None:
        what = (f"the {count} files ({', '.join(files)}; raw or gzip, as {spec.archive.url} unpacks them, "
                f"MD5 {spec.archive.md5})")
    else:
        what = f"the {count} files (gzip or raw)"
    return (f"{spec.name}: {', '.join(missing)} not found in {target} and {why}. Put {what} in that folder, "
            f"point data.root at the folder that holds them, or set NETLAB_DATA to a folder with a "
            f"'{spec.name}' subfolder." + (f" (A download fetches {spec.download}.)" if spec.download else ""))


# ------------------------------------------------------------------------------ checksums
def check_official(spec, root: Path, name: str, path: Path, contents: bytes, official: bool,
                   differing: list | None) -> None:
    """Compare the file ``path`` (``contents`` decompressed) with the official checksum that the
    dataset has for it: the contents' SHA-256 (MNIST, Fashion-MNIST), the published gzip
    file's MD5 (KMNIST), or, for a dataset published as an archive, the manifest netlab wrote
    when it unpacked the verified archive. A mismatch in netlab's download cache (``official``)
    is an error; in a user's folder the file is the user's own data: named in ``differing`` (or
    warned about here when ``differing`` is None) and used."""
    if spec.sha256.get(name):
        matched, why = sha256(contents) == spec.sha256[name], "SHA-256 mismatch"
    elif spec.md5.get(name):
        matched, why = file_digest(path, "md5") == spec.md5[name], "MD5 of the published gzip file mismatch"
    elif spec.archive is not None:
        recorded = read_manifest(path.parent).get(path.name)
        matched = recorded is not None and file_digest(path) == recorded
        why = ("not as unpacked from the verified archive" if recorded
               else "no record of unpacking it from the verified archive")
    else:
        return  # no official checksum to compare with
    if matched:
        return
    if official:
        raise DataError(f"{path}: this file in netlab's download cache does not match the official "
                        f"{spec.name} file ({why}), so it is damaged; delete it and it will be "
                        f"downloaded again")
    if differing is None:
        log.warning("%s differs from the official %s file (%s); using it as your own data", path, spec.name, why)
    else:  # the caller says it once for all the files it reads
        differing.append(path.name)


def read_manifest(folder: Path) -> dict:
    """The manifest of files netlab unpacked into ``folder`` (empty if none, or if unreadable)."""
    path = folder / MANIFEST
    try:
        if not path.is_file() or path.stat().st_size > MAX_MANIFEST_BYTES:
            return {}
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(files, dict) else {}


def _write_manifest(folder: Path, spec, written: dict) -> None:
    files = {**read_manifest(folder), **written}
    text = json.dumps({"dataset": spec.name, "archive": spec.archive.url, "archive_md5": spec.archive.md5,
                       "files": files}, indent=1, sort_keys=True)
    _atomic_bytes(folder / MANIFEST, text.encode())


def _atomic_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------ downloads
def _offline(spec, target, missing) -> None:
    if os.environ.get("NETLAB_OFFLINE"):  # set by the test suite, or by anyone on an air-gapped machine
        raise DataError(missing_message(spec, target, missing, "downloads are off (NETLAB_OFFLINE is set)"))


def _download(url: str, folder: Path, label: str, bound: int, exact: int | None = None) -> Path:
    """``url`` into a temporary file in ``folder``, with a progress bar, at most ``bound`` bytes
    (``exact`` bytes when given): a larger size announced is refused before anything is read,
    and a download that grows past it is stopped. Nothing is left behind on failure."""
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=30) as response:
        declared = response.headers.get("Content-Length")
        total = int(declared) if declared and str(declared).isdigit() else None
        if total is not None and (total > bound or (exact is not None and total != exact)):
            raise DataError(f"{url}: the server announces {total:,} bytes; expected "
                            f"{f'{exact:,}' if exact is not None else f'at most {bound:,}'}")
        tmp = tempfile.NamedTemporaryFile(dir=folder, prefix=f".{label}.", delete=False)
        try:
            got = 0
            with tmp, tqdm(total=total or exact, unit="B", unit_scale=True, desc=label, leave=False) as bar:
                while chunk := response.read(CHUNK):
                    got += len(chunk)
                    if got > bound:
                        raise DataError(f"{url}: more than {bound:,} bytes arrived; stopped")
                    tmp.write(chunk)
                    bar.update(len(chunk))
            if exact is not None and got != exact:
                raise DataError(f"{url}: {got:,} bytes arrived; expected {exact:,}")
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    return Path(tmp.name)


def fetch(spec, name: str, target: Path) -> Path:
    """Download ``name``.gz from the first mirror that answers, checked, atomically."""
    _offline(spec, target, [name])
    target.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in spec.mirrors:
        url = mirror + name + ".gz"
        try:
            tmp = _download(url, target, name, MAX_FILE_DOWNLOAD)
            dest = target / (name + ".gz")
            if spec.sha256.get(name):
                ok = sha256(read_bytes(tmp)) == spec.sha256[name]
            elif spec.md5.get(name):
                ok = file_digest(tmp, "md5") == spec.md5[name]
            else:
                ok = True
            if not ok:
                os.unlink(tmp)
                errors.append(f"{url}: checksum mismatch")
                continue
            shutil.move(tmp, dest)
            return dest
        except (urllib.error.URLError, OSError, TimeoutError, DataError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
    raise DataError(missing_message(spec, target, [name], "it could not be downloaded (" + "; ".join(errors) + ")"))


def fetch_archive(spec, target: Path, missing=None) -> list[str]:
    """Download the dataset's archive into ``target``, check its size and MD5, and unpack the
    files that are ``missing`` (default: all) from it (:func:`unpack`); the archive is deleted."""
    archive = spec.archive
    missing = list(missing) if missing is not None else spec.all_files()
    _offline(spec, target, missing)
    target.mkdir(parents=True, exist_ok=True)
    try:
        tmp = _download(archive.url, target, archive.name, archive.max_bytes, archive.size)
    except (urllib.error.URLError, OSError, TimeoutError, DataError) as exc:
        raise DataError(missing_message(spec, target, missing, f"it could not be downloaded ({archive.url}: "
                                        f"{getattr(exc, 'reason', exc)})")) from None
    try:
        if file_digest(tmp, "md5") != archive.md5:
            raise DataError(missing_message(spec, target, missing, f"the download failed its check ({archive.url}: "
                                            f"MD5 mismatch; nothing was unpacked)"))
        return unpack(spec, tmp, target, missing, archive.name)
    finally:
        tmp.unlink(missing_ok=True)


class _Bounded:
    """A read-only stream that refuses to give more than ``limit`` bytes in all."""

    def __init__(self, raw, limit: int, name: str):
        self.raw, self.left, self.name = raw, limit, name

    def read(self, n: int = -1) -> bytes:
        want = self.left + 1 if n is None or n < 0 else min(n, self.left + 1)
        data = self.raw.read(want)
        self.left -= len(data)
        if self.left < 0:
            raise DataError(f"{self.name}: unpacks to more than its files can take; refused")
        return data


def unpack(spec, path: Path, target: Path, wanted=None, shown: str | None = None) -> list[str]:
    """Read the expected members of the archive at ``path`` (checked by the caller) and write
    those whose files are ``wanted`` into ``target``, under netlab's names for them: each must be
    a regular file (not a link, device or folder) of at most ``member_bytes``, present once.
    Nothing else in the archive is ever written. Returns the names written."""
    archive = spec.archive
    shown = shown or str(path)
    wanted = set(spec.all_files() if wanted is None else wanted)
    members = {m: name for m, name in archive.members.items()
               if name in wanted or name.removesuffix(".gz") in wanted}
    try:
        if archive.name.endswith(".zip"):
            contents = _zip_members(path, members, archive.member_bytes, shown)
        else:
            bound = len(archive.members) * archive.member_bytes + TAR_SLACK
            contents = _tar_members(path, members, archive.member_bytes, bound, shown)
    except DataError:
        raise
    except (OSError, EOFError, zlib.error, tarfile.TarError, zipfile.BadZipFile, RuntimeError,
            NotImplementedError, ValueError) as exc:
        raise DataError(f"{shown}: cannot unpack it ({type(exc).__name__}: {exc})") from None
    absent = sorted(set(members) - set(contents))
    if absent:
        raise DataError(f"{shown}: the archive lacks {', '.join(absent)}; nothing was unpacked")
    written = {}
    for member, data in contents.items():
        name = members[member]
        _atomic_bytes(target / name, data)
        written[name] = sha256(data)
    _write_manifest(target, spec, written)
    return sorted(written)


def _refuse_member(shown, member, why):
    return DataError(f"{shown}: its member {member!r} {why}; refusing the archive (nothing was unpacked)")


def _zip_members(path: Path, members: dict, bound: int, shown: str) -> dict:
    out = {}
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_ARCHIVE_MEMBERS:
            raise DataError(f"{shown}: {len(infos):,} members; refusing more than {MAX_ARCHIVE_MEMBERS:,}")
        for member in members:
            found = [i for i in infos if i.filename == member]
            if not found:
                continue
            if len(found) > 1:
                raise _refuse_member(shown, member, "appears more than once")
            info = found[0]
            mode = info.external_attr >> 16
            if info.is_dir() or stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # a link, device, folder
                raise _refuse_member(shown, member, "is a link or not a regular file")
            if info.file_size > bound:
                raise _refuse_member(shown, member, f"claims {info.file_size:,} bytes (at most {bound:,})")
            with zf.open(info) as f:
                data = f.read(bound + 1)
            if len(data) > bound:
                raise _refuse_member(shown, member, f"holds more than {bound:,} bytes")
            out[member] = data
    return out


def _tar_members(path: Path, members: dict, bound: int, total: int, shown: str) -> dict:
    """The members of a tar.gz read as a stream (bounded in all), never extracted by tarfile."""
    out = {}
    with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz, \
            tarfile.open(fileobj=_Bounded(gz, total, shown), mode="r|") as tf:
        count = 0
        for info in tf:
            count += 1
            if count > MAX_ARCHIVE_MEMBERS:
                raise DataError(f"{shown}: more than {MAX_ARCHIVE_MEMBERS:,} members; refused")
            if info.name not in members:
                continue  # never written: other files, and anything with a path or a link of its own
            if info.name in out:
                raise _refuse_member(shown, info.name, "appears more than once")
            if not info.isreg():
                raise _refuse_member(shown, info.name, "is a link or not a regular file")
            if info.size > bound:
                raise _refuse_member(shown, info.name, f"claims {info.size:,} bytes (at most {bound:,})")
            f = tf.extractfile(info)
            data = f.read(info.size) if f is not None else b""
            if len(data) != info.size:
                raise _refuse_member(shown, info.name, "is truncated")
            out[info.name] = data  # read on to the end: a second copy of a member refuses the archive
    return out
