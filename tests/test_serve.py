"""The draw-a-digit page: its endpoints through Starlette's test client, and a real headless
Chromium that draws a 7 with pointer events and reads the answer off the page; its safe defaults
(this machine only) on every install, the serve extra or not."""

from __future__ import annotations

import io
import tempfile
import re
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netlab import saved, training
from conftest import browser, cli, small_config, wait_for


def needs_the_extra():
    """Skip, on an install without the serve extra, a test that runs the page itself (the
    defaults at the end of this file are checked on every install)."""
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A seed CNN trained on the fixture's 540 digits long enough to read a clear 7."""
    needs_the_extra()
    out = tmp_path_factory.mktemp("serve") / "run"
    training.Trainer(small_config("train.epochs=15", "train.batch_size=64", "train.eval_every=1000"), out).fit()
    return out


def page_client(run, hosts=None, base_url="http://127.0.0.1"):
    """Starlette's test client on the page, as a browser on this machine reaches it (Host 127.0.0.1)."""
    needs_the_extra()
    from starlette.testclient import TestClient

    from netlab.inference import Predictor
    from netlab.web.app import make_app

    return TestClient(make_app(Predictor(saved.load(run)), hosts), base_url=base_url)


@pytest.fixture(scope="module")
def client(run):
    return page_client(run)


@pytest.mark.parametrize("host,status", [("127.0.0.1", 200), ("localhost", 200), ("[::1]", 200),
                                         ("rebound.example", 400), ("127.0.0.1.evil.example", 400)])
def test_only_this_machines_names_are_answered_by_default(run, host, status):
    """DNS rebinding: a page on 127.0.0.1 answers requests for its own names only."""
    pytest.importorskip("starlette")
    assert page_client(run, base_url=f"http://{host}").get("/api/info").status_code == status
    assert page_client(run, ["rebound.example"], base_url="http://rebound.example").get("/api/info").status_code == 200


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def seven(size=280) -> np.ndarray:
    """A 7 drawn in black on white, as on the page's pad."""
    from PIL import ImageDraw

    img = Image.new("L", (size, size), 255)
    d = ImageDraw.Draw(img)
    d.line([(80, 70), (200, 70), (130, 220)], fill=0, width=18, joint="curve")
    return np.asarray(img)


def test_the_page_and_its_files(client):
    page = client.get("/")
    assert page.status_code == 200 and '<canvas id="pad"' in page.text
    assert client.get("/static/app.js").status_code == 200 and client.get("/static/style.css").status_code == 200
    for name in ("index.html", "..%2F..%2Fconf%2Fconfig.yaml", "netlab.py"):
        answer = client.get(f"/static/{name}")
        assert answer.status_code == 404 and "error" in answer.json()


def test_info_says_what_model_is_served(client, run):
    info = client.get("/api/info").json()
    assert info["model"] == "seed_cnn" and info["classes"] == [str(d) for d in range(10)] and info["curves"]
    assert info["layers"][0].startswith("Conv2d(1, 16") and 0 < info["test_accuracy"] <= 1
    assert client.get("/curves.png").headers["content-type"] == "image/png"


