"""Weights that parse but are corrupt are never served: the registry records their SHA-256, the backend
verifies it on load, refuses non-finite weights and a model whose outputs are not finite, and ``/health``
says ``DEGRADED`` naming the version (real HTTP, real registry, real safetensors files)."""

from __future__ import annotations

import json
import struct

import torch
from backend_testkit import CARDS, add_version, tiny_state
from test_image_access import CHOICES, setup

from training.artifacts import CHECKSUM_FILE, WEIGHTS_FILE, weights_sha256
from training.registry import Registry
from training.untrained import register_untrained

BODY = {
    "tasks": [{"id": 1, "data": {"image": "/data/local-files/?d=images/a.png"}}],
    "project": "4.1795424387",
    "label_config": CHOICES,
}


def _register(settings, state: dict[str, torch.Tensor]):
    return register_untrained(
        Registry.from_settings(settings), "4", CARDS["classify"], state=state, promote=True, metrics={}
    )


def _refused(live, why: str) -> None:
    r = live.session.post(f"{live.url}/predict", json=BODY, timeout=60)
    assert r.status_code == 503, r.text
    assert "classify-v1" in r.json()["error"] and why in r.json()["error"], r.text
    health = live.session.get(f"{live.url}/health", timeout=5).json()
    assert health["status"] == "DEGRADED"
    failed = health["projects"]["4"]["failed"]["classify"]
    assert failed.startswith("classify-v1") and why in failed, failed


def test_the_registry_records_the_weights_checksum(make_settings) -> None:
    v1 = add_version(make_settings(), "4", "classify")
    line = (v1.artifact_dir / CHECKSUM_FILE).read_text()
    assert line == f"{weights_sha256(v1.artifact_dir)}  {WEIGHTS_FILE}\n"


def test_flipped_bytes_behind_an_intact_header_are_not_served(make_settings, serve) -> None:
    settings = make_settings()
    v1 = add_version(settings, "4", "classify")
    weights = v1.artifact_dir / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    start = 8 + struct.unpack("<Q", data[:8])[0]  # the tensors begin after the JSON header
    for n in range(2000):  # 2000 words flipped: still a readable safetensors file
        at = start + (n * 4099) % (len(data) - start - 4)
        data[at : at + 4] = bytes(b ^ 0xFF for b in data[at : at + 4])
    weights.write_bytes(bytes(data))
    live = serve(settings)
    setup(live, "http://localhost:8080")
    _refused(live, "the weights are not those registered")


def test_non_finite_weights_are_not_served(make_settings, serve) -> None:
    settings = make_settings()
    state = {
        k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
        for k, v in tiny_state("classify", 1.0).items()
    }
    _register(settings, state)  # checksum recorded over NaN weights: the bytes are as registered
    live = serve(settings)
    setup(live, "http://localhost:8080")
    _refused(live, "non-finite weights (NaN or infinity)")


def test_a_model_whose_outputs_are_not_finite_is_not_served(make_settings, serve) -> None:
    settings = make_settings()
    state = {k: v.clone() for k, v in tiny_state("classify", 1.0).items()}
    state["bn1.weight"] = state["bn1.weight"] * 3e38  # finite weights whose activations overflow
    _register(settings, state)
    live = serve(settings)
    setup(live, "http://localhost:8080")
    r = live.session.post(f"{live.url}/predict", json=BODY, timeout=60)
    assert r.status_code == 200, r.text
    (out,) = r.json()["results"]
    assert out["result"] == [] and "classify-v1 gave non-finite outputs (score)" in out["error"], out
    assert "NaN" not in r.text and json.loads(r.text)  # never a null or NaN score
    _refused(live, "gave non-finite outputs")
