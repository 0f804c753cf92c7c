"""A scripted ModelsLab stand-in on 127.0.0.1, for tests over real sockets."""

from __future__ import annotations

import json
import socket
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer.

    `action`: "reply" (default); "reset" drops the connection before answering;
    "reset-mid" sends the headers and part of the body, then resets; "truncated"
    promises more body than it sends, then closes; "hang" never answers; "stream"
    sends `body` (bytes) in chunks without a Content-Length.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    action: str = "reply"


@dataclass
class Seen:
    path: str
    body: dict[str, Any]


class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.scripts: dict[str, list[Reply]] = defaultdict(list)
        self.files: dict[str, bytes] = {}
        """What a GET of each path answers (an output file); other paths are 404."""
        self.gets: list[str] = []
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"

    def file_url(self, path: str, content: bytes) -> str:
        """Serve `content` at `path` (as a CDN would an output); return its URL."""
        self.files[path] = content
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def script(self, request_id: str, *replies: Reply) -> None:
        """Answer `request_id` with `replies` in turn, repeating the last."""
        self.scripts[request_id] = list(replies)

    def next_reply(self, request_id: str) -> Reply:
        with self.lock:
            replies = self.scripts.get(request_id)
            if not replies:
                return Reply(200, {"status": "error", "message": "Request not found"})
            return replies.pop(0) if len(replies) > 1 else replies[0]


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.gets.append(self.path)
            content = self.server.files.get(self.path)
        self.send_response(404 if content is None else 200)
        self.send_header("content-type", "image/png")
        self.send_header("content-length", str(len(content or b"")))
        self.end_headers()
        self.wfile.write(content or b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.server.lock:
            self.server.seen.append(Seen(self.path, body))
        request_id = str(body.get("request_id") or self.path.rsplit("/", 1)[-1])
        reply = self.server.next_reply(request_id)
        if reply.action == "reset":
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.close_connection = True
            return
        if reply.action == "hang":
            self.server.stopping.wait(10)
            self.close_connection = True
            return
        payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        if reply.action in ("reset-mid", "truncated"):
            self.send_response(reply.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload) + 1000))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            if reply.action == "reset-mid":
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            self.close_connection = True
            return
        if reply.action == "stream":
            self.send_response(reply.status)
            self.send_header("content-type", "application/json")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            try:
                for start in range(0, len(payload), 2**16):
                    chunk = payload[start : start + 2**16]
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client gave up reading, as it should past the cap
                pass
            self.close_connection = True
            return
        self.send_response(reply.status)
        headers = {"content-type": "application/json", **reply.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        try:
            self.wfile.write(payload)
        except OSError:  # the client gave up reading (a body over its cap)
            self.close_connection = True


@contextmanager
def scripted_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