def test_a_good_image_gets_probabilities_the_input_and_feature_maps(client, run):
    answer = client.post("/api/predict", content=png(seven()), headers={"Content-Type": "image/png"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["class"] == "7" and sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert np.array(body["input"]).shape == (28, 28)
    shapes = [(layer["name"].split("(")[0], tuple(layer["shape"])) for layer in body["layers"]]
    assert shapes == [("Conv2d", (16, 28, 28)), ("MaxPool2d", (16, 14, 14)), ("Conv2d", (32, 14, 14)),
                      ("MaxPool2d", (32, 7, 7))]
    assert all(np.array(m).min() >= 0 and np.array(m).max() <= 1 for layer in body["layers"] for m in layer["maps"])
    # the same answer as predict's on the same image
    from netlab.data.images import digit_from_bytes

    np.testing.assert_allclose(body["input"], np.round(digit_from_bytes(png(seven())), 3))


@pytest.mark.parametrize("body,status,message", [
    (png(np.full((50, 50), 255)), 400, "no digit found"),
    (b"this is not an image", 400, "cannot read it as an image"),
    (b"", 400, "send the image as the request body"),
    (b"\x89PNG" + b"\0" * (3 << 20), 413, "at most 2,097,152 bytes"),
])
def test_bad_uploads_get_json_errors(client, body, status, message):
    answer = client.post("/api/predict", content=body)
    assert answer.status_code == status and message in answer.json()["error"]


def test_wrong_methods_and_paths_get_json_errors(client):
    assert client.get("/api/predict").status_code == 405 and "error" in client.get("/api/predict").json()
    assert client.put("/api/info").status_code == 405
    assert client.get("/nowhere").status_code == 404 and "error" in client.get("/nowhere").json()


def test_a_port_in_use_is_one_paragraph(run, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = cli("netlab.serve", f"checkpoint={run}", f"port={port}", cwd=tmp_path, timeout=60)
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_only_loopback_hosts_are_quiet():
    from netlab.cli.serve import _loopback

    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("localhost")
    assert not _loopback("0.0.0.0") and not _loopback("192.168.1.5")


def answer_to(url: str, image: bytes) -> dict:
    """The server's answer to ``image`` (PNG bytes), asked directly (no proxy: it is this machine)."""
    import json
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url + "api/predict", data=image, headers={"Content-Type": "image/png"})
    with opener.open(request, timeout=60) as response:
        return json.loads(response.read())


def test_a_browser_draws_a_seven_and_reads_the_answer(run, tmp_path, spawn):
    import base64

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        server = spawn("netlab.serve", f"checkpoint={run}", "port=0", cwd=tmp_path, stdout=out,
                       stderr=subprocess.STDOUT)
    try:
        address = wait_for(lambda: re.search(r"http://127\.0\.0\.1:\d+/", log.read_text()),
                           "the server to print its address", timeout=60, proc=server)
        url = address.group(0)
        driver.get(url)
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        pad = driver.find_element(By.ID, "pad")
        # a 7 as one stroke of pointer events: across the top, then down to the bottom left
        actions = ActionChains(driver)
        actions.move_to_element_with_offset(pad, -60, -70).click_and_hold()
        for dx, dy in [(30, 0)] * 4 + [(-7, 15)] * 10:
            actions.move_by_offset(dx, dy)
        actions.release().perform()
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "predicted").text.strip())
        # The page asks while the stroke is drawn, one request at a time, so the first answer shown
        # may be to part of the 7: wait until it shows the answer to the whole drawing, which the
        # server gives for the pad as it is now.
        drawing = base64.b64decode(driver.execute_script(
            "return document.getElementById('pad').toDataURL('image/png')").split(",", 1)[1])
        final = answer_to(url, drawing)["probabilities"]

        def shown(d):
            return {b.get_attribute("data-class"): float(b.get_attribute("data-probability") or "nan")
                    for b in d.find_elements(By.CSS_SELECTOR, "#bars .bar")}

        WebDriverWait(driver, 30, poll_frequency=0.1).until(
            lambda d: shown(d) == pytest.approx(final, abs=1e-6),
            message=f"the page never showed the answer to the finished drawing, {final}")
        predicted = driver.find_element(By.ID, "predicted").text.strip()
        bars = shown(driver)
        assert predicted == "7", (predicted, bars)
        assert max(bars, key=bars.get) == "7" and sum(bars.values()) == pytest.approx(1, abs=1e-3)
        best_fill = driver.find_element(By.CSS_SELECTOR, "#bars .bar.best .fill").size["width"]
        track = driver.find_element(By.CSS_SELECTOR, "#bars .bar.best .track").size["width"]
        assert best_fill >= bars["7"] * track - 2 > 0  # the bar is drawn as long as its probability
        assert len(driver.find_elements(By.CSS_SELECTOR, "#layers .layer")) == 4  # conv, pool, conv, pool
        assert driver.find_element(By.ID, "error").text == ""
        driver.save_screenshot(str(tmp_path / "page.png"))
        assert Path(tmp_path / "page.png").stat().st_size > 10_000
    finally:  # the spawn fixture stops the server
        driver.quit()


