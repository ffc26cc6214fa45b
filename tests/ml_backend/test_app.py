"""The protocol over real HTTP, with the bodies Label Studio 1.23.2 sends; no model needed here."""

from __future__ import annotations

import base64
import http.client
import logging

import pytest
import requests
from backend_testkit import API_KEY, BOX_CONFIG, FULL_CONFIG, observed_predict_body
from waits import LONG

from kernel.settings import Secret
from ml_backend.auth import MAX_FAILURES, WINDOW_S, FailedLogins
from ml_backend.models import UNTRAINED


def test_health_setup_versions_as_label_studio_calls_them(make_settings, serve) -> None:
    live = serve(make_settings())
    r = live.session.get(f"{live.url}/health", timeout=LONG)
    assert r.status_code == 200 and r.json()["status"] == "UP"
    assert live.setup() == UNTRAINED
    health = live.session.get(f"{live.url}/health", timeout=LONG).json()
    assert health["projects"]["4"]["without_model"] == {"detect": "no production version"}
    # Label Studio sends GET /versions with a JSON body
    r = live.session.get(f"{live.url}/versions", json={"project": "4.1795424387"}, timeout=LONG)
    assert r.status_code == 200 and r.json()["versions"] == [UNTRAINED]


def test_untrained_project_gets_empty_results_with_the_setup_version(make_settings, serve) -> None:
    live = serve(make_settings())
    version = live.setup(FULL_CONFIG)
    body = observed_predict_body()  # the exact body Label Studio sent (2 tasks)
    body["label_config"] = FULL_CONFIG
    r = live.session.post(f"{live.url}/predict", json=body, timeout=LONG)
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 2
    assert all(x["result"] == [] and x["model_version"] == version == UNTRAINED for x in results)
    health = live.session.get(f"{live.url}/health", params={"project": "4"}, timeout=LONG).json()
    assert set(health["projects"]["4"]["without_model"]) == {"detect", "segment", "classify"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"tasks": [', "malformed JSON"),
        (b"", "empty request body"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"tasks": {"id": 1}, "project": "4.1"}', "'tasks' must be a list"),
        (b'{"tasks": [], "project": "../etc"}', "bad project reference"),
        (b'{"tasks": [], "project": "4.1", "label_config": "<View><Image"}', "label config"),
    ],
)
def test_bad_requests_are_400_with_a_message(make_settings, serve, data: bytes, message: str) -> None:
    live = serve(make_settings())
    r = live.session.post(
        f"{live.url}/predict", data=data, headers={"Content-Type": "application/json"}, timeout=LONG
    )
    assert r.status_code == 400
    assert message in r.json()["error"]


def test_setup_rejects_a_bad_project_and_a_bad_config(make_settings, serve) -> None:
    live = serve(make_settings())
    r = live.session.post(f"{live.url}/setup", json={"project": None, "schema": BOX_CONFIG}, timeout=LONG)
    assert r.status_code == 400 and "project" in r.json()["error"]
    r = live.session.post(f"{live.url}/setup", json={"project": "4.1", "schema": "<View"}, timeout=LONG)
    assert r.status_code == 400 and "label config" in r.json()["error"]


def test_basic_auth_guards_every_route_but_the_webhook(make_settings, serve) -> None:
    live = serve(make_settings(basic_auth_user="ls", basic_auth_password=Secret("s3cret")))
    assert live.session.get(f"{live.url}/health", timeout=LONG).status_code == 401
    r = live.session.get(f"{live.url}/health", auth=("ls", "wrong"), timeout=LONG)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    assert live.session.get(f"{live.url}/health", auth=("ls", "s3cret"), timeout=LONG).status_code == 200
    r = live.session.post(f"{live.url}/predict", json={"tasks": []}, timeout=LONG)
    assert r.status_code == 401
    live.session.auth = ("ls", "s3cret")
    assert live.setup() == UNTRAINED
    # Label Studio's auto-created webhook sends no credentials: /webhook is never 401
    r = requests.post(f"{live.url}/webhook", json={"action": "PROJECT_UPDATED"}, timeout=LONG)
    assert r.status_code != 401


def test_failed_logins_from_one_address_are_429_until_the_window_passes(make_settings, serve) -> None:
    """10 wrong passwords from one address within 60 s: then every request from it is a 429 with
    Retry-After, the right password included; another address is still served; /webhook is not held."""
    live = serve(make_settings(basic_auth_user="ls", basic_auth_password=Secret("s3cret")))
    port = int(live.url.rsplit(":", 1)[1])
    for _ in range(10):
        r = live.session.get(f"{live.url}/health", auth=("ls", "guess"), timeout=LONG)
        assert r.status_code == 401
    for auth in (("ls", "guess"), ("ls", "s3cret")):
        r = live.session.get(f"{live.url}/health", auth=auth, timeout=LONG)
        assert r.status_code == 429 and "too many failed logins" in r.json()["error"], r.text
        assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert requests.post(f"{live.url}/webhook", json={"action": "X"}, timeout=LONG).status_code != 429
    # another client address (127.0.0.2 is this host too) with the right password
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=LONG, source_address=("127.0.0.2", 0))
    conn.request(
        "GET", "/health", headers={"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}
    )
    assert conn.getresponse().status == 200
    conn.close()


def test_failed_logins_are_forgotten_after_the_window() -> None:
    now = [100.0]
    logins = FailedLogins(clock=lambda: now[0])
    for _ in range(MAX_FAILURES):
        logins.fail("10.0.0.9")
        now[0] += 1.0
    assert logins.retry_after("10.0.0.9") == pytest.approx(WINDOW_S - MAX_FAILURES)
    now[0] = 100.0 + WINDOW_S
    assert logins.retry_after("10.0.0.9") is None  # the first failure left the window
    many = FailedLogins(max_addresses=3)
    for i in range(5):
        many.fail(f"10.0.0.{i}")
    assert len(many._failures) == 3


def test_the_token_is_never_echoed_or_logged(make_settings, serve, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    live = serve(make_settings())
    r = live.session.post(
        f"{live.url}/setup",
        json={
            "project": "4.1795424387",
            "schema": BOX_CONFIG,
            "hostname": "http://localhost:8080",
            "access_token": API_KEY,
            "extra_params": None,
        },
        timeout=LONG,
    )
    assert r.status_code == 200 and API_KEY not in r.text
    for path in ("/health", "/versions"):
        assert API_KEY not in live.session.get(f"{live.url}{path}", timeout=LONG).text
    assert API_KEY not in caplog.text


def test_unknown_routes_and_methods_answer_json(make_settings, serve) -> None:
    live = serve(make_settings())
    r = live.session.get(f"{live.url}/predict", timeout=LONG)
    assert r.status_code == 405 and "error" in r.json()
    r = live.session.get(f"{live.url}/nope", timeout=LONG)
    assert r.status_code == 404 and "error" in r.json()
