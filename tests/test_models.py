"""Model files (conf/model/*.yaml) become Sequentials; every mistake in one is one clear error,
and a model too big to build is refused before anything is allocated."""

from __future__ import annotations

import numpy as np
import pytest

from netlab import models, nn, saved
from netlab.config import CONF_DIR
from netlab.errors import CheckpointError, ConfigError
from conftest import small_config, tampered

MODEL_FILES = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


@pytest.mark.parametrize("name", MODEL_FILES)
def test_every_model_file_builds_in_the_order_it_is_written(name):
    from netlab.config import ModelConfig, compose

    cfg = ModelConfig(**{k: v for k, v in compose(f"model={name}").model.items()})  # whatever its data set
    model = models.build(cfg)
    x = model.xp.zeros((2, *cfg.input_shape), dtype=model.xp.float32)
    assert tuple(model.forward(x).shape) == (2, cfg.num_classes)
    written = [spec if isinstance(spec, str) else next(iter(spec)) for spec in cfg.layers]
    names = {nn.Conv2d: "conv", nn.Linear: "linear", nn.MaxPool2d: "maxpool", nn.AvgPool2d: "avgpool",
             nn.ReLU: "relu", nn.Flatten: "flatten", nn.Dropout: "dropout", nn.BatchNorm2d: "batchnorm",
             nn.BatchNorm1d: "batchnorm", nn.Residual: "residual", nn.GlobalAvgPool2d: "global_avgpool",
             nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.GELU: "gelu", nn.LeakyReLU: "leaky_relu"}
    assert [names[type(m)] for m in model] == written  # print(model) shows the model file


@pytest.mark.parametrize("conv", ["auto", "im2col", "fft"])
def test_backend_conv_sets_every_convolution(conv):
    model = models.build(small_config().model, conv)
    assert [m.algorithm for m in model if isinstance(m, nn.Conv2d)] == [conv, conv]


def test_a_conv_algorithm_that_cannot_compute_a_layer_is_one_config_error():
    cfg = small_config("model=seed_cnn").model
    cfg.layers[0] = {"conv": {"out": 16, "kernel": 5, "padding": 2, "stride": 2}}
    with pytest.raises(ConfigError, match=r"layer 0 \(conv\).*\(backend.conv=fft\).*stride"):
        models.build(cfg, "fft")
    models.build(cfg, "auto")  # auto takes im2col for it


def test_seed_cnn_sizes_and_parameter_count():
    model = models.build(small_config().model)
    conv1, conv2, fc1, fc2 = (m for m in model if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size, conv1.padding) == (1, 16, (5, 5), (2, 2))
    assert (conv2.in_channels, conv2.out_channels) == (16, 32)
    assert (fc1.in_features, fc1.out_features, fc2.in_features, fc2.out_features) == (32 * 7 * 7, 128, 128, 10)
    assert model.num_parameters() == 215_370
    assert [m.p for m in model if isinstance(m, nn.Dropout)] == [0.25]
    assert models.flops_per_image(model, (1, 28, 28)) == 2 * (28 * 28 * 16 * 25 + 14 * 14 * 32 * 16 * 25
                                                              + 1568 * 128 + 128 * 10)


@pytest.mark.parametrize("layers,message", [
    (["flatten", {"lineer": 10}], "unknown layer 'lineer'; choose one of: conv"),
    (["flattten", {"linear": 10}], "unknown layer 'flattten'"),
    ([{"linear": 10}], "add 'flatten' before it"),
    (["flatten", {"linear": 7}], r"must give \(10,\)"),
    ([{"conv": {"kernel": 3}}, "flatten", {"linear": 10}], "needs the argument 'out'"),
    ([{"conv": {"out": 4, "kernel": 40}}, "flatten", {"linear": 10}], "does not fit"),
    ([{"conv": {"out": 4, "kernal": 5}}, "flatten", {"linear": 10}], "unknown argument 'kernal'"),
    (["flatten", {"linear": 10.5}], "'out' must be an integer"),
    (["flatten", {"linear": 0}], "'out' must be an integer >= 1"),
    ([{"conv": {"out": -3}}, "flatten", {"linear": 10}], "'out' must be an integer >= 1"),
    ([{"conv": {"out": 4, "stride": 0}}, "flatten", {"linear": 10}], "'stride' must be an integer >= 1"),
    ([{"conv": {"out": 4, "padding": -1}}, "flatten", {"linear": 10}], "'padding' must be an integer >= 0"),
    ([{"maxpool": 0}, "flatten", {"linear": 10}], "'kernel' must be an integer >= 1"),
    ([{"maxpool": True}, "flatten", {"linear": 10}], "'kernel' must be an integer"),
    (["flatten", {"dropout": 1.5}, {"linear": 10}], "'p' must be a probability"),
    (["flatten", {"linear": "ten"}], "cannot read the entry"),
    ([{"conv": 4, "relu": None}, "flatten", {"linear": 10}], "cannot read the entry"),
])
def test_model_file_errors(layers, message):
    cfg = small_config().model
    cfg.layers = layers
    with pytest.raises(ConfigError, match=message):
        models.build(cfg)


