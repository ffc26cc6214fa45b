"""A free TCP port on this machine, for a server a process starts for itself (a test's Redis, Label Studio
or backend; a benchmark's server; the rendezvous of a multi-GPU training).

>>> 0 < free_port() < 65536
True
"""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the OS picks it; another process may still take it before you do)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


__all__ = ["free_port"]
