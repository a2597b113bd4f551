"""``python -m netlab.bench``: training throughput of netlab beside PyTorch, same net, same run.

For each batch size it times the training step (forward, loss, backward, Adam update) of
netlab and of the identical ``torch.nn.Sequential``, alternating the two after warm-up over
several repeats, with the same number of threads, and prints images/s (median, min, max),
the ratio, achieved GFLOP/s, and where netlab's step spends its time. ``mode=e2e`` instead
trains a whole recipe on real MNIST with both and reports training time (with and without
its evaluations) and test accuracy; ``mode=infer`` times evaluating the test images;
``mode=roofline`` sets each layer's time against this machine's measured limits.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from datetime import datetime
from pathlib import Path

import hydra
import yaml
from omegaconf import DictConfig

from .. import backend, losses, metrics, models, nn, optim
from ..config import CONF_DIR, AdamConfig, BenchConfig, compose, validate
from ..errors import ConfigError
from ..outputs import write_json
from ..torch_twin import torch_optimizer, torch_twin, train_like, twin_evaluate
from ..training import Trainer
from . import CONF
from .exits import command, user_errors

log = logging.getLogger("netlab.bench")


class Timer:
    """Wall time of a region, synchronising the device first so queued GPU work counts."""

    def __init__(self, xp):
        self.xp = xp

    def __enter__(self):
        backend.synchronize(self.xp)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        backend.synchronize(self.xp)
        self.seconds = time.perf_counter() - self.t0


def netlab_step(model, opt):
    def step(x, y):
        _, dlogits = losses.softmax_cross_entropy(model.forward(x), y)
        model.backward(dlogits, input_grad=False)
        opt.step()
    return step


def torch_step(twin):
    import torch

    opt = torch_optimizer(AdamConfig(), twin.parameters())  # the same Adam, with netlab's defaults
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss_fn(twin(x), y).backward()
        opt.step()
    return step


def breakdown(model, x, y, repeats: int) -> list[dict]:
    """Median milliseconds per step of each layer's forward and backward (and the rest)."""
    xp = model.xp
    rows = {i: {"forward": [], "backward": []} for i in range(len(model))}
    for _ in range(repeats):
        h = x
        for i, layer in enumerate(model):
            with Timer(xp) as t:
                h = layer.forward(h)
            rows[i]["forward"].append(t.seconds)
        _, d = losses.softmax_cross_entropy(h, y)
        for i in reversed(range(len(model))):
            with Timer(xp) as t:
                d = model[i].backward(d, input_grad=i > 0)
            rows[i]["backward"].append(t.seconds)
    return [{"layer": f"{i}: {model[i]!r}", "forward_ms": 1e3 * statistics.median(r["forward"]),
             "backward_ms": 1e3 * statistics.median(r["backward"])} for i, r in rows.items()]


def bench_batch(cfg, model_cfg, xp, batch: int, torch_ok: bool) -> dict:
    nn.manual_seed(0)
    model = models.build(model_cfg, cfg.backend.conv).to(xp).train()
    opt = optim.Adam(model)
    gen = backend.Generator(1)
    x = gen.normal(xp, (batch, *model_cfg.input_shape))
    y = xp.astype(gen.bits(xp, (batch,)) % model_cfg.num_classes, xp.int64)
    # name -> (step, its arguments, a function that waits for queued device work)
    contenders = {"netlab": (netlab_step(model, opt), (x, y), lambda: backend.synchronize(xp))}
    if torch_ok:
        import torch

        device = "cuda" if backend.name_of(xp) == "cupy" else "cpu"
        twin = torch_twin(model).to(device).train()
        xt = torch.from_numpy(backend.to_numpy(x)).to(device)
        yt = torch.from_numpy(backend.to_numpy(y)).to(device)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        contenders["torch"] = (torch_step(twin), (xt, yt), sync)
    times = {name: [] for name in contenders}
    for step, args, sync in contenders.values():
        for _ in range(cfg.warmup):
            step(*args)
        sync()
    for _ in range(cfg.repeats):
        for name, (step, args, sync) in contenders.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(cfg.steps):
                step(*args)
            sync()
            times[name].append(time.perf_counter() - t0)
    flops = 3 * models.flops_per_image(models.build(model_cfg), model_cfg.input_shape)
    result = {"batch_size": batch}
    for name, ts in times.items():
        ips = sorted(cfg.steps * batch / t for t in ts)
        result[name] = {"images_per_s": statistics.median(ips), "min": ips[0], "max": ips[-1],
                        "gflops": statistics.median(ips) * flops / 1e9}
    if "torch" in result:
        ratios = sorted(a / b for a, b in zip(times["torch"], times["netlab"]))
        result["ratio"] = statistics.median(ratios)
        result["ratio_min"], result["ratio_max"] = ratios[0], ratios[-1]
    if cfg.breakdown:
        result["layers"] = breakdown(model, x, y, max(3, cfg.repeats))
    return result


