"""Where the apps write, and how: atomically, so a crash leaves the old file or the new one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import NetlabError, OutputError


def output_dir() -> Path:
    """The running Hydra app's output folder (``hydra.run.dir``, or the job's sweep subfolder)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def atomic_write(path, write) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, flush it to disk and rename it
    over ``path``: a crash at any moment leaves either the old file or the new one, and no
    temporary file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _refused(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # as any file the user writes (mkstemp makes 0600)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, NetlabError):
            raise _refused(path, exc) from None
        raise
    return path


def _umask() -> int:
    """This process's umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _refused(path: Path, exc: OSError) -> OutputError:
    error = OutputError(exc.errno, f"cannot write {path}: {exc.strerror or exc}. Files saved before are "
                                   f"intact (outputs are replaced atomically); free space or choose a "
                                   f"writable place and run again")
    error.filename, error.reason = str(path), exc.strerror or str(exc)
    return error


MAX_TEXT_BYTES = 16 << 20  # a results.json, a metrics.csv or a sweep record is far smaller


def read_text(path, limit: int = MAX_TEXT_BYTES) -> str:
    """The text of a small file that netlab wrote and that may have been tampered with: a
    regular file only (a FIFO or device named results.json would block or never end), at most
    ``limit`` bytes, UTF-8. OSError or ValueError otherwise, for the caller to report."""
    import stat

    path = Path(path)
    with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"{path} is not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit:,} bytes")
    return data.decode("utf-8")


# What a run folder holds that netlab itself writes, and that nothing else may write over.
RUN_FILES = ("results.json", "metrics.csv", "curves.png", "train.log", ".netlab.lock", "failure.json")
RUN_FOLDERS = ("checkpoints", ".hydra")  # and the folders it keeps for itself


def check_output(path, what: str, inputs=()) -> Path:
    """The one rule for every path a user chooses for an output (``export out=``, ``evaluate
    out=``'s files, a logger's file): not a folder or a special file, not one of the files in
    ``inputs``, and not a file that a run folder holds for itself (its checkpoints, results,
    metrics, log, record), so an output can never destroy what a run needs to be resumed or
    read. Returns the path; a ConfigError says what is wrong."""
    from .errors import ConfigError

    path = Path(path).expanduser()
    resolved = path.resolve()
    if path.exists() and not path.is_file():
        raise ConfigError(f"{what}={path} is {'a folder' if path.is_dir() else 'not a regular file'}; "
                          f"give a file name")
    if any(resolved == Path(i).expanduser().resolve() for i in inputs):
        raise ConfigError(f"{what}={path} is the file it is made from; give another file name")
    parent = resolved.parent
    run = parent.parent if parent.name in ("checkpoints", ".hydra") else parent
    holds_run = any((run / name).exists() for name in RunFolder.HOLDS_A_RUN) or (run / ".hydra").is_dir()
    if holds_run and (parent.name in RUN_FOLDERS or resolved.name in RUN_FILES):
        raise ConfigError(f"{what}={path} is one of the run's own files in {run}; writing over it would lose "
                          f"what the run needs to be read or resumed. Give another file name")
    return path


def write_text(path, text: str) -> Path:
    """``text`` as UTF-8, atomically."""
    return atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path, obj) -> Path:
    """``obj`` as indented JSON, atomically; NaN and infinity are refused (they are not JSON)."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


class RunFolder:
    """Exclusive use of a run's output folder for as long as the run lives.

    A second run pointed at the same folder (two runs started in the same instant, or a
    copied ``hydra.run.dir``) is refused instead of interleaving ``metrics.csv``, and a folder
    that already holds a run is never written over unless the run continues it. Both checks
    come before anything is written into the folder. The lock is an ``flock`` on
    ``.netlab.lock``: the kernel drops it when the process dies, even by kill -9.

    :meth:`claim` takes the folder early (the command line does, before Hydra writes its record
    into it); a ``RunFolder`` entered later in the same process then adopts that lock.
    """

    HOLDS_A_RUN = ("results.json", "checkpoints/last.npz", "checkpoints/best.npz")
    _held: dict = {}  # resolved folder -> the open lock file this process holds

    def __init__(self, path, continuing=None):
        self.path = Path(path)
        self.continuing = Path(continuing).expanduser().resolve() if continuing else None
        self._file = None

    @classmethod
    def claim(cls, path, continuing=None) -> None:
        """Take ``path`` for this process now, with the checks of :meth:`__enter__`; the lock is
        kept until a ``RunFolder`` of the same path is entered and left."""
        folder = cls(path, continuing)
        folder._keep = True
        folder.__enter__()

    def __enter__(self) -> "RunFolder":
        import fcntl

        from .errors import ConfigError

        key = self.path.resolve()
        if key in self._held:  # claimed earlier by this process
            self._file = self._held.pop(key)
            return self
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path} is a file, not a folder; give the run a folder of its own "
                              f"(hydra.run.dir=...)")
        self._refuse_if_it_holds_a_run()
        self.path.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path / ".netlab.lock", "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise ConfigError(f"another netlab run is writing into {self.path}; give this run its own "
                              f"folder (hydra.run.dir=...)") from None
        try:
            self._refuse_if_it_holds_a_run()  # it may have finished while this run waited for the lock
        except ConfigError:
            self.__exit__()
            raise
        if self._keep:
            self._held[key] = self._file
        return self

    _keep = False

    def _refuse_if_it_holds_a_run(self) -> None:
        from .errors import ConfigError

        held = [name for name in self.HOLDS_A_RUN if (self.path / name).exists()]
        resumes_here = self.continuing is not None and self.path.resolve() in (self.continuing,
                                                                               self.continuing.parent.parent)
        if held and not resumes_here:
            raise ConfigError(f"{self.path} already holds a run ({', '.join(held)}); netlab does not write over "
                              f"it. Choose another folder (hydra.run.dir=...), or continue that run with "
                              f"train.resume={self.path}")

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None


HYDRA_BOOKKEEPING = {".hydra", ".netlab.lock"}


def discard_if_bare(path, log_name: str) -> bool:
    """Remove the run folder ``path`` when it holds nothing but Hydra's bookkeeping (``.hydra/``,
    the job's log) and netlab's lock: a run refused before its first step leaves no empty
    folder behind. Anything else in it, and the folder stays. Returns True if removed."""
    import shutil

    path = Path(path)
    if not path.is_dir() or any(p.name not in HYDRA_BOOKKEEPING | {log_name} for p in path.iterdir()):
        return False
    shutil.rmtree(path, ignore_errors=True)
    try:
        path.parent.rmdir()  # the date folder, if this was its only run
    except OSError:
        pass
    return True
