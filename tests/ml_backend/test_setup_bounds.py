"""``/setup`` cannot quietly undo serving or grow memory: bad ``extra_params`` values are 400s with the
reason, ``extra_params: null`` (Label Studio's own later ``/setup``) resets the overrides, and what is kept
per project (label configs) and across projects is bounded."""

from __future__ import annotations

import requests
from backend_testkit import BOX_CONFIG, add_version, task

from ml_backend.projects import MAX_KEPT_BYTES, MAX_KEPT_CONFIG_BYTES, Projects


def _setup(live, extra, config: str = BOX_CONFIG, project: str = "4.1795424387") -> requests.Response:
    body = {
        "project": project,
        "schema": config,
        "hostname": "http://localhost:8080",
        "access_token": "x" * 40,
        "extra_params": extra,
    }
    return live.session.post(f"{live.url}/setup", json=body, timeout=60)


def test_min_score_out_of_range_is_refused_and_null_resets_overrides(make_settings, serve) -> None:
    settings = make_settings()
    add_version(settings, "4", "detect", score_threshold=0.0)  # every box is shown by default
    live = serve(settings)
    tasks = [task(1, "/data/local-files/?d=images/a.png")]

    def boxes() -> list:  # region ids are new each time: compare what is drawn
        return [(r["value"], r["score"]) for r in live.predict(tasks)["results"][0]["result"]]

    assert _setup(live, None).status_code == 200
    shown = boxes()
    assert shown, "the tiny detector shows boxes at threshold 0"

    for bad, reason in [
        ({"min_score": 1e9}, "'min_score' must be a number in [0, 1], not 1000000000.0"),
        ({"min_score": -0.1}, "'min_score' must be a number in [0, 1]"),
        ({"min_score": "0.5"}, "'min_score' must be a number in [0, 1]"),
        ({"min_score": True}, "'min_score' must be a number in [0, 1]"),
        ({"uncertainty": "vibes"}, "'uncertainty' must be confidence|entropy|margin"),
        ({"label_map": {str(i): "x" for i in range(2000)}}, "'label_map' must be an object of at most"),
        ({"label_map": {"tumor": 3}}, "'label_map' must be an object"),
    ]:
        r = _setup(live, bad)
        assert r.status_code == 400 and reason in r.json()["error"], (bad, r.text)
    assert boxes() == shown  # nothing a refused /setup said was kept

    assert _setup(live, {"min_score": 1.0}).status_code == 200  # in range: every box is below it
    assert boxes() == []
    # a /setup without the key keeps the overrides; Label Studio's own (extra_params: null) resets them
    body = {"project": "4.1795424387", "schema": BOX_CONFIG, "hostname": "http://localhost:8080"}
    assert live.session.post(f"{live.url}/setup", json=body, timeout=60).status_code == 200
    assert boxes() == []
    assert _setup(live, None).status_code == 200
    assert boxes() == shown


def test_huge_label_configs_are_not_kept(make_settings, serve) -> None:
    settings = make_settings()
    add_version(settings, "4", "detect", score_threshold=0.0)
    live = serve(settings)
    padding = "<!--" + "x" * (MAX_KEPT_CONFIG_BYTES + 10) + "-->"
    huge = BOX_CONFIG.replace("</View>", padding + "</View>")
    for p in range(5):
        assert _setup(live, None, huge, project=f"{40 + p}.1795424387").status_code == 200
    assert _setup(live, None, huge).status_code == 200
    # /predict still works with the config it is sent
    assert live.predict([task(1, "/data/local-files/?d=images/a.png")], huge)["results"][0]["result"]

    projects = Projects()
    big = "<View>" + "x" * (27 * 1024 * 1024) + "</View>"  # the 27 MB schemas of the probe
    for p in range(15):
        projects.setup(str(p), big, None, None, None)
    assert projects.kept_bytes() == 0
    just_under = "<View>" + "x" * (MAX_KEPT_CONFIG_BYTES - 100) + "</View>"
    for p in range(100):  # 100 MB offered: the oldest are forgotten past the budget
        projects.setup(str(p), just_under, None, None, None)
    assert 0 < projects.kept_bytes() <= MAX_KEPT_BYTES
    assert projects.get("99").label_config == just_under and projects.get("0").label_config is None
