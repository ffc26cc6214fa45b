"""Interactive pre-annotation against a real Label Studio 1.23.2: its API, then its frontend in Chromium.

Label Studio is connected to histoloop through a recording proxy (what it sends to ``/predict`` is kept in
``out/labelstudio-interactive-requests.json``; ``tests/data/labelstudio_interactive_1.23.2.json`` is such a
recording, replayed without Label Studio by tests/ml_backend/test_interactive_replay.py). A project with a
brush control and smart tools (a click, a box) gets a segment model that sees tissue everywhere (a U-Net
with its head biased: any click lands on an object):

- Label Studio's own ``POST /api/ml/{id}/interactive-annotating`` (the path its frontend calls) with a click
  and with a box returns the object as a brush region;
- in the labelling view (headless Chromium), Auto-Annotation on, a click with the smart keypoint tool makes
  Label Studio's frontend send the click and add the brush region histoloop answers to the annotation.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from waits import LONG
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from converters.rle import rle_to_mask
from histoloop.demo import local_files_url
from training.artifacts import ModelCard
from training.registry import Registry
from training.untrained import register_untrained

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
        r = requests.request(
            request.method,
            self.target + request.full_path.rstrip("?"),
            data=body,
            headers=headers,
            timeout=LONG,
        )
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


def register_everything_segmenter(settings: Any, project: str) -> None:
    """A U-Net (resnet18, 256 px) whose head is biased so that every pixel is tissue, promoted."""
    card = ModelCard(
        kind="segment",
        classes=["tumor"],
        input_size=256,
        arch={"arch": "Unet", "encoder": "resnet18", "mode": "binary"},
    )
    register_untrained(Registry.from_settings(settings), project, card, head_bias=4.0)


@pytest.fixture(scope="module")
def interactive_project(loop):
    """(project id, ML backend id, proxy, tasks): smart tools, no predictions shown, histoloop interactive."""
    client, settings = loop.client, loop.settings
    project = client.projects.create(
        title="histoloop interactive", label_config=CONFIG, show_collab_predictions=False
    )
    client.import_storage.local.create(
        project=project.id, path=str(loop.images[0].parent.resolve()), use_blob_urls=True, title="tiles"
    )
    client.projects.import_tasks(
        project.id, request=[{"image": local_files_url(p, loop.document_root)} for p in loop.images[:3]]
    )
    register_everything_segmenter(settings, str(project.id))
    proxy = RecordingProxy(loop.backend_url)
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
    return {
        "type": kind,
        "from_name": "click" if kind == "keypointlabels" else "box",
        "to_name": "image",
        "original_width": 256,
        "original_height": 256,
        "image_rotation": 0,
        "value": value,
        **extra,
    }


def test_label_studio_api_forwards_a_click_and_a_box(loop, interactive_project) -> None:
    _, ml_id, proxy, tasks = interactive_project
    ls = loop.label_studio
    url = f"{ls.url}/api/ml/{ml_id}/interactive-annotating"
    contexts = {
        "click": {
            "result": [
                _region(
                    "keypointlabels",
                    {"x": 25, "y": 75, "width": 0.5, "keypointlabels": ["Tumor"]},
                    is_positive=True,
                )
            ]
        },
        "box": {
            "result": [
                _region(
                    "rectanglelabels",
                    {
                        "x": 20,
                        "y": 20,
                        "width": 40,
                        "height": 30,
                        "rotation": 0,
                        "rectanglelabels": ["Tumor"],
                    },
                )
            ]
        },
    }
    for what, context in contexts.items():
        r = requests.post(
            url, json={"task": tasks[0].id, "context": context}, headers=ls.headers, timeout=LONG
        )
        assert r.status_code == 200, r.text
        data = r.json().get("data")
        assert data and data["result"], r.json()
        brush = data["result"][0]
        assert brush["type"] == "brushlabels" and brush["from_name"] == "tumor_mask", what
        assert brush["value"]["brushlabels"] == ["Tumor"]
        mask = rle_to_mask(brush["value"]["rle"], 256, 256) > 0
        if what == "click":
            assert mask[192, 64]
        else:  # the objects inside the box, clipped to it: 102x77 px at (51, 51)
            ys, xs = np.nonzero(mask)
            assert abs(xs.min() - 51) <= 1 and abs(ys.min() - 51) <= 1
            assert abs(xs.max() - 153) <= 1 and abs(ys.max() - 128) <= 1
    sent = proxy.interactive()
    assert len(sent) >= 2
    # what Label Studio forwards: the one task (with its annotations/predictions) and the context untouched
    body = sent[-1]["body"]
    assert len(body["tasks"]) == 1 and body["params"]["context"] == contexts["box"]
    assert body["tasks"][0]["id"] == tasks[0].id and body["label_config"] == CONFIG


REGIONS_JS = """try {
  const a = window.Htx.annotationStore.selected;
  const kind = r => [r.type, (r.results || []).map(x => x.from_name.name).join(',')];
  return {regions: a.regionStore.regions.map(kind), suggestions: [...a.suggestions.values()].map(kind)};
} catch (e) { return null; }"""
SMART_TOOL_JS = """const tools = window.Htx.annotationStore.names.get(arguments[1]).getToolsManager();
const tool = Object.values(tools.tools).find(t => t.dynamic && t.control && t.control.name === arguments[0]);
if (tool) tools.selectTool(tool, true);
return tool ? tool.selected : false;"""


def _click_the_centre(loop, browser, project: int, task_id: int, shot: Path) -> dict:
    """Log in, open ``task_id``, switch Auto-Annotation on, pick the smart keypoint tool's label and click
    the image's centre; returns the regions and suggestions shown once a suggestion came (or the deadline
    passed), after saving a screenshot to ``shot``."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ls = loop.label_studio
    browser.get(f"{ls.url}/user/login/")
    if browser.find_elements(By.NAME, "email"):  # a second test in the same browser is logged in already
        browser.find_element(By.NAME, "email").send_keys(ls.username)
        browser.find_element(By.NAME, "password").send_keys(ls.password)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    WebDriverWait(browser, LONG).until(lambda d: "/user/login" not in d.current_url)
    browser.get(f"{ls.url}/projects/{project}/data?task={task_id}")
    WebDriverWait(browser, LONG).until(ec.presence_of_element_located((By.CSS_SELECTOR, "canvas")))
    WebDriverWait(browser, LONG).until(lambda d: d.execute_script(REGIONS_JS) is not None)
    assert browser.execute_script(REGIONS_JS) == {"regions": [], "suggestions": []}  # no predictions shown
    ARTIFACTS.mkdir(exist_ok=True)
    toggle = WebDriverWait(browser, LONG).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=bottombar-auto-annotation-toggle]"))
    )
    # JS clicks and the frontend's own store where a person clicks a button: no tooltip or overlay intercepts
    browser.execute_script("arguments[0].click()", toggle)
    labels = WebDriverWait(browser, LONG).until(
        lambda d: (
            [e for e in d.find_elements(By.CSS_SELECTOR, ".lsf-label__text") if e.text.strip() == "Tumor"]
            if len(d.find_elements(By.CSS_SELECTOR, ".lsf-label__text")) >= 3
            else False
        )
    )
    browser.execute_script("arguments[0].click()", labels[1])  # the keypoint's label (brush, keypoint, box)
    # the smart variant of the keypoint tool (Auto-Annotation adds it: its regions go to the ML backend)
    assert browser.execute_script(SMART_TOOL_JS, "click", "image"), "no smart keypoint tool"
    canvas = max(
        browser.find_elements(By.CSS_SELECTOR, "canvas"), key=lambda c: c.size["width"] * c.size["height"]
    )
    ActionChains(browser).move_to_element_with_offset(canvas, 0, 0).click().perform()
    shown: dict = {}
    deadline = time.monotonic() + LONG
    while time.monotonic() < deadline:
        shown = browser.execute_script(REGIONS_JS) or {}
        if shown.get("suggestions"):
            break
        time.sleep(1)
    browser.save_screenshot(str(shot))
    return shown


