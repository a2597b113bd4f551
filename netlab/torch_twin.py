"""The PyTorch twin of a netlab model: the ``torch.nn.Sequential`` that computes what it computes,
with its weights (the bench's contender, and the tests' second opinion)."""

from __future__ import annotations

import time

from . import backend, data, nn


def residual_class():
    """``torch.nn.Module`` of a residual block, ``body(x) + projection(x)`` (or ``+ x``), with
    netlab's state_dict keys (``body.<i>...``, ``projection.<i>...``): what loads a netlab
    residual model's safetensors weights into PyTorch."""
    import torch

    class Residual(torch.nn.Module):
        def __init__(self, body, projection=None):
            super().__init__()
            self.body, self.projection = body, projection

        def forward(self, x):
            return self.body(x) + (x if self.projection is None else self.projection(x))

    return Residual


def torch_twin(model: nn.Sequential):
    """The ``torch.nn.Sequential`` that computes what ``model`` computes, with its weights."""
    import torch

    t = torch.nn

    def one(m):
        if isinstance(m, nn.Sequential):
            return t.Sequential(*[one(s) for s in m])
        if isinstance(m, nn.Residual):
            return residual_class()(one(m.body), None if m.projection is None else one(m.projection))
        make = {
            nn.Conv2d: lambda: t.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                        bias="bias" in m.params),
            nn.Linear: lambda: t.Linear(m.in_features, m.out_features, bias="bias" in m.params),
            nn.MaxPool2d: lambda: t.MaxPool2d(m.kernel_size, m.stride, m.padding),
            nn.AvgPool2d: lambda: t.AvgPool2d(m.kernel_size, m.stride, m.padding),
            nn.ReLU: lambda: t.ReLU(),
            nn.Tanh: lambda: t.Tanh(),
            nn.Sigmoid: lambda: t.Sigmoid(),
            nn.GELU: lambda: t.GELU(approximate="tanh"),
            nn.LeakyReLU: lambda: t.LeakyReLU(m.negative_slope),
            nn.GlobalAvgPool2d: lambda: t.Sequential(t.AdaptiveAvgPool2d(1), t.Flatten()),
            nn.Flatten: lambda: t.Flatten(),
            nn.Dropout: lambda: t.Dropout(m.p),
            nn.BatchNorm2d: lambda: t.BatchNorm2d(m.num_features, m.eps, m.momentum),
            nn.BatchNorm1d: lambda: t.BatchNorm1d(m.num_features, m.eps, m.momentum),
        }
        twin = make[type(m)]()
        twin.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
        return twin

    return one(model)


def _sgd(torch, cfg, params):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


def _adam(torch, cfg, params):
    return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def _adamw(torch, cfg, params):
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def _adagrad(torch, cfg, params):
    return torch.optim.Adagrad(params, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay)


def _rmsprop(torch, cfg, params):
    return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)


# optimizer name (netlab.optim.OPTIMIZERS) -> the torch.optim optimizer with the same update rule
# (the first momentum buffer is the gradient, L2 is added to the gradient, eps outside the root)
TORCH_OPTIMIZERS = {"sgd": _sgd, "momentum": _sgd, "adam": _adam, "adamw": _adamw, "adagrad": _adagrad,
                    "rmsprop": _rmsprop}


def torch_optimizer(cfg, params):
    """The ``torch.optim`` twin of the optimizer that ``cfg`` (``optimizer``) describes. Its
    learning rate is the caller's to set each step, from netlab's schedule."""
    import torch

    return TORCH_OPTIMIZERS[cfg.name](torch, cfg, params)


def train_like(trainer, threads: int, device: str = "cpu"):
    """``trainer``'s run (a :class:`netlab.training.Trainer`, not yet fitted), done by the PyTorch
    twin of its model on ``device``: the same first weights, batches (netlab's loader: the same
    order and augmentation), optimizer and per-step lr, on ``threads`` CPU threads. Timed as
    Trainer times itself: the steps, not the final evaluation. Returns (results, the twin)."""
    import torch

    def tensor(a):  # a batch as a tensor on the device; on a GPU over DLPack, with no host copy
        return torch.from_numpy(backend.to_numpy(a)) if device == "cpu" else torch.from_dlpack(a)

    torch.set_num_threads(threads)
    torch.manual_seed(trainer.cfg.seed)  # dropout masks: PyTorch's own stream
    twin = torch_twin(trainer.model).to(device).train()
    opt = torch_optimizer(trainer.cfg.optimizer, twin.parameters())
    schedule, base_lr = trainer.opt.schedule, trainer.opt.base_lr
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=trainer.cfg.train.label_smoothing)
    clip = trainer.cfg.optimizer.clip_norm
    step, images, t0 = 0, 0, time.perf_counter()
    for epoch in range(trainer.cfg.train.epochs):
        for xb, yb in trainer.loader.batches(epoch):
            if step >= trainer.total_steps:
                break
            for group in opt.param_groups:
                group["lr"] = schedule(step, base_lr)
            opt.zero_grad(set_to_none=True)
            loss_fn(twin(tensor(xb)), tensor(yb)).backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(twin.parameters(), clip)
            opt.step()
            step, images = step + 1, images + int(yb.shape[0])
    if device != "cpu":
        torch.cuda.synchronize()
    train_time = time.perf_counter() - t0
    twin.eval()
    s, correct = trainer.splits, 0
    with torch.no_grad():
        step_by = trainer.cfg.train.eval_batch_size
        for lo in range(0, s.test_x.shape[0], step_by):
            hi = min(s.test_x.shape[0], lo + step_by)
            xb = backend.to_numpy(data.normalize(s.test_x[lo:hi, ...], trainer.mean, trainer.std))
            pred = twin(torch.from_numpy(xb).to(device)).argmax(1).cpu().numpy()
            correct += int((pred == backend.to_numpy(s.test_y[lo:hi])).sum())
    return {"train_time_s": train_time, "test_accuracy": correct / s.test_x.shape[0], "steps": step,
            "images": images}, twin
