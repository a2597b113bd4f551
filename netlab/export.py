"""``python -m netlab.export checkpoint=RUN_DIR format=onnx|safetensors [out=FILE]`` (``netlab-export``):
a trained model for use outside netlab. ONNX files are checked in ONNX Runtime against
netlab's own logits (``verify=random`` by default, ``verify=test`` on the run's test set)."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import numpy as np
import yaml
from omegaconf import DictConfig

from . import backend, checkpoint, data
from .app import command, user_errors
from .config import ExportConfig, validate
from .errors import BackendError, ConfigError
from .exporters import EXPORTERS, OPSET


def onnx_agreement(path: Path, model, mean: float, std: float, images: np.ndarray, labels=None,
                   batch: int = 500) -> dict:
    """ONNX Runtime's logits for ``images`` (N, C, H, W) in [0, 1] beside netlab's: the largest
    difference, the share of equal arg-maxes, and both accuracies when ``labels`` are given."""
    try:
        import onnxruntime
    except ImportError:
        raise BackendError("verifying an ONNX file needs onnxruntime: pip install -e '.[export]'") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xp = backend.namespace("numpy")
    ours, theirs = [], []
    for lo in range(0, len(images), batch):
        x = images[lo:lo + batch].astype(np.float32)
        ours.append(backend.to_numpy(model.forward(data.normalize(xp.asarray(x), mean, std))))
        theirs.append(session.run(["logits"], {"image": x})[0])
    ours, theirs = np.concatenate(ours), np.concatenate(theirs)
    result = {"images": len(images), "max_abs_logit_difference": float(np.abs(ours - theirs).max()),
              "same_prediction": float((ours.argmax(1) == theirs.argmax(1)).mean())}
    if labels is not None:
        result.update(netlab_accuracy=float((ours.argmax(1) == labels).mean()),
                      onnxruntime_accuracy=float((theirs.argmax(1) == labels).mean()))
    return result


@user_errors
def export(raw: DictConfig) -> dict:
    cfg = validate(raw, ExportConfig)
    path = checkpoint.resolve(cfg.checkpoint, cfg.which)
    model, run_cfg, mean, std = checkpoint.load_model(path, backend.namespace("numpy"), conv=cfg.backend.conv)
    write, suffix = EXPORTERS.lookup(cfg.format)
    out = Path(cfg.out) if cfg.out else (checkpoint.run_dir(path) or path.parent) / f"{path.stem}{suffix}"
    meta = {"model": yaml.safe_dump({"layers": run_cfg.model.layers}, default_flow_style=True).strip(),
            "model_name": run_cfg.model.name, "dataset": run_cfg.data.name,
            "classes": json.dumps(list(data.DATASETS[run_cfg.data.name].classes)),
            "num_classes": run_cfg.model.num_classes, "input": "image: float32 (N, 1, 28, 28), pixels in [0, 1], "
            "a light digit on black as netlab.predict prepares it", "checkpoint_step": checkpoint.read(path).counters["step"]}
    try:
        write(model, mean, std, list(run_cfg.model.input_shape), out, meta)
    except ImportError as exc:
        raise BackendError(f"format={cfg.format} needs the package {exc.name!r}: pip install -e '.[export]'") from None
    report = {"checkpoint": str(path), "format": cfg.format, "out": str(out), "bytes": out.stat().st_size}
    if cfg.format == "onnx":
        report["opset"] = OPSET
        if cfg.verify != "none":
            report["verify"] = _verify(cfg, model, mean, std, run_cfg, out)
    print(json.dumps(report, indent=2))
    return report


def _verify(cfg, model, mean, std, run_cfg, out: Path) -> dict:
    if cfg.verify == "random":
        gen = backend.Generator(0)
        images = backend.to_numpy(gen.random(backend.namespace("numpy"), (256, *run_cfg.model.input_shape)))
        return onnx_agreement(out, model, mean, std, images)
    dc = run_cfg.data
    splits = data.load(backend.namespace("numpy"), dc.name, cfg.data.root, val_fraction=dc.val_fraction,
                       seed=run_cfg.seed, download=cfg.data.download, verify=cfg.data.verify, limit=dc.limit)
    if tuple(splits.test_x.shape[1:]) != tuple(run_cfg.model.input_shape):
        raise ConfigError("the test images do not fit the model's input shape")
    return onnx_agreement(out, model, mean, std, backend.to_numpy(splits.test_x), backend.to_numpy(splits.test_y))


@command
@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
