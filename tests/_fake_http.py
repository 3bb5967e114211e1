"""A local JSON HTTP server on 127.0.0.1 for tests that fake a model server (Ollama's /api/tags and /api/chat).

Subclass `JsonHandler` with the do_GET / do_POST the test needs (the server object is `self.fake`), then
`FakeServer.start(handler)`; `close()` stops it. Nothing leaves the machine.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonHandler(BaseHTTPRequestHandler):
    fake = None  # the FakeServer that answers (set by FakeServer.start)

    def log_message(self, *args):
        pass

    def read_json(self):
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def send_json(self, code: int, payload: bytes):
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout under test)
            pass


class FakeServer:
    """Serves `handler` (a JsonHandler subclass) on a free port; `host` is its URL."""

    def start(self, handler: type[JsonHandler]) -> None:
        bound = type(handler.__name__, (handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), bound)
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