MODEL_FILE_MISTAKES = [
    ("typo kernal", [{"conv": {"out": 4, "kernal": 5}}, "flatten", {"linear": 10}], "unknown argument 'kernal'"),
    ("typo padd", [{"conv": {"out": 4, "padd": 1}}, "flatten", {"linear": 10}], "unknown argument 'padd'"),
    ("typo strid", [{"maxpool": {"kernel": 2, "strid": 2}}, "flatten", {"linear": 10}], "unknown argument 'strid'"),
    ("typo bais", ["flatten", {"linear": {"out": 10, "bais": False}}], "unknown argument 'bais'"),
    ("typo p", ["flatten", {"dropout": {"prob": 0.5}}, {"linear": 10}], "unknown argument 'prob'"),
    ("args to relu", [{"relu": {"inplace": True}}, "flatten", {"linear": 10}], "relu takes no arguments"),
    ("fractional linear", ["flatten", {"linear": 10.5}], "'out' must be an integer"),
    ("fractional conv", [{"conv": {"out": 2.5}}, "flatten", {"linear": 10}], "'out' must be an integer"),
    ("fractional kernel", [{"conv": {"out": 2, "kernel": 3.0}}, "flatten", {"linear": 10}], "'kernel' must be an integer"),
    ("text size", [{"conv": {"out": "16"}}, "flatten", {"linear": 10}], "'out' must be an integer"),
    ("bool size", ["flatten", {"linear": True}], "'out' must be an integer"),
]


@pytest.mark.parametrize("case,layers,message", MODEL_FILE_MISTAKES, ids=[c[0] for c in MODEL_FILE_MISTAKES])
def test_model_file_mistakes_are_refused(case, layers, message):
    cfg = small_config().model
    cfg.layers = layers
    with pytest.raises(ConfigError, match=message):
        models.build(cfg)


# ------------------------------------------------------------------ sizes bounded before allocating
HUGE_MODELS = [
    ("conv of a million channels", [{"conv": {"out": 1000000, "kernel": 3}}, "flatten", {"linear": 10}]),
    ("linear of a billion units", ["flatten", {"linear": 1000000000}, {"linear": 10}]),
    ("kernel of a million", [{"conv": {"out": 2, "kernel": 1000000}}, "flatten", {"linear": 10}]),
    ("wide stack", ["flatten", {"linear": 20000}, {"linear": 20000}, {"linear": 10}]),
]


@pytest.mark.parametrize("case,layers", HUGE_MODELS, ids=[c[0] for c in HUGE_MODELS])
def test_a_checkpoint_asking_for_a_huge_model_is_refused_before_allocating(run, tmp_path, case, layers):
    import yaml

    def change(a):
        cfg = yaml.safe_load(str(a["config"]))
        cfg["model"]["layers"] = layers
        a["config"] = np.asarray(yaml.safe_dump(cfg))

    with pytest.raises(CheckpointError, match="refuses more than|does not fit"):
        saved.load(tampered(run, tmp_path, change))


@pytest.mark.parametrize("shape", [[1, 100000, 100000], [1, 28, 28, 28], [0, 28, 28], [-1, 28, 28]])
def test_absurd_input_shapes_are_refused(shape):
    cfg = small_config().model
    cfg.input_shape = shape
    with pytest.raises(ConfigError, match="input_shape"):
        models.build(cfg)
