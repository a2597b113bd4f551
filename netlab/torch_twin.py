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


def twin_evaluate(twin, x, y, batch_size: int, mean, std) -> tuple[float, float]:
    """Mean loss and accuracy of ``twin`` (in eval mode, no autograd) on images ``x`` in [0, 1]
    and labels ``y`` (tensors on its device), normalised with ``mean`` and ``std``: the work of
    :func:`netlab.metrics.evaluate` for netlab, done in PyTorch (sums stay on the device until
    the end, as netlab's do)."""
    import torch

    was_training = twin.training
    twin.eval()
    n, loss_sum, correct = int(x.shape[0]), 0.0, 0
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            xb, yb = data.normalize(x[lo:lo + batch_size], mean, std), y[lo:lo + batch_size]
            logits = twin(xb)
            loss_sum = loss_sum + torch.nn.functional.cross_entropy(logits, yb, reduction="sum")
            correct = correct + (logits.argmax(1) == yb).sum()
    twin.train(was_training)
    return float(loss_sum) / n, int(correct) / n


def train_like(trainer, threads: int, device: str = "cpu"):
    """``trainer``'s run (a :class:`netlab.training.Trainer`, not yet fitted), done by the PyTorch
    twin of its model on ``device``: the same first weights, batches (netlab's loader: the same
    order and augmentation), optimizer and per-step lr, on ``threads`` CPU threads, evaluated on
    the validation and test images at the steps where netlab's loop evaluates. Timed as Trainer
    times itself: ``train_time_s`` counts the steps, ``eval_time_s`` the evaluations. Returns
    (results, the twin)."""
    import torch

    def tensor(a):  # an array as a tensor on the device; on a GPU over DLPack, with no host copy
        return torch.from_numpy(backend.to_numpy(a)) if device == "cpu" else torch.from_dlpack(a)

    def sync():
        if device != "cpu":
            torch.cuda.synchronize()

    torch.set_num_threads(threads)
    torch.manual_seed(trainer.cfg.seed)  # dropout masks: PyTorch's own stream
    twin = torch_twin(trainer.model).to(device).train()
    opt = torch_optimizer(trainer.cfg.optimizer, twin.parameters())
    schedule, base_lr = trainer.opt.schedule, trainer.opt.base_lr
    tc, s = trainer.cfg.train, trainer.splits
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=tc.label_smoothing)
    clip = trainer.cfg.optimizer.clip_norm
    held_out = {"val": (tensor(s.val_x), tensor(s.val_y)), "test": (tensor(s.test_x), tensor(s.test_y))}
    step, images, eval_time, last = 0, 0, 0.0, {}
    t0 = time.perf_counter()
    for epoch in range(tc.epochs):
        for batch, (xb, yb) in enumerate(trainer.loader.batches(epoch), 1):
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
            # netlab's loop evaluates here too (Trainer._loop), and neither counts it as training
            if step % tc.eval_every == 0 or batch == trainer.steps_per_epoch or step == trainer.total_steps:
                sync()
                tick = time.perf_counter()
                last = {split: twin_evaluate(twin, x, y, tc.eval_batch_size, trainer.mean, trainer.std)
                        for split, (x, y) in held_out.items()}
                eval_time += time.perf_counter() - tick
    sync()
    total = time.perf_counter() - t0
    return {"train_time_s": total - eval_time, "eval_time_s": eval_time, "test_accuracy": last["test"][1],
            "val_accuracy": last["val"][1], "steps": step, "images": images}, twin
