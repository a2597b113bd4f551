"""Model files (conf/model/*.yaml) become Sequentials; every mistake in one is one clear error."""

from __future__ import annotations

import pytest

from netlab import models, nn
from netlab.config import CONF_DIR
from netlab.errors import ConfigError
from conftest import small_config

MODEL_FILES = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


@pytest.mark.parametrize("name", MODEL_FILES)
def test_every_model_file_builds_in_the_order_it_is_written(name):
    cfg = small_config(f"model={name}").model
    model = models.build(cfg)
    x = model.xp.zeros((2, 1, 28, 28), dtype=model.xp.float32)
    assert tuple(model.forward(x).shape) == (2, 10)
    written = [spec if isinstance(spec, str) else next(iter(spec)) for spec in cfg.layers]
    names = {nn.Conv2d: "conv", nn.Linear: "linear", nn.MaxPool2d: "maxpool", nn.AvgPool2d: "avgpool",
             nn.ReLU: "relu", nn.Flatten: "flatten", nn.Dropout: "dropout", nn.BatchNorm2d: "batchnorm",
             nn.BatchNorm1d: "batchnorm"}
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
