"""An `AsyncModelsLab` wired to a simulator in the same process, with no socket at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from .. import AsyncModelsLab
from ._asgi import SimulatorApp

__all__ = ["IN_PROCESS_BASE_URL", "in_process_client"]

IN_PROCESS_BASE_URL = "http://127.0.0.1/api"


@asynccontextmanager
async def in_process_client(
    app: SimulatorApp, *, api_key: str = "test-key", **options: Any
) -> AsyncIterator[AsyncModelsLab]:
    """Yield a client whose requests go straight into `app`, through httpx.ASGITransport.

    Use it as `async with in_process_client(app) as client:`. `options` are passed on to
    `AsyncModelsLab` (e.g. `clock=`, `max_retries=`); both clients close with the block,
    and the simulator's webhook deliveries stop (those still pending are dropped).
    """
    http_client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    client = AsyncModelsLab(
        api_key=api_key, base_url=IN_PROCESS_BASE_URL, http_client=http_client, **options
    )
    try:
        async with http_client, client:
            yield client
    finally:
        # Joins the delivery thread: at most a moment, as its POSTs are cancelled.
        app.simulator.stop_webhooks()
