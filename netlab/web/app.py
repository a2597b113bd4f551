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

from ..errors import NetlabError
from ..inference import Predictor

WEB = Path(__file__).parent
MAX_UPLOAD_BYTES = 2 << 20  # a canvas PNG is a few kB; a photo of a digit well under this


def make_app(predictor: Predictor):
    """The Starlette app serving ``predictor``'s model."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    trained = predictor.trained
    run_cfg, model, run_dir = trained.config, trained.model, trained.run_dir
    results = _read_json(run_dir / "results.json") if run_dir else {}
    info = {"model": run_cfg.model.name, "layers": [repr(layer) for layer in model], "classes": predictor.classes,
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
            image = predictor.prepare(body, "the image")
        except NetlabError as exc:
            return _error(400, str(exc))
        return JSONResponse(predictor.explain(image))

    async def on_http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail))

    def _error(status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    routes = [Route("/", page), Route("/static/{name}", static), Route("/api/info", get_info),
              Route("/api/predict", predict, methods=["POST"]), Route("/curves.png", curves)]
    return Starlette(routes=routes, exception_handlers={HTTPException: on_http_error})


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}
