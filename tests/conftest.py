"""Shared fixtures and helpers: the ``xp`` namespace over every backend this machine has, a
per-test seeded generator, the small-data training config, the one way tests start a netlab
command (:func:`cli` and the :func:`spawn` fixture), readiness waits, and the small trained run,
digit image and checkpoint tampering that several test files use."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netlab import backend, checkpoint
from netlab.config import compose, validate

import forkserver

# Tests never use the network: a download they trigger by mistake fails at once, in this process
# and in every command they start.
os.environ["NETLAB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "mnist-small"  # the first 600 training and 200 test digits of MNIST
# A training run on the fixture that takes a second or two.
SMALL = (f"data.root={FIXTURE}", "data.verify=false", "data.download=false", "train.batch_size=32",
         "train.eval_every=5", "train.checkpoint_every=5", "train.eval_batch_size=100", "train.progress=false")
KiB, MiB = 1 << 10, 1 << 20


def _gpu_available() -> bool:
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        backend.namespace("cupy")
    except backend.BackendError:
        return False
    return True


HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_GPU = _gpu_available()

BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("array_api_strict", id="array_api_strict"),
    pytest.param("torch", id="torch", marks=pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")),
    pytest.param("cupy", id="cupy", marks=[pytest.mark.gpu, pytest.mark.skipif(not HAS_GPU, reason="no GPU")]),
]


@pytest.fixture(params=BACKENDS)
def xp(request):
    return backend.namespace(request.param)


@pytest.fixture
def rng(request):
    """A NumPy generator seeded from the test's id: inputs do not depend on which tests ran before."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def small_config(*overrides):
    """The validated config of a small training run on the fixture, plus ``overrides``."""
    return validate(compose(*SMALL, *overrides))


