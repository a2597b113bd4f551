"""The schema: one home for every default, typed groups, and values checked before any data is read."""

from __future__ import annotations

import dataclasses
import re

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
    ("train.label_smoothing=-0.1", r"train.label_smoothing must be a finite number in \[0, 1\)"),
    ("train.label_smoothing=1.0", r"train.label_smoothing must be a finite number in \[0, 1\)"),
    ("train.label_smoothing=nan", r"train.label_smoothing must be a finite number in \[0, 1\)"),
    ("optimizer.betas=[0.9,1.0]", r"optimizer.betas must be a finite number in \[0, 1\) \(each\)"),
    ("optimizer.betas=[0.9]", r"optimizer.betas must be two numbers in \[0, 1\)"),
    ("backend.threads=0", r"backend.threads must be an integer in \[1, 1024\]"),
    ("backend.conv=strassen", "backend.conv must be one of auto, im2col, fft, winograd"),
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


@pytest.mark.parametrize("overrides,message", [
    (["model.num_classes=7", "model.layers=[flatten,{linear:7}]"], "model.num_classes must be 10"),
    (["model.num_classes=12", "model.layers=[flatten,{linear:12}]"], "model.num_classes must be 10"),
])
def test_class_count_must_fit_the_dataset(overrides, message):
    with pytest.raises(ConfigError, match=message):
        small_config(*overrides)


@pytest.mark.parametrize("override,message", [
    ("+train.max_step=2", "unknown setting train.max_step; did you mean train.max_steps?"),
    ("+train.epoch=1", "did you mean train.epochs?"),
    ("+data.augment.rotat_p=1", "did you mean data.augment.rotate_p?"),
    ("+optimizer.betas1=0.5", "unknown setting optimizer.betas1"),
    ("+optimizer.momentum=0.9", "unknown setting optimizer.momentum"),  # adam has none
    ("+seeed=3", "unknown setting seeed; did you mean seed?"),
    ("+model.dropuot=0.5", "did you mean model.dropout?"),
])
def test_typos_added_with_plus_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose(override))


def test_an_infinite_lr_is_refused_not_divided(capsys):
    with pytest.raises(ConfigError) as err:
        small_config("optimizer.lr=inf")
    assert "for example" not in str(err.value) and "finite number > 0" in str(err.value)


# ------------------------------------------------- every key changes something observable
# A table: each setting of a training run, two values, and what differs between them, observed
# where the setting is consumed (a Trainer built from the config, the optimizer the schema
# describes, a few training steps of a linear model, the command's error handling). A new key
# without a row fails test_every_key_has_a_row.
import copy  # noqa: E402
import itertools  # noqa: E402
import logging  # noqa: E402
from dataclasses import dataclass as _dataclass  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from netlab import backend, training  # noqa: E402
from netlab.errors import NetlabError  # noqa: E402
from conftest import FIXTURE  # noqa: E402

BASE = small_config()
_folders = itertools.count()


@_dataclass
class Effect:
    key: str
    a: Any
    b: Any
    observe: Callable  # (cfg, env) -> what a user would see
    differs: str  # what differs, in words
    context: dict = None  # other keys set the same for a and b (where the key matters at all)


def set_key(cfg, key, value):
    *path, last = key.split(".")
    node = cfg
    for part in path:
        node = getattr(node, part)
    if isinstance(node, dict):
        node[last] = value
    else:
        setattr(node, last, value)


def trainer_of(cfg, env):
    return training.Trainer(cfg, env.tmp / f"t{next(_folders)}")


def built(what):
    """Observe ``what(trainer)`` of a Trainer built from the config, or the error that refuses it."""
    def observe(cfg, env):
        try:
            return what(trainer_of(cfg, env))
        except NetlabError as exc:
            return f"refused: {exc}"
    return observe


def first_batch(trainer):
    xb, yb = next(trainer.loader.batches(0))
    return backend.to_numpy(xb), backend.to_numpy(yb)


def convs(trainer):
    return [layer.impl.__name__ for layer in trainer.model if isinstance(layer, nn.Conv2d)]


def threads_set(trainer):
    try:
        return backend.threads()
    finally:
        backend.set_threads(None)


