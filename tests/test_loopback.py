"""The server double itself (tests/loopback.py): what it sends reaches a client as sent."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from modelslab_fetch._http._backends._contract import (
    Backend,
)
from tests.backends import post
from tests.loopback import (
    LoopbackServer,
    raw,
)

pytestmark = pytest.mark.integration


Hostile = Callable[..., LoopbackServer]


async def test_raw_replies_reach_the_client_as_sent(hostile: Hostile, backend: Backend) -> None:
    server = hostile(raw(b"HTTP/1.1 418 Teapot Here\r\nContent-Length: 2\r\n\r\nhi"))
    response = await post(backend, server)
    assert getattr(response, "status_code", None) == 418
    assert getattr(response, "reason", None) == "Teapot Here"


async def test_the_recording_proxy_records_what_it_receives(
    recording_proxy: LoopbackServer,
) -> None:
    async with httpx.AsyncClient(proxy=recording_proxy.url()) as http:
        response = await http.get("http://modelslab-fetch-test.invalid/x")
    assert response.status_code == 502
    assert recording_proxy.connections == 1
    assert b"modelslab-fetch-test.invalid" in recording_proxy.requests[0]