# ------------------------------------------- the defaults that keep the page private, on every install
# Read from the schema and the command itself, so they are checked without Starlette or uvicorn.
def test_the_page_listens_on_this_machine_only_by_default():
    from netlab.config import ServeConfig, compose, validate

    assert (ServeConfig.host, ServeConfig.allowed_hosts) == ("127.0.0.1", None)
    composed = validate(compose("checkpoint=RUN", config_name="serve"), ServeConfig)
    assert (composed.host, composed.port, composed.allowed_hosts) == ("127.0.0.1", 8000, None)


def test_the_default_allowed_hosts_are_loopback_names_only():
    from netlab.cli.serve import _loopback
    from netlab.web.app import LOOPBACK_HOSTS

    assert set(LOOPBACK_HOSTS) == {"127.0.0.1", "localhost", "::1", "[::1]"}
    assert all(_loopback(h.strip("[]")) for h in LOOPBACK_HOSTS)


class _Trained:
    class config:
        class model:
            name = "seed_cnn"
    path = Path("best.npz")


@pytest.mark.parametrize("overrides,hosts,bound,warned", [
    ([], "loopback", "127.0.0.1", False),
    (["host=localhost"], "loopback", "127.0.0.1", False),
    (["host=0.0.0.0"], ["*"], "0.0.0.0", True),
    (["host=0.0.0.0", "allowed_hosts=[digits.example]"], ["digits.example"], "0.0.0.0", True),
    (["allowed_hosts=[digits.example]"], ["digits.example"], "127.0.0.1", False),
], ids=["default", "localhost", "all_interfaces", "all_interfaces_named", "named"])
def test_the_command_answers_only_the_hosts_its_settings_allow(monkeypatch, capsys, overrides, hosts, bound, warned):
    """What ``netlab.serve`` hands the app and binds, with the app and uvicorn stood in for (so
    that it runs without the extra): loopback names and 127.0.0.1 unless told otherwise, and a
    warning whenever the page is opened to the network."""
    import sys
    import types

    from netlab.cli import serve as serve_app
    from netlab.config import compose
    from netlab.web import app, server

    given = {}
    monkeypatch.setitem(sys.modules, "uvicorn", types.ModuleType("uvicorn"))
    monkeypatch.setattr(serve_app, "Predictor", lambda opened: types.SimpleNamespace(trained=_Trained))
    monkeypatch.setattr(serve_app.saved, "open_for", lambda cfg: None)
    monkeypatch.setattr(app, "make_app", lambda predictor, allowed: given.setdefault("hosts", allowed))

    def run(made, sock):
        given["address"] = sock.getsockname()[0]
        sock.close()

    monkeypatch.setattr(server, "run", run)
    serve_app.serve(compose("checkpoint=RUN", "port=0", *overrides, config_name="serve"))
    assert given["hosts"] == (app.LOOPBACK_HOSTS if hosts == "loopback" else hosts)
    assert given["address"] == bound
    assert ("opens the page to every machine" in capsys.readouterr().err) == warned


# ------------------------------------------------------------ slow and hostile clients (a soak)
def _soak(url_host: str, port: int, png: bytes, seconds: float = 14.0) -> dict:
    """Half-open connections (headers cut off), clients trickling a byte a second, and oversized
    decodes, beside real clients asking for /api/info and /api/predict in a loop: the real ones'
    latencies, and what became of the hostile ones."""
    import statistics
    import threading
    import time
    import urllib.request

    hostile, trickles, stop = [], [], threading.Event()
    for _ in range(150):  # half-sent requests that never finish their headers
        s = socket.create_connection((url_host, port))
        s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        hostile.append(s)

    def trickle():
        s = socket.create_connection((url_host, port))
        trickles.append(s)
        try:
            for byte in b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n":
                if stop.is_set():
                    return
                s.sendall(bytes([byte]))
                time.sleep(1.0)
        except OSError:
            return  # the server hung up on it: what should happen

    threads = [threading.Thread(target=trickle, daemon=True) for _ in range(20)]
    for t in threads:
        t.start()
    latencies, statuses = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for request in (urllib.request.Request(f"http://{url_host}:{port}/api/info"),
                        urllib.request.Request(f"http://{url_host}:{port}/api/predict", data=png, method="POST")):
            t0 = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
                statuses.append(response.status)
            latencies.append(time.perf_counter() - t0)
    # every hostile connection must have been closed by the server (its header deadline)
    closed = 0
    for s in hostile:
        s.settimeout(10)
        try:
            closed += s.recv(1) == b""
        except OSError:
            closed += 1
        s.close()
    stop.set()
    for s in trickles:
        s.close()
    latencies.sort()
    return {"requests": len(latencies), "statuses": sorted(set(statuses)), "median_ms": 1e3 * statistics.median(latencies),
            "p95_ms": 1e3 * latencies[int(0.95 * (len(latencies) - 1))], "max_ms": 1e3 * latencies[-1],
            "half_open_closed": closed, "half_open": len(hostile)}