def warnings_while(what):
    def observe(cfg, env):
        records = []
        handler = logging.Handler(logging.WARNING)
        handler.emit = records.append
        logging.getLogger("netlab").addHandler(handler)
        try:
            what(cfg, env)
        finally:
            logging.getLogger("netlab").removeHandler(handler)
        return [r.getMessage() for r in records]
    return observe


def optimizer_run(cfg, env):
    """The lr of 8 steps and the weights after them, for a fixed model and fixed gradients."""
    model = nn.Sequential(nn.Linear(3, 2)).to(backend.namespace("numpy"), dtype=np.float64)
    model.load_state_dict({"0.weight": np.arange(6.0).reshape(2, 3) / 7, "0.bias": np.array([0.5, -0.5])})
    opt = optim.build(cfg.optimizer, model, 8)
    lrs = []
    for t in range(8):
        lrs.append(opt.lr)
        for name, g in (("weight", np.full((2, 3), 3.0 - t)), ("bias", np.array([1.0, -2.0]))):
            model[0].grads[name] = g
        opt.step()
    return lrs, model.state_dict()["0.weight"].tolist()


def loop(what):
    """``what(trainer, results, seen)`` after a short run of a linear model (checkpoints counted,
    not written; ``seen`` holds the batch sizes the model ran in evaluation)."""
    def observe(cfg, env):
        trainer = trainer_of(cfg, env)
        trainer.model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).to(trainer.xp)
        trainer.opt = optim.build(cfg.optimizer, trainer.model, trainer.total_steps)
        seen = {"saved": [], "eval_batches": set()}
        trainer.save = lambda name: seen["saved"].append((name, trainer.at.step))
        forward = trainer.model.forward

        def recording(x):
            if not trainer.model.training:
                seen["eval_batches"].add(x.shape[0])
            return forward(x)

        trainer.model.forward = recording
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(training.plots, "curves", lambda *a, **k: None)
            if env.script:
                val = trainer.splits.val_x.shape[0]
                mp.setattr(training.metrics, "evaluate", lambda m, x, *a, **k: training.metrics.Evaluation(
                    1.0, env.script.get(trainer.at.step, 0.1) if x.shape[0] == val else 0.0))
            results = trainer.fit()
        return what(trainer, results, seen)
    return observe


def evaluated(trainer, results, seen):
    return sorted({row["step"] for row in trainer.log.rows})


def debug_shown(cfg, env):
    """What the command does with a bad-input error: one paragraph and status 2, or the traceback."""
    from netlab.cli.exits import user_errors

    def task(raw):
        raise ConfigError("a bad value")

    try:
        user_errors(task)(OmegaConf.create({"debug": cfg.debug}))
    except SystemExit as stop:
        return f"exit {stop.code}"
    except ConfigError:
        return "traceback"


def image_folder(env):
    """Two classes of ten 8x8 grey images each (a data=folder data set), made once."""
    root = env.tmp / "folder"
    if not root.exists():
        for c, name in enumerate(("ants", "bees")):
            (root / name).mkdir(parents=True)
            for i in range(10):
                Image.fromarray(np.full((8, 8), 10 + 10 * i + 100 * c, np.uint8)).save(root / name / f"{i}.png")
    return root


def on_folder(what):
    def observe(cfg, env):
        cfg.data.name, cfg.data.root = "folder", str(image_folder(env))
        cfg.model.input_shape, cfg.model.num_classes, cfg.model.layers = [1, 8, 8], 2, ["flatten", {"linear": 2}]
        return built(what)(cfg, env)
    return observe


def opt_cfg(name, **values):
    return config.OPTIMIZER_CONFIGS[name](**values)


def augmented(**context):
    return {f"data.augment.{k}": v for k, v in context.items()}