def test_a_click_in_the_frontend_draws_the_object(loop, interactive_project, browser) -> None:
    """Auto-Annotation on, the smart keypoint tool, a click: Label Studio sends it, draws our brush region
    as a suggestion, and accepting it puts it in the annotation."""
    from selenium.webdriver.common.by import By

    project, _, proxy, tasks = interactive_project
    before = len(proxy.interactive())
    shot = ARTIFACTS / "label-studio-interactive-click.png"
    shown = _click_the_centre(loop, browser, project, tasks[-1].id, shot)  # a task no other test annotates
    sent = proxy.interactive()[before:]
    assert sent, f"the frontend sent no interactive request; see {shot}"
    region = sent[0]["body"]["params"]["context"]["result"][0]
    assert region["type"] == "keypointlabels" and region["to_name"] == "image", region
    assert region["value"]["keypointlabels"] == ["Tumor"] and region["is_positive"] is True
    assert abs(region["value"]["x"] - 50) < 5 and abs(region["value"]["y"] - 50) < 5, region
    assert shown.get("suggestions") == [["brushregion", "tumor_mask"]], f"{shown}; see {shot}"
    assert "suggestions" in browser.find_element(By.TAG_NAME, "body").text
    browser.execute_script("window.Htx.annotationStore.selected.acceptAllSuggestions()")
    shown = browser.execute_script(REGIONS_JS)
    assert ["brushregion", "tumor_mask"] in shown["regions"], shown


