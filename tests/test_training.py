"""The training loop (Trainer.fit) on the small real-MNIST fixture: outputs, determinism,
backends, epochs, problems found before the first step, and Ctrl-C between steps."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal

import numpy as np
import pytest

from netlab import checkpoint, data, training
from netlab.data import idx
from netlab.errors import DataError, Interrupted
from conftest import fit, fixture_copy, rows, small_config, train, wait_for, weights


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


# ------------------------------------------------------------ problems found before the first step
def write_split(folder, split: str, images: np.ndarray, labels: np.ndarray):
    image_name, label_name = data.datasets.SPLITS[split]
    idx.write(folder / f"{image_name}.gz", images)
    idx.write(folder / f"{label_name}.gz", labels)


DATA_PROBLEMS = [
    ("test images of another size", lambda f: write_split(f, "test", np.zeros((20, 32, 32), np.uint8),
                                                           np.zeros(20, np.uint8)), "one size"),
    ("empty test set", lambda f: write_split(f, "test", np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8)),
     "the test split is empty"),
    ("test labels fewer than images", lambda f: write_split(f, "test", np.zeros((20, 28, 28), np.uint8),
                                                             np.zeros(19, np.uint8)), "20 images but 19 labels"),
    ("test label out of range", lambda f: write_split(f, "test", np.zeros((20, 28, 28), np.uint8),
                                                       np.full(20, 11, np.uint8)), "label 11 outside 0..9"),
    ("one training image", lambda f: write_split(f, "train", np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.uint8)),
     "val_fraction"),
    ("labels stored as 3-d", lambda f: idx.write(f / "t10k-labels-idx1-ubyte.gz", np.zeros((20, 2, 2), np.uint8)),
     "has 3 dimensions, expected 1"),
]


@pytest.mark.parametrize("case,spoil,message", DATA_PROBLEMS, ids=[c[0] for c in DATA_PROBLEMS])
def test_data_problems_are_found_before_the_first_step(tmp_path, case, spoil, message):
    folder = fixture_copy(tmp_path / "data")
    spoil(folder)
    with pytest.raises(DataError, match=message):
        train(tmp_path / "run", f"data.root={folder}", "train.max_steps=2")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_model_input_of_another_size_is_found_before_the_first_step(tmp_path):
    with pytest.raises(DataError, match=r"images are \(1, 28, 28\) but the model takes \(1, 32, 32\)"):
        train(tmp_path / "run", "model.input_shape=[1,32,32]", "train.max_steps=2")


# ------------------------------------------------------------------------ Ctrl-C between steps
def test_a_ctrl_c_during_a_checkpoint_write_lets_the_write_finish(tmp_path, monkeypatch, default_sigint):
    """A Ctrl-C that lands while a checkpoint is being assembled and written (it once hit
    OmegaConf there and crashed with exit 1) ends the run after the write, whole, with
    Interrupted (exit 130) naming that checkpoint's step."""
    real_write, calls = checkpoint.write, []

    def write_with_ctrl_c(path, state):
        calls.append(path)
        if len(calls) == 2:  # the second save: last.npz at step 4
            interrupt = signal.getsignal(signal.SIGINT).__self__  # the run's DeferredInterrupt
            os.kill(os.getpid(), signal.SIGINT)
            wait_for(lambda: interrupt.pending, "the Ctrl-C to reach the run's handler", timeout=10, interval=0.001)
        return real_write(path, state)

    monkeypatch.setattr(checkpoint, "write", write_with_ctrl_c)
    cfg = small_config("train.max_steps=20", "train.checkpoint_every=2", "train.eval_every=100000")
    trainer = training.Trainer(cfg, tmp_path)
    with pytest.raises(Interrupted, match=r"interrupted \(Ctrl-C\) at step 4 of 20; the last checkpoint is from step 4"):
        trainer.fit()
    assert checkpoint.read(tmp_path / "checkpoints" / "last.npz").counters["step"] == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --------------------------------------------- the loop over any settings (Hypothesis), on a tiny model
# A linear model on the fixture keeps each run to milliseconds, so the evaluation and checkpoint
# points, early stopping and the best checkpoint are checked over many settings, not the one
# convenient value where evaluation and checkpoints fall on the same steps.
import copy  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from netlab import nn, optim  # noqa: E402
from netlab.metrics import Evaluation  # noqa: E402
from conftest import interrupt_at  # noqa: E402

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
BASE = small_config("data.augment.enabled=false", "model.dropout=0.0")
TRAIN_IMAGES = 540  # the fixture's 600 training digits less the 10% held out
_runs = itertools.count()


def tiny_run(tmp_path, monkeypatch, out=None, write=True, **train):
    """A Trainer on the fixture with a linear model, ``train`` settings set on the schema's
    dataclass, and the figure skipped; records every checkpoint asked for as (name, step), and
    writes it only if ``write``."""
    cfg = copy.deepcopy(BASE)
    for key, value in train.items():
        setattr(cfg.train, key, value)
    monkeypatch.setattr(training.plots, "curves", lambda *a, **k: None)
    trainer = training.Trainer(cfg, out or tmp_path / f"run{next(_runs)}")
    nn.manual_seed(0)
    trainer.model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).to(trainer.xp)
    trainer.opt = optim.build(cfg.optimizer, trainer.model, trainer.total_steps)
    trainer.saved = []
    real_save = trainer.save

    def save(name):
        trainer.saved.append((name, trainer.at.step))
        return real_save(name) if write else None

    trainer.save = save
    return trainer


