"""Interactive pre-annotation against a real Label Studio 1.23.2: its API, then its frontend in Chromium.

Label Studio is connected to histoloop through a recording proxy (what Label Studio sends to ``/predict``
is kept: ``out/labelstudio-interactive-requests.json``). A project with a brush control and smart tools
(a click, a box) gets the segment model of the loop's segment project. Then:

- Label Studio's own ``POST /api/ml/{id}/interactive-annotating`` with a click and with a box returns the
  object as a brush region;
- in the labelling view (headless Chromium), Auto-Annotation on, a click with the smart keypoint tool makes
  Label Studio's frontend send the click and draw the brush region histoloop answers.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from converters.rle import rle_to_mask
from histoloop.demo import local_files_url
from training.registry import Registry

pytestmark = pytest.mark.labelstudio
ARTIFACTS = Path(__file__).resolve().parents[2] / "out"
CONFIG = (
    '<View><Image name="image" value="$image" zoom="true"/>'
    '<BrushLabels name="tumor_mask" toName="image"><Label value="Tumor" background="blue"/></BrushLabels>'
    '<KeyPointLabels name="click" toName="image" smart="true">'
    '<Label value="Tumor" smart="true" background="blue"/></KeyPointLabels>'
    '<RectangleLabels name="box" toName="image" smart="true">'
    '<Label value="Tumor" smart="true" background="blue"/></RectangleLabels>'
    "</View>"
)


class RecordingProxy:
    """Forwards every request to ``target`` and keeps those to ``/predict`` (method, path, JSON body)."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.recorded: list[dict[str, Any]] = []
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def app(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        if request.path == "/predict":
            self.recorded.append({"method": request.method, "path": request.path, "body": json.loads(body)})
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        r = requests.request(request.method, self.target + request.full_path.rstrip("?"), data=body,
                             headers=headers, timeout=120)  # fmt: skip
        return Response(r.content, r.status_code, content_type=r.headers.get("Content-Type"))(
            environ, start_response
        )

    def interactive(self) -> list[dict[str, Any]]:
        return [
            r for r in self.recorded if ((r["body"].get("params") or {}).get("context") or {}).get("result")
        ]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def interactive_project(loop):
    """(project id, ML backend id, proxy, tasks): the loop's segment model on a project with smart tools."""
    client, settings = loop.client, loop.settings
    document_root = Path(settings.local_files_root)
    project = client.projects.create(title="histoloop interactive", label_config=CONFIG)
    client.import_storage.local.create(
        project=project.id, path=str(loop.images[0].parent.resolve()), use_blob_urls=True, title="slides"
    )
    client.projects.import_tasks(
        project.id, request=[{"image": local_files_url(p, document_root)} for p in loop.images]
    )
    registry = Registry.from_settings(settings)
    source = registry.production(str(loop.projects["segment"]), "segment")
    staging = registry.staging_dir()
    shutil.copytree(source.artifact_dir, staging, dirs_exist_ok=True)
    version = registry.register(str(project.id), "segment", staging, metrics=source.metrics)
    registry.promote(version.id, by="test")
    backend_url = next(b.url for b in client.ml.list(project=loop.projects["segment"]))
    proxy = RecordingProxy(backend_url)
    ml = client.ml.create(project=project.id, url=proxy.url, title="histoloop", is_interactive=True)
    tasks = list(client.tasks.list(project=project.id))
    try:
        yield project.id, ml.id, proxy, tasks
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "labelstudio-interactive-requests.json").write_text(
            json.dumps(proxy.interactive(), indent=1)
        )
        proxy.stop()


def _region(kind: str, value: dict, **extra: Any) -> dict:
    return {"type": kind, "from_name": "click" if kind == "keypointlabels" else "box", "to_name": "image",
            "original_width": 256, "original_height": 256, "image_rotation": 0, "value": value, **extra}  # fmt: skip


