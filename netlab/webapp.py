"""The draw-a-digit page as a Starlette app: a canvas, the 28x28 image the model sees, the class
probabilities and the feature maps of every convolution and pooling layer, computed by netlab
itself on the backend the command names.

Endpoints:
- ``GET /``: the page (plain HTML, CSS and JavaScript from ``netlab/web``);
- ``GET /api/info``: the model file, classes, test accuracy and whether curves exist;
- ``POST /api/predict``: an image (PNG, JPEG, ... as the request body, at most
  ``MAX_UPLOAD_BYTES``) -> the prepared 28x28 input, class probabilities and feature maps, as
  JSON; any problem -> ``{"error": ...}`` with a 4xx status;
- ``GET /curves.png``: the run's training curves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import backend, losses, models
from .data import normalize
from .data.io import digit_from_bytes
from .errors import NetlabError

WEB = Path(__file__).parent / "web"
MAX_UPLOAD_BYTES = 2 << 20  # a canvas PNG is a few kB; a photo of a digit well under this
MAX_MAPS = 16               # feature maps per layer sent to the page


def make_app(model, run_cfg, mean: float, std: float, xp, run_dir: Path | None = None):
    """The Starlette app serving ``model`` (eval mode, on namespace ``xp``)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    from .data import DATASETS

    classes = list(DATASETS[run_cfg.data.name].classes)
    size = int(run_cfg.model.input_shape[-1])
    results = _read_json(run_dir / "results.json") if run_dir else {}
    info = {"model": run_cfg.model.name, "layers": [repr(layer) for layer in model], "classes": classes,
            "dataset": run_cfg.data.name, "parameters": model.num_parameters(),
            "test_accuracy": results.get("test_accuracy_at_best_step", results.get("test_accuracy")),
            "curves": bool(run_dir and (run_dir / "curves.png").is_file()),
            "max_upload_bytes": MAX_UPLOAD_BYTES}

    async def page(request: Request):
        return HTMLResponse((WEB / "index.html").read_text())

    async def static(request: Request):
        name = request.path_params["name"]
        if name not in ("app.js", "style.css"):  # a fixed list: no path from a request reaches the disk
            raise HTTPException(404, "no such file")
        return FileResponse(WEB / name, media_type="text/javascript" if name.endswith(".js") else "text/css")

    async def get_info(request: Request):
        return JSONResponse(info)

    async def curves(request: Request):
        if not info["curves"]:
            raise HTTPException(404, "this model has no training curves (it was not given as a run folder)")
        return FileResponse(run_dir / "curves.png", media_type="image/png")

    async def predict(request: Request):
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_UPLOAD_BYTES):
            return _error(413, f"an image of at most {MAX_UPLOAD_BYTES:,} bytes, please")
        body = b""
        async for chunk in request.stream():  # counted as it arrives: a missing length cannot lie
            body += chunk
            if len(body) > MAX_UPLOAD_BYTES:
                return _error(413, f"an image of at most {MAX_UPLOAD_BYTES:,} bytes, please")
        if not body:
            return _error(400, "send the image as the request body (PNG, JPEG, ...)")
        try:
            digit = digit_from_bytes(body, "the image", size=size)
        except NetlabError as exc:
            return _error(400, str(exc))
        return JSONResponse(answer(model, digit, mean, std, xp, classes))

    async def on_http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail))

    def _error(status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    routes = [Route("/", page), Route("/static/{name}", static), Route("/api/info", get_info),
              Route("/api/predict", predict, methods=["POST"]), Route("/curves.png", curves)]
    return Starlette(routes=routes, exception_handlers={HTTPException: on_http_error})


def answer(model, digit: np.ndarray, mean: float, std: float, xp, classes: list) -> dict:
    """What the page shows for one prepared digit: the input, the probabilities, the feature maps."""
    x = normalize(backend.from_numpy(xp, digit[None, None, :, :]), mean, std)
    logits, maps = models.feature_maps(model, x)
    probs = backend.to_numpy(losses.softmax(logits))[0]
    layers = []
    for index, layer, out in maps:
        a = backend.to_numpy(out)[0][:MAX_MAPS]
        lo, hi = a.min(axis=(1, 2), keepdims=True), a.max(axis=(1, 2), keepdims=True)
        scaled = (a - lo) / np.where(hi > lo, hi - lo, 1.0)  # each map on its own 0..1 scale for display
        layers.append({"index": index, "name": repr(layer), "shape": list(backend.to_numpy(out).shape[1:]),
                       "maps": np.round(scaled, 3).tolist()})
    best = int(probs.argmax())
    return {"class": classes[best], "probabilities": {c: round(float(p), 6) for c, p in zip(classes, probs)},
            "input": np.round(digit, 3).tolist(), "layers": layers}


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}