# ----------------------------------------------------------------- netlab commands, as a user runs them
def command_env(extra: dict | None = None) -> dict[str, str]:
    """The environment of every netlab command a test starts: this process's, with
    PYTHONPATH=ROOT (this working tree, never an installed copy) and NETLAB_OFFLINE=1, plus
    ``extra`` (a value of None removes that variable)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), NETLAB_OFFLINE="1")
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def _command(args) -> list[str]:
    return [sys.executable, "-m", *(str(a) for a in args)]


_FORKS = None


def cli(*args, cwd, timeout=300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m ARGS`` (a netlab command) in ``cwd`` and wait for it; returns the
    CompletedProcess, its stdout and stderr as text. ``env``: variables to add (see
    :func:`command_env`). Past ``timeout`` seconds the command is killed and the test fails.

    The command is forked from a server that has imported netlab already (tests/forkserver.py:
    the same process a user gets, a second sooner) unless its environment differs from the
    server's; NETLAB_TEST_FORK=0 starts every command as a fresh ``python -m``."""
    global _FORKS
    environment = command_env(env)
    if os.environ.get("NETLAB_TEST_FORK", "1") != "0":
        if _FORKS is None:
            _FORKS = forkserver.Client(command_env())
        done = _FORKS.run([str(a) for a in args], cwd, environment, timeout)
        if done is not None:
            return done
    return subprocess.run(_command(args), cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=timeout)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """End ``proc`` if it still runs (SIGTERM, then SIGKILL after ``grace`` seconds), reap it and
    close its pipes."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture
def spawn():
    """Start a netlab command without waiting: ``spawn(*args, cwd=..., env=..., **popen_kwargs)``
    runs ``python -m ARGS`` in the environment of :func:`command_env` and returns its Popen
    (stdout and stderr go nowhere unless ``popen_kwargs`` say otherwise). Whatever a test
    does, every command it started is stopped and reaped when it ends: no test leaves a
    process running."""
    started: list[subprocess.Popen] = []

    def start(*args, cwd, env: dict | None = None, **popen_kwargs) -> subprocess.Popen:
        popen_kwargs.setdefault("stdout", subprocess.DEVNULL)
        popen_kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(_command(args), cwd=cwd, env=command_env(env), **popen_kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop(proc)


def wait_for(condition, what: str, timeout: float = 120.0, interval: float = 0.02, proc=None):
    """Poll ``condition()`` until it gives something true, and return that; fail the test
    saying it waited for ``what`` after ``timeout`` seconds, or at once when ``proc`` (a
    Popen the condition depends on) has ended first."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            value = condition()  # it may have come true just before the process ended
            if value:
                return value
            pytest.fail(f"the command ended (exit status {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler for the test: a shell without job control starts background
    jobs (CI launched with &) with SIGINT ignored, and netlab rightly leaves that alone."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


# ----------------------------------------------------------------------------- a small trained run
def train(out: Path, *overrides) -> dict:
    """Train a small run on the fixture into ``out`` (created if need be); returns its results."""
    from netlab import training

    out.mkdir(parents=True, exist_ok=True)
    return training.Trainer(small_config(*overrides), out).fit()


def fit(tmp_path, *overrides, name="run"):
    """Train on the fixture into tmp_path/name (a new folder); returns (results, folder)."""
    from netlab import training

    out = tmp_path / name
    out.mkdir()
    trainer = training.Trainer(small_config(*overrides), out)
    return trainer.fit(), out


@pytest.fixture(scope="session")
def run(tmp_path_factory) -> Path:
    """A tiny finished run on the fixture: its folder holds last.npz, best.npz and results.json.
    Shared by every test that asks for it: copy what you change (see :func:`tampered`)."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    train(out, "train.max_steps=6")
    return out


def interrupt_at(trainer, step):
    """``trainer``, set to be interrupted (a KeyboardInterrupt, as Ctrl-C) before step ``step``'s update."""
    real = trainer.opt.step

    def stepped():
        if trainer.at.step == step:
            raise KeyboardInterrupt
        real()

    trainer.opt.step = stepped
    return trainer


def rows(out, keep=("step", "split", "loss", "accuracy", "lr")):
    """The run's metrics.csv as tuples of the ``keep`` columns."""
    with open(out / "metrics.csv") as f:
        return [tuple(r[k] for k in keep) for r in csv.DictReader(f)]


def weights(out, which="last"):
    """The run's ``which`` checkpoint, read."""
    return checkpoint.read(out / "checkpoints" / f"{which}.npz")


def tampered(run: Path, tmp_path: Path, change) -> Path:
    """A copy of the run's last.npz with ``change(arrays)`` applied, written as plain np.savez."""
    with np.load(run / "checkpoints" / "last.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    path = tmp_path / "tampered.npz"
    np.savez(path, **arrays)
    return path


def fixture_copy(folder: Path) -> Path:
    """A copy of the MNIST fixture's files in ``folder`` (created), to spoil at will."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in FIXTURE.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


def exported(run):
    """The run's best.safetensors, written by the export command."""
    pytest.importorskip("safetensors")
    if not (run / "best.safetensors").exists():
        done = cli("netlab.export", f"checkpoint={run}", "format=safetensors", cwd=run)
        assert done.returncode == 0, done.stderr
    return run / "best.safetensors"


def plain_safetensors(run, path):
    """The run's weights as safetensors with no metadata at all, as another program might write them."""
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    save_file(checkpoint.read(run, "best").model, str(path))
    return path


# ------------------------------------------------------------------------- commands run in this process
def in_process(app, config_name: str, *overrides, capsys):
    """Run a command's task in this process; returns (exit status, the stderr it printed)."""
    cfg = compose(*overrides, config_name=config_name)
    with pytest.raises(SystemExit) as stop_:
        app(cfg)
    return stop_.value.code, capsys.readouterr().err


def assert_one_paragraph(err: str, status: int, expected: int = 2):
    """Exit status ``expected`` and one ``netlab: error:`` paragraph, never a traceback."""
    assert status == expected, err
    lines = [line for line in err.splitlines() if line.startswith("netlab: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err


# ----------------------------------------------------------------------------------- a user's digits
def digit_image(dark_on_light=False, size=(120, 100)) -> np.ndarray:
    """A '7' as a float image in [0, 1] (light stroke on black unless dark_on_light)."""
    a = np.zeros(size[::-1])
    h, w = a.shape
    a[int(0.2 * h):int(0.27 * h), int(0.25 * w):int(0.75 * w)] = 1.0
    for i in range(int(0.27 * h), int(0.8 * h)):  # the diagonal
        x = int(0.75 * w - (i - 0.27 * h) * 0.35)
        a[i, x - 4:x + 4] = 1.0
    return 1.0 - a if dark_on_light else a


@pytest.fixture(scope="session")
def digit_png(tmp_path_factory) -> Path:
    """A dark '7' on white, as a PNG file."""
    path = tmp_path_factory.mktemp("digit") / "seven.png"
    Image.fromarray((digit_image(dark_on_light=True) * 255).astype(np.uint8)).save(path)
    return path


def drawn(image: np.ndarray, dark_on_light: bool) -> Image.Image:
    """An MNIST digit as a user would draw it: large, off-centre, either polarity."""
    background = 255 if dark_on_light else 0
    ink = 255 - image if dark_on_light else image
    paper = Image.new("L", (300, 220), background)
    paper.paste(Image.fromarray(ink).resize((168, 168), Image.Resampling.BICUBIC), (100, 20))
    return paper


# ------------------------------------------------------------------------------------------ sweeps
def make_sweep(root: Path, jobs: dict) -> Path:
    """A sweep folder of jobs ``{folder name: results.json text, or None for no results}``."""
    for name, results in jobs.items():
        job = root / name
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- optimizer.lr={name[-1]}\n")
        if results is not None:
            (job / "results.json").write_text(results)
    return root


GOOD = json.dumps({"val_accuracy": 0.9, "test_accuracy": 0.91, "best_val_accuracy": 0.92, "train_time_s": 3.0,
                   "images_per_s": 100.0, "epochs": 1, "steps": 10})


def as_xp(xp, a, dtype=None):
    """A NumPy array (or nested list) in namespace ``xp``, float64 by default for floats."""
    a = np.asarray(a)
    if dtype is None and a.dtype.kind == "f":
        dtype = xp.float64
    return backend.from_numpy(xp, a, dtype=dtype)


def numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of scalar ``f`` at float64 ``x`` (modified in place, restored)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = f()
        flat[i] = old - eps
        lo = f()
        flat[i] = old
        gflat[i] = (hi - lo) / (2 * eps)
    return grad


def browser():
    """Headless Chromium driven by Selenium (the page's tests), or a skip saying what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver")
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("no Chromium and chromedriver here (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400",
                 "--disable-gpu"):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(driver_path), options=options)
