"""The model outside netlab: ONNX graphs checked in ONNX Runtime for every model file, and
safetensors weights read back by NumPy and by PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from netlab import backend, checkpoint, training
from netlab.config import CONF_DIR
from netlab.data.files import DATASETS, load_split
from netlab.errors import CheckpointError
from conftest import FIXTURE, HAS_TORCH, cli, small_config

MODEL_FILES = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


@pytest.fixture(scope="module", params=MODEL_FILES)
def trained(request, tmp_path_factory):
    """A few steps of each model file on the fixture: batch-norm statistics and weights moved."""
    out = tmp_path_factory.mktemp(request.param) / "run"
    training.Trainer(small_config(f"model={request.param}", "train.max_steps=3", "train.eval_every=3"), out).fit()
    return out


def test_onnx_matches_netlab_on_the_test_images(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from netlab.export import onnx_agreement

    done = cli("netlab.export", f"checkpoint={trained}", f"out={tmp_path / 'model.onnx'}", "verify=none",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    model, run_cfg, mean, std = checkpoint.load_model(trained, backend.namespace("numpy"), "best")
    images, labels = load_split(DATASETS["mnist"], FIXTURE, "test", verify=False)
    result = onnx_agreement(tmp_path / "model.onnx", model, mean, std,
                            images[:, None].astype(np.float32) / 255, labels)
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
    model, run_cfg, mean, std = checkpoint.load_model(trained, backend.namespace("numpy"), "best")
    tensors = load_file(str(tmp_path / "w.safetensors"))
    assert set(tensors) == set(model.state_dict())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(tensors[k], v)
    from netlab.exporters import read_safetensors

    _, meta = read_safetensors(tmp_path / "w.safetensors")
    assert float(meta["mean"]) == mean and float(meta["std"]) == std and meta["model_name"] == run_cfg.model.name
    if HAS_TORCH:
        import safetensors.torch
        import torch

        from netlab.torch_twin import torch_twin

        twin = torch_twin(model).eval()
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
    from netlab.exporters import read_safetensors

    if content is None:  # a header that promises far more data than the file has
        header = json.dumps({"w": {"dtype": "F32", "shape": [10 ** 6], "data_offsets": [0, 4 * 10 ** 6]}}).encode()
        content = len(header).to_bytes(8, "little") + header + b"\0" * 16
    (tmp_path / "x.safetensors").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_safetensors(tmp_path / "x.safetensors")
