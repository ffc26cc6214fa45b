"""HTTP basic auth for the backend, with a bound on failed logins per client address.

:func:`require_basic_auth` guards every route but ``/webhook`` (the webhook Label Studio creates for an ML
backend sends no credentials; ``HISTOLOOP_WEBHOOK_SECRET`` guards it instead). A request with wrong
credentials is a ``401`` and counts as a failed login of its client address; after
:data:`MAX_FAILURES` of them within :data:`WINDOW_S` seconds every request from that address is a ``429``
with ``Retry-After`` (the seconds until the oldest failure leaves the window), right credentials
included, so that guessing stops there. A request without credentials (a client's first try, before the
challenge) is a ``401`` that does not count. The count is kept per process (each gunicorn worker keeps
its own) and in memory only; the address is the TCP peer's, so behind a proxy all clients share the
proxy's.

>>> now = [0.0]
>>> logins = FailedLogins(max_failures=2, window_s=60, clock=lambda: now[0])
>>> logins.fail("10.0.0.9"); logins.fail("10.0.0.9"); logins.retry_after("10.0.0.9")
60.0
>>> now[0] = 45.0; logins.retry_after("10.0.0.9"), logins.retry_after("10.0.0.8")
(15.0, None)
>>> now[0] = 60.0; logins.retry_after("10.0.0.9") is None
True
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

UNAUTHENTICATED = frozenset({"/webhook"})
MAX_FAILURES = 10
"""Failed logins from one client address within :data:`WINDOW_S` before its requests are ``429``."""
WINDOW_S = 60.0
MAX_ADDRESSES = 10_000
"""Client addresses whose failures are remembered at once (the least recently failed forgotten first)."""


class FailedLogins:
    """Recent failed logins per client address (thread-safe; see the module docstring)."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self.max_addresses = max_addresses
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if times is not None and not times:
            del self._failures[address]
            return None
        return times

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None when it may now."""
        with self._lock:
            now = self.clock()
            times = self._recent(address, now)
            if times is None or len(times) < self.max_failures:
                return None
            return times[-self.max_failures] + self.window_s - now

    def fail(self, address: str) -> None:
        """Count one failed login of ``address``."""
        with self._lock:
            now = self.clock()
            times = self._recent(address, now)
            if times is None:
                times = self._failures[address] = deque(maxlen=self.max_failures)
            times.append(now)
            self._failures.move_to_end(address)
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)


def require_basic_auth(app: Flask, user: str, password: str, logins: FailedLogins | None = None) -> None:
    """Guard every route of ``app`` but :data:`UNAUTHENTICATED` with basic auth ``user``/``password``."""
    expected_user, expected_password = user.encode(), password.encode()
    failures = logins or FailedLogins()

    @app.before_request
    def check_basic_auth() -> ResponseReturnValue | None:
        if request.path in UNAUTHENTICATED:
            return None
        address = request.remote_addr or ""
        wait = failures.retry_after(address)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            response = jsonify(
                error=f"too many failed logins from this address ({failures.max_failures} within "
                f"{failures.window_s:g} s): retry in {seconds} s"
            )
            response.status_code = 429
            response.headers["Retry-After"] = str(seconds)
            return response
        auth = request.authorization
        if (
            auth is not None
            and auth.type == "basic"
            and hmac.compare_digest((auth.username or "").encode(), expected_user)
            and hmac.compare_digest((auth.password or "").encode(), expected_password)
        ):
            return None
        if auth is not None:  # credentials, and wrong ones (a bare first try does not count)
            failures.fail(address)
        response = jsonify(error="authentication required")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="histoloop"'
        return response
