"""netlab as an installed package: what the wheel holds, one version, each command's --help,
tab completion in a real bash, and Hydra's refusals said as netlab's one paragraph."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import netlab
from conftest import FIXTURE, ROOT, cli

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_wheel_lists_every_package_of_the_tree():
    """pyproject.toml names the packages (conf/ becomes netlab.conf): a new subpackage of
    netlab/ that is not named there would be missing from every installed copy."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    tree = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "netlab").rglob("__init__.py")}
    tree |= {"netlab.conf"} | {f"netlab.conf.{p.name}" for p in (ROOT / "conf").iterdir() if p.is_dir()}
    assert listed == tree


def test_one_version_number():
    version = PYPROJECT["project"]["version"]
    assert netlab.__version__ == version  # read from the installed metadata, which pyproject.toml wrote
    assert f"- {version}:" in (ROOT / "README.md").read_text()  # the changelog names it


@pytest.mark.slow
def test_the_wheel_carries_the_configs_and_the_page(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("netlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for conf in (ROOT / "conf").rglob("*.yaml"):
        assert f"netlab/conf/{conf.relative_to(ROOT / 'conf')}" in names
    assert {"netlab/web/index.html", "netlab/web/app.js", "netlab/web/style.css"} <= names
    assert not any(n.startswith(("tests/", "conf/", "experiments/")) for n in names)


@pytest.mark.parametrize("command,own,foreign", [
    ("train", ["train.epochs", "optimizer.lr", "data.augment.rotate_p", "seed"], ["checkpoint (default", "split"]),
    ("evaluate", ["checkpoint", "split", "batch_size", "data.root", "backend.threads"], ["train.epochs", "optimizer"]),
    ("predict", ["image", "top", "json", "mean", "std"], ["train.epochs", "split"]),
    ("export", ["format", "out", "verify"], ["train.epochs", "image"]),
    ("serve", ["host", "port", "checkpoint"], ["train.epochs", "image"]),
    ("bench", ["mode", "batch_sizes", "recipe", "runs"], ["train.epochs", "image"]),
])
def test_each_commands_help_describes_its_own_keys(tmp_path, command, own, foreign):
    done = cli(f"netlab.{command}", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    keys = done.stdout.split("== Keys (key=value) ==")[1].split("== This run's config ==")[0]
    groups = done.stdout.split("== Groups (group=option) ==")[1].split("== Keys")[0]
    for key in own:
        assert f"  {key}" in keys, key
    for key in foreign:
        assert f"  {key}" not in keys, key
    if command != "train":
        assert "experiment" not in groups and "optimizer" not in groups and "backend: " in groups
    assert not list(tmp_path.iterdir())  # --help writes nothing


def _completions(line: str, tmp_path: Path) -> list[str]:
    """What bash offers after ``line`` with netlab-train's completion installed, as a user's shell does."""
    script = f"""
set -e
eval "$(netlab-train -sc install=bash)"
COMP_LINE={line!r}
COMP_POINT=${{#COMP_LINE}}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
hydra_bash_completion
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(ROOT))
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None or not (Path(sys.executable).parent / "netlab-train").exists(),
                    reason="needs bash and the netlab-train console script (pip install -e .)")
@pytest.mark.parametrize("line,offered", [
    ("netlab-train ", ["model=", "experiment=", "sweep=", "train.", "seed=", "optimizer=", "backend="]),
    ("netlab-train model=", ["model=seed_cnn", "model=lenet5", "model=bn_cnn"]),
    ("netlab-train experiment=study_", ["experiment=study_lr", "experiment=study_batchnorm"]),
    ("netlab-train sweep=", ["sweep=joblib", "sweep=seeds"]),
    ("netlab-train train.", ["train.epochs=", "train.batch_size=", "train.resume="]),
    ("netlab-train optimizer=adam optimizer.", ["optimizer.lr=", "optimizer.betas.", "optimizer.eps="]),
    ("netlab-train se", ["seed="]),
])
def test_tab_completion_in_bash_completes_every_group_option_and_key(tmp_path, line, offered):
    """Run in an empty folder outside the clone, as an installed user's shell would."""
    got = _completions(line, tmp_path)
    for word in offered:
        assert word in got, (word, got)


# ------------------------------------------------------------ Hydra's refusals, in netlab's words
REFUSALS = [
    # (command, arguments, what the one paragraph says)
    ("train", ["backend=tpu"], "unknown option backend=tpu; choose one of: array_api_strict, cupy, numpy, torch"),
    ("train", ["logger=nope"], "unknown option logger=nope; choose one of: csv, mlflow, tensorboard"),
    ("train", ["model=nope"], "unknown option model=nope; choose one of: bn_cnn, "),
    ("train", ["optimizer.lr=fast"], "optimizer.lr=fast: optimizer.lr must be a number, not 'fast'"),
    ("train", ["train.epochs=two"], "train.epochs=two: train.epochs must be an integer, not 'two'"),
    ("train", ["train.progress=maybe"], "train.progress must be true or false"),
    ("train", ["train.epoch=3"], "unknown setting train.epoch; did you mean train.epochs?"),
    ("train", ["optimizr.lr=1"], "unknown setting optimizr.lr; did you mean optimizer.lr?"),
    ("train", ["seed=null"], "seed=null: seed needs a value; it cannot be null"),
    ("train", ["train..epochs=1"], "cannot read the override 'train..epochs=1' at '.'"),
    ("train", ["hydra.run.dir={tmp}/a-file"], "is a file, not a folder"),
    ("evaluate", ["checkpoint={tmp}", "splt=val"], "unknown setting splt; did you mean split?"),
    ("evaluate", ["checkpoint={tmp}", "backend=gpu"], "unknown option backend=gpu; choose one of"),
    ("predict", ["checkpoint={tmp}", "image=dígito.png"], "cannot read the override 'image=dígito.png' at 'í'"),
    ("predict", ["checkpoint={tmp}", "image=x.png", "top=three"], "top=three: top must be an integer"),
    ("export", ["checkpoint={tmp}", "formt=onnx"], "unknown setting formt; did you mean format?"),
    ("serve", ["checkpoint={tmp}", "port=high"], "port=high: port must be an integer"),
    ("bench", ["mod=e2e"], "unknown setting mod; did you mean mode?"),
    ("train", ["--cfg", "everything"], "argument --cfg/-c: invalid choice: 'everything'"),
    ("train", ["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
]


@pytest.mark.parametrize("command,args,message", REFUSALS, ids=[" ".join(r[1]) for r in REFUSALS])
def test_hydras_refusals_are_one_netlab_paragraph(tmp_path, command, args, message):
    (tmp_path / "a-file").write_text("not a folder")
    before = sorted(p.name for p in tmp_path.iterdir())
    done = cli(f"netlab.{command}", *(a.format(tmp=tmp_path) for a in args), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert err.startswith("netlab: error: ") and "\n" not in err and "Traceback" not in err, err
    assert message in err, err
    assert "search path" not in err and "HYDRA_FULL_ERROR" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_a_model_file_with_a_mapping_of_layers_is_one_paragraph(tmp_path):
    conf = tmp_path / "conf" / "model"
    conf.mkdir(parents=True)
    (conf / "odd.yaml").write_text("name: odd\nlayers:\n  conv: {out: 4}\n  linear: 10\n")
    done = cli("netlab.train", f"--config-dir={tmp_path / 'conf'}", "model=odd", f"data.root={FIXTURE}",
               cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("netlab: error: ") and "Traceback" not in done.stderr
    assert "model.layers" in done.stderr or "layers" in done.stderr
