"""Make tests/data/labelstudio_export.json from a real Label Studio (rerunnable).

Starts Label Studio 1.23 from its own venv (default /work/ls-venv) on 127.0.0.1:8080 with local-files
serving rooted at ../shared/data, creates a project (Image + RectangleLabels + PolygonLabels +
BrushLabels + Choices, tests/data/labelstudio_config.xml), a Local Files storage on the MoNuSeg tiles,
one task per tile, and annotations through the REST API: rectangles (one rotated), polygons (real
MoNuSeg nuclei), brush RLE (encoded with label_studio_sdk), choices; a cancelled annotation, a draft, a
ground-truth annotation and two annotators on one task. Then it exports the project as JSON with
label_studio_sdk and stops the server.

    .venv/bin/python tests/data/make_labelstudio_export.py [--ls-venv /work/ls-venv] [--data-dir /work/ls-data]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import requests
from label_studio_sdk.client import LabelStudio
from label_studio_sdk.converter import brush
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()
MONUSEG = SHARED_DATA / "monuseg-breast"
CONFIG = HERE / "labelstudio_config.xml"
OUT = HERE / "labelstudio_export.json"
SIZE = 1000  # MoNuSeg tiles are 1000x1000


def nuclei(stem: str, n: int, offset: int = 0) -> list[np.ndarray]:
    """The first n nucleus polygons (pixel vertices) of a MoNuSeg tile, clipped to the image."""
    root = ET.parse(MONUSEG / "annotations" / f"{stem}.xml").getroot()
    out = []
    for region in list(root.iter("Region"))[offset:]:
        pts = np.array([[float(v.get("X")), float(v.get("Y"))] for v in region.iter("Vertex")])
        pts = np.clip(pts, 0, SIZE)
        # thin the dense vertex lists (1 px apart) to keep the fixture small
        out.append(pts[:: max(1, len(pts) // 12)])
        if len(out) == n:
            break
    return out


def rect(label: str, pts: np.ndarray, rotation: float = 0.0, name: str = "box") -> dict:
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    return {
        "from_name": name,
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": SIZE,
        "original_height": SIZE,
        "image_rotation": 0,
        "value": {
            "x": x0 / SIZE * 100,
            "y": y0 / SIZE * 100,
            "width": (x1 - x0) / SIZE * 100,
            "height": (y1 - y0) / SIZE * 100,
            "rotation": rotation,
            "rectanglelabels": [label],
        },
    }


def polygon(label: str, pts: np.ndarray) -> dict:
    return {
        "from_name": "polygon",
        "to_name": "image",
        "type": "polygonlabels",
        "original_width": SIZE,
        "original_height": SIZE,
        "image_rotation": 0,
        "value": {"points": (pts / SIZE * 100).round(4).tolist(), "closed": True, "polygonlabels": [label]},
    }


def brush_region(label: str, polys: list[np.ndarray]) -> dict:
    img = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(img)
    for pts in polys:
        draw.polygon([tuple(p) for p in pts], fill=255)
    mask = np.array(img, dtype=np.uint8)
    return {
        "from_name": "brush",
        "to_name": "image",
        "type": "brushlabels",
        "original_width": SIZE,
        "original_height": SIZE,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": brush.mask2rle(mask), "brushlabels": [label]},
    }


def choice(value: str) -> dict:
    return {
        "from_name": "diagnosis",
        "to_name": "image",
        "type": "choices",
        "origin": "manual",
        "value": {"choices": [value]},
    }


def start_server(ls_venv: Path, data_dir: Path, port: int, token: str, password: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HISTOLOOP_", "VIRTUAL_ENV"))}
    env.update(
        LABEL_STUDIO_USERNAME="admin@example.com",
        LABEL_STUDIO_PASSWORD=password,
        LABEL_STUDIO_USER_TOKEN=token,
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LOCAL_FILES_SERVING_ENABLED="true",
        LOCAL_FILES_DOCUMENT_ROOT=str(SHARED_DATA),
        COLLECT_ANALYTICS="false",
        LATEST_VERSION_CHECK="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
    )
    cmd = [str(ls_venv / "bin" / "label-studio"), "start", "--no-browser", "--internal-host", "127.0.0.1"]
    cmd += ["--port", str(port), "--data-dir", str(data_dir), "--enable-legacy-api-token"]
    log = open(data_dir.parent / "ls-export-server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        if proc.poll() is not None:
            raise SystemExit(f"Label Studio exited early; see {log.name}")
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                return proc
        except requests.RequestException:
            pass
        time.sleep(1)
    raise SystemExit("Label Studio did not start in 240 s")


def build(url: str, token: str) -> list[dict]:
    s = requests.Session()
    s.headers["Authorization"] = f"Token {token}"

    def call(method: str, path: str, **kw) -> dict | list:
        r = s.request(method, url + path, timeout=60, **kw)
        if not r.ok:
            raise SystemExit(f"{method} {path}: {r.status_code} {r.text[:500]}")
        return r.json() if r.content else {}

    second = call(
        "POST", "/api/users/", json={"email": "pathologist2@example.com", "username": "pathologist2"}
    )
    project = call(
        "POST", "/api/projects/", json={"title": "histoloop fixture", "label_config": CONFIG.read_text()}
    )
    pid = project["id"]
    call(
        "POST",
        "/api/storages/localfiles/",
        json={
            "project": pid,
            "path": str(MONUSEG / "images"),
            "use_blob_urls": True,
            "title": "MoNuSeg tiles",
        },
    )
    stems = sorted(p.stem for p in (MONUSEG / "images").glob("*.tif"))
    tasks = [
        {"image": f"/data/local-files/?d=monuseg-breast/images/{stem}.tif", "stem": stem} for stem in stems
    ]
    call("POST", f"/api/projects/{pid}/import", json=tasks)
    listed = call("GET", f"/api/tasks/?project={pid}&page_size=100")
    by_stem = {t["data"]["stem"]: t["id"] for t in listed["tasks"]}

    def annotate(stem: str, result: list[dict], **extra) -> dict:
        return call("POST", f"/api/tasks/{by_stem[stem]}/annotations/", json={"result": result, **extra})

    a, b, c, d = stems
    na, nb, nc, nd = nuclei(a, 8), nuclei(b, 8), nuclei(c, 8), nuclei(d, 8)
    # Task a: everything, by the admin; then a second pathologist's opinion (two annotators, one task).
    annotate(
        a,
        [
            rect("tumor", na[0]),
            rect("tumor", na[1], rotation=30.0),
            rect("lymphocyte", na[2]),
            polygon("tumor", na[3]),
            polygon("lymphocyte", na[4]),
            brush_region("tumor", na[5:7]),
            brush_region("lymphocyte", na[7:8]),
            choice("malignant"),
        ],
    )
    time.sleep(1.1)
    annotate(a, [rect("lymphocyte", na[0]), choice("benign")], completed_by=second["id"])
    # Task b: a ground-truth annotation, then a later ordinary one (ground truth wins).
    annotate(
        b,
        [rect("tumor", nb[0]), polygon("tumor", nb[1]), brush_region("tumor", nb[2:4]), choice("malignant")],
        ground_truth=True,
    )
    time.sleep(1.1)
    annotate(b, [rect("lymphocyte", nb[0]), choice("benign")])
    # Task c: a cancelled (skipped) annotation, then a submitted one; and a draft from the second user.
    annotate(c, [], was_cancelled=True)
    time.sleep(1.1)
    annotate(
        c,
        [
            rect("tumor", nc[0]),
            rect("tumor", nc[1]),
            polygon("lymphocyte", nc[2]),
            brush_region("lymphocyte", nc[3:5]),
            choice("benign"),
        ],
    )
    call(
        "POST",
        f"/api/tasks/{by_stem[c]}/drafts",
        json={"result": [rect("lymphocyte", nc[5])], "lead_time": 3},
    )
    # Task d: only a draft and a cancelled annotation: nothing usable.
    call("POST", f"/api/tasks/{by_stem[d]}/drafts", json={"result": [rect("tumor", nd[0])], "lead_time": 2})
    annotate(d, [], was_cancelled=True)

    ls = LabelStudio(base_url=url, api_key=token)
    return ls.projects.exports.as_json(pid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ls-venv", type=Path, default=Path("/work/ls-venv"))
    ap.add_argument("--data-dir", type=Path, default=Path("/work/ls-data"))
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args()
    if not MONUSEG.is_dir():
        raise SystemExit(f"MoNuSeg tiles not found at {MONUSEG}")
    shutil.rmtree(args.data_dir, ignore_errors=True)  # legacy tokens only apply to a fresh organisation
    args.data_dir.mkdir(parents=True)
    token, password = secrets.token_hex(20), secrets.token_urlsafe(12)
    proc = start_server(args.ls_venv, args.data_dir, args.port, token, password)
    try:
        export = build(f"http://127.0.0.1:{args.port}", token)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    OUT.write_text(json.dumps(export, indent=1) + "\n")
    print(f"wrote {OUT} ({len(export)} tasks)")


if __name__ == "__main__":
    main()