KEY_EFFECTS = [
    Effect("backend.name", "numpy", "array_api_strict", built(lambda t: backend.name_of(t.xp)),
           "the array library the run computes with"),
    Effect("backend.threads", 1, 2, built(threads_set), "the threads the math libraries may use"),
    Effect("backend.conv", "im2col", "fft", built(convs), "the algorithm of each convolution"),
    Effect("data.name", "mnist", "fashion_mnist", built(lambda t: t.splits.classes), "the class names"),
    Effect("data.root", str(FIXTURE), "nowhere", built(lambda t: t.splits.train_x.shape[0]),
           "where the files are read (none there: refused, naming the folder)", {"data.download": False}),
    Effect("data.download", False, True, built(lambda t: None),
           "whether missing files are fetched (offline here: a different refusal)", {"data.root": "nowhere"}),
    Effect("data.verify", True, False, warnings_while(built(lambda t: None)),
           "the warning that the files differ from the official ones"),
    Effect("data.val_fraction", 0.1, 0.25, built(lambda t: len(t.splits.val_indices)), "validation images"),
    Effect("data.normalize", True, False, built(lambda t: (t.mean, t.std)), "the normalisation of every batch"),
    Effect("data.shuffle", True, False, built(lambda t: first_batch(t)[1].tolist()), "the first batch's labels",
           augmented(enabled=False)),
    Effect("data.limit", None, 300, built(lambda t: len(t.splits.train_indices)), "training images"),
    Effect("data.test_fraction", 0.1, 0.3, on_folder(lambda t: t.splits.test_x.shape[0]),
           "test images held out of a folder"),
    Effect("data.classes", None, ["bees", "ants"], on_folder(lambda t: t.splits.classes),
           "a folder whose classes are not the ones named is refused"),
    Effect("data.augment.rotate_p", 0.5, 0.9, built(lambda t: first_batch(t)[0]), "the augmented batch"),
    Effect("data.augment.degrees", 10.0, 40.0, built(lambda t: first_batch(t)[0]), "the augmented batch"),
    Effect("data.augment.translate_p", 0.5, 0.9, built(lambda t: first_batch(t)[0]), "the augmented batch"),
    Effect("data.augment.pixels", 2.0, 4.0, built(lambda t: first_batch(t)[0]), "the augmented batch"),
    Effect("data.augment.blotch_p", 0.0, 0.5, built(lambda t: first_batch(t)[0]), "the augmented batch"),
    Effect("data.augment.blotch_min", 3, 5, built(lambda t: first_batch(t)[0]), "the erased rectangles",
           augmented(blotch_p=1.0, blotch_max=9)),
    Effect("data.augment.blotch_max", 7, 9, built(lambda t: first_batch(t)[0]), "the erased rectangles",
           augmented(blotch_p=1.0)),
    Effect("data.augment.noise_p", 0.0, 0.5, built(lambda t: first_batch(t)[0]), "the augmented batch"),
    Effect("data.augment.noise_std", 0.1, 0.3, built(lambda t: first_batch(t)[0]), "the noise",
           augmented(noise_p=1.0)),
    Effect("data.augment.enabled", True, False, built(lambda t: first_batch(t)[0]), "the training batch"),
    Effect("data.augment.mode", "online", "offline", built(lambda t: t.loader.x.shape[0]),
           "the training images (offline: copies appended)"),
    Effect("data.augment.copies", 1, 3, built(lambda t: t.loader.x.shape[0]), "the offline copies",
           augmented(mode="offline")),
    Effect("model.name", "seed_cnn", "my_cnn", loop(lambda t, r, s: r["model"]), "the model named in results.json",
           {"train.max_steps": 1}),
    Effect("model.dropout", 0.25, 0.5, built(lambda t: [m.p for m in t.model if isinstance(m, nn.Dropout)]),
           "the dropout layers' p"),
    Effect("model.input_shape", [1, 28, 28], [1, 32, 32], built(lambda t: t.model.num_parameters()),
           "the input the model takes (MNIST's 28x28 do not fit 32x32: refused)"),
    Effect("model.num_classes", 10, 12, built(lambda t: t.model.num_parameters()),
           "the scores the model must give (the model file's 10: refused)"),
    Effect("model.layers", None, ["flatten", {"linear": 10}], built(lambda t: t.model.num_parameters()),
           "the layers built"),
    Effect("optimizer.alpha", 0.99, 0.5, optimizer_run, "the weights after 8 steps", {"optimizer": opt_cfg("rmsprop")}),
    Effect("optimizer.betas", [0.9, 0.999], [0.5, 0.9], optimizer_run, "the weights after 8 steps"),
    Effect("optimizer.clip_norm", None, 0.5, optimizer_run, "the weights after 8 steps"),
    Effect("optimizer.eps", 1e-8, 1.0, optimizer_run, "the weights after 8 steps"),
    Effect("optimizer.lr", 0.003, 0.01, optimizer_run, "the lr and the weights"),
    Effect("optimizer.momentum", 0.0, 0.9, optimizer_run, "the weights after 8 steps", {"optimizer": opt_cfg("sgd")}),
    Effect("optimizer.name", "adam", "sgd", optimizer_run, "the update rule (and its schema's defaults)"),
    Effect("optimizer.nesterov", False, True, optimizer_run, "the weights after 8 steps",
           {"optimizer": opt_cfg("sgd", momentum=0.9)}),
    Effect("optimizer.schedule.div_factor", 25.0, 5.0, optimizer_run, "the lr of each step"),
    Effect("optimizer.schedule.final_div_factor", 1e4, 10.0, optimizer_run, "the lr of each step"),
    Effect("optimizer.schedule.gamma", 0.1, 0.5, optimizer_run, "the lr of each step",
           {"optimizer.schedule.name": "step", "optimizer.schedule.step_size": 3}),
    Effect("optimizer.schedule.min_lr", 0.0, 1e-3, optimizer_run, "the lr of each step",
           {"optimizer.schedule.name": "cosine"}),
    Effect("optimizer.schedule.name", "onecycle", "constant", optimizer_run, "the lr of each step"),
    Effect("optimizer.schedule.pct_start", 0.3, 0.6, optimizer_run, "the lr of each step"),
    Effect("optimizer.schedule.step_size", 3, 5, optimizer_run, "the lr of each step",
           {"optimizer.schedule.name": "step"}),
    Effect("optimizer.schedule.warmup_steps", 0, 3, optimizer_run, "the lr of each step",
           {"optimizer.schedule.name": "cosine"}),
    Effect("optimizer.weight_decay", 0.0, 0.1, optimizer_run, "the weights after 8 steps"),
    Effect("train.epochs", 1, 2, built(lambda t: t.total_steps), "the steps of the run"),
    Effect("train.batch_size", 32, 64, built(lambda t: t.steps_per_epoch), "the steps per epoch"),
    Effect("train.max_steps", None, 5, built(lambda t: t.total_steps), "the steps of the run"),
    Effect("train.eval_every", 3, 4, loop(evaluated), "the evaluated steps", {"train.max_steps": 12}),
    Effect("train.eval_batch_size", 100, 32, loop(lambda t, r, s: sorted(s["eval_batches"])),
           "the batches evaluation runs", {"train.max_steps": 1}),
    Effect("train.checkpoint_every", 3, 4, loop(lambda t, r, s: s["saved"]), "the steps of last.npz",
           {"train.max_steps": 12}),
    Effect("train.init_from", None, "RUN", built(lambda t: t.model.state_dict()["0.weight"]),
           "the initial weights (a run's best)"),
    Effect("train.patience", 0, 2, loop(lambda t, r, s: r["steps"]), "the step the run stops at",
           {"train.max_steps": 12, "train.eval_every": 1}),
    Effect("train.label_smoothing", 0.0, 0.2, loop(lambda t, r, s: r["train_loss"]), "the training loss",
           {"train.max_steps": 2}),
    Effect("train.progress", True, False, built(lambda t: [c.enabled for c in t.callbacks if hasattr(c, "bar")]),
           "the progress bar"),
    Effect("logger", {"csv": config.CsvConfig()}, {}, built(lambda t: [type(c).__name__ for c in t.callbacks]),
           "the loggers among the callbacks (metrics.csv)"),
    Effect("seed", 0, 1, built(lambda t: (t.model.state_dict()["0.weight"], t.splits.val_indices)),
           "the initial weights and the validation split"),
    Effect("debug", False, True, debug_shown, "a bad value: one paragraph and status 2, or the traceback"),
]
# Read by the train command and netlab.fit before the Trainer exists (the Trainer never sees it):
# test_resume.py (a resumed run ends bit-identical), test_api.py and test_cli.py run it.
NOT_IN_THE_TABLE = {"train.resume"}


