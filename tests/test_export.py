"""The model outside netlab: ONNX graphs checked in ONNX Runtime for every model file, and
safetensors weights read back by NumPy and by PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from netlab import backend, checkpoint, saved, training
from netlab.config import CONF_DIR
from netlab.data.datasets import DATASETS, load_split
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
    from netlab.exporters.onnx import agreement as onnx_agreement

    done = cli("netlab.export", f"checkpoint={trained}", f"out={tmp_path / 'model.onnx'}", "verify=none",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    loaded = saved.load(trained)
    model, mean, std = loaded.model, loaded.mean, loaded.std
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
    from netlab.exporters.safetensors import read_safetensors

    if content is None:  # a header that promises far more data than the file has
        header = json.dumps({"w": {"dtype": "F32", "shape": [10 ** 6], "data_offsets": [0, 4 * 10 ** 6]}}).encode()
        content = len(header).to_bytes(8, "little") + header + b"\0" * 16
    (tmp_path / "x.safetensors").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_safetensors(tmp_path / "x.safetensors")


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("seed") / "run"
    training.Trainer(small_config("train.max_steps=6", "train.eval_every=3"), out).fit()
    return out


def exported(run):
    """The run's best.safetensors, written by the export command."""
    pytest.importorskip("safetensors")
    if not (run / "best.safetensors").exists():
        done = cli("netlab.export", f"checkpoint={run}", "format=safetensors", cwd=run)
        assert done.returncode == 0, done.stderr
    return run / "best.safetensors"


def plain_safetensors(run, path):
    """The run's weights as safetensors with no metadata at all, as another program might write them."""
    pytest.importorskip("safetensors")
    from safetensors.numpy import save_file

    save_file(checkpoint.read(run, "best").model, str(path))
    return path


@pytest.mark.parametrize("source", ["run", "npz", "safetensors", "plain"])
def test_training_can_start_from_weights_made_elsewhere(seed_run, tmp_path, source):
    if source == "run":
        path = seed_run
    elif source == "npz":
        path = seed_run / "checkpoints" / "best.npz"
    elif source == "safetensors":
        path = exported(seed_run)
    else:
        path = plain_safetensors(seed_run, tmp_path / "plain.safetensors")
    trainer = training.Trainer(small_config("train.max_steps=2", f"train.init_from={path}"), tmp_path / "tuned")
    for k, v in checkpoint.read(seed_run, "best").model.items():
        np.testing.assert_array_equal(trainer.model.state_dict()[k], v)
    assert trainer.at.step == 0 and trainer.fit()["steps"] == 2  # a new run: its own counters and optimizer


@pytest.mark.parametrize("overrides,message", [
    (["model=mlp"], "the weights do not fit model 'mlp'"),
    (["model=lenet5"], "missing"),
    (["train.resume=somewhere"], "train.init_from must be unset when resuming"),
])
def test_init_from_refuses_weights_that_do_not_fit(seed_run, tmp_path, overrides, message):
    from netlab.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        training.Trainer(small_config(f"train.init_from={seed_run}", *overrides), tmp_path / "x")


def test_evaluate_and_predict_take_outside_weights_with_a_model_file(seed_run, tmp_path):
    pytest.importorskip("safetensors")
    from PIL import Image

    plain = plain_safetensors(seed_run, tmp_path / "plain.safetensors")
    ck = checkpoint.read(seed_run, "best")
    # weights that do not say how their images were normalised are never fed a guess: evaluate,
    # like predict and serve, asks for mean= and std=
    guessed = cli("netlab.evaluate", f"checkpoint={plain}", "model=seed_cnn", f"data.root={FIXTURE}",
                  "data.verify=false", cwd=tmp_path)
    assert guessed.returncode == 2 and "give mean= and std=" in guessed.stderr
    assert not (tmp_path / "evaluation_plain_test.json").exists()
    done = cli("netlab.evaluate", f"checkpoint={plain}", "model=seed_cnn", f"data.root={FIXTURE}",
               "data.verify=false", f"mean={ck.mean}", f"std={ck.std}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ours = json.loads((tmp_path / "evaluation_plain_test.json").read_text())
    theirs = json.loads((seed_run / "results.json").read_text())
    assert ours["test_accuracy"] == pytest.approx(theirs["test_accuracy_at_best_step"])  # same weights, same stats
    images, _ = load_split(DATASETS["mnist"], FIXTURE, "test", verify=False)
    Image.fromarray(255 - images[0]).save(tmp_path / "d.png")
    no_stats = cli("netlab.predict", f"checkpoint={plain}", "model=seed_cnn", f"image={tmp_path / 'd.png'}",
                   cwd=tmp_path)
    assert no_stats.returncode == 2 and "give mean= and std=" in no_stats.stderr
    with_stats = cli("netlab.predict", f"checkpoint={plain}", "model=seed_cnn", f"image={tmp_path / 'd.png'}",
                     f"mean={ck.mean}", f"std={ck.std}", "json=true", cwd=tmp_path)
    exported_answer = cli("netlab.predict", f"checkpoint={exported(seed_run)}", f"image={tmp_path / 'd.png'}",
                          "json=true", cwd=tmp_path)
    assert with_stats.returncode == 0 and exported_answer.returncode == 0, with_stats.stderr + exported_answer.stderr
    assert json.loads(with_stats.stdout)["probabilities"] == json.loads(exported_answer.stdout)["probabilities"]
    missing = cli("netlab.evaluate", f"checkpoint={plain}", f"data.root={FIXTURE}", cwd=tmp_path)
    assert missing.returncode == 2 and "name the model file it fits, e.g. model=seed_cnn" in missing.stderr
