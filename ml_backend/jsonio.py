"""JSON in and out of the backend with orjson: a Flask JSON provider (``jsonify``, ``request.get_json``).

orjson serialises a ``/predict`` reply of ~440 boxes in ~0.04 ms where the standard library takes ~0.6 ms
(BENCHMARKS.md, Backend), and 10,000 boxes in ~1 ms instead of ~15 ms. It also writes numpy scalars and
arrays, dataclasses, datetimes and UUIDs; anything else goes through Flask's own ``default`` (or is a
``TypeError``). Keys keep their insertion order (Flask's ``sort_keys`` is not applied); NaN and infinity
are written as ``null`` (the standard library would write invalid JSON).

>>> from flask import Flask
>>> app = Flask("x"); app.json = OrjsonProvider(app)
>>> with app.app_context():
...     app.json.dumps({"b": 1, "a": [0.5]}), app.json.loads(b'{"x": 1}')
('{"b":1,"a":[0.5]}', {'x': 1})
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from flask.json.provider import DefaultJSONProvider, JSONProvider
from werkzeug.sansio.response import Response

OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps_bytes(obj: Any) -> bytes:
    """``obj`` as UTF-8 JSON bytes."""
    return orjson.dumps(obj, default=DefaultJSONProvider.default, option=OPTIONS)


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    """Parse JSON; raises ``json.JSONDecodeError`` (``orjson.JSONDecodeError`` is one) when malformed."""
    return orjson.loads(data)


class OrjsonProvider(JSONProvider):
    """Flask's JSON provider on orjson."""

    mimetype = "application/json"

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dumps_bytes(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        response: Response = cast(Any, self._app).response_class(dumps_bytes(obj), mimetype=self.mimetype)
        return response