def step_mode(cfg) -> dict:
    xp = backend.namespace(cfg.backend.name)
    threads = cfg.threads or backend.cpu_cores()
    backend.set_threads(threads)
    model_cfg = cfg.model
    torch_ok = bool(cfg.torch)
    if torch_ok:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:
            log.warning("PyTorch is not installed: timing netlab alone")
            torch_ok = False
    batches = [2] if cfg.smoke else list(cfg.batch_sizes)
    report = {"backend": cfg.backend.name, "device": backend.device_name(xp), "model": model_cfg.name,
              "threads": threads, "steps_per_repeat": cfg.steps, "repeats": cfg.repeats,
              "torch_version": _torch_version() if torch_ok else None, "results": []}
    for batch in batches:
        report["results"].append(bench_batch(cfg, model_cfg, xp, batch, torch_ok))
    return report


# keys the e2e bench sets itself, so that both contenders run what the report says
E2E_OWN_KEYS = ("backend", "experiment", "train.progress", "train.patience")


def _recipe(name: str) -> str:
    """``name`` checked as a single-run training preset in conf/experiment."""
    presets = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
    if name not in presets:
        raise ConfigError(f"recipe={name!r} is not a training preset; choose one of: {', '.join(presets)} "
                          f"(conf/experiment/NAME.yaml)")
    hydra_node = (yaml.safe_load((CONF_DIR / "experiment" / f"{name}.yaml").read_text()) or {}).get("hydra") or {}
    if hydra_node.get("mode") == "MULTIRUN" or (hydra_node.get("sweeper") or {}).get("params"):
        raise ConfigError(f"recipe={name} is a sweep of several runs; the e2e bench times one training recipe. "
                          f"Pick a single-run preset such as fast99 or best, or give the sweep's setting "
                          f"through train_overrides")
    return name


