"""Property-based tests (hypothesis) for the classes of bad input (docs/reliability.md), over real HTTP:

- any JSON body to ``/setup``, ``/predict`` and ``/webhook`` (arbitrary values, and objects shaped like
  Label Studio's with arbitrary values in each field): never a 500; a 400 always says why;
- any image URL or path a task may carry: nothing is read outside the local-files root and the
  allow-list, no request reaches a host that is not allowed, and no key goes to another host.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_image_access import CHOICES, KEY, SETUP_TOKEN, Listener, png_bytes
from waits import LONG

from converters.images import ImageError, ImageLoader, url_origin
from kernel.settings import Secret
from ml_backend.projects import ProjectState
from ml_backend.task_images import TaskImages

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        ["4", "4.1795424387", "٣", "4" * 40, "", " 4 ", CHOICES, "<View", "/data/upload/1/x.png"]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
ACTIONS = [
    "ANNOTATION_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
    "START_TRAINING",
    "PROJECT_UPDATED",
    "TASKS_CREATED",
    "x",
]


def shaped(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with some of ``fields`` (each from its strategy or any JSON), plus arbitrary extra keys."""
    return st.fixed_dictionaries({}, optional={k: s | json_values for k, s in fields.items()})


project = (
    st.sampled_from(["4", "4.1795424387", 4, {"id": 4}, {"id": 4, "label_config": CHOICES}]) | json_values
)
annotation = shaped(
    {
        "id": st.integers(-5, 2**64),
        "task": st.integers(0, 10) | st.lists(st.integers()),
        "result": st.lists(shaped({"type": st.sampled_from(["choices", "brushlabels", 3])})),
        "was_cancelled": st.booleans(),
        "ground_truth": st.booleans(),
        "reviews": st.lists(shaped({"accepted": st.booleans()})),
    }
)
BODIES = {
    "/setup": shaped(
        {
            "project": project,
            "schema": st.sampled_from([CHOICES, "<View", ""]),
            "hostname": st.sampled_from(["http://localhost:8080", "http://127.1:1", "javascript:x"]),
            "access_token": st.text(max_size=8),
        }
    ),
    "/predict": shaped(
        {
            "tasks": st.lists(
                shaped(
                    {
                        "id": json_values,
                        "data": shaped(
                            {
                                "image": st.sampled_from(
                                    [
                                        "/data/local-files/?d=images/a.png",
                                        "/etc/passwd",
                                        "http://127.0.0.1:9/x",
                                    ]
                                )
                            }
                        ),
                    }
                ),
                max_size=3,
            ),
            "project": project,
            "label_config": st.sampled_from([CHOICES, "<View/>", "<x"]),
        }
    ),
    "/webhook": shaped(
        {
            "action": st.sampled_from(ACTIONS),
            "project": project,
            "annotation": annotation,
            "annotations": st.lists(shaped({"id": st.integers(-1, 2**64)})),
        }
    ),
}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One backend for all examples (a project connected, no model: the body checks are what is tested)."""
    import threading

    from werkzeug.serving import make_server

    from kernel.settings import load_settings
    from ml_backend.app import create_app

    tmp = tmp_path_factory.mktemp("props")
    (tmp / "files" / "images").mkdir(parents=True)
    (tmp / "files" / "images" / "a.png").write_bytes(png_bytes())
    app = create_app(
        load_settings(
            env={
                "HISTOLOOP_MODEL_STORE": str(tmp / "store"),
                "HISTOLOOP_DEVICE": "cpu",
                "HISTOLOOP_LOCAL_FILES_ROOT": str(tmp / "files"),
                "HISTOLOOP_REDIS_URL": "redis://127.0.0.1:9/0",
                "HISTOLOOP_LABEL_STUDIO_URL": "http://127.0.0.1:9",
            }
        )
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    session = requests.Session()
    assert session.post(f"{url}/setup", json={"project": "4.1", "schema": CHOICES}, timeout=LONG).ok
    yield url, session
    server.shutdown()
    server.server_close()


def check(live, path: str, data: bytes) -> None:
    url, session = live
    r = session.post(f"{url}{path}", data=data, headers={"Content-Type": "application/json"}, timeout=LONG)
    assert r.status_code in (200, 400, 503), (path, data[:300], r.status_code, r.text[:300])
    if r.status_code != 200:
        assert isinstance(r.json()["error"], str) and r.json()["error"].strip(), r.text


@pytest.mark.parametrize("path", list(BODIES))
def test_any_json_value_is_never_a_500(live, path: str) -> None:
    @PROPERTY
    @given(json_values)
    def run(body: Any) -> None:
        check(live, path, json.dumps(body).encode())

    run()


@pytest.mark.parametrize("path", list(BODIES))
def test_label_studio_shaped_bodies_are_never_a_500(live, path: str) -> None:
    @PROPERTY
    @given(BODIES[path])
    def run(body: dict[str, Any]) -> None:
        check(live, path, json.dumps(body).encode())

    run()


@pytest.mark.parametrize("path", list(BODIES))
def test_bytes_that_are_not_json_are_400s(live, path: str) -> None:
    @settings(max_examples=60, deadline=None)
    @given(st.binary(max_size=64) | st.integers(1, 5000).map(lambda n: ("[" * n).encode()))
    def run(data: bytes) -> None:
        check(live, path, data)

    run()


# -- image URLs and paths ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hosts():
    ls, other = Listener(), Listener()
    yield ls, other
    ls.close()
    other.close()


def url_variants(ls: Listener, other: Listener) -> st.SearchStrategy[str]:
    hostnames = [
        "127.0.0.1",
        "localhost",
        "LOCALHOST",
        "127.1",
        "0.0.0.0",
        "[::1]",
        "127.0.0.1.",
        "user:pw@127.0.0.1",
    ]
    ports = [ls.port, other.port, 9, 6379]
    paths = st.sampled_from(
        [
            "/data/upload/1/x.png",
            "/x.png",
            "/",
            "/data/local-files/?d=images/a.png",
            "/data/local-files/?d=../../etc/passwd",
            "/slides/../x.png",
            "/%2e%2e/x",
        ]
    )
    absolute = st.builds(
        lambda s, h, p, path: f"{s}://{h}:{p}{path}",
        st.sampled_from(["http", "https", "HTTP"]),
        st.sampled_from(hostnames),
        st.sampled_from(ports),
        paths,
    )
    local = st.sampled_from(
        [
            "/etc/passwd",
            "/etc/shadow",
            "../x.png",
            "images/a.png",
            "file:///etc/passwd",
            "/data/local-files/?d=images/a.png",
            "/data/local-files/?d=%2e%2e/%2e%2e/etc/passwd",
            "gopher://127.0.0.1:6379/_INFO",
            "ftp://x/y",
            "//127.0.0.1:6379/x",
            "/data/upload/../../etc/passwd",
            "/storage-data/x",
            "\\\\host\\share\\x.png",
        ]
    )
    return absolute | local | st.text(max_size=40)


def test_image_urls_never_reach_other_hosts_or_outside_the_root(hosts, tmp_path_factory) -> None:
    ls, other = hosts
    tmp = tmp_path_factory.mktemp("urls")
    root = tmp / "root"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(png_bytes())
    from kernel.settings import load_settings

    base = load_settings(
        env={
            "HISTOLOOP_MODEL_STORE": str(tmp / "store"),
            "HISTOLOOP_LOCAL_FILES_ROOT": str(root),
            "HISTOLOOP_LABEL_STUDIO_URL": ls.url,
            "HISTOLOOP_IMAGE_TIMEOUT": "5",
        }
    )
    import dataclasses

    images = TaskImages(dataclasses.replace(base, label_studio_api_key=Secret(KEY)))
    hostnames = st.sampled_from(
        [ls.url, other.url, f"http://127.1:{ls.port}", f"http://localhost:{other.port}", None]
    )

    @PROPERTY
    @given(url_variants(ls, other), hostnames, st.sampled_from([SETUP_TOKEN, ""]))
    def run(url: str, hostname: str | None, token: str) -> None:
        ls.seen.clear()
        other.seen.clear()
        with contextlib.suppress(ImageError):
            images.load(url, ProjectState(CHOICES, hostname, Secret(token)))
        assert other.seen == [], (url, hostname)  # never a request to a host that is not allowed
        for _, auth in ls.seen:  # Label Studio gets its key, or the token /setup sent from it
            expected = {f"Token {KEY}"} | ({f"Token {token}"} if token and hostname == ls.url else set())
            assert auth in expected, (url, hostname, auth)
        path = _local_target(images.loader, url)
        if path is not None:  # a file it would read is under the root
            assert path.resolve().is_relative_to(root.resolve()), (url, path)

    run()


def _local_target(loader: ImageLoader, url: str) -> Path | None:
    try:
        return loader.local_path(url)
    except ImageError:
        return None


def test_a_key_never_goes_to_another_origin() -> None:
    loader = ImageLoader(label_studio_url="http://ls.lab:8080", api_key=KEY, allow=[])

    @PROPERTY
    @given(
        st.text(max_size=60)
        | st.builds(
            "{}://{}{}".format,
            st.sampled_from(["http", "https", "HTTP", "ftp"]),
            st.sampled_from(
                [
                    "ls.lab:8080",
                    "LS.LAB:8080",
                    "ls.lab",
                    "ls.lab:80",
                    "evil@ls.lab:8080",
                    "ls.lab:8080@evil",
                    "ls.lab.:8080",
                    "evil:8080",
                    "ls.lab:8081",
                ]
            ),
            st.text(max_size=10),
        )
    )
    def run(url: str) -> None:
        headers = loader._headers_for(url)
        if headers:
            assert url_origin(url) == "http://ls.lab:8080", url
        assert not loader._headers_for(url, SETUP_TOKEN, "http://other:1") or url_origin(url) in (
            "http://ls.lab:8080",
            "http://other:1",
        )

    run()
