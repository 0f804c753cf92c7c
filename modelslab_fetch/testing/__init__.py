"""A local ModelsLab simulator, for tests, demos and benchmarks without the internet.

`Simulator` holds the queue; `SimulatorApp` serves it as an ASGI app (with `Faults` on
demand), which runs in-process through `httpx.ASGITransport` (no socket, see
`in_process_client`) or on loopback under uvicorn (`simulator_server`,
`modelslab-fetch simulate`). The pytest plugin offers both as fixtures: `modelslab_server`
is a `SimulatorServer`, whose `faults` can be set in a test.

A job queued with a `webhook` (a loopback URL) and `track_id` has its final record
POSTed there when it ends, as ModelsLab does; `Faults` can drop, duplicate and delay
those deliveries, and `WebhookStats` counts what became of them. `webhook_server()`
(the `modelslab_webhooks` fixture) serves a client's receiver on loopback for them.
"""

from ._asgi import SimulatorApp
from ._client import in_process_client
from ._faults import AccountRefusal, Faults, QueueLimitWait
from ._png import solid_png
from ._receiver import WEBHOOK_PATH, WebhookServer, webhook_server
from ._server import SimulatorServer, run_simulator, simulator_server
from ._simulator import ETA_ERROR_MODELS, SimulatedJob, Simulator
from ._webhooks import (
    DEFAULT_WEBHOOK_DELAY,
    MAX_WEBHOOK_TIMEOUT,
    WEBHOOK_TIMEOUT,
    WebhookStats,
    checked_webhook,
)

__all__ = [
    "DEFAULT_WEBHOOK_DELAY",
    "ETA_ERROR_MODELS",
    "MAX_WEBHOOK_TIMEOUT",
    "WEBHOOK_PATH",
    "WEBHOOK_TIMEOUT",
    "AccountRefusal",
    "Faults",
    "QueueLimitWait",
    "SimulatedJob",
    "Simulator",
    "SimulatorApp",
    "SimulatorServer",
    "WebhookServer",
    "WebhookStats",
    "checked_webhook",
    "in_process_client",
    "run_simulator",
    "simulator_server",
    "solid_png",
    "webhook_server",
]