def test_label_studio_api_forwards_a_click_and_a_box(loop, interactive_project) -> None:
    project, ml_id, proxy, tasks = interactive_project
    ls = loop.label_studio
    url = f"{ls.url}/api/ml/{ml_id}/interactive-annotating"
    contexts = {
        "click": {"result": [_region("keypointlabels", {"x": 50, "y": 50, "width": 0.5,
                                                        "keypointlabels": ["Tumor"]}, is_positive=True)]},
        "box": {"result": [_region("rectanglelabels", {"x": 20, "y": 20, "width": 60, "height": 60,
                                                       "rotation": 0, "rectanglelabels": ["Tumor"]})]},
    }  # fmt: skip
    for what, context in contexts.items():
        found = None
        for task in tasks:  # the first tile on which the segment model sees something there
            r = requests.post(url, json={"task": task.id, "context": context}, headers=ls.headers, timeout=60)
            assert r.status_code == 200, r.text
            data = r.json().get("data")
            assert data is not None, r.json()
            if data["result"]:
                found = data
                break
            assert "no object found" in data["error"], data
        assert found is not None, f"{what}: no tile got an object"
        brush = found["result"][0]
        assert brush["type"] == "brushlabels" and brush["from_name"] == "tumor_mask"
        assert brush["value"]["brushlabels"] == ["Tumor"]
        assert rle_to_mask(brush["value"]["rle"], 256, 256).any()
    sent = proxy.interactive()
    assert len(sent) >= 2
    # what Label Studio forwards: the one task (with its annotations/predictions) and the context untouched
    body = sent[-1]["body"]
    assert len(body["tasks"]) == 1 and body["params"]["context"] == contexts["box"]


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("Debian chromium + chromium-driver are not installed (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def _blue_pixels(png: Path) -> int:
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int(
        ((rgb[..., 2] > 150) & (rgb[..., 2] > rgb[..., 0] + 60) & (rgb[..., 2] > rgb[..., 1] + 60)).sum()
    )


def test_a_click_in_the_frontend_draws_the_object(loop, interactive_project, browser) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    project, _, proxy, tasks = interactive_project
    ls = loop.label_studio
    browser.get(f"{ls.url}/user/login/")
    browser.find_element(By.NAME, "email").send_keys(ls.username)
    browser.find_element(By.NAME, "password").send_keys(ls.password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    WebDriverWait(browser, 30).until(lambda d: "/user/login" not in d.current_url)

    before = len(proxy.interactive())
    task = tasks[0]
    browser.get(f"{ls.url}/projects/{project}/data?task={task.id}")
    WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.CSS_SELECTOR, "canvas")))
    time.sleep(3)
    ARTIFACTS.mkdir(exist_ok=True)
    toggle = browser.find_elements(By.CSS_SELECTOR, "[data-testid=bottombar-auto-annotation-toggle]")
    browser.save_screenshot(str(ARTIFACTS / "label-studio-interactive-0.png"))
    assert toggle, "no Auto-Annotation switch in the labelling view"
    toggle[0].click()
    accept = browser.find_elements(By.CSS_SELECTOR, "[data-testid=bottombar-auto-accept-toggle]")
    if accept:
        accept[0].click()
    # the smart keypoint's label, then a click on the image
    labels = [
        e for e in browser.find_elements(By.XPATH, "//*[normalize-space(text())='Tumor']") if e.is_displayed()
    ]
    browser.save_screenshot(str(ARTIFACTS / "label-studio-interactive-1.png"))
    assert len(labels) >= 2, "the KeyPointLabels' label is not shown"
    labels[1].click()
    canvas = max(
        browser.find_elements(By.CSS_SELECTOR, "canvas"), key=lambda c: c.size["width"] * c.size["height"]
    )
    ActionChains(browser).move_to_element(canvas).click().perform()
    deadline = time.monotonic() + 60
    while len(proxy.interactive()) == before and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)
    shot = ARTIFACTS / "label-studio-interactive-click.png"
    browser.save_screenshot(str(shot))
    sent = proxy.interactive()[before:]
    assert sent, f"the frontend sent no interactive request; see {shot}"
    context = sent[0]["body"]["params"]["context"]
    region = context["result"][0]
    assert region["type"] == "keypointlabels" and region["to_name"] == "image", region
    x, y, w, h = (int(canvas.rect[k]) for k in ("x", "y", "width", "height"))
    area = ARTIFACTS / "label-studio-interactive-canvas.png"
    Image.open(shot).crop((x, y, x + w, y + h)).save(area)
    assert _blue_pixels(area) > 200, f"no blue brush region drawn on the image; see {shot}"