MONUSEG = Path(__file__).resolve().parents[3] / "shared" / "data" / "monuseg-breast" / "images"


def _crop_on_a_nucleus(target: Path, size: int = 384) -> None:
    """A ``size`` px crop of a MoNuSeg breast field centred on its most hematoxylin-dense spot (a nucleus)."""
    from PIL import Image
    from scipy import ndimage
    from skimage.color import rgb2hed

    field = np.asarray(Image.open(sorted(MONUSEG.glob("*.tif"))[0]).convert("RGB"))
    density = ndimage.uniform_filter(rgb2hed(field)[..., 0], 9)
    half = size // 2
    y, x = np.unravel_index(
        int(np.argmax(density[half:-half, half:-half])), (field.shape[0] - size, field.shape[1] - size)
    )
    Image.fromarray(field[y : y + size, x : x + size]).save(target)


@pytest.mark.skipif(not MONUSEG.is_dir(), reason=f"the shared MoNuSeg tiles are not at {MONUSEG}")
def test_a_click_on_day_one_draws_the_nucleus_under_it(loop, browser) -> None:
    """A new project with no model version: a click on a real H&E nucleus is answered with that nucleus (the
    stain answer), drawn by Label Studio as a suggestion; the screenshot is the README's picture
    (docs/label-studio-first-click.png)."""
    client = loop.client
    folder = loop.document_root / "monuseg"
    folder.mkdir(exist_ok=True)
    image = folder / "nucleus.png"
    _crop_on_a_nucleus(image)
    project = client.projects.create(
        title="histoloop first click", label_config=CONFIG, show_collab_predictions=False
    )
    client.import_storage.local.create(
        project=project.id, path=str(folder.resolve()), use_blob_urls=True, title="he"
    )
    client.projects.import_tasks(project.id, request=[{"image": local_files_url(image, loop.document_root)}])
    client.ml.create(project=project.id, url=loop.backend_url, title="histoloop", is_interactive=True)
    task = next(iter(client.tasks.list(project=project.id)))
    shot = ARTIFACTS / "label-studio-first-click.png"
    shown = _click_the_centre(loop, browser, project.id, task.id, shot)
    assert shown.get("suggestions") == [["brushregion", "tumor_mask"]], f"{shown}; see {shot}"
