"""`redis_url=` and `redis_prefix=`: from arguments or the environment, checked, refused
under trio, and working in the blocking client (which runs its own asyncio loop)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from modelslab_fetch import AsyncModelsLab, ConfigurationError, ModelsLab
from tests.conftest import API_KEY, BASE_URL
from tests.fleet_support import FleetAPI, fleet_api, worker
from tests.redis_server import RedisServer, redis_server

__all__ = ["fleet_api", "redis_server"]


@pytest.mark.parametrize(
    ("url", "prefix", "says"),
    [
        ("http://localhost:6379", None, "redis://, rediss:// or unix://"),
        ("redis://", None, "redis://, rediss:// or unix://"),
        ("redis://localhost?socket_timeout=soon", None, "socket_timeout must be seconds"),
        ("redis://localhost?socket_timeout=0", None, "above 0"),
        ("redis://localhost", "", "non-empty"),
        ("redis://localhost", "my app:", "cannot contain spaces"),
        (None, "mine:", "redis_prefix is set but redis_url is not"),
    ],
)
def test_unusable_options_are_refused_saying_what_to_do(
    url: str | None, prefix: str | None, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELSLAB_REDIS_URL", raising=False)
    with pytest.raises(ConfigurationError, match=says):
        AsyncModelsLab(api_key=API_KEY, redis_url=url, redis_prefix=prefix)


def test_a_password_in_the_url_is_never_shown() -> None:
    client = AsyncModelsLab(api_key=API_KEY, redis_url="redis://:hunter2-pass@127.0.0.1:1/0")
    link = client._fleet
    assert link is not None
    assert "hunter2" not in repr(link) + repr(link.settings) + link.settings.where


async def test_the_environment_names_the_redis_and_its_prefix(
    redis_server: RedisServer, fleet_api: FleetAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSLAB_REDIS_URL", redis_server.url)
    monkeypatch.setenv("MODELSLAB_REDIS_PREFIX", "team-a:")
    fleet_api.queue("job", 0.0)
    async with worker("a", None) as a:
        await a.images.wait("job")
    assert {key.split(":")[0] for key in redis_server.contents()} == {"team-a"}


async def test_clients_of_other_prefixes_share_nothing(
    redis_server: RedisServer, fleet_api: FleetAPI
) -> None:
    fleet_api.queue("job", 0.6)
    async with (
        worker("a", redis_server.url, redis_prefix="one:") as a,
        worker("b", redis_server.url, redis_prefix="two:") as b,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(a.images.wait, "job")
        tg.start_soon(b.images.wait, "job")
    assert fleet_api.by("a") and fleet_api.by("b")  # each polled for itself


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_is_refused_with_what_to_use_instead(anyio_backend: str) -> None:
    with pytest.raises(ConfigurationError, match=r"asyncio only.*blocking ModelsLab"):
        AsyncModelsLab(api_key=API_KEY, redis_url="redis://127.0.0.1:1/0")


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_client_made_outside_trio_is_refused_on_its_first_call_there(
    anyio_backend: str,
) -> None:
    # Made on a thread with no event loop (at import time, say), then used under trio.
    client = await anyio.to_thread.run_sync(
        lambda: AsyncModelsLab(
            api_key=API_KEY, base_url=BASE_URL, redis_url="redis://127.0.0.1:1/0"
        )
    )
    client._fleet.start = lambda: None  # type: ignore[union-attr,method-assign]  # no threads needed
    with pytest.raises(ConfigurationError, match="asyncio only"):
        await client._fleet.run(lambda side: side.get_many([]))  # type: ignore[union-attr]


def test_the_blocking_client_shares_through_redis(
    redis_server: RedisServer, fleet_api: FleetAPI
) -> None:
    fleet_api.queue("job", 0.5)
    options: dict[str, Any] = {
        "api_key": API_KEY,
        "base_url": BASE_URL,
        "redis_url": redis_server.url,
    }
    with (
        ModelsLab(**options, default_headers={"x-worker": "a"}) as a,
        ModelsLab(**options, default_headers={"x-worker": "b"}) as b,
    ):
        import threading

        other = threading.Thread(target=b.images.wait, args=("job",))
        other.start()
        assert a.images.wait("job").id == "job"
        other.join(10)
    # One of them polled; the other took the shared result.
    assert min(len(fleet_api.by("a")), len(fleet_api.by("b"))) == 0


def test_a_missing_package_is_named_with_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "limits" else real(name, *a)
    )
    with pytest.raises(ConfigurationError, match=r"limits package.*modelslab-fetch\[redis\]"):
        AsyncModelsLab(api_key=API_KEY, redis_url="redis://127.0.0.1:1/0")


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_the_blocking_client_takes_redis_url_under_trio(
    anyio_backend: str, redis_server: RedisServer, fleet_api: FleetAPI
) -> None:
    # It runs its own asyncio loop on a thread of its own: trio code can use it.
    fleet_api.queue("job", 0.0)
    with ModelsLab(api_key=API_KEY, base_url=BASE_URL, redis_url=redis_server.url) as client:
        result = await anyio.to_thread.run_sync(client.images.wait, "job")
    assert result.id == "job"
    assert any(key.endswith(":job") for key in redis_server.contents())  # shared
