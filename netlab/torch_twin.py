"""The PyTorch twin of a netlab model: the ``torch.nn.Sequential`` that computes what it computes,
with its weights (the bench's contender, and the tests' second opinion)."""

from __future__ import annotations

from . import nn


def torch_twin(model: nn.Sequential):
    """The ``torch.nn.Sequential`` that computes what ``model`` computes, with its weights."""
    import torch

    t = torch.nn

    def one(m):
        if isinstance(m, nn.Sequential):
            return t.Sequential(*[one(s) for s in m])
        make = {
            nn.Conv2d: lambda: t.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                        bias="bias" in m.params),
            nn.Linear: lambda: t.Linear(m.in_features, m.out_features, bias="bias" in m.params),
            nn.MaxPool2d: lambda: t.MaxPool2d(m.kernel_size, m.stride, m.padding),
            nn.AvgPool2d: lambda: t.AvgPool2d(m.kernel_size, m.stride, m.padding),
            nn.ReLU: lambda: t.ReLU(),
            nn.Flatten: lambda: t.Flatten(),
            nn.Dropout: lambda: t.Dropout(m.p),
            nn.BatchNorm2d: lambda: t.BatchNorm2d(m.num_features, m.eps, m.momentum),
            nn.BatchNorm1d: lambda: t.BatchNorm1d(m.num_features, m.eps, m.momentum),
        }
        twin = make[type(m)]()
        twin.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
        return twin

    return one(model)