@pytest.mark.slow
def test_real_clients_are_served_beside_slow_and_half_open_ones(run, tmp_path, spawn):
    """A bounded soak on loopback: 150 half-open requests and 20 clients trickling a byte a second
    do not starve real requests, and the server closes every half-open one at its header deadline."""
    pytest.importorskip("uvicorn")
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        server = spawn("netlab.serve", f"checkpoint={run}", "port=0", cwd=tmp_path, stdout=out,
                       stderr=subprocess.STDOUT)
    port = int(wait_for(lambda: re.search(r"http://127\.0\.0\.1:(\d+)/", log.read_text()),
                        "the server to print its address", timeout=60, proc=server).group(1))
    png = io.BytesIO()
    Image.fromarray(np.pad(np.full((12, 4), 255, np.uint8), 8)).save(png, format="PNG")
    figures = _soak("127.0.0.1", port, png.getvalue())
    print(f"soak: {figures}")
    assert figures["statuses"] == [200] and figures["requests"] >= 10
    assert figures["p95_ms"] < 3000, figures  # real clients answered within seconds, not starved
    assert figures["half_open_closed"] == figures["half_open"], figures
    assert server.poll() is None  # and the server is still up


# ------------------------------------------------------------ adversarial: Host headers
@pytest.fixture(scope="module")
def tiny_app():
    """The page's app on a tiny run's model (allowed hosts: the default loopback names)."""
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from netlab.inference import Predictor
    from netlab.web.app import make_app
    from conftest import train as train_run

    import tempfile
    out = Path(tempfile.mkdtemp()) / "run"
    train_run(out, "train.max_steps=2")
    return TestClient(make_app(Predictor(saved.load(out)))), TestClient(make_app(Predictor(saved.load(out)), ["page.example"]))


@pytest.mark.parametrize("host,status", [
    ("127.0.0.1", 200), ("localhost", 200), ("[::1]", 200), ("127.0.0.1:8000", 200), ("localhost:1", 200),
    ("attacker.example", 400), ("localhost.attacker.example", 400), ("127.0.0.1.nip.io", 400), ("192.168.1.10", 400),
    ("10.0.0.1:8000", 400), ("0.0.0.0", 400), ("127.0.0.2", 400), ("[::2]", 400), ("", 400),
    ("evil.example:80", 400), ("127.0.0.1@evil.example", 400), ("2130706433", 400), ("LOCALHOST", 200),
    ("LocalHost:8000", 200),  # host names are case-insensitive: the same loopback name
])
def test_the_page_answers_its_own_names_only(tiny_app, host, status):
    """DNS rebinding and other machines' addresses: 400 'Invalid host header'; loopback names (any port): 200."""
    default, _ = tiny_app
    response = default.get("/api/info", headers={"host": host})
    assert response.status_code == status, host
    if status == 400:
        assert response.text == "Invalid host header"


@pytest.mark.parametrize("host,status", [("page.example", 200), ("page.example:8000", 200), ("127.0.0.1", 400),
                                         ("other.example", 400), ("sub.page.example", 400)])
def test_a_given_host_list_replaces_the_loopback_names(tiny_app, host, status):
    """allowed_hosts=[page.example]: that name only."""
    _, given = tiny_app
    assert given.get("/api/info", headers={"host": host}).status_code == status
