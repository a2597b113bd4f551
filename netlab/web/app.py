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
    run_cfg, model = trained.config, trained.model
    # one accuracy on the whole page: the served checkpoint's, in the header and on the curves
    curves_png = _curves(trained) if trained.history else None
    info = {"model": run_cfg.model.name, "layers": [repr(layer) for layer in model], "classes": predictor.classes,
            "dataset": run_cfg.data.name, "parameters": model.num_parameters(),
            "test_accuracy": trained.accuracy("test"), "step": trained.step, "checkpoint": trained.path.name,
            "curves": curves_png is not None, "max_upload_bytes": MAX_UPLOAD_BYTES}

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
        if curves_png is None:
            raise HTTPException(404, "this model has no training curves (its file holds no metrics)")
        return Response(curves_png, media_type="image/png")

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


def _curves(trained) -> bytes:
    """The run's curves up to the served checkpoint, titled with its test accuracy, as a PNG."""
    import io

    from ..plots import curves_figure, save_to

    acc = trained.accuracy("test")
    title = (f"{trained.config.model.name}: {trained.path.stem} checkpoint, step {trained.step}"
             + (f", test accuracy {100 * acc:.2f}%" if acc is not None else ""))
    fig = curves_figure(trained.history, title, mark=trained.step)
    buffer = io.BytesIO()
    save_to(fig, buffer)
    return buffer.getvalue()