def e2e_mode(cfg) -> dict:
    """Train a whole run (the ``recipe`` preset and ``train_overrides``) with netlab and, on
    the same recipe, the same data in the same order, the same initial weights and lr schedule,
    with PyTorch; alternate them ``runs`` times and report training time (batching and
    augmentation included for both), the same plus the recipe's evaluation passes (validation
    and test at the same steps for both; checkpoints and logs, which only netlab writes, are
    left out) and test accuracy. Early stopping is off: both contenders train every step."""
    threads = cfg.threads or backend.cpu_cores()
    for override in cfg.train_overrides:
        key = str(override).split("=", 1)[0].lstrip("+~")
        if key.startswith(E2E_OWN_KEYS):
            raise ConfigError(f"train_overrides: {override!r} sets what the bench sets itself; use the bench's "
                              f"backend=..., backend.conv=..., threads=... and recipe=... instead")
    overrides = [*([f"experiment={_recipe(cfg.recipe)}"] if cfg.recipe else []),
                 *([f"train.epochs={cfg.epochs}"] if cfg.epochs else []), *cfg.train_overrides,
                 f"backend={cfg.backend.name}", f"backend.conv={cfg.backend.conv}", f"backend.threads={threads}",
                 "train.progress=false", "train.patience=0"]
    run_cfg = validate(compose(*overrides))
    torch_ok = bool(cfg.torch) and _torch_version() is not None
    if cfg.torch and not torch_ok:
        log.warning("PyTorch is not installed: timing netlab alone")
    torch_device = "cuda" if cfg.backend.name == "cupy" else "cpu"
    runs = {"netlab": [], **({"torch": []} if torch_ok else {})}
    for r in range(cfg.runs):
        for name in runs:
            out = cfg.out / "e2e" / f"{name}-{r}"
            out.mkdir(parents=True, exist_ok=True)
            trainer = Trainer(run_cfg, out)
            if name == "netlab":
                result = {**trainer.fit(), "eval_time_s": trainer.eval_time}
            else:
                result = train_like(trainer, threads, torch_device)[0]
            result["with_eval_s"] = result["train_time_s"] + result["eval_time_s"]
            runs[name].append(result)
            log.info("%s run %d: %.2f s of training, %.2f s with evaluation, test accuracy %.2f%%", name, r + 1,
                     result["train_time_s"], result["with_eval_s"], 100 * result["test_accuracy"])
    report = {"mode": "e2e", "backend": cfg.backend.name, "device": trainer.device, "threads": threads,
              "overrides": overrides, "runs": cfg.runs, "torch_version": _torch_version() if torch_ok else None,
              "torch_device": torch_device if torch_ok else None}
    for name, results in runs.items():
        report[name] = {"steps": results[0]["steps"], "images": results[0]["images"]}
        for key in ("train_time", "with_eval", "test_accuracy"):
            values = sorted(x[key if key == "test_accuracy" else f"{key}_s"] for x in results)
            report[name].update({key if key == "test_accuracy" else f"{key}_s": statistics.median(values),
                                 f"{key}_min": values[0], f"{key}_max": values[-1]})
    if torch_ok:
        # speed = images per second of training, so unequal lengths could not pass for a speed-up
        for key, prefix in (("train_time_s", "ratio"), ("with_eval_s", "ratio_with_eval")):
            ratios = sorted((n["images"] / n[key]) / (t["images"] / t[key]) for n, t in zip(runs["netlab"], runs["torch"]))
            report[prefix], report[f"{prefix}_min"], report[f"{prefix}_max"] = (statistics.median(ratios), ratios[0],
                                                                                 ratios[-1])
    return report


