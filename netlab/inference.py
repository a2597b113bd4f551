"""A trained model answering images: decode, prepare as the dataset's images were, normalise,
forward, softmax. ``predict``, the draw-a-digit page and the Python API share this pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import backend, losses, models
from .data import normalize
from .data.images import digit_from_bytes, load_digit
from .errors import CheckpointError, ConfigError
from .saved import SavedModel


class Predictor:
    """Answers for images, from a :class:`~netlab.saved.SavedModel`."""

    def __init__(self, trained: SavedModel):
        self.trained, self.classes = trained, trained.classes
        channels, height, width = (list(trained.input_shape) + [0, 0])[:3]
        if channels != 1 or height != width:
            raise ConfigError(f"netlab prepares square grayscale images for a model; this one takes "
                              f"{trained.input_shape}")
        self.size = height

    def prepare(self, source, name: str | None = None, max_pixels: int | None = None) -> np.ndarray:
        """An image file (a path) or its bytes -> the (size, size) float image in [0, 1] that the
        model takes: a light digit on black, cropped, scaled and centred as MNIST's are.
        ``max_pixels`` lowers the bound on the decoded image's size (``data.images.MAX_PIXELS``)."""
        bound = {} if max_pixels is None else {"max_pixels": max_pixels}
        if isinstance(source, (bytes, bytearray)):
            return digit_from_bytes(bytes(source), name or "the image", size=self.size, **bound)
        return load_digit(Path(source), size=self.size, **bound)

    def _input(self, images: np.ndarray):
        """Prepared images (N, H, W) or (N, 1, H, W), pixels in [0, 1] -> the normalised batch on the backend."""
        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim == 3:
            x = x[:, None]
        if tuple(x.shape[1:]) != self.trained.input_shape:
            raise ConfigError(f"images of shape {tuple(x.shape[1:])}; the model takes {self.trained.input_shape}")
        return normalize(backend.from_numpy(self.trained.xp, x), self.trained.mean, self.trained.std)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) of prepared images (N, H, W) or (N, 1, H, W) in [0, 1]."""
        probs = backend.to_numpy(losses.softmax(self.trained.model.forward(self._input(images))))
        self._check(probs)
        return probs

    def answer(self, image: np.ndarray, top: int = 3) -> dict:
        """The class and the ``top`` probabilities of one prepared image."""
        probs = self.probabilities(image)[0]
        order = probs.argsort()[::-1][:top]
        return {"class": self.classes[int(order[0])],
                "probabilities": {self.classes[int(i)]: round(float(probs[i]), 6) for i in order}}

    def explain(self, image: np.ndarray) -> dict:
        """What the page shows for one prepared image: the input, every class's probability, and
        every feature map of every convolution and pooling layer (each on its own 0..1 scale)."""
        logits, maps = models.feature_maps(self.trained.model, self._input(image))
        probs = backend.to_numpy(losses.softmax(logits))[0]
        self._check(probs)
        layers = []
        for index, layer, out in maps:
            a = backend.to_numpy(out)[0]
            lo, hi = a.min(axis=(1, 2), keepdims=True), a.max(axis=(1, 2), keepdims=True)
            scaled = (a - lo) / np.where(hi > lo, hi - lo, 1.0)
            layers.append({"index": index, "name": repr(layer), "shape": list(a.shape),
                           "maps": np.round(scaled, 3).tolist()})
        return {"class": self.classes[int(probs.argmax())],
                "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, probs)},
                "input": np.round(np.asarray(image), 3).tolist(), "layers": layers}

    def _check(self, probs: np.ndarray) -> None:
        if not np.all(np.isfinite(probs)):
            raise CheckpointError(f"{self.trained.path}: the model gives non-finite scores; its weights or "
                                  f"normalisation are unusable")
