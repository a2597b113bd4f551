"""Draw experiments/figures/serve.png: the draw-a-digit page with a 7 drawn on it.

    python experiments/screenshot_serve.py RUN_DIR [OUT.png]

Starts ``python -m netlab.serve checkpoint=RUN_DIR port=0``, draws a 7 in headless Chromium
(Debian: apt-get install chromium chromium-driver; pip install -e ".[serve]") with pointer
events, waits for the answer and saves a screenshot of the whole page.
"""

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def main(run: str, out: str = str(Path(__file__).parent / "figures" / "serve.png")) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("google-chrome")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1500"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    server = subprocess.Popen([sys.executable, "-m", "netlab.serve", f"checkpoint={run}", "port=0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+/", server.stdout.readline()).group(0)
        driver.get(url)
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        pad = driver.find_element(By.ID, "pad")
        actions = ActionChains(driver).move_to_element_with_offset(pad, -60, -70).click_and_hold()
        for dx, dy in [(30, 0)] * 4 + [(-7, 15)] * 10:
            actions.move_by_offset(dx, dy)
        actions.release().perform()
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "predicted").text.strip())
        time.sleep(1.5)
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1200, height + 100)
        time.sleep(0.5)
        driver.save_screenshot(out)
        print("wrote", out, "- the page says", driver.find_element(By.ID, "predicted").text)
    finally:
        driver.quit()
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main(*sys.argv[1:])
