"""The simulator on a real loopback socket, served by uvicorn (the `simulator` extra)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._asgi import SimulatorApp

__all__ = ["run_simulator", "simulator_server"]


def _uvicorn() -> Any:
    try:
        import uvicorn  # noqa: PLC0415 - optional: only the server needs it
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "the simulator's HTTP server needs uvicorn: pip install 'modelslab-fetch[simulator]'"
        ) from exc
    return uvicorn


def _config(app: SimulatorApp, host: str, port: int) -> Any:
    return _uvicorn().Config(
        # "critical": injected faults (bodies cut short on purpose) would log tracebacks.
        app,
        host=host,
        port=port,
        log_level="critical",
        access_log=False,
        lifespan="off",
    )


def run_simulator(app: SimulatorApp, *, host: str = "127.0.0.1", port: int = 8787) -> None:
    """Serve `app` until interrupted (what `modelslab-fetch simulate` runs)."""
    app.simulator.image_base_url = f"http://{host}:{port}/generations"
    _uvicorn().Server(_config(app, host, port)).run()


@contextmanager
def simulator_server(app: SimulatorApp, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` on a free loopback port in a background thread; yield its base URL.

    The base URL ends in `/api`, ready for `base_url=`. The server stops, and its
    thread ends, when the block is left.
    """
    with socket.socket() as probe:
        probe.bind((host, 0))
        port = int(probe.getsockname()[1])
    app.simulator.image_base_url = f"http://{host}:{port}/generations"
    server = _uvicorn().Server(_config(app, host, port))
    thread = threading.Thread(target=server.run, name="modelslab-simulator", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the simulator could not start on {host}:{port}")
            time.sleep(0.01)
        yield f"http://{host}:{port}/api"
    finally:
        server.should_exit = True
        thread.join(10)