def evaluated_steps(trainer):
    return sorted({row["step"] for row in trainer.log.rows})


@PROPERTY
@given(st.sampled_from([16, 25, 32, 64, 100]), st.integers(1, 12), st.integers(1, 12), st.integers(1, 2),
       st.one_of(st.none(), st.integers(1, 30)))
def test_evaluations_and_checkpoints_fall_where_their_settings_say(tmp_path, monkeypatch, batch, eval_every,
                                                                   checkpoint_every, epochs, max_steps):
    """Evaluated: every eval_every steps, each epoch's end and the last step; last.npz: every
    checkpoint_every steps and the last. Any batch size, lengths and intervals, equal or not."""
    with pytest.MonkeyPatch.context() as mp:
        trainer = tiny_run(tmp_path, mp, write=False, batch_size=batch, eval_every=eval_every,
                           checkpoint_every=checkpoint_every, epochs=epochs, max_steps=max_steps)
        results = trainer.fit()
    per_epoch = math.ceil(TRAIN_IMAGES / batch)
    total = min(epochs * per_epoch, max_steps or 10 ** 9)
    assert trainer.steps_per_epoch == per_epoch and results["steps"] == total
    assert evaluated_steps(trainer) == [s for s in range(1, total + 1)
                                        if s % eval_every == 0 or s % per_epoch == 0 or s == total]
    assert [s for name, s in trainer.saved if name == "last"] == [s for s in range(1, total + 1)
                                                                  if s % checkpoint_every == 0 or s == total]
    assert results["images"] == sum(min(batch, TRAIN_IMAGES - b * batch) for b in range(per_epoch)) * (total // per_epoch) \
        + min(total % per_epoch * batch, TRAIN_IMAGES)
    assert results["epochs"] == round(total / per_epoch, 4)


def scripted_validation(monkeypatch, trainer, accuracies: dict):
    """Validation accuracy by step (test accuracy 0): evaluation becomes a script."""
    val_size = trainer.splits.val_x.shape[0]

    def scripted(model, x, y, *args, **kwargs):
        return Evaluation(1.0, accuracies[trainer.at.step]) if x.shape[0] == val_size else Evaluation(1.0, 0.0)

    monkeypatch.setattr(training.metrics, "evaluate", scripted)


@PROPERTY
@given(st.lists(st.sampled_from([0.2, 0.4, 0.6, 0.8]), min_size=1, max_size=12), st.integers(0, 4),
       st.integers(1, 3))
def test_early_stopping_and_the_best_checkpoint_for_any_history(tmp_path, monkeypatch, accuracies, patience,
                                                                eval_every):
    """Any sequence of validation accuracies (ties included: equal is not better), any patience
    (0: never stop) and interval: the run stops at the evaluation the rule names, and best.npz is
    written at each improvement and last at the best step."""
    total = len(accuracies) * eval_every
    with pytest.MonkeyPatch.context() as mp:
        trainer = tiny_run(tmp_path, mp, write=False, eval_every=eval_every, max_steps=total, patience=patience,
                           checkpoint_every=10 ** 6, batch_size=16)
        scripted_validation(mp, trainer, {eval_every * (i + 1): a for i, a in enumerate(accuracies)})
        results = trainer.fit()
    best, best_at, since, stop, improved = -1.0, 0, 0, total, []
    for i, a in enumerate(accuracies):
        step = eval_every * (i + 1)
        if a > best:
            best, best_at, since = a, step, 0
            improved.append(step)
        else:
            since += 1
        if patience and since >= patience:
            stop = step
            break
    assert (results["steps"], results["best_step"], results["best_val_accuracy"]) == (stop, best_at, best)
    assert [s for name, s in trainer.saved if name == "best"] == improved


def test_resume_keeps_the_best_from_before_the_interruption(tmp_path, monkeypatch):
    """The best validation accuracy came before the interruption (step 2) and nothing after it
    beats it: the resumed run must still report step 2's best and keep best.npz from step 2,
    never take a worse later evaluation for an improvement. Patience counts across the break."""
    accuracies = {2: 0.9, 4: 0.5, 6: 0.6, 8: 0.7, 10: 0.8, 12: 0.85}
    over = dict(eval_every=2, checkpoint_every=1, max_steps=12, patience=5)
    with pytest.MonkeyPatch.context() as mp:
        straight = tiny_run(tmp_path, mp, write=False, **over)
        scripted_validation(mp, straight, accuracies)
        expected = straight.fit()
    first = tiny_run(tmp_path, monkeypatch, **over)
    scripted_validation(monkeypatch, first, accuracies)
    with pytest.raises(Interrupted):
        interrupt_at(first, 5).fit()  # after step 5's checkpoint: evaluations at 2 (the best) and 4 are done
    again = tiny_run(tmp_path, monkeypatch, out=first.out, **over)
    scripted_validation(monkeypatch, again, accuracies)
    again.load(first.out)
    results = again.fit()
    assert (expected["best_step"], expected["best_val_accuracy"], expected["steps"]) == (2, 0.9, 12)
    for key in ("best_step", "best_val_accuracy", "steps", "val_accuracy"):
        assert results[key] == expected[key], key
    assert [s for name, s in again.saved if name == "best"] == []
    assert weights(first.out, "best").counters["step"] == 2
    assert weights(first.out).counters["evals_since_best"] == 5
