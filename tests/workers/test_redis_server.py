"""ensure_redis starts a bundled redis-server only when none answers, and stops only its own."""

from __future__ import annotations

from kernel.net import free_port
from workers.redis_server import answers, ensure_redis


def test_starts_when_none_answers_and_stops_it() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert not answers(url)
    handle = ensure_redis(url)
    assert handle is not None and answers(url)
    assert ensure_redis(url) is None  # one answers now: nothing started
    handle.stop()
    assert not answers(url)


def test_unix_socket(tmp_path) -> None:
    url = f"unix://{tmp_path}/r.sock"
    with ensure_redis(url) as handle:
        assert handle is not None and answers(url)
    assert not answers(url)
