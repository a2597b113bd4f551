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

Bounded in size, time and work: an upload over ``MAX_UPLOAD_BYTES`` or ``MAX_UPLOAD_PIXELS`` is
refused before it is decoded; a body that takes longer than ``BODY_SECONDS`` to arrive gets a
408; decoding and the model run in worker threads, ``WORKERS`` at a time, never on the event
loop; only requests whose ``Host`` is in ``allowed_hosts`` are answered (a page on 127.0.0.1
answers to its own names only, so DNS rebinding cannot reach it). The connection-level bounds
(headers that trickle, too many connections) are the server's: ``netlab.web.server``.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from ..errors import NetlabError
from ..inference import Predictor

WEB = Path(__file__).parent
MAX_UPLOAD_BYTES = 2 << 20  # a canvas PNG is a few kB; a photo of a digit well under this
MAX_UPLOAD_PIXELS = 16_000_000  # a 16-megapixel photo; a small PNG can claim far more (a bomb) and is refused
BODY_SECONDS = 10.0  # for the whole upload to arrive
WORKERS = 2  # uploads decoded and answered at once; the others wait their turn
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def make_app(predictor: Predictor, allowed_hosts=None):
    """The Starlette app serving ``predictor``'s model to requests for ``allowed_hosts``
    (default: this machine's loopback names; ``["*"]`` answers any)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
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

    workers = asyncio.Semaphore(WORKERS)
    model_lock = threading.Lock()  # a layer keeps its forward's state: one forward at a time

    def answer(body: bytes) -> dict:
        image = predictor.prepare(body, "the image", max_pixels=MAX_UPLOAD_PIXELS)
        with model_lock:
            return predictor.explain(image)

    async def read_body(request: Request) -> bytes:
        body = b""
        async for chunk in request.stream():  # counted as it arrives: a missing length cannot lie
            body += chunk
            if len(body) > MAX_UPLOAD_BYTES:
                raise HTTPException(413, f"an image of at most {MAX_UPLOAD_BYTES:,} bytes, please")
        return body

    async def predict(request: Request):
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_UPLOAD_BYTES):
            return _error(413, f"an image of at most {MAX_UPLOAD_BYTES:,} bytes, please")
        try:
            body = await asyncio.wait_for(read_body(request), BODY_SECONDS)
        except asyncio.TimeoutError:
            return _error(408, f"the upload took longer than {BODY_SECONDS:g} s")
        if not body:
            return _error(400, "send the image as the request body (PNG, JPEG, ...)")
        async with workers:
            try:
                return JSONResponse(await run_in_threadpool(answer, body))
            except NetlabError as exc:
                return _error(400, str(exc))

    async def on_http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail))

    def _error(status: int, message: str) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    routes = [Route("/", page), Route("/static/{name}", static), Route("/api/info", get_info),
              Route("/api/predict", predict, methods=["POST"]), Route("/curves.png", curves)]
    hosts = list(allowed_hosts) if allowed_hosts else LOOPBACK_HOSTS
    return Starlette(routes=routes, exception_handlers={HTTPException: on_http_error},
                     middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)])


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
