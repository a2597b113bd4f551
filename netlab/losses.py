"""Loss functions returning the loss and its gradient with respect to the prediction."""

from __future__ import annotations

from array_api_compat import array_namespace


def _shifted_exp(logits):
    """``(shifted, exp(shifted), row sums)`` with each row's max subtracted: the stable softmax pieces."""
    xp = array_namespace(logits)
    shifted = logits - xp.max(logits, axis=1, keepdims=True)
    exp = xp.exp(shifted)
    return shifted, exp, xp.sum(exp, axis=1, keepdims=True)


def softmax(logits):
    """Class probabilities of (N, K) ``logits``, computed without overflow."""
    _, exp, total = _shifted_exp(logits)
    return exp / total


def softmax_cross_entropy(logits, labels, smoothing: float = 0.0):
    """Mean cross-entropy of softmax(logits) against integer ``labels``.

    logits: (N, K) floats; labels: (N,) integers in [0, K). Returns ``(loss, dlogits)``: a 0-d
    array and dloss/dlogits of shape (N, K). Uses the max-shifted log-sum-exp, so large logits
    neither overflow nor lose precision. ``smoothing`` (label smoothing, as PyTorch's
    ``CrossEntropyLoss(label_smoothing=...)``) aims at ``1 - smoothing + smoothing / K`` for the
    label and ``smoothing / K`` for every other class.
    """
    xp = array_namespace(logits)
    n, k = logits.shape
    shifted, exp, total = _shifted_exp(logits)
    target = xp.astype(labels[:, None] == xp.arange(k, dtype=labels.dtype, device=labels.device), logits.dtype)
    if smoothing:
        target = target * (1.0 - smoothing) + smoothing / k
    loss = xp.mean(xp.log(total[:, 0]) - xp.sum(shifted * target, axis=1))
    dlogits = (exp / total - target) * (1.0 / n)
    return loss, dlogits


def l2_penalty(model, weight_decay: float):
    """0.5 * weight_decay * sum of squared parameters: the "regularization loss" whose gradient
    is the ``weight_decay * p`` that the optimizers add. A 0-d array, or 0.0 when off."""
    if weight_decay == 0.0:
        return 0.0
    xp = model.xp
    return 0.5 * weight_decay * sum(xp.sum(p * p) for p in model.params.values())


def correct(logits, labels):
    """Number of rows whose arg-max equals the label, as a 0-d float64 array (stays on the device)."""
    xp = array_namespace(logits)
    hits = xp.argmax(logits, axis=1) == xp.astype(labels, xp.int64)
    return xp.sum(xp.astype(hits, xp.float64))


def accuracy(logits, labels):
    """Fraction of rows whose arg-max equals the label, as a 0-d array."""
    return correct(logits, labels) / labels.shape[0]
