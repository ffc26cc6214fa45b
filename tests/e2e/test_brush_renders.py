"""Label Studio's own frontend, in headless Chromium, draws our brush prediction on a task."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from waits import LONG

from histoloop.demo import retrieve_predictions

pytestmark = pytest.mark.labelstudio
ARTIFACTS = Path(__file__).resolve().parents[2] / "out"


def _blue_pixels(png: Path) -> int:
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int(
        ((rgb[..., 2] > 150) & (rgb[..., 2] > rgb[..., 0] + 60) & (rgb[..., 2] > rgb[..., 1] + 60)).sum()
    )


def test_label_studio_renders_our_brush_prediction(loop, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ls, pid = loop.label_studio, loop.projects["segment"]
    retrieve_predictions(loop.client, pid)
    tasks = [t for t in loop.client.tasks.list(project=pid, fields="all") if t.predictions]
    task = next(t for t in tasks if any(r["value"]["rle"] for p in t.predictions for r in _results(p)))

    browser.get(f"{ls.url}/user/login/")
    browser.find_element(By.NAME, "email").send_keys(ls.username)
    browser.find_element(By.NAME, "password").send_keys(ls.password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    WebDriverWait(browser, LONG).until(lambda d: "/user/login" not in d.current_url)

    browser.get(f"{ls.url}/projects/{pid}/data?task={task.id}")
    WebDriverWait(browser, LONG).until(ec.presence_of_element_located((By.CSS_SELECTOR, "canvas")))
    time.sleep(4)  # the image and the brush layer are drawn after the canvas exists
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "label-studio-brush-prediction.png"
    browser.save_screenshot(str(shot))
    # only the image area counts: Label Studio's own buttons are blue too
    canvas = max(
        browser.find_elements(By.CSS_SELECTOR, "canvas"), key=lambda c: c.size["width"] * c.size["height"]
    )
    x, y, w, h = (int(canvas.rect[k]) for k in ("x", "y", "width", "height"))
    image_area = ARTIFACTS / "label-studio-brush-canvas.png"
    Image.open(shot).crop((x, y, x + w, y + h)).save(image_area)
    assert _blue_pixels(image_area) > 200, f"no blue brush region drawn on the image; see {shot}"


def _results(prediction) -> list[dict]:
    p = prediction if isinstance(prediction, dict) else prediction.model_dump()
    return p["result"]
