"""The simulator on a real loopback socket, served by uvicorn (a dependency since 0.x).

uvicorn is imported only when a server starts: `import modelslab_fetch` never pays for it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .. import ConfigurationError
from ._asgi import SimulatorApp
from ._faults import Faults
from ._simulator import Simulator
from ._webhooks import WebhookStats

__all__ = ["SimulatorServer", "free_port", "run_simulator", "serve_in_thread", "simulator_server"]


def _uvicorn() -> Any:
    try:
        import uvicorn  # noqa: PLC0415 - imported when a server starts, not with the package
    except ImportError:
        # uvicorn is a dependency of the package: only a broken or hand-trimmed
        # environment lacks it. Said as what to do, never as an unexpected error.
        raise ConfigurationError(
            "the simulator's HTTP server needs uvicorn, which is missing from this Python "
            "environment although modelslab-fetch depends on it: pip install uvicorn (or "
            "reinstall modelslab-fetch)"
        ) from None
    return uvicorn


def _config(app: Any, host: str, port: int) -> Any:
    return _uvicorn().Config(
        # "critical": injected faults (bodies cut short on purpose) would log tracebacks.
        app,
        host=host,
        port=port,
        log_level="critical",
        access_log=False,
        lifespan="off",
    )


def run_simulator(
    app: SimulatorApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    before_serving: Callable[[], object] | None = None,
) -> None:
    """Serve `app` until interrupted (what `modelslab-fetch simulate` runs).

    `before_serving` is called once the server can start, just before it listens: the
    place for a banner, so none is printed for a server that cannot run. Raises
    `ConfigurationError` if uvicorn is missing. Webhook deliveries stop with the server.
    """
    server = _uvicorn().Server(_config(app, host, port))
    app.simulator.image_base_url = f"http://{host}:{port}/generations"
    if before_serving is not None:
        before_serving()
    try:
        server.run()
    finally:
        app.simulator.stop_webhooks()


@contextmanager
def simulator_server(app: SimulatorApp, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` on a free loopback port in a background thread; yield its base URL.

    The base URL ends in `/api`, ready for `base_url=`. The server stops, and its
    thread ends, when the block is left; so do webhook deliveries (those still pending
    are dropped).
    """
    port = free_port(host)
    app.simulator.image_base_url = f"http://{host}:{port}/generations"
    try:
        with serve_in_thread(app, host, port, name="modelslab-simulator"):
            yield f"http://{host}:{port}/api"
    finally:
        app.simulator.stop_webhooks()


def free_port(host: str) -> int:
    """A port free on `host` now (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve_in_thread(app: Any, host: str, port: int, *, name: str) -> Iterator[None]:
    """Serve the ASGI `app` with uvicorn in a daemon thread until the block is left."""
    server = _uvicorn().Server(_config(app, host, port))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{name} could not start on {host}:{port}")
            time.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        thread.join(10)


class SimulatorServer:
    """A simulator served on loopback for one test: what the `modelslab_server` fixture gives.

    `MODELSLAB_BASE_URL` and `MODELSLAB_API_KEY` point at it for the test, so code that
    builds its client from the environment talks to it unchanged. Queue jobs on
    `simulator`; set `faults` to make the server misbehave::

        def test_my_code_rides_out_a_flaky_api(modelslab_server):
            modelslab_server.faults = Faults(error_rate=0.3)
            job = modelslab_server.simulator.queue(ready_in=0.2)
            ...
            assert modelslab_server.faults_met["5xx"] > 0

    Attributes:
        base_url: The API root, e.g. `http://127.0.0.1:54321/api`.
        api_key: The key the simulator accepts.
        simulator: The queue behind it: `queue()` jobs (with a `webhook` to have their
            ends POSTed to you), read `jobs` and `polls()`.
        app: The ASGI app serving it.

    """

    def __init__(
        self, base_url: str, api_key: str, simulator: Simulator, app: SimulatorApp
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.simulator = simulator
        self.app = app

    def __repr__(self) -> str:
        return f"SimulatorServer({self.base_url!r}, {self.simulator!r})"

    @property
    def faults(self) -> Faults:
        """The faults injected into fetches; none by default.

        Set it to other `Faults` at any time: they apply from the next request on, and
        `faults_met` starts counting afresh.
        """
        return self.app.faults.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.app.use_faults(faults)

    @property
    def faults_met(self) -> dict[str, int]:
        """How many fetches met each kind of fault since `faults` was set.

        Kinds: `"5xx"`, `"429"`, `"edge page"`, `"truncated"`, `"stall"`, `"queue limit"`,
        `"spam filter"`, `"odd shape"` and the account refusals.
        """
        return dict(self.app.faults.kinds)

    @property
    def webhook_stats(self) -> WebhookStats:
        """What became of the webhook deliveries so far (see `Simulator.webhook_stats`).

        Their faults are the `webhook_*` settings of `faults`.
        """
        return self.simulator.webhook_stats
