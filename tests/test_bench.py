"""The bench runs (smoke mode: one tiny batch, one repeat; nothing about speed is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "mnist-small"


def bench(tmp_path, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "netlab.bench", *args, f"hydra.run.dir={tmp_path}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((tmp_path / "bench.json").read_text()), done.stdout


def test_step_mode_smoke(tmp_path):
    report, out = bench(tmp_path, "smoke=true", "repeats=1", "steps=1", "warmup=1", "threads=1")
    (result,) = report["results"]
    assert result["batch_size"] == 2 and result["netlab"]["images_per_s"] > 0
    assert len(result["layers"]) == 11 and "netlab img/s" in out
    if report["torch_version"]:
        assert result["torch"]["images_per_s"] > 0 and result["ratio"] > 0


def test_e2e_mode_smoke(tmp_path):
    """A recipe preset, trained by netlab and (when installed) by PyTorch on the same batches."""
    report, out = bench(tmp_path, "mode=e2e", "recipe=fast99", "runs=1", "threads=1",
                        "train_overrides=[" + ",".join(f"'{o}'" for o in (
                            f"data.root={FIXTURE}", "data.verify=false", "data.download=false", "train.max_steps=3",
                            "train.batch_size=16")) + "]")
    assert report["mode"] == "e2e" and {"experiment=fast99", "train.patience=0"} <= set(report["overrides"])
    contenders = ("netlab", "torch") if report["torch_version"] else ("netlab",)
    for name in contenders:
        r = report[name]
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["train_time_s"] > 0, name
        assert (r["steps"], r["images"]) == (3, 48), name
    assert ("ratio" in report) == ("torch" in report) and "netlab    |" in out
