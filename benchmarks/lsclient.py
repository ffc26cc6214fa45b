"""The Label Studio client's thin calls against label_studio_sdk's, on the client's side of the wire.

    .venv/bin/python -m benchmarks.lsclient [--tasks 10000] [--predictions 2000] [--repeats 5] [--json OUT]

A local HTTP server answers as Label Studio does (``GET /api/tasks/`` in pages of 500 tasks with their id,
data and prediction versions; ``POST /api/projects/1/import/predictions``) from bytes prepared once, so
both clients wait for the same server and the difference is what each client spends itself:

- **tasks**: every task of the project: :meth:`converters.lsclient.LabelStudioClient.tasks` (plain dicts)
  against ``sdk.tasks.list`` (a pydantic model per task), what ``histoloop predict`` reads first;
- **import**: ``--predictions`` predictions (each a polygon of 32 points), uploaded in batches of 32:
  :meth:`~converters.lsclient.LabelStudioClient.import_predictions` (the dicts as JSON) against
  ``sdk.projects.import_predictions`` (a ``PredictionRequest`` model per prediction, as the SDK asks).

Reported: the median seconds of ``--repeats`` runs of each, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from converters.lsclient import PAGE_SIZE, LabelStudioClient

KEY = "0123456789abcdef0123456789abcdef01234567"
BATCH = 32


def _task(i: int) -> dict[str, Any]:
    return {
        "id": i + 1,
        "data": {"image": f"/data/local-files/?d=tiles/{i:06d}.png"},
        "predictions_model_versions": ["classify-v1"] if i % 2 else [],
        "total_predictions": i % 2,
    }


def _prediction(i: int) -> dict[str, Any]:
    points = [[10.0 + j, 20.0 + (j * 7) % 13] for j in range(32)]
    result = {
        "from_name": "nuclei",
        "to_name": "image",
        "type": "polygonlabels",
        "original_width": 1000,
        "original_height": 1000,
        "value": {"points": points, "polygonlabels": ["Tumor"]},
        "score": 0.9,
    }
    return {"task": i + 1, "result": [result], "score": 0.9, "model_version": "segment-v2"}


def _server(tasks: int) -> ThreadingHTTPServer:
    pages = [
        json.dumps(
            {"tasks": [_task(i) for i in range(p, min(p + PAGE_SIZE, tasks))], "total": tasks}
        ).encode()
        for p in range(0, tasks, PAGE_SIZE)
    ]
    empty = json.dumps({"tasks": [], "total": tasks}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            # the headers and the body go out as two writes: without this, the body waits for the
            # client's delayed ACK (40 ms a call, for both clients alike)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            page = int(parse_qs(urlsplit(self.path).query).get("page", ["1"])[0])
            self._send(pages[page - 1] if page <= len(pages) else empty)

        def do_POST(self) -> None:
            n = len(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self._send(json.dumps({"created": n}).encode())

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def _median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--predictions", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from label_studio_sdk import PredictionRequest

    server = _server(args.tasks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    client = LabelStudioClient(url, KEY)
    include = "id,data,predictions_model_versions,total_predictions"
    predictions = [_prediction(i) for i in range(args.predictions)]
    batches = [predictions[i : i + BATCH] for i in range(0, len(predictions), BATCH)]

    def thin_tasks() -> int:
        return sum(1 for _ in client.tasks(1, include=include))

    def sdk_tasks() -> int:
        pager: Any = client.sdk.tasks.list(project=1, fields="all", include=include, page_size=PAGE_SIZE)
        return sum(1 for _ in pager)

    def thin_import() -> None:
        for batch in batches:
            client.import_predictions(1, batch)

    def sdk_import() -> None:
        for batch in batches:
            client.sdk.projects.import_predictions(id=1, request=[PredictionRequest(**p) for p in batch])

    assert thin_tasks() == sdk_tasks() == args.tasks
    out: dict[str, Any] = {"tasks": args.tasks, "predictions": args.predictions, "repeats": args.repeats}
    for name, thin, sdk in (("tasks", thin_tasks, sdk_tasks), ("import", thin_import, sdk_import)):
        sdk()  # warm: the SDK's first call imports and builds its models
        out[name] = {"thin_s": _median(thin, args.repeats), "sdk_s": _median(sdk, args.repeats)}
        out[name]["sdk_over_thin"] = out[name]["sdk_s"] / out[name]["thin_s"]
    server.shutdown()
    print(f"{'call':<8} {'thin s':>8} {'sdk s':>8} {'sdk/thin':>9}")
    for name in ("tasks", "import"):
        r = out[name]
        print(f"{name:<8} {r['thin_s']:8.3f} {r['sdk_s']:8.3f} {r['sdk_over_thin']:8.2f}x")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
