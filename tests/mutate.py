"""Mutation testing: do the tests notice when the code is broken on purpose?

Run from anywhere, with the project's Python (stdlib only)::

    python tests/mutate.py                                  # every mutation, whole tests/ directory
    python tests/mutate.py --module netlab/optim.py --tests tests/test_optim.py
    python tests/mutate.py --list                           # the table, and which entries are stale
    python tests/mutate.py -k adam-no-bias-m -k onecycle    # some entries (id, or part of one)

``MUTATIONS`` below is the table. Each entry is ``Mutation(id, file, old, new, what)``: in
``file`` (relative to the repository root) the text ``old``, which must occur exactly once,
is replaced by ``new`` -- a plausible bug, described in ``what``. For every selected entry the
runner copies the working tree (tracked files plus untracked files git does not ignore, as
they are on disk now) into a temporary directory, applies the replacement there only, and runs
``python -m pytest -x -q -p no:cacheprovider -m "not slow" <tests>`` in that copy with
``PYTHONPATH`` set to it. The working tree itself is never written to.

Outcomes, one line per mutation and a summary line:
  CAUGHT    pytest exited 1: some test failed, as it should.
  SURVIVED  pytest exited 0: every test passed with the bug in place; a test is missing.
  STALE     ``old`` does not occur exactly once in ``file`` (the code moved on): fix the entry.
  ERROR     any other exit status (collection error, no tests collected, a mutation that does
            not import); the end of pytest's output is printed below the line.
  TIMEOUT   pytest ran longer than --timeout seconds.
Exit status: 1 if any mutation survived; otherwise 2 if any was STALE, ERROR or TIMEOUT; else 0.

To add a mutation, append an entry: keep ``old`` short but unique in its file, and ``new``
valid Python (a mutant that does not import is an ERROR, not a catch).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple


class Mutation(NamedTuple):
    id: str
    file: str
    old: str
    new: str
    what: str


MUTATIONS: list[Mutation] = [
    # ------------------------------------------------------------------ netlab/optim.py
    Mutation("adam-no-bias-m", "netlab/optim.py",
             "(lr / (1 - b1 ** t)) * (m / denom)", "lr * (m / denom)",
             "Adam without bias correction of the first moment m"),
    Mutation("adam-no-bias-v", "netlab/optim.py",
             "xp.sqrt(v) * (1.0 / math.sqrt(1 - b2 ** t)) + self.eps", "xp.sqrt(v) + self.eps",
             "Adam without bias correction of the second moment v"),
    Mutation("weight-decay-ignored", "netlab/optim.py",
             "g = g + self.weight_decay * p", "g = g",
             "weight_decay ignored by every optimizer"),
    Mutation("nesterov-as-momentum", "netlab/optim.py",
             "g = g + self.momentum * buf if self.nesterov else buf", "g = buf",
             "SGD nesterov=True treated as plain heavy-ball momentum"),
    Mutation("rmsprop-no-momentum", "netlab/optim.py",
             "            step = buf\n", "            step = step\n",
             "RMSprop momentum ignored (buffer kept but not used)"),
    Mutation("cosine-warmup-off-by-one", "netlab/optim.py",
             "base_lr * (step + 1) / self.warmup_steps", "base_lr * step / self.warmup_steps",
             "Cosine warm-up uses step instead of step + 1 (starts at 0)"),
    Mutation("cosine-min-lr-ignored", "netlab/optim.py",
             "return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * t))",
             "return 0.5 * base_lr * (1.0 + math.cos(math.pi * t))",
             "Cosine decays to 0 whatever min_lr"),
    Mutation("onecycle-peak-off-by-one", "netlab/optim.py",
             "peak = float(self.pct_start * self.total_steps) - 1",
             "peak = float(self.pct_start * self.total_steps)",
             "OneCycle peak one step late (pct_start*total, not -1)"),
]

_ids = [m.id for m in MUTATIONS]
assert len(_ids) == len(set(_ids)), f"duplicate mutation ids: {sorted(i for i in _ids if _ids.count(i) > 1)}"

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- helpers
def repo_files(root: Path) -> list[str]:
    """Tracked files and untracked files git does not ignore, relative to ``root``."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, check=True, capture_output=True).stdout
    return sorted({f for f in out.decode().split("\0") if f})


def copy_tree(root: Path, files: list[str], dest: Path) -> None:
    for rel in files:
        src = root / rel
        if not src.exists() and not src.is_symlink():  # deleted in the working tree
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir() and not src.is_symlink():  # a submodule
            shutil.copytree(src, target, symlinks=True)
        else:
            shutil.copy2(src, target, follow_symlinks=False)


def occurrences(root: Path, m: Mutation) -> int:
    path = root / m.file
    if not path.is_file():
        return 0
    return path.read_text(encoding="utf-8").count(m.old)


