"""The callbacks around the loop (netlab.callbacks): early stopping and the best checkpoint at
the exact step, and the divergence guard, which never writes, or names as good, a checkpoint of
unusable weights and advises a finite learning rate."""

from __future__ import annotations

import numpy as np
import pytest

from netlab import checkpoint, models, training
from netlab.errors import DivergedError
from netlab.metrics import Evaluation
from conftest import fit, small_config, train, weights


# ------------------------------------------------------------- early stopping and the best checkpoint
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


# ---------------------------------------------------------------------------- the divergence guard
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


def assert_named_checkpoint_works(message: str, trainer) -> None:
    if "No checkpoint with usable weights" in message:
        return
    named = message.split("The last good checkpoint is ")[1].split(" (step")[0]
    ck = checkpoint.read(named)
    model = models.build(trainer.cfg.model)
    model.load_state_dict(ck.model)
    ev = training.metrics.evaluate(model.to(trainer.xp), trainer.splits.val_x, trainer.splits.val_y, 60,
                                   trainer.mean, trainer.std)
    assert np.isfinite(ev.loss), named


@pytest.mark.parametrize("optimizer,lr", [("sgd", 1e8), ("momentum", 1e6), ("adam", 1e4), ("rmsprop", 1e5),
                                          ("adagrad", 1e9)])
def test_huge_learning_rates_never_leave_a_bad_checkpoint_named_or_written(tmp_path, optimizer, lr):
    out = tmp_path / "run"
    out.mkdir()
    trainer = training.Trainer(small_config(f"optimizer={optimizer}", f"optimizer.lr={lr}", "train.max_steps=30",
                                            "train.checkpoint_every=1", "train.eval_every=5"), out)
    try:
        results = trainer.fit()
    except DivergedError as exc:
        assert_named_checkpoint_works(str(exc), trainer)
    else:  # it survived: then everything it reports is a real number
        assert all(np.isfinite(v) for k, v in results.items() if k.endswith(("_loss", "_accuracy")))
    for path in (out / "checkpoints").glob("*.npz"):
        checkpoint.read(path)  # refuses non-finite weights or optimizer state


@pytest.mark.parametrize("where", ["weight", "optimizer"])
def test_non_finite_state_is_never_saved(tmp_path, where):
    out = tmp_path / "run"
    out.mkdir()
    trainer = training.Trainer(small_config("train.max_steps=6", "train.checkpoint_every=2", "train.eval_every=100",
                                            "optimizer=momentum"), out)
    real = trainer.opt.step

    def poison():
        real()
        if trainer.at.step == 3:  # after step 4's update, before its checkpoint
            if where == "weight":
                trainer.model.layers[0].params["weight"] = trainer.model.layers[0].params["weight"] * float("nan")
            else:
                bufs = trainer.opt.state["0.weight"]
                bufs["momentum_buffer"] = bufs["momentum_buffer"] * float("inf")

    trainer.opt.step = poison
    with pytest.raises(DivergedError, match="holds non-finite values") as err:
        trainer.fit()
    assert "The last good checkpoint is" in str(err.value)
    assert checkpoint.read(out).counters["step"] == 2


def test_divergence_advice_names_a_finite_lr(tmp_path):
    with pytest.raises(DivergedError) as err:
        train(tmp_path / "run", "optimizer=sgd", "optimizer.lr=1e8", "train.max_steps=20", "train.checkpoint_every=1")
    assert "optimizer.lr=1e+07" in str(err.value)  # a tenth of the lr, in the command it prints


# --------------------------------------------------------- the log lines say the right numbers
def test_the_log_lines_name_the_right_best_step_epoch_and_accuracies(tmp_path, monkeypatch, caplog):
    """Text that is there is not enough: the early-stopping line names the best evaluation (70%
    at step 7, not the last one), the epoch line counts epochs from 1 of 2, and the last line
    gives test and validation accuracy each in its place (test is scripted at 0%)."""
    import logging

    from test_training import scripted_validation, tiny_run

    trainer = tiny_run(tmp_path, monkeypatch, write=False, eval_every=1, epochs=2, patience=2, batch_size=100)
    assert trainer.steps_per_epoch == 6  # 540 images
    scripted_validation(monkeypatch, trainer, {s: a for s, a in enumerate(
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.6, 0.65, 0.8, 0.8, 0.8], start=1)})
    with caplog.at_level(logging.INFO, logger="netlab.train"):
        results = trainer.fit()
    lines = [r.getMessage() for r in caplog.records if r.name == "netlab.train"]
    assert results["steps"] == 9 and results["best_step"] == 7
    assert "early stopping: no better validation accuracy in 2 evaluations (best 70.00% at step 7)" in lines
    assert [line.split(" done")[0] for line in lines if line.startswith("epoch ")] == ["epoch 1 of 2"]
    done = [line for line in lines if line.startswith("done:")]
    assert len(done) == 1 and done[0].startswith("done: test accuracy 0.00%, val accuracy 65.00%,"), done
