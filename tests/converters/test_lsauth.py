"""Personal Access Tokens and legacy tokens for image fetches, against a real HTTP server that speaks
Label Studio's token protocol (``POST /api/token/refresh/`` → a short-lived access JWT; ``Bearer`` only).

A real Label Studio with legacy tokens off is exercised in tests/e2e (its access tokens live 5 minutes,
too long to watch one expire in a test); here the server issues tokens that expire within seconds.
"""

from __future__ import annotations

import base64
import json
import threading
import time

import numpy as np
import pytest
from PIL import Image
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from converters.images import ImageError, ImageLoader
from converters.lsauth import EARLY_S, auth_headers, is_personal_access_token, jwt_claims
from converters.lsclient import LabelStudioClient, LabelStudioError

LEGACY = "0123456789abcdef0123456789abcdef01234567"


def jwt(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


PAT = jwt({"token_type": "refresh", "exp": int(time.time()) + 86400, "jti": "pat1", "user_id": 1})


class FakeLabelStudio:
    """Token refresh and ``/data/upload`` with Label Studio's rules; access tokens live ``lifetime`` s."""

    def __init__(self, lifetime: float, legacy_enabled: bool = False) -> None:
        self.lifetime, self.legacy_enabled = lifetime, legacy_enabled
        self.refreshes = 0
        self.valid: set[str] = set()
        self.seen: list[str] = []
        png = np.zeros((8, 10, 3), np.uint8)
        import io

        buf = io.BytesIO()
        Image.fromarray(png).save(buf, format="PNG")
        self.png = buf.getvalue()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def app(self, environ, start_response):
        request = Request(environ)
        if request.path == "/api/token/refresh/":
            if (request.get_json(silent=True) or {}).get("refresh") != PAT:
                return Response('{"detail": "Token is invalid"}', 401)(environ, start_response)
            self.refreshes += 1
            access = jwt({"token_type": "access", "exp": time.time() + self.lifetime, "n": self.refreshes})
            self.valid.add(access)
            return Response(json.dumps({"access": access}), 200, content_type="application/json")(
                environ, start_response
            )
        auth = request.headers.get("Authorization", "")
        self.seen.append(auth)
        scheme, _, token = auth.partition(" ")
        ok = (scheme == "Bearer" and token in self.valid and jwt_claims(token)["exp"] > time.time()) or (
            scheme == "Token" and token == LEGACY and self.legacy_enabled
        )
        if not ok:
            return Response('{"detail": "Authentication credentials were not provided."}', 401)(
                environ, start_response
            )
        if request.path.startswith("/api/"):
            body = json.dumps({"label_config": "<View/>"})
            return Response(body, 200, content_type="application/json")(environ, start_response)
        return Response(self.png, 200, content_type="image/png")(environ, start_response)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_ls():
    servers = []

    def start(lifetime: float = 300, legacy_enabled: bool = False) -> FakeLabelStudio:
        servers.append(FakeLabelStudio(lifetime, legacy_enabled))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def test_a_pat_is_exchanged_once_and_sent_as_bearer(fake_ls) -> None:
    ls = fake_ls()
    assert is_personal_access_token(PAT) and not is_personal_access_token(LEGACY)
    loader = ImageLoader(label_studio_url=ls.url, api_key=PAT)
    for _ in range(3):
        assert loader.load("/data/upload/1/a.png").shape == (8, 10, 3)
    assert ls.refreshes == 1
    assert all(a.startswith("Bearer ") and PAT not in a for a in ls.seen)


def test_an_expiring_access_token_is_exchanged_again(fake_ls) -> None:
    ls = fake_ls(lifetime=EARLY_S + 1.0)  # usable for one second
    loader = ImageLoader(label_studio_url=ls.url, api_key=PAT)
    loader.load("/data/upload/1/a.png")
    time.sleep(1.2)
    loader.load("/data/upload/1/a.png")
    assert ls.refreshes == 2


def test_a_refused_access_token_is_exchanged_again_once(fake_ls) -> None:
    ls = fake_ls()
    loader = ImageLoader(label_studio_url=ls.url, api_key=PAT)
    loader.load("/data/upload/1/a.png")
    ls.valid.clear()  # e.g. Label Studio restarted with a new signing key
    loader.load("/data/upload/1/a.png")
    assert ls.refreshes == 2


def test_the_label_studio_client_exchanges_a_pat_and_again_after_a_401(fake_ls) -> None:
    ls = fake_ls()
    client = LabelStudioClient(ls.url, PAT)
    assert client.label_config(4) == client.label_config(4) == "<View/>"
    assert ls.refreshes == 1
    ls.valid.clear()  # Label Studio refuses the access token it gave: exchanged again, the call retried
    assert client.label_config(4) == "<View/>"
    assert ls.refreshes == 2 and all(a.startswith("Bearer ") and PAT not in a for a in ls.seen)
    with pytest.raises(LabelStudioError, match="HTTP 401"):
        LabelStudioClient(ls.url, LEGACY).label_config(4)  # legacy tokens off: refused, not retried


def test_legacy_tokens_and_their_errors(fake_ls) -> None:
    on, off = fake_ls(legacy_enabled=True), fake_ls(legacy_enabled=False)
    assert ImageLoader(label_studio_url=on.url, api_key=LEGACY).load("/data/upload/1/a.png").shape == (
        8,
        10,
        3,
    )
    assert on.seen == [f"Token {LEGACY}"] and on.refreshes == 0
    with pytest.raises(ImageError, match="HTTP 401"):
        ImageLoader(label_studio_url=off.url, api_key=LEGACY).load("/data/upload/1/a.png")
    # a revoked PAT: the error names the refresh URL and the status, never the token
    revoked = jwt({"token_type": "refresh", "exp": int(time.time()) + 60, "jti": "other"})
    with pytest.raises(ImageError, match="HTTP 401 exchanging the personal access token") as err:
        ImageLoader(label_studio_url=off.url, api_key=revoked).load("/data/upload/1/a.png")
    assert revoked not in str(err.value)


def test_the_token_is_sent_only_to_label_studio(fake_ls) -> None:
    ls, other = fake_ls(), fake_ls(legacy_enabled=True)
    with pytest.raises(ImageError, match="HTTP 401"):
        ImageLoader(label_studio_url=ls.url, api_key=PAT).load(f"{other.url}/a.png")
    assert other.seen == [""] and other.refreshes == 0
    assert auth_headers(LEGACY, ls.url) == {"Authorization": f"Token {LEGACY}"}


def test_claims_are_read_only_from_a_well_formed_jwt() -> None:
    assert jwt_claims(PAT) == {
        "token_type": "refresh",
        "exp": jwt_claims(PAT)["exp"],
        "jti": "pat1",
        "user_id": 1,
    }
    expired = jwt({"token_type": "access", "exp": 1})
    assert jwt_claims(expired) == {"token_type": "access", "exp": 1}  # read, not judged: Label Studio judges
    payload = PAT.split(".")[1]
    assert jwt_claims(f"bm90LWpzb24.{payload}.c2lnbmF0dXJl") is None  # its header is no JSON
    assert jwt_claims(f"{PAT.split('.')[0]}.WzEsMl0.c2lnbmF0dXJl") is None  # its claims are a list
    assert jwt_claims(LEGACY) is None and jwt_claims("a.b.c") is None
    assert not is_personal_access_token(f"bm90LWpzb24.{payload}.c2lnbmF0dXJl")