def normalise(root: Path, file: str) -> str:
    p = Path(file)
    p = p.resolve() if p.is_absolute() else (Path.cwd() / p).resolve()
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return Path(file).as_posix().removeprefix("./")


def select(mutations, modules, keys):
    chosen = mutations
    if modules:
        chosen = [m for m in chosen if m.file in modules]
    if keys:
        chosen = [m for m in chosen if any(k == m.id or k in m.id for k in keys)]
    return chosen


def run_pytest(copy: Path, tests: list[str], timeout: float):
    """(status, seconds, output) of pytest in ``copy``."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", *tests]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # pytest and anything it started, nothing else
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
        return "TIMEOUT", time.perf_counter() - t0, out
    seconds = time.perf_counter() - t0
    status = {0: "SURVIVED", 1: "CAUGHT"}.get(proc.returncode, "ERROR")
    if status == "ERROR":
        out = f"pytest exit status {proc.returncode}\n{out}"
    return status, seconds, out


def imports_from(copy: Path, file: str) -> str | None:
    """An error message if the top-level package of ``file`` would not be imported from ``copy``
    (an installed copy shadowing PYTHONPATH would make every mutant survive)."""
    parts = Path(file).parts
    if not file.endswith(".py") or len(parts) < 2 or not (copy / parts[0] / "__init__.py").is_file():
        return None
    code = ("import importlib.util, sys; s = importlib.util.find_spec(sys.argv[1]); "
            "print(s.origin if s else '')")
    env = dict(os.environ, PYTHONPATH=str(copy))
    res = subprocess.run([sys.executable, "-c", code, parts[0]], cwd=copy, env=env, capture_output=True, text=True)
    origin = res.stdout.strip()
    if not origin or not Path(origin).resolve().is_relative_to(copy.resolve()):
        return f"package {parts[0]!r} is imported from {origin or '(nowhere)'!r}, not from the copy"
    return None


# -------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--module", action="append", default=[],
                    help="only mutations of this file (repeatable), e.g. netlab/optim.py")
    ap.add_argument("-k", dest="keys", action="append", default=[],
                    help="only the mutation with this id, or whose id contains it (repeatable)")
    ap.add_argument("--tests", default="tests",
                    help='what pytest runs, one string split like a shell line (default: "tests")')
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per mutation (default 600)")
    ap.add_argument("--list", action="store_true", help="print the selected mutations and exit")
    args = ap.parse_args(argv)

    modules = {normalise(ROOT, m) for m in args.module}
    chosen = select(MUTATIONS, modules, args.keys)
    if not chosen:
        print("no mutation matches --module/-k", file=sys.stderr)
        return 2
    width = max(len(m.id) for m in chosen)
    fwidth = max(len(m.file) for m in chosen)

    if args.list:
        for m in chosen:
            n = occurrences(ROOT, m)
            state = "ok" if n == 1 else f"STALE (found {n} times)"
            print(f"{m.id:<{width}}  {m.file:<{fwidth}}  {state:<8}  {m.what}")
        return 0

    tests = shlex.split(args.tests)
    files = repo_files(ROOT)
    counts: dict[str, int] = {}
    total_t0 = time.perf_counter()
    for m in chosen:
        n = occurrences(ROOT, m)
        details = ""
        if n != 1:
            status, seconds = "STALE", 0.0
            details = f"`old` found {n} times in {m.file}, expected exactly once"
        else:
            with tempfile.TemporaryDirectory(prefix=f"mutate-{m.id}-") as tmp:
                copy = Path(tmp)
                copy_tree(ROOT, files, copy)
                target = copy / m.file
                text = target.read_text(encoding="utf-8")
                target.write_text(text.replace(m.old, m.new, 1), encoding="utf-8")
                problem = imports_from(copy, m.file)
                if problem:
                    status, seconds, details = "ERROR", 0.0, problem
                else:
                    status, seconds, out = run_pytest(copy, tests, args.timeout)
                    if status in ("ERROR", "TIMEOUT"):
                        details = "\n".join(out.rstrip().splitlines()[-15:])
                    if status == "TIMEOUT":
                        details = f"killed after --timeout {args.timeout:g}s\n{details}".rstrip()
        counts[status] = counts.get(status, 0) + 1
        print(f"{m.id:<{width}}  {m.file:<{fwidth}}  {m.what:<60}  {status:<8}  {seconds:6.1f}s", flush=True)
        if details:
            print("    " + details.replace("\n", "\n    "), flush=True)

    order = ["CAUGHT", "SURVIVED", "STALE", "ERROR", "TIMEOUT"]
    summary = ", ".join(f"{counts.get(s, 0)} {s.lower()}" for s in order if counts.get(s, 0) or s in order[:2])
    print(f"{len(chosen)} mutations: {summary} in {time.perf_counter() - total_t0:.1f}s")
    if counts.get("SURVIVED"):
        return 1
    if any(counts.get(s) for s in ("STALE", "ERROR", "TIMEOUT")):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
