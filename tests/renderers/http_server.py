"""A real local HTTP render service for the http renderer tests (ThreadingHTTPServer in a thread)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeService:
    """What the handler threads share with the test: recorded requests, poll counts, a release switch."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    endless_bytes: int = 0  # what /endless managed to send

    def paths(self) -> list[str]:
        with self.lock:
            return [f"{r.method} {r.path}" for r in self.requests]


def _orchestrator_answer(job_id: str) -> dict[str, Any]:
    return {
        "video_url": f"https://cdn.example/{job_id}.mp4",
        "thumbnail_url": f"https://cdn.example/{job_id}.jpg",
        "duration": 42.5,
        "processing_time_ms": 1234,
    }


def _handler(service: FakeService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes; avoid 40 ms stalls

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

        def handle(self) -> None:
            with contextlib.suppress(ConnectionError):  # a client that hung up mid-answer, on purpose
                super().handle()

        def send(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def endless(self) -> None:
            """200 with a body that never ends (no Content-Length: it runs until the connection
            closes), for up to 20 s; stops when the client hangs up."""
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            chunk = b"[" * 65536
            deadline = time.monotonic() + 20
            with contextlib.suppress(OSError):
                while time.monotonic() < deadline:
                    self.wfile.write(chunk)
                    with service.lock:
                        service.endless_bytes += len(chunk)

        def record(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            with service.lock:
                service.requests.append(Recorded(self.command, self.path, dict(self.headers), body))
            return body

        def poll(self, remote_id: str) -> int:
            with service.lock:
                service.polls[remote_id] = service.polls.get(remote_id, 0) + 1
                return service.polls[remote_id]

        def do_GET(self) -> None:
            self.record()
            path = self.path
            if path == "/health":
                self.send(200, {"ok": True})
            elif path == "/sick/health":
                self.send(503, {"error": "warming up"})
            elif path.startswith("/async/status/"):
                remote_id = path.rsplit("/", 1)[1]
                count = self.poll(remote_id)
                if count == 1:
                    self.send(200, {"status": "queued"})
                elif count == 2:
                    self.send(200, {"status": "running", "progress": 0.25})
                elif count == 3:
                    self.send(200, {"status": "running", "progress": 0.75})
                else:
                    self.send(200, {"status": "succeeded", "result": _orchestrator_answer(remote_id)})
            elif path.startswith("/async-pct/status/"):
                count = self.poll(path)
                if count < 4:
                    self.send(200, {"state": "rendering", "progress": [5, 40.0, 80][count - 1]})
                else:
                    self.send(200, {"state": "done", "answer": 42})
            elif path.startswith("/async-fail/status/"):
                self.send(200, {"status": "failed", "error": "out of GPUs"})
            elif path.startswith("/async-slow/status/"):
                self.send(200, {"status": "running", "progress": 10})
            elif path.startswith("/async-gone/status/"):
                self.send(404, {"detail": "job expired"})
            else:
                self.send(404, "no such route here", "text/plain")

        def do_POST(self) -> None:
            body = self.record() or {}
            path = self.path
            if path == "/render":
                self.send(200, _orchestrator_answer(body.get("job_id", "?")))
            elif path == "/generic":
                self.send(200, {"echo": body})
            elif path == "/plain-text":
                self.send(200, "rendered fine", "text/plain")
            elif path == "/no-video":
                self.send(200, {"thumbnail_url": "x"})
            elif path == "/async/render":
                self.send(202, {"task_id": f"t-{body.get('job_id', 'x')}"})
            elif path in (
                "/async-fail/render",
                "/async-slow/render",
                "/async-gone/render",
                "/async-pct/render",
            ):
                self.send(200, {"job_id": "r/1 2"})
            elif path == "/no-id/render":
                self.send(200, {"status": "queued"})
            elif path.startswith("/async-slow/cancel/"):
                self.send(200, {"canceled": True})
            elif path == "/e500":
                self.send(500, {"error": "database exploded"})
            elif path == "/e502":
                self.send(502, "<html>bad gateway</html>", "text/html")
            elif path == "/e400":
                self.send(400, {"detail": "style 'neon' is unknown"})
            elif path == "/e401":
                self.send(401, {"message": "bad token"})
            elif path == "/e422":
                self.send(422, {"detail": [{"loc": ["body", "voice"], "msg": "field required"}]})
            elif path == "/e429":
                self.send(429, {"error": {"message": "slow down"}})
            elif path == "/big":  # a valid answer, 50 kB of it
                self.send(200, {**_orchestrator_answer("big"), "padding": "x" * 50_000})
            elif path == "/big-error":
                self.send(500, {"error": "out of memory " + "x" * 1_000_000})
            elif path == "/deep":  # valid JSON past Python's recursion limit
                self.send(200, "[" * 100_000 + "]" * 100_000)
            elif path == "/deepish":
                self.send(200, "[" * 100 + "]" * 100)
            elif path == "/deep-error":
                self.send(500, "[" * 100_000 + "]" * 100_000)
            elif path == "/endless":
                self.endless()
            elif path == "/hang":
                service.release.wait(10)
                self.send(200, _orchestrator_answer("late"))
            else:
                self.send(404, "no such route here", "text/plain")

    return Handler


@contextmanager
def serve() -> Iterator[FakeService]:
    service = FakeService()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(service))
    server.daemon_threads = True
    service.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
