"""Continuing a run (netlab.resume): a resumed run ends bit-identical to an uninterrupted one,
really starts from what the checkpoint holds, may change only where and how it computes and
reports, and refuses a checkpoint of another model; starting from outside weights
(train.init_from)."""

from __future__ import annotations

import numpy as np
import pytest

from netlab import checkpoint, training
from netlab.errors import CheckpointError, ConfigError, Interrupted
from conftest import exported, fit, interrupt_at, plain_safetensors, rows, small_config, tampered, train, weights

RESUME = ("train.max_steps=17", "train.checkpoint_every=3", "model.dropout=0.2", "data.augment.enabled=true",
          "optimizer=momentum")


def interrupted_run(tmp_path, monkeypatch, at_step=15):
    """A run that crashes inside its evaluation at ``at_step``; its last checkpoint is from step 12,
    between two evaluation points, so the running train metrics must survive too."""
    real = training.Trainer.evaluate

    def crash(self):
        result = real(self)
        if self.at.step == at_step:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(training.Trainer, "evaluate", crash)
    with pytest.raises(Interrupted, match=r"interrupted \(Ctrl-C\) at step 15 of 17; the last checkpoint is from step 12"):
        fit(tmp_path, *RESUME, name="interrupted")
    monkeypatch.setattr(training.Trainer, "evaluate", real)
    assert weights(tmp_path / "interrupted").counters["step"] == 12
    return tmp_path / "interrupted"


def resume(tmp_path, source, name="resumed", steps=None):
    out = tmp_path / name
    out.mkdir()
    trainer = training.Trainer(small_config(*RESUME), out)
    trainer.load(source)
    if steps is not None:  # count the optimizer steps the resumed run takes
        real_step = trainer.opt.step

        def counted():
            steps.append(trainer.at.step)
            real_step()

        trainer.opt.step = counted
    trainer.fit()
    return out


def test_resume_after_interruption_is_bit_identical(tmp_path, monkeypatch):
    _, straight = fit(tmp_path, *RESUME, name="straight")
    steps = []
    resumed = resume(tmp_path, interrupted_run(tmp_path, monkeypatch), steps=steps)
    assert steps == list(range(12, 17))  # the steps after the checkpoint, and only those
    a, b = weights(straight), weights(resumed)
    for part in ("model", "optimizer"):
        for k, v in getattr(a, part).items():
            np.testing.assert_array_equal(v, getattr(b, part)[k], err_msg=k)
    assert a.rngs == b.rngs and a.counters == b.counters
    assert rows(straight) == rows(resumed)


def test_resume_uses_what_the_checkpoint_holds(tmp_path, monkeypatch):
    """A perturbed checkpoint changes the result: resume really starts from the saved state."""
    _, straight = fit(tmp_path, *RESUME, name="straight")
    source = interrupted_run(tmp_path, monkeypatch)
    ck = checkpoint.read(source)
    ck.model["0.weight"] = ck.model["0.weight"] * 1.5
    checkpoint.write(tmp_path / "perturbed.npz", ck)
    resumed = resume(tmp_path, tmp_path / "perturbed.npz")
    assert not np.array_equal(weights(straight).model["0.weight"], weights(resumed).model["0.weight"])
    assert rows(straight)[:6] == rows(resumed)[:6]  # the history up to the checkpoint is kept
    assert rows(straight)[6:] != rows(resumed)[6:]


def test_an_interrupted_run_continues_in_its_own_folder(tmp_path):
    over = ("train.max_steps=6", "train.checkpoint_every=1", "train.eval_every=100")
    with pytest.raises(Interrupted, match=rf"interrupted \(Ctrl-C\) at step 3 of 6; the last checkpoint is from step 3: "
                                          rf"continue with python -m netlab.train train.resume={tmp_path / 'run'}"):
        interrupt_at(training.Trainer(small_config(*over), tmp_path / "run"), 3).fit()
    trainer = training.Trainer(small_config(*over), tmp_path / "run")
    trainer.load(tmp_path / "run")
    assert trainer.fit()["steps"] == 6


# ------------------------------------------------------------------ what a resumed run may change
@pytest.mark.parametrize("change,named", [
    ("model=mlp", "model.name: 'seed_cnn' -> 'mlp'"),
    ("seed=1", "seed: 0 -> 1"),  # another seed re-splits validation: it would score on trained images
    ("train.batch_size=16", "train.batch_size: 32 -> 16"),
    ("data.val_fraction=0.2", "data.val_fraction: 0.1 -> 0.2"),
    ("optimizer=adagrad", "optimizer.name: 'adam' -> 'adagrad'"),
    ("data.augment.enabled=false", "data.augment.enabled: True -> False"),
])
def test_resume_with_other_settings_is_refused(tmp_path, change, named):
    fit(tmp_path, "train.max_steps=5", name="first")
    trainer = training.Trainer(small_config("train.max_steps=5", change), tmp_path / "second")
    with pytest.raises(CheckpointError, match="settings differ") as err:
        trainer.load(tmp_path / "first")
    assert named in str(err.value)


@pytest.mark.parametrize("change,named", [
    ("seed=1", "seed: 0 -> 1"),
    ("train.batch_size=16", "train.batch_size: 32 -> 16"),
    ("data.limit=300", "data.limit: None -> 300"),
    ("data.normalize=false", "data.normalize: True -> False"),
    ("optimizer.lr=0.01", "optimizer.lr: 0.003 -> 0.01"),
    ("train.max_steps=12", "train.max_steps: 6 -> 12"),
])
def test_resume_with_changed_settings_is_refused(run, tmp_path, change, named):
    trainer = training.Trainer(small_config("train.max_steps=6", change), tmp_path / "again")
    with pytest.raises(CheckpointError, match="settings differ") as err:
        trainer.load(run)
    assert named in str(err.value)


