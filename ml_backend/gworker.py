"""A gunicorn threaded worker that reads each request in full before a thread sees it.

gunicorn's ``gthread`` worker waits for a connection's first byte in its event loop, then gives the
connection to a pool thread that reads the rest with blocking reads and no deadline: a client that
sends its headers (or a declared body) one byte every few seconds holds that thread for as long as it
drips, and as many such clients as threads stop every route, ``/health`` included.

:class:`BufferingWorker` reads in the event loop instead, without blocking: bytes are collected per
connection until the headers and the body they announce (``Content-Length``; a chunked body up to its
last chunk) are there, and only then does a thread parse and serve the request, from memory. A slow
client costs a socket and a buffer, never a thread. A connection that has not sent a whole request
within ``HISTOLOOP_REQUEST_READ_TIMEOUT`` (:data:`REQUEST_READ_DEADLINE_S` when the app is not
``histoloop serve``'s) is closed, and at most :data:`MAX_BUFFERED_BYTES` are held for
one request (a bigger one is handed over as it is and refused by the app's body limit).
TLS and HTTP/2 prior knowledge are left to ``gthread`` as it is (histoloop serves plain HTTP/1.1).
"""

from __future__ import annotations

import contextlib
import errno
import re
import selectors
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

REQUEST_READ_DEADLINE_S = 30.0
"""How long a connection may take to send one whole request (headers and body)."""
MAX_BUFFERED_BYTES = 64 * 1024 * 1024 + 64 * 1024
"""The app's body limit (``ml_backend.app.MAX_BODY_BYTES``) plus room for the headers."""
MAX_HEADER_BYTES = 64 * 1024
"""Headers longer than this are handed to gunicorn's parser at once, which refuses them."""
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d+)[ \t]*\r\n", re.IGNORECASE)
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect[ \t]*:[ \t]*100-continue[ \t]*(?=\r\n)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:[^\r\n]*chunked", re.IGNORECASE)


CHUNKED = -1
"""What :func:`request_size` says for a chunked body: whole once its last chunk is in."""


def request_size(data: bytes | bytearray) -> int | None:
    """How many bytes the request at the start of ``data`` takes: ``None`` while its headers are not all
    there, :data:`CHUNKED` for a chunked body; a size past the limits is what the parser gets at once
    (it refuses them).

    >>> request_size(b"GET /health HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    33
    >>> request_size(b"GET /health HTTP/1.1\\r\\nHost: x\\r\\n") is None
    True
    >>> request_size(b"POST / HTTP/1.1\\r\\nContent-Length: 4\\r\\n\\r\\nab")
    42
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return 0 if len(data) > MAX_HEADER_BYTES else None
    head = bytes(data[: end + 2])
    if _CHUNKED.search(head):
        return CHUNKED
    length = _CONTENT_LENGTH.search(head)
    if length is None:
        return end + 4
    wanted = int(length.group(1))
    return 0 if wanted > MAX_BUFFERED_BYTES else end + 4 + wanted


class Pending:
    """A request being collected: its bytes, its size once the headers are in, its deadline."""

    __slots__ = ("buffer", "chunk_at", "deadline", "size", "wants_continue")

    def __init__(self, buffer: bytearray, deadline: float) -> None:
        self.buffer = buffer
        self.deadline = deadline
        self.size: int | None = None
        self.chunk_at = 0
        """For a chunked body: where the next chunk's size line starts."""
        self.wants_continue = False
        """The client waits for ``100 Continue`` before its body (``Expect: 100-continue``): the
        event loop sends it and drops the header, so that the thread does not send a second one."""

    def add(self, data: bytes) -> bool:
        """Append ``data``; whether the request is whole now.

        >>> p = Pending(bytearray(), 0.0)
        >>> p.add(b"POST / HTTP/1.1\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n2\\r\\nab\\r\\n")
        False
        >>> p.add(b"0\\r\\n\\r\\nGET / HTTP/1.1\\r\\n\\r\\n")
        True
        """
        self.buffer += data
        size = self.size
        if size is None:
            size = request_size(self.buffer)
            if size is None:
                return False
            end = self.buffer.find(b"\r\n\r\n")
            head = bytes(self.buffer[: end + 2])
            if size > 0 and b" HTTP/1.1\r\n" in head[: head.find(b"\r\n") + 2]:
                stripped = _EXPECT_CONTINUE.sub(b"", head)
                if stripped != head:
                    self.buffer[: end + 2] = stripped
                    size -= len(head) - len(stripped)
                    self.wants_continue = len(self.buffer) < size
            if size == CHUNKED:
                self.chunk_at = end + 4
            self.size = size
        if size == CHUNKED:
            return self._chunks_done() or len(self.buffer) >= MAX_BUFFERED_BYTES
        return len(self.buffer) >= size

    def _chunks_done(self) -> bool:
        """Walk the chunks received so far; whether the last one (and its trailers) is in."""
        buffer = self.buffer
        while True:
            line_end = buffer.find(b"\r\n", self.chunk_at)
            if line_end < 0:
                return len(buffer) - self.chunk_at > MAX_HEADER_BYTES
            try:
                size = int(bytes(buffer[self.chunk_at : line_end]).split(b";")[0].strip(), 16)
            except ValueError:
                return True  # not chunked encoding: the parser says so at once
            if size == 0:
                return buffer.startswith(b"\r\n", line_end + 2) or buffer.find(b"\r\n\r\n", line_end) >= 0
            after = line_end + 2 + size + 2
            if len(buffer) < after:
                return False
            self.chunk_at = after


