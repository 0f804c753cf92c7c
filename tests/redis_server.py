"""A real Redis for the fleet tests: Debian's `redis-server` on a free loopback port.

The `redis_server` fixture starts one per test (`--save '' --appendonly no`: nothing on
disk, a start takes milliseconds) and kills it at teardown. Without `redis-server` the
test is skipped, naming the package, except under `CI=true`, where it fails: CI
installs the package (`.ci/run`), and a fleet suite skipped there would prove nothing.

`RedisServer` stops (SIGKILL, as a crash), restarts on the same port, freezes
(SIGSTOP: the server holds its sockets and answers nothing) and thaws, and lists what
Redis holds, for the tests that prove secrets never reach it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.loopback import free_port

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
)


class RedisServer:
    """One redis-server process on 127.0.0.1:`port`, controlled by the test."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, running={self.running})"

    @property
    def url(self) -> str:
        """The URL for `redis_url=`."""
        return f"redis://127.0.0.1:{self.port}/0"

    def url_with(self, **query: object) -> str:
        """The URL with query options (`socket_timeout=0.3`)."""
        return self.url + "?" + "&".join(f"{k}={v}" for k, v in query.items())

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start (or restart) the server; return once it accepts connections."""
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Kill the server (as a crash: SIGKILL), and wait for it to be gone."""
        if self.process is not None:
            if self.frozen:
                self.thaw()
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT: the server answers again, what it was sent meanwhile included."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def contents(self) -> dict[str, object]:
        """Every key and its value (strings, lists, sets...), read with a plain client."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            found: dict[str, object] = {}
            for key in client.scan_iter("*"):
                kind = client.type(key)
                if kind == b"string":
                    found[key.decode()] = client.get(key)
                elif kind == b"list":
                    found[key.decode()] = client.lrange(key, 0, -1)
                elif kind == b"hash":
                    found[key.decode()] = client.hgetall(key)
                elif kind == b"zset":
                    found[key.decode()] = client.zrange(key, 0, -1, withscores=True)
                else:
                    found[key.decode()] = client.smembers(key)
            return found
        finally:
            client.close()


def redis_server_or_skip() -> str:
    """The redis-server binary; a skip naming the package, or a failure under CI."""
    if REDIS_SERVER is None:
        message = (
            "redis-server is not installed: the fleet tests run a real Redis; install "
            "Debian's redis-server package (apt-get install redis-server)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: a missing server fails the run)")
        pytest.skip(message)
    return REDIS_SERVER


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server on a free loopback port, killed at teardown."""
    redis_server_or_skip()
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