def infer_mode(cfg) -> dict:
    """Evaluate ``model`` on the test images (loss and accuracy, normalisation included) with
    netlab and with its PyTorch twin (same weights, no autograd), alternating ``repeats`` times
    after a warm-up pass, at each of ``batch_sizes`` images per forward pass. The weights are
    the model's first ones: the time does not depend on them, and both contenders must agree
    on the accuracy (which the report shows). ``train_overrides`` may set ``data.*`` (which
    images; MNIST's 10,000 test digits by default)."""
    for override in cfg.train_overrides:
        if str(override).lstrip("+~").split("=", 1)[0].split(".", 1)[0] != "data":
            raise ConfigError(f"train_overrides: {override!r}; in mode=infer they choose the data only "
                              f"(data.root=..., data.limit=...), the bench's model=... chooses the net")
    threads = cfg.threads or backend.cpu_cores()
    backend.set_threads(threads)
    run_cfg = validate(compose(*cfg.train_overrides, f"backend={cfg.backend.name}", f"backend.conv={cfg.backend.conv}"))
    run_cfg.model = cfg.model
    trainer = Trainer(run_cfg, cfg.out, callbacks=[])  # the data and first weights a run would have
    s, mean, std, xp = trainer.splits, trainer.mean, trainer.std, trainer.xp
    torch_ok = bool(cfg.torch) and _torch_version() is not None
    if cfg.torch and not torch_ok:
        log.warning("PyTorch is not installed: timing netlab alone")
    report = {"mode": "infer", "model": cfg.model.name, "backend": cfg.backend.name, "device": trainer.device,
              "threads": threads, "images": int(s.test_x.shape[0]), "repeats": cfg.repeats,
              "torch_version": _torch_version() if torch_ok else None, "results": []}
    for batch in ([2] if cfg.smoke else cfg.batch_sizes):
        # name -> (one evaluation pass returning its accuracy, a function that waits for queued device work)
        contenders = {"netlab": (lambda: metrics.evaluate(trainer.model, s.test_x, s.test_y, batch, mean, std).accuracy,
                                 lambda: backend.synchronize(xp))}
        if torch_ok:
            import torch

            torch.set_num_threads(threads)
            device = "cuda" if cfg.backend.name == "cupy" else "cpu"
            twin = torch_twin(trainer.model).to(device).eval()
            tx = torch.from_numpy(backend.to_numpy(s.test_x)).to(device)
            ty = torch.from_numpy(backend.to_numpy(s.test_y)).to(device)
            contenders["torch"] = (lambda: twin_evaluate(twin, tx, ty, batch, mean, std)[1],
                                   torch.cuda.synchronize if device == "cuda" else (lambda: None))
        accuracy = {name: run() for name, (run, _) in contenders.items()}  # the warm-up pass
        times = {name: [] for name in contenders}
        for _ in range(cfg.repeats):
            for name, (run, sync) in contenders.items():
                sync()
                t0 = time.perf_counter()
                run()
                sync()
                times[name].append(time.perf_counter() - t0)
        row = {"batch_size": batch}
        for name, ts in times.items():
            ips = sorted(report["images"] / t for t in ts)
            row[name] = {"images_per_s": statistics.median(ips), "min": ips[0], "max": ips[-1],
                         "test_accuracy": accuracy[name]}
        if torch_ok:
            ratios = sorted(t / n for n, t in zip(times["netlab"], times["torch"]))
            row["ratio"], row["ratio_min"], row["ratio_max"] = statistics.median(ratios), ratios[0], ratios[-1]
        report["results"].append(row)
    return report


def infer_table(report: dict) -> str:
    lines = [f"netlab bench infer: {report['model']} on {report['backend']} ({report['device']}), evaluating "
             f"{report['images']:,} test images; {report['threads']} threads, {report['repeats']} alternating repeats",
             "batch | netlab img/s (min-max)        | torch img/s (min-max)         | ratio (min-max)    | "
             "accuracy netlab, torch"]
    for r in report["results"]:
        n, t = r["netlab"], r.get("torch")
        torch_cell = f"{t['images_per_s']:9,.0f} ({t['min']:,.0f}-{t['max']:,.0f})" if t else "-"
        ratio = f"{r['ratio']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})" if t else "-"
        lines.append(f"{r['batch_size']:5d} | {n['images_per_s']:9,.0f} ({n['min']:,.0f}-{n['max']:,.0f}){'':>6} | "
                     f"{torch_cell:<29} | {ratio:<18} | {100 * n['test_accuracy']:.2f}%, "
                     + (f"{100 * t['test_accuracy']:.2f}%" if t else "-"))
    return "\n".join(lines)


def _torch_version():
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def table(report: dict) -> str:
    lines = [f"netlab bench: {report['model']} on {report['backend']} ({report['device']}), "
             f"{report['threads']} threads, {report['repeats']} repeats x {report['steps_per_repeat']} steps",
             "batch | netlab img/s (min-max)       | torch img/s (min-max)        | ratio (min-max)    | netlab GFLOP/s"]
    for r in report["results"]:
        n = r["netlab"]
        t = r.get("torch")
        torch_cell = f"{t['images_per_s']:9,.0f} ({t['min']:,.0f}-{t['max']:,.0f})" if t else "-"
        ratio = f"{r['ratio']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f})" if t else "-"
        lines.append(f"{r['batch_size']:5d} | {n['images_per_s']:9,.0f} ({n['min']:,.0f}-{n['max']:,.0f}) "
                     f"{'':>6}| {torch_cell:<28} | {ratio:<18} | {n['gflops']:.1f}")
    for r in report["results"]:
        if "layers" in r:
            total = sum(l["forward_ms"] + l["backward_ms"] for l in r["layers"])
            lines.append(f"\nnetlab step at batch {r['batch_size']}: where the time goes (median ms, excl. optimizer)")
            for l in r["layers"]:
                share = 100 * (l["forward_ms"] + l["backward_ms"]) / total
                lines.append(f"  {l['forward_ms']:7.2f} fwd {l['backward_ms']:7.2f} bwd {share:5.1f}%  {l['layer']}")
    return "\n".join(lines)