class BufferingWorker(ThreadWorker):
    """``gthread`` with requests read in the event loop (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffering: dict[TConn, Pending] = {}
        settings = getattr(self.app, "settings", None)
        self.read_deadline_s = float(getattr(settings, "request_read_timeout", REQUEST_READ_DEADLINE_S))

    def _plain(self) -> bool:
        return not self.cfg.is_ssl and not getattr(self.cfg, "http2_prior_knowledge", False)

    def enqueue_req(self, conn: TConn) -> None:
        """Collect the request on the event loop first; a thread gets it once it is whole."""
        if not self._plain() or getattr(conn, "histoloop_ready", False):
            conn.histoloop_ready = False
            super().enqueue_req(conn)
            return
        pending = self.buffering[conn] = Pending(bytearray(), time.monotonic() + self.read_deadline_s)
        conn.sock.setblocking(False)
        if conn.parser is not None:  # a kept-alive connection: bytes read ahead of its next request
            ahead = conn.parser.unreader.take_buffered()
            if ahead and pending.add(ahead):
                self._hand_over(conn)
                return
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: TConn, _sock: Any) -> None:
        pending = self.buffering[conn]
        try:
            data = conn.sock.recv(256 * 1024)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return
            data = b""
        if not data:  # the client hung up before a whole request
            self._drop(conn)
            return
        if pending.add(data):
            self.poller.unregister(conn.sock)
            self._hand_over(conn)
        elif pending.wants_continue:
            pending.wants_continue = False
            with contextlib.suppress(OSError):  # 25 bytes to an empty send buffer; a failure is a hang-up
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _hand_over(self, conn: TConn) -> None:
        pending = self.buffering.pop(conn)
        conn.init()  # plain HTTP/1.x: makes the parser, reads nothing
        conn.parser.unreader.unread(bytes(pending.buffer))
        conn.data_ready = True
        conn.histoloop_ready = True
        self.enqueue_req(conn)

    def _drop(self, conn: TConn) -> None:
        self.buffering.pop(conn, None)
        with contextlib.suppress(OSError, KeyError, ValueError):  # never registered, or gone already
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """Also close connections that did not send a whole request in time (or all, when stopping)."""
        super().murder_pending()
        now = time.monotonic()
        late = [c for c, p in self.buffering.items() if p.deadline <= now or not self.alive]
        for conn in late:
            self._drop(conn)
