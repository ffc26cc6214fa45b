"""The tests never touch a Redis on 6379, the user's: they start their own
(``test_redis``: a free port), and the settings fixtures point elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
NEVER_CONNECT = {  # files that name 6379 in a string and never connect to it
    "kernel/test_settings.py",  # reads a URL from a config file
    "histoloop/test_cli_settings.py",  # prints the settings, masked
    "ml_backend/test_image_access.py",  # SSRF probes that must be refused before any request
    "ml_backend/test_properties.py",  # the same, generated
    "test_deploy.py",  # reads docker-compose.yml: the Redis inside the compose network
}


def test_settings_fixture_points_away_from_6379(settings) -> None:
    assert ":6379" not in settings.redis_url


def test_no_test_connects_to_6379() -> None:
    offenders = []
    for path in TESTS.rglob("*.py"):
        rel = path.relative_to(TESTS).as_posix()
        if rel in NEVER_CONNECT or path == Path(__file__):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"[\"'][^\"']*:6379", code):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert offenders == []


def test_the_test_redis_is_not_on_6379(test_redis: str) -> None:
    assert not test_redis.endswith(":6379")
