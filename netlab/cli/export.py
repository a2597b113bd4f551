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

from .. import backend, data, saved
from ..config import ExportConfig, validate
from ..errors import BackendError, ConfigError
from ..outputs import check_output
from ..exporters import EXPORTERS, onnx
from . import CONF
from .exits import command, user_errors


@user_errors
def export(raw: DictConfig) -> dict:
    cfg = validate(raw, ExportConfig)
    cfg.backend.name = "numpy"  # the exported arrays and the ONNX Runtime comparison are NumPy's
    exporter = EXPORTERS.lookup(cfg.format)
    source = saved.resolve(cfg.checkpoint, cfg.which)
    if cfg.out:  # checked before anything is read
        check_output(cfg.out, "out", inputs=[source])
    trained = saved.open_for(cfg)
    model, run_cfg, mean, std, path = trained.model, trained.config, trained.mean, trained.std, trained.path
    out = Path(cfg.out) if cfg.out else (trained.run_dir or path.parent) / f"{path.stem}{exporter.SUFFIX}"
    meta = {"model": yaml.safe_dump({"layers": run_cfg.model.layers}, default_flow_style=True).strip(),
            "model_name": run_cfg.model.name, "dataset": run_cfg.data.name,
            "classes": json.dumps(trained.classes), "num_classes": run_cfg.model.num_classes,
            "input": data.input_description(run_cfg.data.name, run_cfg.model.input_shape),
            "checkpoint_step": trained.step}
    try:
        exporter.write(model, mean, std, list(run_cfg.model.input_shape), out, meta)
    except ImportError as exc:
        raise BackendError(f"format={cfg.format} needs the package {exc.name!r}: pip install -e '.[export]'") from None
    report = {"checkpoint": str(path), "format": cfg.format, "out": str(out), "bytes": out.stat().st_size}
    if cfg.format == "onnx":
        report["opset"] = onnx.OPSET
        if cfg.verify != "none":
            report["verify"] = _verify(cfg, model, mean, std, run_cfg, out)
    print(json.dumps(report, indent=2))
    return report


def _verify(cfg, model, mean, std, run_cfg, out: Path) -> dict:
    if cfg.verify == "random":
        gen = backend.Generator(0)
        images = backend.to_numpy(gen.random(backend.namespace("numpy"), (256, *run_cfg.model.input_shape)))
        return onnx.agreement(out, model, mean, std, images)
    dc = run_cfg.data
    splits = data.load(backend.namespace("numpy"), dc.name, cfg.data.root, val_fraction=dc.val_fraction,
                       seed=run_cfg.seed, download=cfg.data.download, verify=cfg.data.verify, limit=dc.limit,
                       input_shape=run_cfg.model.input_shape, test_fraction=dc.test_fraction, classes=dc.classes)
    if tuple(splits.test_x.shape[1:]) != tuple(run_cfg.model.input_shape):
        raise ConfigError("the test images do not fit the model's input shape")
    return onnx.agreement(out, model, mean, std, backend.to_numpy(splits.test_x), backend.to_numpy(splits.test_y))


@command(ExportConfig)
@hydra.main(version_base="1.3", config_path=CONF, config_name="export")
def main(cfg: DictConfig) -> None:
    export(cfg)

