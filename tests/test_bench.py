"""The bench runs (smoke mode: one tiny batch, one repeat; nothing about speed is asserted), and
each of its refused settings is one paragraph."""

from __future__ import annotations

import json

import pytest

from netlab.cli import bench as bench_app
from conftest import FIXTURE, assert_one_paragraph, cli, in_process


def bench(tmp_path, *args):
    done = cli("netlab.bench", *args, f"out={tmp_path}", cwd=tmp_path, timeout=300)
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
        # the last step evaluates (validation and test): that time is in one figure, not the other
        assert r["with_eval_s"] > r["train_time_s"], name
    assert ("ratio" in report) == ("torch" in report) and "netlab    |" in out
    assert ("ratio_with_eval" in report) == ("torch" in report)


def test_infer_mode_smoke(tmp_path):
    """Evaluation of the test images by netlab and by its PyTorch twin: same weights, so the same accuracy."""
    report, out = bench(tmp_path, "mode=infer", "smoke=true", "repeats=2", "threads=1", "train_overrides=[" + ",".join(
        f"'{o}'" for o in ("data=mnist", f"data.root={FIXTURE}", "data.verify=false", "data.download=false")) + "]")
    (row,) = report["results"]
    assert report["mode"] == "infer" and report["images"] == 200 and row["batch_size"] == 2
    assert row["netlab"]["images_per_s"] > 0 and "netlab bench infer" in out
    if report["torch_version"]:
        assert row["torch"]["images_per_s"] > 0 and row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
        assert row["torch"]["test_accuracy"] == pytest.approx(row["netlab"]["test_accuracy"], abs=0.011)


BAD_SETTINGS = [
    # (overrides, message)
    (["batch_sizes=[0]"], "batch_sizes must be an integer in [1, 65536] (each)"),
    (["batch_sizes=[-1,64]"], "batch_sizes must be an integer in [1, 65536] (each)"),
    (["batch_sizes=[]"], "batch_sizes must be a list"),
    (["repeats=0"], "repeats must be an integer >= 1"),
    (["steps=0"], "steps must be an integer >= 1"),
    (["warmup=-1"], "warmup must be an integer >= 0"),
    (["mode=fast"], "mode must be one of step, e2e"),
    (["threads=0"], "threads must be an integer in [1, 1024]"),
    (["epochs=0"], "epochs must be an integer >= 1"),
    (["runs=0"], "runs must be an integer >= 1"),
    (["mode=e2e", "recipe=nope"], "recipe='nope' is not a training preset; choose one of: best, best_residual, fast99, resnet"),
    (["mode=e2e", "recipe=../model/seed_cnn"], "is not a training preset"),
    (["mode=e2e", "recipe=study_lr"], "recipe=study_lr is a sweep of several runs"),
    (["mode=e2e", "train_overrides=['train.max_step=2']"], "Could not override 'train.max_step'"),
    (["mode=e2e", "train_overrides=['train.max_steps=abc']"], "cannot compose the config"),
    (["mode=e2e", "train_overrides=['model=nope']"], "cannot compose the config"),
    (["mode=e2e", "train_overrides=[1,2]"], "cannot compose the config"),
    (["mode=e2e", "train_overrides=['backend.threads=1']"], "sets what the bench sets itself"),
    (["mode=e2e", "train_overrides=['train.patience=3']"], "sets what the bench sets itself"),
    (["mode=e2e", "train_overrides=['+experiment=fast99']"], "sets what the bench sets itself"),
    (["mode=infer", "train_overrides=['train.batch_size=3']"], "in mode=infer they choose the data only"),
    (["mode=infer", "train_overrides=['database.root=x']"], "in mode=infer they choose the data only"),
    (["mode=infer", "train_overrides=['data=nope']"], "cannot compose the config"),
    (["mode=infer", "recipe=fast99"], "recipe is read in mode=e2e only, not in mode=infer"),
    (["mode=infer", "train_overrides=['data.root=/nonexistent/netlab-data','data.download=false']"],
     "not found in /nonexistent/netlab-data and downloading is off"),
    (["epochs=2"], "epochs is read in mode=e2e only, not in mode=step"),
    (["mode=roofline", "train_overrides=['data.limit=5']"], "train_overrides is read in mode=e2e and mode=infer only"),
    (["mode=infer", "train_overrides=['model=lenet5']"], "the bench's model=... chooses the net"),
    (["backend.conv=strassen"], "backend.conv must be one of"),
    (["backend.conv=fft", "model=fast_cnn", "smoke=true"], "(backend.conv=fft)"),
]


@pytest.mark.parametrize("overrides,message", BAD_SETTINGS, ids=[f"bench-{' '.join(o)}" for o, _ in BAD_SETTINGS])
def test_bad_command_arguments_get_one_paragraph(capsys, overrides, message):
    status, err = in_process(bench_app.bench, "bench", *overrides, capsys=capsys)
    assert_one_paragraph(err, status)
    assert message in err
