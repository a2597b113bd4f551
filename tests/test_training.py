"""The training loop on the small real-MNIST fixture: outputs, determinism, backends, early
stopping, resume (proven to resume), and divergence."""

from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest

from netlab import checkpoint, training
from netlab.errors import CheckpointError, DivergedError, Interrupted
from netlab.metrics import Evaluation
from conftest import small_config


def fit(tmp_path, *overrides, name="run"):
    """Train on the fixture into tmp_path/name; returns (results, folder)."""
    out = tmp_path / name
    out.mkdir()
    cfg = small_config(*overrides)
    trainer = training.Trainer(cfg, out)
    return trainer.fit(), out


def rows(out, keep=("step", "split", "loss", "accuracy", "lr")):
    with open(out / "metrics.csv") as f:
        return [tuple(r[k] for k in keep) for r in csv.DictReader(f)]


def weights(out, which="last"):
    return checkpoint.read(out / "checkpoints" / f"{which}.npz")


def test_outputs_and_formats(tmp_path):
    results, out = fit(tmp_path, "train.max_steps=12")
    assert {p.name for p in out.iterdir()} >= {"metrics.csv", "results.json", "curves.png", "checkpoints"}
    with open(out / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["step", "epoch", "split", "loss", "accuracy", "lr", "elapsed_s"]
    assert [r["split"] for r in table[:3]] == ["train", "val", "test"]
    assert sorted({int(r["step"]) for r in table}) == [5, 10, 12]
    saved = json.loads((out / "results.json").read_text())
    assert saved == results
    for key in ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "train_time_s", "images_per_s",
                "backend", "device", "epochs", "steps", "seed"):
        assert key in results
    assert results["steps"] == 12 and results["test_accuracy"] == float(table[-1]["accuracy"])
    assert 0.3 < results["val_accuracy"] <= 1.0  # 12 steps of a real CNN on real digits already learn something
    assert weights(out).counters["step"] == 12
    assert weights(out, "best").counters["step"] == results["best_step"]
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("backend_name", ["array_api_strict", "torch"])
@pytest.mark.parametrize("mode", ["online", "offline"])
def test_whole_training_loop_on_other_backends(tmp_path, backend_name, mode):
    """The loop, augmentation, dropout, evaluation and checkpoints use only the standard."""
    if backend_name == "torch":
        pytest.importorskip("torch")
    results, _ = fit(tmp_path, f"backend={backend_name}", "train.max_steps=4", "train.eval_every=2",
                     f"data.augment.mode={mode}", "data.augment.copies=1", "data.augment.blotch_p=0.5",
                     "data.augment.noise_p=0.5", "data.limit=100")
    assert results["backend"] == backend_name and results["steps"] == 4
    assert 0.0 <= results["test_accuracy"] <= 1.0


def test_backends_train_the_same_model(tmp_path):
    """One code path: the same seed gives the same run on every backend (bit-identical on
    array-api-strict, which computes with NumPy; float32 round-off on PyTorch), and NumPy's
    default (the FFT fast path for the second convolution) differs from it by round-off only."""
    over = ["train.max_steps=6", "train.eval_every=3", "data.limit=200"]

    def metrics(name, conv="im2col"):
        return rows(fit(tmp_path, f"backend={name}", f"backend.conv={conv}", *over, name=f"{name}-{conv}")[1])

    reference = metrics("numpy")
    assert metrics("array_api_strict") == reference
    others = [metrics("numpy", "auto")]
    if importlib.util.find_spec("torch") is not None:
        others.append(metrics("torch"))
    for other in others:
        for ours, theirs in zip(other, reference, strict=True):
            assert ours[:2] == theirs[:2] and ours[3] == theirs[3]
            assert float(ours[2]) == pytest.approx(float(theirs[2]), abs=1e-5)


def test_the_seed_alone_changes_the_run_and_the_same_seed_repeats_it(tmp_path):
    _, a = fit(tmp_path, "train.max_steps=10", name="a")
    _, b = fit(tmp_path, "train.max_steps=10", name="b")
    _, c = fit(tmp_path, "train.max_steps=10", "seed=1", name="c")
    assert rows(a) == rows(b)
    assert rows(a) != rows(c)
    wa, wc = weights(a), weights(c)
    assert not np.array_equal(wa.model["0.weight"], wc.model["0.weight"])


def test_seed_sets_initial_weights_split_and_streams(tmp_path):
    cfg0, cfg1 = small_config(), small_config("seed=1")
    t0, t0b, t1 = training.Trainer(cfg0, tmp_path), training.Trainer(cfg0, tmp_path), training.Trainer(cfg1, tmp_path)
    np.testing.assert_array_equal(t0.model.state_dict()["0.weight"], t0b.model.state_dict()["0.weight"])
    assert not np.array_equal(t0.model.state_dict()["0.weight"], t1.model.state_dict()["0.weight"])
    assert not np.array_equal(t0.splits.val_indices, t1.splits.val_indices)
    assert t0.rngs["dropout"].seed != t1.rngs["dropout"].seed


