"""The PyTorch twin: the model (see test_nn for every layer), its optimizers, and a whole run
trained on netlab's recipe (what ``python -m netlab.bench mode=e2e`` times beside netlab)."""

from __future__ import annotations

import numpy as np
import pytest

from netlab import training
from conftest import HAS_TORCH, small_config

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")


@pytest.mark.parametrize("optimizer", [
    ["optimizer=adam"], ["optimizer=sgd", "optimizer.weight_decay=0.01"],
    ["optimizer=momentum", "optimizer.nesterov=true"], ["optimizer=adagrad"],
    ["optimizer=rmsprop", "optimizer.momentum=0.5", "optimizer.eps=1e-6"],
])
def test_pytorch_trained_on_the_same_recipe_ends_with_the_same_weights(tmp_path, optimizer):
    """Same first weights, batches (augmented), optimizer and one-cycle lr per step: after 6
    steps PyTorch's weights equal netlab's up to float32 round-off. A different batch order,
    lr or update rule would move them far apart. (RMSprop's first step is lr * g / |g| / 0.1 for
    every weight: a gradient at the level of float32 round-off would flip a weight by 10 lr, so
    its eps is raised above that level.)"""
    cfg = small_config("train.max_steps=6", "model.dropout=0", "data.augment.enabled=true", *optimizer)
    ours = training.Trainer(cfg, tmp_path / "netlab")
    mine = ours.fit()
    theirs = training.Trainer(cfg, tmp_path / "torch")
    from netlab.torch_twin import train_like

    results, twin = train_like(theirs, threads=1)
    assert results["steps"] == 6 and results["images"] == 6 * cfg.train.batch_size
    # the same weights evaluated the same way: the same figures, up to a flipped near-tie
    one = 1 / theirs.splits.test_x.shape[0]
    assert results["test_accuracy"] == pytest.approx(mine["test_accuracy"], abs=1.01 * one)
    assert results["val_accuracy"] == pytest.approx(mine["val_accuracy"], abs=1.01 / theirs.splits.val_x.shape[0])
    assert results["eval_time_s"] > 0 and ours.eval_time > 0
    start = theirs.model.state_dict()
    for k, v in twin.state_dict().items():
        ref = ours.model.state_dict()[k]
        moved = np.abs(ref - start[k]).max()
        assert moved > 1e-4, k  # the weights did train
        np.testing.assert_allclose(v.numpy(), ref, atol=2e-3 * moved, rtol=0, err_msg=k)
