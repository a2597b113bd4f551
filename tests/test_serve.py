"""The draw-a-digit page: its endpoints through Starlette's test client, and a real headless
Chromium that draws a 7 with pointer events and reads the answer off the page."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from netlab import backend, checkpoint, saved, training
from conftest import ROOT, cli, small_config

pytest.importorskip("starlette")
pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A seed CNN trained on the fixture's 540 digits long enough to read a clear 7."""
    out = tmp_path_factory.mktemp("serve") / "run"
    training.Trainer(small_config("train.epochs=15", "train.batch_size=64", "train.eval_every=1000"), out).fit()
    return out


@pytest.fixture(scope="module")
def client(run):
    from starlette.testclient import TestClient

    from netlab.inference import Predictor
    from netlab.web.app import make_app

    return TestClient(make_app(Predictor(saved.load(run))))


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


def browser():
    """Headless Chromium driven by Selenium, or a skip saying what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver")
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("no Chromium and chromedriver here (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400",
                 "--disable-gpu"):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(service=Service(driver_path), options=options)


def test_a_browser_draws_a_seven_and_reads_the_answer(run, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser()
    server = subprocess.Popen([sys.executable, "-m", "netlab.serve", f"checkpoint={run}", "port=0"], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
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
        time.sleep(1.0)  # let the answer to the last pointer event arrive
        predicted = driver.find_element(By.ID, "predicted").text.strip()
        bars = {b.get_attribute("data-class"): float(b.get_attribute("data-probability"))
                for b in driver.find_elements(By.CSS_SELECTOR, "#bars .bar")}
        assert predicted == "7", (predicted, bars)
        assert max(bars, key=bars.get) == "7" and sum(bars.values()) == pytest.approx(1, abs=1e-3)
        best_fill = driver.find_element(By.CSS_SELECTOR, "#bars .bar.best .fill").size["width"]
        track = driver.find_element(By.CSS_SELECTOR, "#bars .bar.best .track").size["width"]
        assert best_fill >= bars["7"] * track - 2 > 0  # the bar is drawn as long as its probability
        assert len(driver.find_elements(By.CSS_SELECTOR, "#layers .layer")) == 4  # conv, pool, conv, pool
        assert driver.find_element(By.ID, "error").text == ""
        driver.save_screenshot(str(tmp_path / "page.png"))
        assert Path(tmp_path / "page.png").stat().st_size > 10_000
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=30)
