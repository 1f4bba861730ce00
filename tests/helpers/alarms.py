"""A tiny local alarm server for alarm gate tests: an HTTP endpoint answering a JSON state
(`/state`) and a Prometheus instant query API (`/api/v1/query`), both answering what the test
sets, in a thread of its own (the stdlib's server), counting the reads."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class AlarmServer:
    """`state`: what /state answers ({"state": state}); `value`: the Prometheus query's one
    sample (None: no samples); `status`: an HTTP status to answer everything with instead."""

    url: str = ""
    state: str = "ok"
    value: float | None = 0.0
    status: int = 200
    reads: list[str] = field(default_factory=list)

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        self.reads.append(path)
        if self.status != 200:
            return self.status, {"error": "unavailable"}
        if path.startswith("/api/v1/query"):
            result = [] if self.value is None else [{"metric": {}, "value": [0, str(self.value)]}]
            return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}
        return 200, {"state": self.state}


@contextmanager
def alarm_server() -> Iterator[AlarmServer]:
    alarms = AlarmServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = alarms.answer(self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    alarms.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield alarms
    finally:
        server.shutdown()
        server.server_close()
