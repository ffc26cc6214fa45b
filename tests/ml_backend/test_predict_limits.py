"""One /predict is bounded: a deadline for the whole batch (HISTOLOOP_PREDICT_TIMEOUT), image
fetches in parallel within it, and a budget of decoded pixels (HISTOLOOP_PREDICT_MAX_PIXELS) read from
the headers before anything is decoded. Over real HTTP against a server that drips its images."""

from __future__ import annotations

import time

from backend_testkit import add_version
from PIL import Image
from test_image_access import CHOICES
from test_slow_images import Drip


def _body(images: list[str]) -> dict:
    return {
        "tasks": [{"id": i, "data": {"image": url}} for i, url in enumerate(images)],
        "project": "4.1795424387",
        "label_config": CHOICES,
    }


def test_slow_fetches_run_in_parallel_and_stop_at_the_request_deadline(make_settings, serve) -> None:
    drip = Drip(every=0.5)
    try:
        # each fetch alone could take 60 s; ten of them one after another, 600 s
        settings = make_settings(label_studio_url=drip.url, image_timeout=60.0, predict_timeout=4.0)
        add_version(settings, "4", "classify")
        live = serve(settings)
        live.setup(CHOICES)
        images = [f"/data/upload/1/slow{i}.png" for i in range(10)] + ["/data/local-files/?d=images/a.png"]
        t0 = time.monotonic()
        r = live.session.post(f"{live.url}/predict", json=_body(images), timeout=120)
        seconds = time.monotonic() - t0
        assert r.status_code == 200 and seconds < 40, (seconds, r.text[:500])
        results = r.json()["results"]
        for item in results[:10]:
            assert "within this request's deadline of 4 s" in item["error"], item
        assert drip.requests >= 4  # fetched side by side, not one after the other
        # the 11th (a local file) queued behind eight stalled fetches: not started before the deadline
        assert "deadline" in results[10]["error"]
        # a batch that fits its deadline is answered in full
        ok = live.session.post(f"{live.url}/predict", json=_body([images[10]] * 3), timeout=120).json()
        assert all("error" not in item and item["result"] for item in ok["results"]), ok
    finally:
        drip.close()


def test_a_tiny_file_with_huge_pixels_is_refused_before_decoding(make_settings, serve) -> None:
    settings = make_settings()
    bomb = settings.local_files_root / "images" / "bomb.png"
    Image.new("1", (15000, 12000)).save(bomb, optimize=True)  # ~22 kB, 180 Mpx: under the decode limit
    assert bomb.stat().st_size < 200_000 and settings.max_image_pixels > 15000 * 12000
    add_version(settings, "4", "classify")
    live = serve(settings)
    live.setup(CHOICES)
    a = "/data/local-files/?d=images/a.png"  # 200 x 160
    t0 = time.monotonic()
    r = live.session.post(
        f"{live.url}/predict", json=_body([a, "/data/local-files/?d=images/bomb.png", a]), timeout=300
    )
    seconds = time.monotonic() - t0
    assert r.status_code == 200 and seconds < 60, seconds  # it took 216 s of CPU before
    first, refused, last = r.json()["results"]
    assert "past its budget of 134217728 pixels" in refused["error"], refused
    assert first["result"] and last["result"] and "error" not in last

    # the budget is for the whole batch: the tasks past it are refused, those within it answered
    tight = make_settings(predict_max_pixels=2 * 200 * 160)
    live = serve(tight)
    live.setup(CHOICES)
    items = live.session.post(f"{live.url}/predict", json=_body([a, a, a]), timeout=120).json()["results"]
    assert [("error" in item) for item in items] == [False, False, True], items
    assert "HISTOLOOP_PREDICT_MAX_PIXELS" in items[2]["error"]