def test_epochs_and_epoch_end_evaluation(tmp_path):
    # 540 training images / 64 = 9 batches per epoch; the epoch ends are evaluation points too
    _, out = fit(tmp_path, "train.epochs=2", "train.batch_size=64", "train.eval_every=100")
    assert sorted({int(r[0]) for r in rows(out)}) == [9, 18]


def test_offline_augmentation_trains_on_more_images(tmp_path):
    results, _ = fit(tmp_path, "train.epochs=1", "train.batch_size=64", "train.eval_every=100",
                     "data.augment.enabled=true", "data.augment.mode=offline", "data.augment.copies=1")
    assert results["steps"] == 17  # 1080 images / 64


@pytest.mark.parametrize("val_accuracies,patience,stop_step,best_step", [
    ([0.5, 0.5, 0.5, 0.5, 0.5], 2, 3, 1),        # never better after the first: stops after 2 more
    ([0.5, 0.6, 0.6, 0.55, 0.7, 0.7], 2, 4, 2),  # equal is not better
    ([0.5, 0.6, 0.7, 0.8, 0.9, 0.1, 0.1, 0.1], 3, 8, 5),
])
def test_early_stopping_stops_at_the_exact_step(tmp_path, monkeypatch, val_accuracies, patience, stop_step, best_step):
    """Evaluation is scripted (val accuracy by evaluation point), so the stopping step is exact."""
    script = iter(val_accuracies)

    def scripted(model, x, y, *args, **kwargs):
        # called for val then test at each evaluation point; the val split is the smaller one here
        return Evaluation(1.0, next(script)) if x.shape[0] == 60 else Evaluation(1.0, 0.0)

    monkeypatch.setattr(training.metrics, "evaluate", scripted)
    results, out = fit(tmp_path, "train.max_steps=50", "train.eval_every=1", f"train.patience={patience}")
    assert results["steps"] == stop_step and results["best_step"] == best_step
    assert weights(out, "best").counters["step"] == best_step


# ----------------------------------------------------------------------------- resume
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
    with pytest.raises(Interrupted, match="interrupted at step 15 of 17; the last checkpoint is from step 12"):
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


def test_resume_may_change_where_and_how_often_it_reports(tmp_path):
    fit(tmp_path, "train.max_steps=5", name="first")
    trainer = training.Trainer(small_config("train.max_steps=5", "train.eval_every=2", "train.patience=3",
                                            "backend=array_api_strict"), tmp_path / "second")
    trainer.load(tmp_path / "first")
    assert trainer.at.step == 5


# ----------------------------------------------------------------------------- divergence
def test_divergence_from_the_start_names_no_checkpoint(tmp_path):
    """lr 1e8 wrecks the weights in one step: checkpoints of such weights are never called good."""
    with pytest.raises(DivergedError, match="Lower optimizer.lr") as err:
        fit(tmp_path, "optimizer=sgd", "optimizer.lr=1e8", "train.max_steps=100", "train.checkpoint_every=1",
            "train.eval_every=50")
    assert "No checkpoint with usable weights" in str(err.value)
    for path in (tmp_path / "run" / "checkpoints").glob("*.npz"):  # what was written is finite
        ck = checkpoint.read(path)
        assert all(np.all(np.isfinite(v)) for v in [*ck.model.values(), *ck.optimizer.values()])


def test_divergence_later_names_a_checkpoint_that_works(tmp_path):
    """Training goes well for 6 steps, then the lr jumps to 1e8: the checkpoint named as the
    last good one holds finite weights that give a finite loss."""
    out = tmp_path / "run"
    out.mkdir()
    trainer = training.Trainer(small_config("optimizer=sgd", "optimizer.schedule.name=constant", "train.max_steps=100",
                                            "train.checkpoint_every=3", "train.eval_every=50"), out)
    real_step = trainer.opt.step

    def step():
        if trainer.at.step == 6:
            trainer.opt.base_lr = 1e8
        real_step()

    trainer.opt.step = step
    with pytest.raises(DivergedError) as err:
        trainer.fit()
    message = str(err.value)
    assert "The last good checkpoint is" in message, message
    named = message.split("The last good checkpoint is ")[1].split(" (step")[0]
    ck = checkpoint.read(named)
    assert ck.counters["step"] >= 6
    model = training.models.build(trainer.cfg.model)
    model.load_state_dict(ck.model)
    ev = training.metrics.evaluate(model.to(trainer.xp), trainer.splits.val_x, trainer.splits.val_y, 100,
                                   trainer.mean, trainer.std)
    assert np.isfinite(ev.loss)