def _differ(a, b) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return any(_differ(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.shape(a) != np.shape(b) or not np.array_equal(a, b)
    return a != b


class Env:
    def __init__(self, tmp, script=None):
        self.tmp, self.script = tmp, script


def test_every_key_has_a_row():
    keys = [e.key for e in KEY_EFFECTS]
    assert len(keys) == len(set(keys))
    assert set(keys) | NOT_IN_THE_TABLE == set(config.schema_keys(config.Config))


@pytest.mark.parametrize("effect", KEY_EFFECTS, ids=[e.key for e in KEY_EFFECTS])
def test_every_key_changes_something_observable(effect, tmp_path, run):
    seen = []
    for value in (effect.a, effect.b):
        cfg = copy.deepcopy(BASE)
        for key, v in (effect.context or {}).items():
            set_key(cfg, key, copy.deepcopy(v))
        if value == "nowhere":
            value = str(tmp_path / "nowhere")
        if value == "RUN":
            value = str(run)
        if effect.key == "optimizer.name":
            cfg.optimizer = opt_cfg(value)
        elif effect.key == "model.layers" and value is None:
            pass  # the seed CNN's own layers
        else:
            set_key(cfg, effect.key, copy.deepcopy(value))
        script = {s: [0.5, 0.6, 0.4, 0.4, 0.4, 0.4, 0.7, 0.8][s - 1] for s in range(1, 9)} \
            if effect.key == "train.patience" else None
        seen.append(effect.observe(cfg, Env(tmp_path, script)))
    assert _differ(*seen), f"{effect.key}={effect.a!r} and ={effect.b!r} give the same {effect.differs}: {seen[0]!r}"


# ------------------------------------------------- the extras' defaults, checked on every install
def test_tracker_defaults_keep_everything_on_this_machine(tmp_path, monkeypatch):
    """logger=mlflow without a tracking URI logs into mlruns/ where you run (never a server
    nobody chose), the environment's MLFLOW_TRACKING_URI when set; TensorBoard writes inside
    the run folder. Checked with a stand-in for mlflow, so on the plain install too."""
    import sys
    import types

    from netlab import loggers

    assert (config.MLflowConfig.tracking_uri, config.MLflowConfig.experiment) == (None, "netlab")
    assert config.TensorBoardConfig().dir == "tensorboard" and config.CsvConfig().file == "metrics.csv"
    calls = {}
    fake = types.ModuleType("mlflow")
    fake.set_tracking_uri = lambda uri: calls.setdefault("uri", []).append(uri)
    fake.set_experiment = lambda name: calls.setdefault("experiment", []).append(name)
    fake.start_run = lambda run_name: types.SimpleNamespace(name=run_name)
    fake.log_params = lambda params: calls.setdefault("params", params)
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.chdir(tmp_path)
    trainer = types.SimpleNamespace(cfg=BASE)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    loggers.MLflowLogger(config.MLflowConfig(), tmp_path / "run").on_fit_start(trainer)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:///elsewhere")
    loggers.MLflowLogger(config.MLflowConfig(), tmp_path / "run").on_fit_start(trainer)
    assert calls["uri"] == ["sqlite:///mlruns/mlflow.db", "file:///elsewhere"]
    assert calls["experiment"] == ["netlab", "netlab"] and (tmp_path / "mlruns").is_dir()
    assert calls["params"]["optimizer.lr"] == str(BASE.optimizer.lr)


# ------------------------------------------------------------ adversarial: every numeric setting's range
import copy  # noqa: E402
import math  # noqa: E402
import typing  # noqa: E402

from omegaconf import MISSING  # noqa: E402

HOSTILE = [float("nan"), float("inf"), float("-inf"), -1, 0, 1e30, "abc", True]


def _numeric_settings():
    """(schema, dotted key, rule) for every setting whose rule is a number's, across every schema the commands use."""
    where = [(config.BackendConfig, "backend.", "train"), (config.DataConfig, "data.", "train"),
             (config.AugmentConfig, "data.augment.", "train"), (config.TrainConfig, "train.", "train"),
             (config.ScheduleConfig, "optimizer.schedule.", "train"), (config.Config, "", "train"),
             (config.ModelConfig, "model.", "train"), (config.RangeTestConfig, "lr_find.", "lr_find"),
             *((c, "optimizer.", f"optimizer={n}") for n, c in config.OPTIMIZER_CONFIGS.items()),
             *((c, "", c.__name__) for c in (config.EvaluateConfig, config.PredictConfig, config.ExportConfig,
                                             config.ServeConfig, config.BenchConfig))]
    seen = set()
    for cls, prefix, app in where:
        for f in dataclasses.fields(cls):
            rule = f.metadata.get("rule")
            if rule is None or not rule.text.startswith(("an integer", "a finite number")):
                continue
            if cls is config.ScheduleConfig or prefix != "optimizer." or f.name not in ("schedule",):
                key = (app, prefix + f.name)
                if key not in seen and not (app.startswith("optimizer=") and f.name in ("weight_decay", "clip_norm")
                                            and app != "optimizer=sgd"):
                    seen.add(key)
                    yield app, prefix + f.name, rule


def _cases(per_key=2):
    """Two refused hostile values per setting, rotating through HOSTILE so that every value meets many
    settings (all eight for every setting would cost ~40 s of validate() on two cores)."""
    for i, (app, key, rule) in enumerate(_numeric_settings()):
        refused = [v for v in HOSTILE if not rule.ok(v)]
        for j in range(per_key):
            v = refused[(i * per_key + j) % len(refused)]
            yield pytest.param(app, key, v, id=f"{app}:{key}={v!r}")


CASES = list(_cases())


@pytest.fixture(scope="module")
def composed():
    return {"train": OmegaConf.to_container(compose(*small_config_overrides())),
            "lr_find": OmegaConf.to_container(compose(*small_config_overrides(), config_name="lr_find"))}


def small_config_overrides():
    from conftest import SMALL
    return SMALL


def _set(tree, key, value):
    *parents, last = key.split(".")
    for p in parents:
        tree = tree[p]
    tree[last] = value


@pytest.mark.parametrize("app,key,value", CASES)
def test_every_numeric_setting_refuses_hostile_values_by_name(composed, app, key, value):
    """nan, inf, -1, 0 (where invalid), 1e30, text and a bool: one ConfigError naming the key, via validate()."""
    if app in ("train", "lr_find") or app.startswith("optimizer="):
        tree, schema = copy.deepcopy(composed["lr_find" if app == "lr_find" else "train"]), (
            config.LrFindConfig if app == "lr_find" else config.Config)
        if app.startswith("optimizer="):
            tree["optimizer"] = {"name": app.split("=")[1]}
    else:
        schema = getattr(config, app)
        tree = {"checkpoint": "run", "image": "x.png"} if schema is not config.BenchConfig else \
            {"model": copy.deepcopy(composed["train"]["model"])}
        if schema is not config.PredictConfig:
            tree.pop("image", None)
    _set(tree, key, value)
    if key == "data.augment.blotch_max" and isinstance(value, (int, float)):
        tree["data"]["augment"]["blotch_min"] = 1
    with pytest.raises(ConfigError) as caught:
        validate(tree, schema)
    message = str(caught.value)
    assert key in message, message
    assert message.count("\n") == 0, message


def test_the_property_covers_every_numeric_setting():
    """The sweep above reaches each schema's numeric settings, not a convenient few."""
    keys = {key for _, key, _ in _numeric_settings()}
    for must in ("optimizer.lr", "optimizer.eps", "optimizer.alpha", "optimizer.momentum", "train.batch_size",
                 "data.val_fraction", "data.augment.degrees", "optimizer.schedule.gamma", "seed", "port", "top",
                 "lr_find.steps", "repeats", "std", "model.dropout", "backend.threads"):
        assert must in keys, must
    assert len(CASES) >= 120 and {repr(c.values[2]) for c in CASES} == {repr(v) for v in HOSTILE}


@pytest.mark.parametrize("shape,key,value,words", [
    ([1, 28, 28], "blotch_max", 29, "at most the image's side (28)"),
    ([3, 8, 8], "blotch_max", 9, "at most the image's side (8)"),
    ([1, 28, 28], "pixels", 28.0, "less than the image's side (28)"),
    ([3, 16, 12], "pixels", 12.0, "less than the image's side (12)"),
])
def test_augmentation_sizes_are_bounded_by_the_image(composed, shape, key, value, words):
    """A blotch or a shift bigger than the image would be clipped silently: refused, naming the key."""
    tree = copy.deepcopy(composed["train"])
    tree["model"]["input_shape"] = shape
    aug = tree["data"]["augment"]
    aug.update(blotch_p=0.5, translate_p=0.5, blotch_min=1, **{key: value})
    with pytest.raises(ConfigError, match=re.escape(f"data.augment.{key} must be {words}")):
        validate(tree)
    aug[key] = value - 1
    validate(tree)  # one less fits
