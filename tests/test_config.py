"""The schema: one home for every default, typed groups, and values checked before any data is read."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from netlab import config, nn, optim
from netlab.config import CONF_DIR, compose, validate
from netlab.errors import ConfigError
from conftest import small_config

GROUP_FOLDERS_WITH_DATA = {"model", "experiment", "sweep"}


def test_defaults_live_in_the_schema_only():
    """The command line's defaults are the dataclasses' defaults: no YAML restates or changes them."""
    composed = validate(compose())
    assert composed.backend == config.BackendConfig()
    assert composed.data == config.DataConfig()
    assert composed.optimizer == config.AdamConfig()
    assert composed.train == config.TrainConfig()
    assert (composed.seed, composed.debug) == (config.Config.seed, config.Config.debug)
    # the Python API's augmentation is the command line's
    assert __import__("netlab").data.Augment().settings == config.AugmentConfig()
    # and conf/ has no YAML for the groups the schema owns
    assert {p.name for p in CONF_DIR.iterdir() if p.is_dir()} == GROUP_FOLDERS_WITH_DATA


def test_each_optimizer_has_its_own_fields():
    assert "betas" not in {f.name for f in dataclasses.fields(config.SGDConfig)}
    with pytest.raises(Exception, match="betas"):
        compose("optimizer=sgd", "optimizer.betas=[0.9,0.99]")
    assert set(config.OPTIMIZER_CONFIGS) == set(optim.OPTIMIZERS)
    for name in config.OPTIMIZER_CONFIGS:
        opt_cfg = validate(compose(f"optimizer={name}")).optimizer
        assert opt_cfg.name == name and opt_cfg.schedule == config.ScheduleConfig()


@pytest.mark.parametrize("override,message", [
    ("optimizer.lr=-0.1", "optimizer.lr must be a finite number > 0"),
    ("optimizer.lr=0", "optimizer.lr must be a finite number > 0"),
    ("optimizer.lr=inf", "optimizer.lr must be a finite number > 0"),
    ("optimizer.lr=nan", "optimizer.lr must be a finite number > 0"),
    ("optimizer.weight_decay=-1", "optimizer.weight_decay must be"),
    ("train.batch_size=0", r"train.batch_size must be an integer in \[1, 65536\]"),
    ("train.epochs=-1", r"train.epochs must be an integer in \[1, 100000\]"),
    ("data.val_fraction=1.5", r"data.val_fraction must be a finite number in \(0, 1\)"),
    ("model.dropout=1.0", r"model.dropout must be a finite number in \[0, 1\)"),
    ("data.augment.rotate_p=2", r"data.augment.rotate_p must be a finite number in \[0, 1\]"),
    ("data.augment.mode=sometimes", "data.augment.mode must be"),
    ("optimizer.schedule.name=warp", "optimizer.schedule.name must be one of"),
    ("train.max_steps=0", "train.max_steps must be an integer >= 1"),
    ("backend.threads=0", r"backend.threads must be an integer in \[1, 1024\]"),
    ("backend.conv=winograd", "backend.conv must be one of auto, im2col, fft"),
])
def test_invalid_values_are_refused_before_training(override, message):
    with pytest.raises(ConfigError, match=message):
        small_config(override)


def test_sgd_and_momentum_rules_are_the_optimizers_rules():
    with pytest.raises(ConfigError, match=r"momentum must be a finite number in \[0, 1\)"):
        small_config("optimizer=momentum", "optimizer.momentum=-0.5")
    with pytest.raises(ConfigError, match="> 0 with nesterov"):
        small_config("optimizer=sgd", "optimizer.nesterov=true")
    # the Python API's optimizers are held to the same rules, from the same schema
    with pytest.raises(ConfigError, match="optimizer.lr must be a finite number > 0"):
        optim.SGD(nn.Sequential(nn.Linear(1, 1)), lr=float("inf"))
    with pytest.raises(ConfigError, match="> 0 with nesterov"):
        optim.SGD(nn.Sequential(nn.Linear(1, 1)), nesterov=True)


@pytest.mark.parametrize("override", ["optimizer.lr=fast", "train.epochs=two", "optimizr.lr=1", "train.epoch=3"])
def test_wrong_type_or_unknown_key_is_refused_while_composing(override):
    with pytest.raises(Exception, match=override.split("=")[0].split(".")[-1]):
        compose(override)


def test_study_presets_are_sweeps_and_best_overrides_only_what_changes():
    studies = sorted((CONF_DIR / "experiment").glob("study_*.yaml"))
    assert len(studies) == 7
    for path in studies:
        text = OmegaConf.load(path)
        assert text.hydra.mode == "MULTIRUN", path.name
        assert text.hydra.sweeper.params, path.name
    best = OmegaConf.load(CONF_DIR / "experiment" / "best.yaml")
    defaults = validate(compose())
    for key in ("data.augment.blotch_p", "train.epochs", "train.batch_size", "train.eval_every"):
        assert OmegaConf.select(best, key) != OmegaConf.select(OmegaConf.structured(defaults), key), key
    assert "optimizer" not in best  # the default optimizer is the best recipe's