def test_resume_may_change_where_and_how_often_it_reports(tmp_path):
    fit(tmp_path, "train.max_steps=5", name="first")
    trainer = training.Trainer(small_config("train.max_steps=5", "train.eval_every=2", "train.patience=3",
                                            "backend=array_api_strict"), tmp_path / "second")
    trainer.load(tmp_path / "first")
    assert trainer.at.step == 5


def test_extending_a_run_is_allowed_only_where_the_schedule_does_not_depend_on_its_length(tmp_path):
    train(tmp_path / "const", "train.max_steps=3", "optimizer.schedule.name=constant")
    longer = training.Trainer(small_config("train.max_steps=6", "optimizer.schedule.name=constant"), tmp_path / "c2")
    longer.load(tmp_path / "const")
    assert longer.fit()["steps"] == 6
    train(tmp_path / "onecycle", "train.max_steps=3")
    with pytest.raises(CheckpointError, match="train.max_steps: 3 -> 6"):
        training.Trainer(small_config("train.max_steps=6"), tmp_path / "o2").load(tmp_path / "onecycle")


@pytest.mark.parametrize("case,damage,message", [
    ("optimizer state of the wrong shape", lambda a: a.__setitem__("optim.state.0.weight.exp_avg", np.zeros((2, 2))),
     "optimizer state 0.weight.exp_avg has shape (2, 2)"),
    ("optimizer state for a parameter the model lacks",
     lambda a: a.__setitem__("optim.state.9.weight.exp_avg", np.zeros(3, np.float32)), "unknown parameter '9.weight'"),
    ("weights of the wrong shape", lambda a: a.__setitem__("model.0.weight", np.zeros((3, 3), np.float32)),
     "shape mismatch for '0.weight'"),
    ("a weight missing", lambda a: a.pop("model.0.bias"), "missing ['0.bias']"),
])
def test_a_checkpoint_that_does_not_fit_cannot_be_resumed(run, tmp_path, case, damage, message):
    path = tampered(run, tmp_path, damage)
    trainer = training.Trainer(small_config("train.max_steps=6"), tmp_path / "again")
    with pytest.raises(CheckpointError, match="saved from a different model") as err:
        trainer.load(path)
    assert message in str(err.value)


# ---------------------------------------------------------- starting from outside weights (init_from)
@pytest.mark.parametrize("source", ["run", "npz", "safetensors", "plain"])
def test_training_can_start_from_weights_made_elsewhere(run, tmp_path, source):
    if source == "run":
        path = run
    elif source == "npz":
        path = run / "checkpoints" / "best.npz"
    elif source == "safetensors":
        path = exported(run)
    else:
        path = plain_safetensors(run, tmp_path / "plain.safetensors")
    trainer = training.Trainer(small_config("train.max_steps=2", f"train.init_from={path}"), tmp_path / "tuned")
    for k, v in checkpoint.read(run, "best").model.items():
        np.testing.assert_array_equal(trainer.model.state_dict()[k], v)
    assert trainer.at.step == 0 and trainer.fit()["steps"] == 2  # a new run: its own counters and optimizer


@pytest.mark.parametrize("overrides,message", [
    (["model=mlp"], "the weights do not fit model 'mlp'"),
    (["model=lenet5"], "missing"),
    (["train.resume=somewhere"], "train.init_from must be unset when resuming"),
])
def test_init_from_refuses_weights_that_do_not_fit(run, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        training.Trainer(small_config(f"train.init_from={run}", *overrides), tmp_path / "x")


# ------------------------------------------------------------ adversarial: best.npz only, and a full disk
import errno  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402

from netlab import resume as resume_mod  # noqa: E402
from netlab.errors import OutputError  # noqa: E402


def test_a_run_without_last_npz_continues_from_best(run, tmp_path):
    """last.npz never written (the disk filled at the first checkpoint): the run folder resumes from best.npz."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "checkpoints" / "last.npz").unlink()
    assert resume_mod.checkpoint_of(copy) == copy / "checkpoints" / "best.npz"
    assert resume_mod.run_folder(str(copy)) == copy


def test_a_folder_with_neither_checkpoint_says_so(tmp_path):
    """No last.npz and no best.npz: one error naming both."""
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"no checkpoints/last.npz or best.npz"):
        resume_mod.run_folder(str(tmp_path / "run"))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
@pytest.mark.parametrize("after", [0, 1])
def test_a_full_disk_says_which_checkpoint_is_whole_and_how_to_continue(tmp_path, monkeypatch, code, after):
    """OSError(ENOSPC) from a checkpoint write: the error says which checkpoint is whole, or that none is."""
    trainer = training.Trainer(small_config("train.max_steps=6", "train.checkpoint_every=2", "train.eval_every=100"),
                               tmp_path / "run")
    real, writes = os.fsync, []

    def fsync(fd):
        writes.append(fd)
        if len(writes) > after:
            raise OSError(code, os.strerror(code))
        real(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OutputError) as caught:
        trainer.fit()
    message = str(caught.value)
    assert os.strerror(code) in message
    if after:
        assert "checkpoints/last.npz (step 2) is whole" in message
        assert f"python -m netlab.train train.resume={tmp_path / 'run'}" in message
    else:
        assert "no checkpoint had been written yet: once there is space, start the run again" in message
