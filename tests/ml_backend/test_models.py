"""The model cache against a real registry and real tiny models: loaded once, reloaded only on change."""

from __future__ import annotations

import threading

from backend_testkit import add_version

from ml_backend.models import UNTRAINED, ModelCache
from training.artifacts import WEIGHTS_FILE
from training.registry import Registry


def test_loaded_once_and_reloaded_only_when_production_changes(make_settings) -> None:
    settings = make_settings()
    v1 = add_version(settings, "4", "detect")
    reg = Registry.from_settings(settings)
    cache = ModelCache(reg, "cpu")
    first = cache.serving("4", ["detect"])
    assert first.model_version == "detect-v1" and first.models["detect"].version.id == v1.id
    assert cache.serving("4", ["detect"]).models["detect"] is first.models["detect"]
    # another project's new version bumps the revision: project 4's model is not reloaded
    add_version(settings, "7", "classify")
    assert cache.serving("4", ["detect"]).models["detect"] is first.models["detect"]
    # a candidate is not served
    add_version(settings, "4", "detect", head_bias=2.0, promote=False)
    assert cache.serving("4", ["detect"]).models["detect"] is first.models["detect"]
    reg.promote("4/detect/v2", by="test")
    second = cache.serving("4", ["detect"])
    assert second.model_version == "detect-v2" and second.models["detect"] is not first.models["detect"]


def test_versions_do_not_load_and_name_only_the_kinds_asked_for(make_settings) -> None:
    settings = make_settings()
    add_version(settings, "4", "classify")
    cache = ModelCache(Registry.from_settings(settings), "cpu")
    found = cache.versions("4", ["detect", "classify"])
    assert found.model_version == "classify-v1" and found.missing == {"detect": "no production version"}
    assert cache.status("4", ["classify"]).models == {}  # nothing loaded yet
    assert cache.versions("4", ["detect"]).model_version == UNTRAINED


def test_threads_racing_for_a_model_load_it_once(make_settings) -> None:
    settings = make_settings()
    add_version(settings, "4", "segment")
    cache = ModelCache(Registry.from_settings(settings), "cpu")
    got: list[object] = []
    threads = [
        threading.Thread(target=lambda: got.append(cache.serving("4", ["segment"]).models["segment"]))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and all(m is got[0] for m in got)


def test_a_corrupt_version_is_reported_not_raised(make_settings) -> None:
    settings = make_settings()
    v1 = add_version(settings, "4", "detect")
    (v1.artifact_dir / WEIGHTS_FILE).write_bytes(b"not safetensors")
    cache = ModelCache(Registry.from_settings(settings), "cpu")
    serving = cache.serving("4", ["detect"])
    assert serving.models == {} and "detect-v1 failed to load" in serving.missing["detect"]
    # a version that does not load is never served under its name
    assert serving.model_version != "detect-v1" and "detect-v1 failed to load" in serving.failed["detect"]
    assert "failed to load" in cache.status("4", ["detect"]).failed["detect"]
    assert cache.versions("4", ["detect"]).model_version != "detect-v1"  # /setup and /versions agree
    # a good version promoted over it is served
    add_version(settings, "4", "detect")
    assert cache.serving("4", ["detect"]).models["detect"].version.label == "detect-v2"


def test_a_version_whose_files_this_host_does_not_see_yet_is_tried_again(make_settings) -> None:
    """Another host registered the version; this host's view of the shared store lags behind the database.
    The backend answers without the model (not an error it remembers) and loads it once the files show."""
    import os

    settings = make_settings()
    v1 = add_version(settings, "4", "classify")
    hidden = v1.artifact_dir.with_name("v1.in-flight")
    os.rename(v1.artifact_dir, hidden)
    reg = Registry.from_settings(settings)
    reg.artifact_wait_s = 0.2
    cache = ModelCache(reg, "cpu")
    serving = cache.serving("4", ["classify"])
    assert serving.models == {} and "does not see" in serving.missing["classify"]
    os.rename(hidden, v1.artifact_dir)
    assert cache.serving("4", ["classify"]).models["classify"].version.id == v1.id
