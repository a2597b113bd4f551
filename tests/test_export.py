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


# ------------------------------------------------------------ adversarial: safetensors read as data
import re  # noqa: E402

from netlab.exporters.safetensors import read_safetensors  # noqa: E402


def st_file(tmp_path, header, data=b"", n=None, raw_header=None):
    """A safetensors file by hand: 8-byte little-endian header length, the header, the data."""
    head = raw_header if raw_header is not None else json.dumps(header).encode()
    path = tmp_path / "w.safetensors"
    path.write_bytes((len(head) if n is None else n).to_bytes(8, "little") + head + data)
    return path


@pytest.mark.parametrize("kind,raw,expected", [
    ("F16", [0x3C00, 0xC000, 0x3555, 0x7BFF], [1.0, -2.0, 0.333251953125, 65504.0]),
    ("BF16", [0x3F80, 0x4049, 0xC2F7, 0x0000], [1.0, 3.140625, -123.5, 0.0]),
])
def test_half_precision_weights_read_exactly(tmp_path, kind, raw, expected):
    """float16 and bfloat16 bytes read as the numbers they are (worked out by hand from the bits)."""
    data = np.array(raw, dtype="<u2").tobytes()
    path = st_file(tmp_path, {"w": {"dtype": kind, "shape": [2, 2], "data_offsets": [0, 8]}}, data)
    tensors, meta = read_safetensors(path)
    assert tensors["w"].shape == (2, 2) and meta == {}
    assert tensors["w"].ravel().tolist() == expected
    assert tensors["w"].dtype == (np.float16 if kind == "F16" else np.float32)


W = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
EIGHT = np.array([1.0, 2.0], "<f4").tobytes()


@pytest.mark.parametrize("header,data,n,raw,words", [
    (W, EIGHT, 10 ** 6, None, "its header claims 1,000,000 bytes"),
    (W, EIGHT, 2 ** 63, None, "its header claims"),
    (W, b"", 0, b"", "its header is not JSON"),
    (None, EIGHT, None, b"{not json", "its header is not JSON"),
    (None, EIGHT, None, b"\xff\xfe{}", "its header is not JSON"),
    (None, EIGHT, None, b"[1, 2]", "its header is not a mapping"),
    (None, EIGHT, None, b'"w"', "its header is not a mapping"),
    (None, EIGHT, None, b"7", "its header is not a mapping"),
    ({"w": {"dtype": "F8_E4M3", "shape": [8], "data_offsets": [0, 8]}}, EIGHT, None, None, "has no valid dtype"),
    ({"w": {"dtype": "complex64", "shape": [1], "data_offsets": [0, 8]}}, EIGHT, None, None, "has no valid dtype"),
    ({"w": {"dtype": "F32", "shape": [2]}}, EIGHT, None, None, "has no valid dtype, shape and data_offsets"),
    ({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}, EIGHT, None, None, "has no valid dtype"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, EIGHT, None, None, "has no valid dtype"),
    ({"w": 5}, EIGHT, None, None, "has no valid dtype"),
    ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, EIGHT, None, None, "does not fit the file"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}, EIGHT, None, None, "does not fit the file"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, EIGHT, None, None, "does not fit the file"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, EIGHT, None, None, "does not fit the file"),
    ({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, EIGHT, None, None, "does not fit the file"),
    ({"w": {"dtype": "F32", "shape": [2 ** 40, 2 ** 40], "data_offsets": [0, 8]}}, EIGHT, None, None,
     "does not fit the file"),
    ({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}}, EIGHT, None, None, "has no valid dtype"),
    ({"w": {"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}}, EIGHT, None, None, "has no valid dtype"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0.0, 8.0]}}, EIGHT, None, None, "has no valid dtype"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, EIGHT, None, None, "overlap"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, EIGHT, None, None, "overlap"),
    (W, EIGHT + b"garbage!", None, None, "bytes that no tensor claims"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, EIGHT, None, None, "bytes that no tensor claims"),
    ({**W, "__metadata__": {"mean": 0.13}}, EIGHT, None, None, "its metadata is not a mapping of text"),
    ({**W, "__metadata__": ["a"]}, EIGHT, None, None, "its metadata is not a mapping of text"),
    ({**W, "__metadata__": {"m": {"nested": "x"}}}, EIGHT, None, None, "its metadata is not a mapping of text"),
    (None, EIGHT, None, b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
                        b'"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', "twice"),
    (W, np.array([1.0, np.nan], "<f4").tobytes(), None, None, "holds NaN or infinite values"),
    (W, np.array([np.inf, 2.0], "<f4").tobytes(), None, None, "holds NaN or infinite values"),
], ids=["header-past-file", "header-2**63", "header-empty", "not-json", "not-utf8", "list", "string", "number",
        "fp8", "complex", "no-offsets", "shape-text", "one-offset", "info-number", "shape-bigger", "range-bigger",
        "range-reversed", "negative-offset", "negative-dim", "huge-shape", "fractional-dim", "bool-dim",
        "float-offsets", "overlap", "same-range", "trailing", "hole", "meta-number", "meta-list", "meta-nested",
        "duplicate-key", "nan", "inf"])
def test_a_hostile_safetensors_file_is_refused(tmp_path, header, data, n, raw, words):
    """Each way a header or its byte ranges can lie is a CheckpointError saying what, before data is read."""
    path = st_file(tmp_path, header, data, n=n, raw_header=raw)
    with pytest.raises(CheckpointError, match=re.escape(str(path))) as caught:
        read_safetensors(path)
    assert words in str(caught.value), str(caught.value)


@pytest.mark.parametrize("size", [0, 3, 7])
def test_a_safetensors_file_shorter_than_its_length_field_is_refused(tmp_path, size):
    """Fewer than 8 bytes: 'too short'."""
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\x01" * size)
    with pytest.raises(CheckpointError, match="is not a safetensors file \\(too short\\)"):
        read_safetensors(path)


def test_a_real_safetensors_file_reads_back(tmp_path):
    """What the safetensors library writes (several dtypes, a 0-d tensor, metadata) reads back as it was."""
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array(3, dtype=np.int64),
              "c": np.array([0.5, -1.5], dtype=np.float16), "d": np.zeros((0, 4), np.float32)}
    save_file(arrays, str(tmp_path / "x.safetensors"), metadata={"mean": "0.1307"})
    tensors, meta = read_safetensors(tmp_path / "x.safetensors")
    assert meta == {"mean": "0.1307"}
    for k, a in arrays.items():
        assert tensors[k].dtype == a.dtype and tensors[k].shape == a.shape and np.array_equal(tensors[k], a)
