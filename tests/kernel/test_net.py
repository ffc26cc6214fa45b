"""kernel.net: the one free-port helper that tests, benchmarks and multi-GPU training use."""

from __future__ import annotations

import socket

from kernel.net import free_port


def test_the_port_is_free_to_listen_on() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # raises OSError (address in use) if it were not free
        s.listen()
        assert s.getsockname()[1] == port
