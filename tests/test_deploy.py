"""docker-compose.yml is wired together (no Docker engine runs here; `docker compose config` where it exists)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV = {
    "LABEL_STUDIO_USERNAME": "a@b.c",
    "LABEL_STUDIO_PASSWORD": "pw",
    "LABEL_STUDIO_API_KEY": "0" * 40,
    "POSTGRES_PASSWORD": "pg",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_services_and_health_checks(compose: dict) -> None:
    services = compose["services"]
    assert {"label-studio", "redis", "backend"} <= set(services)
    workers = [name for name in services if name.startswith("worker")]
    assert workers, "at least one training worker"
    for name in ("label-studio", "redis", "backend"):
        assert "healthcheck" in services[name], name


def test_settings_are_wired_to_the_services(compose: dict) -> None:
    services = compose["services"]
    for name in ["backend"] + [n for n in services if n.startswith("worker")]:
        env = services[name]["environment"]
        assert env["HISTOLOOP_REDIS_URL"].startswith("redis://redis:")
        assert env["HISTOLOOP_LABEL_STUDIO_URL"] == "http://label-studio:8080"
        assert "LABEL_STUDIO_API_KEY" in env["HISTOLOOP_LABEL_STUDIO_API_KEY"]
        assert any(v.startswith("histoloop-store:/store") for v in services[name]["volumes"])
        assert (
            env["HISTOLOOP_LOCAL_FILES_ROOT"]
            == services["label-studio"]["environment"]["LOCAL_FILES_DOCUMENT_ROOT"]
        )
    ls_env = services["label-studio"]["environment"]
    assert ls_env["LABEL_STUDIO_USER_TOKEN"] == "${LABEL_STUDIO_API_KEY}"
    assert ls_env["ML_BLOCK_LOCAL_IP"] == "false" and ls_env["SSRF_PROTECTION_ENABLED"] == "false"
    assert "--appendonly" in services["redis"]["command"], "Redis must persist queued jobs"


def test_registry_and_events_are_in_postgresql_migrated_first(compose: dict) -> None:
    """No SQLite file on the shared volume: the backend, the workers and the migration use one PostgreSQL."""
    services = compose["services"]
    pg = services["postgres"]
    assert "healthcheck" in pg and any(v.startswith("postgres-data:") for v in pg["volumes"])
    user, db = pg["environment"]["POSTGRES_USER"], pg["environment"]["POSTGRES_DB"]
    assert services["migrate"]["command"] == ["histoloop", "db", "upgrade"]
    for name in ["backend", "migrate"] + [n for n in services if n.startswith("worker")]:
        url = services[name]["environment"]["HISTOLOOP_DATABASE_URL"]
        assert url.startswith(f"postgresql://{user}:") and url.endswith(f"@postgres:5432/{db}"), name
        assert (
            "${POSTGRES_PASSWORD" in url and "${POSTGRES_PASSWORD" in pg["environment"]["POSTGRES_PASSWORD"]
        )
        if name != "migrate":
            depends = services[name]["depends_on"]
            assert depends["migrate"] == {"condition": "service_completed_successfully"}, name


def test_every_worker_reserves_its_own_gpu(compose: dict) -> None:
    seen = set()
    for name, service in compose["services"].items():
        if not name.startswith("worker"):
            continue
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
        gpu = device["device_ids"][0]
        assert "--gpu" in service["command"]  # the container sees its one reserved GPU as cuda:0
        assert gpu not in seen
        seen.add(gpu)


def test_named_volumes_are_declared(compose: dict) -> None:
    used = set()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("$", ".", "/")):
                used.add(source)
    assert used <= set(compose["volumes"])


def test_env_example_names_every_required_variable() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    example = (ROOT / ".env.example").read_text()
    assert required and all(f"{name}=" in example for name in required)


@pytest.mark.skipif(
    subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0
    if shutil.which("docker")
    else True,
    reason="no `docker compose` client on this machine",
)
def test_docker_compose_config_accepts_it() -> None:
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
    )
    assert result.returncode == 0, result.stderr
