"""The image pipeline that predict and the draw-a-digit page share (netlab.inference): an image
file or its bytes, prepared as the dataset's images were, normalised as the model's training
images were, and answered with the model's own probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from netlab import backend, saved
from netlab.inference import Predictor


def reference_probabilities(run, image: np.ndarray) -> np.ndarray:
    """The model's class probabilities for a prepared image, computed here in float64."""
    loaded = saved.load(run)
    model = loaded.model.to(backend.namespace("numpy"), dtype=np.float64)
    x = (image.astype(np.float64)[None, None] - loaded.mean) / loaded.std
    logits = backend.to_numpy(model.forward(x))[0]
    e = np.exp(logits - logits.max())
    return e / e.sum()


def test_a_file_and_its_bytes_are_prepared_alike(run, digit_png):
    predictor = Predictor(saved.load(run))
    from_file, from_bytes = predictor.prepare(digit_png), predictor.prepare(digit_png.read_bytes())
    assert from_file.shape == (28, 28)
    np.testing.assert_array_equal(from_file, from_bytes)


def test_answers_are_the_models_probabilities_on_the_normalised_image(run, digit_png):
    predictor = Predictor(saved.load(run))
    image = predictor.prepare(digit_png)
    expected = reference_probabilities(run, image)
    np.testing.assert_allclose(predictor.probabilities(image)[0], expected, atol=1e-5)
    answer = predictor.answer(image, top=3)
    assert answer["class"] == predictor.classes[int(expected.argmax())] and len(answer["probabilities"]) == 3
    for cls, p in answer["probabilities"].items():
        assert p == pytest.approx(expected[predictor.classes.index(cls)], abs=1e-5), cls
    explained = predictor.explain(image)  # what the page shows: the same answer, every class
    assert explained["class"] == answer["class"]
    assert list(explained["probabilities"].values()) == pytest.approx(expected, abs=1e-5)
