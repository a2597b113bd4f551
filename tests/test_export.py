"""The model outside netlab: ONNX graphs checked in ONNX Runtime for every model file, and
safetensors weights read back by NumPy and by PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from netlab import backend, saved, training
from netlab.config import CONF_DIR
from netlab.data.datasets import DATASETS, load_split
from netlab.errors import CheckpointError
from conftest import FIXTURE, HAS_TORCH, cli, small_config

def _mnist_shaped(path) -> bool:
    """A model file for 28x28 grey images in 10 classes, as the fixture's (colour and EMNIST
    models are exported in tests/test_datasets.py, on data of their own)."""
    import yaml

    spec = yaml.safe_load(path.read_text())
    return list(spec.get("input_shape", [1, 28, 28])) == [1, 28, 28] and spec.get("num_classes", 10) == 10


# every model file for MNIST-shaped images (the fixture's), and one with every other layer word
MODEL_FILES = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml") if _mnist_shaped(p))
EVERY_LAYER = [{"conv": {"out": 4, "kernel": 3, "padding": 1}}, "tanh",
               {"residual": {"layers": [{"conv": {"out": 6, "kernel": 3, "stride": 2, "padding": 1}}, "batchnorm",
                                        "gelu", {"conv": {"out": 6, "kernel": [3, 1], "padding": [1, 0]}}]}},
               {"leaky_relu": 0.2}, {"residual": {"layers": [{"conv": {"out": 6, "kernel": 3, "padding": 1}}, "sigmoid"],
                                                  "projection": True}},
               {"avgpool": {"kernel": 3, "stride": 2, "padding": 1}}, "global_avgpool", {"linear": 10}]


@pytest.fixture(scope="module", params=[*MODEL_FILES, "every_layer"])
def trained(request, tmp_path_factory):
    """A few steps of each model file on the fixture: batch-norm statistics and weights moved."""
    out = tmp_path_factory.mktemp(request.param) / "run"
    if request.param == "every_layer":
        cfg = small_config("model=mlp", "train.max_steps=3", "train.eval_every=3")
        cfg.model.name, cfg.model.layers = "every_layer", EVERY_LAYER
    else:
        cfg = small_config(f"model={request.param}", "train.max_steps=3", "train.eval_every=3")
    training.Trainer(cfg, out).fit()
    return out


def test_onnx_matches_netlab_on_the_test_images(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from netlab.exporters.onnx import agreement as onnx_agreement

    done = cli("netlab.export", f"checkpoint={trained}", f"out={tmp_path / 'model.onnx'}", "verify=none",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    loaded = saved.load(trained)
    model, mean, std = loaded.model, loaded.mean, loaded.std
    images, labels = load_split(DATASETS["mnist"], FIXTURE, "test", verify=False)
    result = onnx_agreement(tmp_path / "model.onnx", model, mean, std,
                            images.astype(np.float32) / 255, labels)
    assert result["max_abs_logit_difference"] < 1e-4 and result["same_prediction"] == 1.0
    assert result["netlab_accuracy"] == result["onnxruntime_accuracy"]


def test_onnx_graph_says_what_it_takes(trained, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    done = cli("netlab.export", f"checkpoint={trained}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["out"] == str(trained / "best.onnx") and report["opset"] == 17
    assert report["verify"]["max_abs_logit_difference"] < 1e-4
    graph = onnx.load(trained / "best.onnx").graph
    (image,) = graph.input
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert image.name == "image" and dims == ["batch", 1, 28, 28]
    assert [o.name for o in graph.output] == ["logits", "probabilities"]
    assert [n.op_type for n in graph.node][:2] == ["Sub", "Div"]  # the normalisation, folded in front


def test_safetensors_read_back_by_numpy_and_pytorch(trained, tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.numpy import load_file

    done = cli("netlab.export", f"checkpoint={trained}", "format=safetensors", f"out={tmp_path / 'w.safetensors'}",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    loaded = saved.load(trained)
    model, mean, std, run_cfg = loaded.model, loaded.mean, loaded.std, loaded.config
    tensors = load_file(str(tmp_path / "w.safetensors"))
    assert set(tensors) == set(model.state_dict())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(tensors[k], v)
    from netlab.exporters.safetensors import read_safetensors

    _, meta = read_safetensors(tmp_path / "w.safetensors")
    assert float(meta["mean"]) == mean and float(meta["std"]) == std and meta["model_name"] == run_cfg.model.name
    if HAS_TORCH:
        import safetensors.torch
        import torch

        from netlab.torch_twin import torch_twin

        twin = torch_twin(model).eval()  # (a residual block is netlab.torch_twin.residual_class(): body, projection)
        for p in twin.parameters():
            torch.nn.init.zeros_(p)
        twin.load_state_dict(safetensors.torch.load_file(str(tmp_path / "w.safetensors")), strict=True)
        x = np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)
        np.testing.assert_allclose(twin(torch.from_numpy(x)).detach().numpy(),
                                   backend.to_numpy(model.forward(x)), atol=1e-5)


@pytest.mark.parametrize("content,message", [
    (b"", "too short"),
    ((10 ** 12).to_bytes(8, "little") + b"{}", "its header claims"),
    ((2).to_bytes(8, "little") + b"[]", "not a mapping"),
    ((9).to_bytes(8, "little") + b"not json!", "not JSON"),
    (None, "claim"),
])
def test_hostile_safetensors_files_are_refused(tmp_path, content, message):
    pytest.importorskip("safetensors")
    from netlab.exporters.safetensors import read_safetensors

    if content is None:  # a header that promises far more data than the file has
        header = json.dumps({"w": {"dtype": "F32", "shape": [10 ** 6], "data_offsets": [0, 4 * 10 ** 6]}}).encode()
        content = len(header).to_bytes(8, "little") + header + b"\0" * 16
    (tmp_path / "x.safetensors").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_safetensors(tmp_path / "x.safetensors")


def test_an_output_that_cannot_be_written_is_one_paragraph(run, tmp_path):
    pytest.importorskip("onnx")
    done = cli("netlab.export", f"checkpoint={run}", "verify=none", "out=/proc/no-such-folder/model.onnx", cwd=tmp_path)
    assert done.returncode == 2 and "cannot write /proc/no-such-folder" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