def e2e_table(report: dict) -> str:
    lines = [f"netlab bench e2e: {' '.join(report['overrides'])}; {report['threads']} threads, "
             f"{report['runs']} alternating runs each",
             "contender | training s, median (min-max) | with evaluation s (min-max) | test accuracy (min-max)"
             "     | steps, images"]
    for name in ("netlab", "torch"):
        if name in report:
            r = report[name]
            lines.append(f"{name:9} | {r['train_time_s']:7.2f} ({r['train_time_min']:.2f}-{r['train_time_max']:.2f})"
                         f"{'':>8} | {r['with_eval_s']:7.2f} ({r['with_eval_min']:.2f}-{r['with_eval_max']:.2f})"
                         f"{'':>7} | {100 * r['test_accuracy']:.2f}% ({100 * r['test_accuracy_min']:.2f}-"
                         f"{100 * r['test_accuracy_max']:.2f}%) | {r['steps']}, {r['images']}")
    if "ratio" in report:
        lines.append(f"netlab speed / PyTorch speed: {report['ratio']:.2f}x ({report['ratio_min']:.2f}-"
                     f"{report['ratio_max']:.2f}) training; {report['ratio_with_eval']:.2f}x "
                     f"({report['ratio_with_eval_min']:.2f}-{report['ratio_with_eval_max']:.2f}) with evaluation")
    return "\n".join(lines)


def machine_limits(xp, repeats: int = 5) -> dict:
    """This machine's measured limits with the bench's threads: single-precision matrix-product
    throughput (a 2048^3 product) and memory bandwidth (a 256 MB copy, read plus write)."""
    gen = backend.Generator(7)
    a = gen.normal(xp, (2048, 2048))
    b = gen.normal(xp, (2048, 2048))
    big = gen.random(xp, (64 << 20,))
    best_mm = best_copy = float("inf")
    for _ in range(repeats):
        with Timer(xp) as t:
            a @ b
        best_mm = min(best_mm, t.seconds)
        with Timer(xp) as t:
            xp.asarray(big, copy=True)
        best_copy = min(best_copy, t.seconds)
    return {"sgemm_gflops": 2 * 2048 ** 3 / best_mm / 1e9, "bandwidth_gb_s": 2 * big.size * 4 / best_copy / 1e9}


def layer_costs(model, input_shape, batch: int) -> list[dict]:
    """Each layer's floating-point operations and the bytes it must move at least (its inputs,
    outputs and parameters, forward and backward), for one training step of ``batch`` images."""
    xp = backend.namespace("numpy")
    x = xp.zeros((1, *input_shape), dtype=xp.float32)
    rows = []
    model.eval()
    for i, layer in enumerate(model):
        y = layer.forward(x)
        n_in, n_out = math.prod(x.shape[1:]) * batch, math.prod(y.shape[1:]) * batch
        params = layer.num_parameters()
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            k = layer.in_channels * math.prod(layer.kernel_size) if isinstance(layer, nn.Conv2d) else layer.in_features
            flops = 2 * n_out * k * (3 if i else 2)  # forward, weight gradient, and input gradient past layer 0
        else:
            flops = 8 * max(n_in, n_out)  # elementwise and reductions: a few operations per value, both passes
        moved = 4 * (2 * n_in + 2 * n_out + 3 * params)  # x and y forward; dy, x (or y) and dx backward; weights
        rows.append({"layer": f"{i}: {layer!r}", "gflop": flops / 1e9, "mb": moved / 1e6})
        x = y
    model.train()
    return rows


