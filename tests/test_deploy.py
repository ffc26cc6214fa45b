"""docker-compose.yml is wired together and publishes what the README says (no Docker engine runs here; the
compose client validates it where one is installed)."""

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
        assert "@redis:6379/" in env["HISTOLOOP_REDIS_URL"]
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


def test_a_cpu_worker_by_default_gpu_workers_behind_a_profile(compose: dict) -> None:
    """`docker compose up` on a CPU-only host starts a worker that needs no NVIDIA runtime."""
    services = compose["services"]
    cpu = services["worker-cpu"]
    assert "profiles" not in cpu and "deploy" not in cpu
    assert cpu["command"] == ["histoloop", "worker", "--device", "cpu"]
    gpu_workers = [name for name in services if name.startswith("worker-gpu")]
    assert gpu_workers
    for name, service in services.items():
        reserves = "deploy" in service
        assert reserves == (name in gpu_workers), f"{name}: only GPU workers reserve a device"
        if reserves:
            assert service["profiles"] == ["gpu"], name


def test_every_gpu_worker_reserves_its_own_gpu_and_sees_it_as_gpu_0(compose: dict) -> None:
    """The container sees only its reserved GPU, numbered 0: every GPU worker says --gpu 0, whatever its
    device_ids (the README's way to add one: copy worker-gpu0, change only device_ids)."""
    seen = set()
    for name, service in compose["services"].items():
        if not name.startswith("worker-gpu"):
            continue
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
        (gpu,) = device["device_ids"]
        assert name == f"worker-gpu{gpu}"
        assert service["command"] == ["histoloop", "worker", "--gpu", "0"], name
        assert gpu not in seen
        seen.add(gpu)


def _readme_ports() -> dict[str, tuple[int, str, str]]:
    """The README's "Published ports" table: service -> (port, its .env variable, where it is published)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**Published ports.**") :]
    rows = re.findall(r"^\| `([\w-]+)` \| (\d+) \(`(\w+)`\) \| ([^|]+?) \|", section, re.MULTILINE)
    assert rows, "the README's table of published ports"
    return {service: (int(port), var, where) for service, port, var, where in rows}


def _published(spec: str) -> tuple[str | None, str, str]:
    """``"${A:-127.0.0.1}:${P:-9090}:9090"`` -> (the host address part or None, the host port part, the
    container port); variables are kept (split on the colons outside ``${...}``)."""
    parts = re.findall(r"(?:\$\{[^}]*\}|[^:$])+", spec)
    if len(parts) == 2:
        return None, parts[0], parts[1]
    address, host_port, container = parts
    return address, host_port, container


def test_published_ports_are_what_the_readme_says_and_no_more(compose: dict) -> None:
    readme = _readme_ports()
    published = {name: s["ports"] for name, s in compose["services"].items() if s.get("ports")}
    assert set(published) == set(readme), "every published service is in the README's table, and only those"
    for name, (port, var, where) in readme.items():
        (spec,) = published[name]
        address, host_port, container = _published(spec)
        assert container == str(port), name
        assert host_port == f"${{{var}:-{port}}}", name
        if where == "every interface":
            assert address is None, name
        else:
            assert where == "`HISTOLOOP_BIND_ADDRESS`", where
            assert address == "${HISTOLOOP_BIND_ADDRESS:-127.0.0.1}", name
        assert f"{var}={port}" in (ROOT / ".env.example").read_text(), var
    assert "HISTOLOOP_BIND_ADDRESS=127.0.0.1" in (ROOT / ".env.example").read_text()


def test_redis_is_published_with_a_password(compose: dict) -> None:
    services = compose["services"]
    command = services["redis"]["command"]
    assert command[command.index("--requirepass") + 1] == "${REDIS_PASSWORD}"
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == "${REDIS_PASSWORD}"  # the health check
    for name in ["backend", "migrate"] + [n for n in services if n.startswith("worker")]:
        url = services[name]["environment"]["HISTOLOOP_REDIS_URL"]
        assert url.startswith("redis://:${REDIS_PASSWORD:?") and url.endswith("@redis:6379/0"), name


def test_env_example_values_are_what_its_comments_ask() -> None:
    values = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert re.fullmatch(r"[0-9a-f]{40}", values["LABEL_STUDIO_API_KEY"])
    for name in ("POSTGRES_PASSWORD", "REDIS_PASSWORD"):  # they go into URLs
        assert re.fullmatch(r"[A-Za-z0-9]+", values[name]) and "CHANGE" in values[name], name


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


def _compose_client() -> list[str] | None:
    """``docker compose`` (v2) or Debian's ``docker-compose``; None where neither runs."""
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    """The compose client itself reads the file with `.env.example` as `.env`: valid, and the ports resolve
    to the README's addresses."""
    client = _compose_client()
    if client is None:
        pytest.skip(
            "no `docker compose` or `docker-compose` client on this machine (apt install docker-compose)"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HISTOLOOP_", "COMPOSE_"))}
    args = [*client, "-f", str(COMPOSE), "--env-file", str(ROOT / ".env.example")]
    for profile in ([], ["--profile", "gpu"]):
        result = subprocess.run(
            [*args, *profile, "config", "--quiet"], capture_output=True, text=True, env=env, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
    result = subprocess.run([*args, "config"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name, (port, _var, where) in _readme_ports().items():
        (entry,) = services[name]["ports"]
        if isinstance(entry, str):  # "127.0.0.1:9090:9090/tcp"
            address, published, target = [None, *entry.split("/")[0].split(":")][-3:]
        else:
            address, published, target = entry.get("host_ip"), entry["published"], entry["target"]
        assert (int(published), int(target)) == (port, port), name
        assert address == (None if where == "every interface" else "127.0.0.1"), name


def test_the_backend_needs_its_password_and_webhook_secret_from_env(compose: dict) -> None:
    """`histoloop serve --host 0.0.0.0` refuses to start open: compose gives it basic auth and a webhook
    secret, and refuses to run without them in .env; the health check authenticates."""
    backend = compose["services"]["backend"]
    env = backend["environment"]
    assert "--behind-auth-proxy" not in backend["command"]
    assert env["HISTOLOOP_BASIC_AUTH_USER"]
    assert env["HISTOLOOP_BASIC_AUTH_PASSWORD"].startswith("${BACKEND_PASSWORD:?")
    assert env["HISTOLOOP_WEBHOOK_SECRET"].startswith("${WEBHOOK_SECRET:?")
    assert "HISTOLOOP_BASIC_AUTH_PASSWORD" in " ".join(backend["healthcheck"]["test"])
    values = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name in ("BACKEND_PASSWORD", "WEBHOOK_SECRET"):
        assert "CHANGE" in values[name] and values[name].isascii(), name
