"""A trained model answering images: decode, prepare as the dataset's images were (its spec's
``prepare``: a digit as MNIST's, or the whole picture resized in the model's colour mode),
normalise (per channel), forward, softmax. ``predict``, the draw-a-digit page and the Python
API share this pipeline."""

from __future__ import annotations

import numpy as np

from . import backend, losses, models
from .data import normalize
from .data.datasets import DATASETS
from .data.images import prepare
from .errors import CheckpointError, ConfigError
from .saved import SavedModel

PREPARED = {  # what the page says of the image the model sees
    "digit": "{h}x{w}, cropped, scaled and centred as MNIST's digits were.",
    "resize": "The whole image, resized to {h}x{w}, in {mode}, as the training images were.",
}


class Predictor:
    """Answers for images, from a :class:`~netlab.saved.SavedModel`."""

    def __init__(self, trained: SavedModel):
        self.trained, self.classes = trained, trained.classes
        shape = tuple(trained.input_shape)
        channels, height, width = (list(shape) + [0, 0])[:3]
        # how the dataset's images were made: its spec says (one home), the predictor follows it
        self.preparation = DATASETS.lookup(trained.config.data.name).prepare
        if len(shape) != 3:
            raise ConfigError(f"netlab prepares images for a model that takes (channels, height, width); this one "
                              f"takes {shape}")
        if self.preparation == "digit" and (channels != 1 or height != width):
            raise ConfigError(f"netlab prepares square grayscale images for a model trained on "
                              f"{trained.config.data.name}; this one takes {shape}")
        if channels not in (1, 3):
            raise ConfigError(f"netlab prepares grey (1 channel) or RGB (3) images; this model takes {shape}")
        if len(self.classes) != trained.config.model.num_classes:
            raise CheckpointError(f"{trained.path}: names {len(self.classes)} classes but the model gives "
                                  f"{trained.config.model.num_classes} scores")
        self.size, self.channels = height, channels
        mode = "colour (RGB)" if channels == 3 else "grey"
        self.description = PREPARED[self.preparation].format(h=height, w=width, mode=mode)

    def prepare(self, source, name: str | None = None, max_pixels: int | None = None) -> np.ndarray:
        """An image file (a path) or its bytes -> the float image in [0, 1] that the model takes,
        (H, W) for one channel and (C, H, W) for colour, prepared as the dataset's images were:
        for a digit dataset a light digit on black, cropped, scaled and centred as MNIST's are;
        otherwise the whole image in the model's colour mode, resized to its input.
        ``max_pixels`` lowers the bound on the decoded image's size (``data.images.MAX_PIXELS``)."""
        return prepare(source, self.preparation, self.trained.input_shape, name, max_pixels)

    def _input(self, images: np.ndarray):
        """Prepared images ((N,) H, W for one channel; (N,) C, H, W) in [0, 1] -> the normalised
        batch on the backend."""
        x = np.asarray(images, dtype=np.float32)
        if self.channels == 1:
            if x.ndim == 2:
                x = x[None]
            if x.ndim == 3:
                x = x[:, None]
        elif x.ndim == 3:
            x = x[None]
        if tuple(x.shape[1:]) != self.trained.input_shape:
            raise ConfigError(f"images of shape {tuple(x.shape[1:])}; the model takes {self.trained.input_shape}")
        return normalize(backend.from_numpy(self.trained.xp, x), self.trained.mean, self.trained.std)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, K) of prepared images (N, C, H, W) in [0, 1] ((N, H, W) for one channel)."""
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
        """What the page shows for one prepared image: the input ((H, W) grey, or (C, H, W) colour),
        how it was prepared, every class's probability, and every feature map of every
        convolution and pooling layer (each on its own 0..1 scale)."""
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
                "input": np.round(np.asarray(image), 3).tolist(), "prepared": self.description, "layers": layers}

    def _check(self, probs: np.ndarray) -> None:
        if not np.all(np.isfinite(probs)):
            raise CheckpointError(f"{self.trained.path}: the model gives non-finite scores; its weights or "
                                  f"normalisation are unusable")