def roofline_mode(cfg) -> dict:
    """Per layer of the model: its FLOPs and minimal bytes for a training step, its measured
    time (the step's breakdown), and how close that is to this machine's limits: the time the
    layer would take at the measured matrix-product rate or memory bandwidth, whichever binds,
    divided by the measured time."""
    xp = backend.namespace(cfg.backend.name)
    threads = cfg.threads or backend.cpu_cores()
    backend.set_threads(threads)
    limits = machine_limits(xp)
    report = {"mode": "roofline", "model": cfg.model.name, "threads": threads, "device": backend.device_name(xp),
              **limits, "results": []}
    for batch in ([2] if cfg.smoke else cfg.batch_sizes):
        nn.manual_seed(0)
        model = models.build(cfg.model, cfg.backend.conv).to(xp).train()
        gen = backend.Generator(1)
        x = gen.normal(xp, (batch, *cfg.model.input_shape))
        y = xp.astype(gen.bits(xp, (batch,)) % cfg.model.num_classes, xp.int64)
        times = breakdown(model, x, y, max(3, cfg.repeats))
        rows = []
        for cost, timed in zip(layer_costs(models.build(cfg.model), cfg.model.input_shape, batch), times):
            seconds = (timed["forward_ms"] + timed["backward_ms"]) / 1e3
            bound = max(cost["gflop"] / limits["sgemm_gflops"], cost["mb"] / 1e3 / limits["bandwidth_gb_s"])
            rows.append({**cost, "ms": 1e3 * seconds, "gflop_s": cost["gflop"] / seconds if seconds else None,
                         "limit": "compute" if cost["gflop"] / limits["sgemm_gflops"] >= cost["mb"] / 1e3 /
                         limits["bandwidth_gb_s"] else "memory", "fraction_of_limit": bound / seconds if seconds else None})
        total_ms = sum(r["ms"] for r in rows)
        total_bound = sum(r["fraction_of_limit"] * r["ms"] for r in rows if r["fraction_of_limit"])
        report["results"].append({"batch_size": batch, "layers": rows, "step_ms": total_ms,
                                  "fraction_of_limit": total_bound / total_ms if total_ms else None})
    return report


def roofline_table(report: dict) -> str:
    lines = [f"netlab roofline: {report['model']}, {report['threads']} threads; this machine: "
             f"{report['sgemm_gflops']:.1f} GFLOP/s (sgemm 2048^3), {report['bandwidth_gb_s']:.1f} GB/s (copy)"]
    for r in report["results"]:
        lines += [f"batch {r['batch_size']}: step {r['step_ms']:.1f} ms, {100 * r['fraction_of_limit']:.0f}% of "
                  f"the machine's limit overall",
                  "  GFLOP      MB      ms  GFLOP/s  bound    of limit  layer"]
        for row in r["layers"]:
            lines.append(f"  {row['gflop']:6.3f} {row['mb']:7.1f} {row['ms']:7.2f} {row['gflop_s'] or 0:8.1f}  "
                         f"{row['limit']:<7} {100 * (row['fraction_of_limit'] or 0):6.0f}%   {row['layer']}")
    return "\n".join(lines)


MODES = {"step": (step_mode, table), "e2e": (e2e_mode, e2e_table), "roofline": (roofline_mode, roofline_table),
         "infer": (infer_mode, infer_table)}


@user_errors
def bench(raw: DictConfig) -> dict:
    cfg = validate(raw, BenchConfig)
    cfg.out = Path(cfg.out) if cfg.out else Path("outputs/bench") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S.%f")
    if cfg.out.exists() and not cfg.out.is_dir():
        raise ConfigError(f"out={cfg.out} is a file; the bench writes bench.json into a folder")
    measure, show = MODES[cfg.mode]
    report = measure(cfg)
    print(show(report), flush=True)
    out = write_json(cfg.out / "bench.json", report)
    log.info("wrote %s", out)
    return report


@command(BenchConfig)
@hydra.main(version_base="1.3", config_path=CONF, config_name="bench")
def main(cfg: DictConfig) -> None:
    bench(cfg)

