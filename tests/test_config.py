"""Client options as users set them: the key, the base URL and its safety rule, timeouts,
retries and the retry policy, default headers, `with_options`, `on_update`, your own httpx
client, and `MODELSLAB_LOG`. TLS is tests/test_tls.py, proxies tests/test_proxies.py.
"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
import httpx
import pytest
import respx
import yarl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelslab_fetch import (
    AsyncModelsLab,
    AuthenticationError,
    ConfigurationError,
    ModelsLab,
    RetryPolicy,
    Status,
)
from modelslab_fetch._logging import install_key_filter as install_log_redaction
from modelslab_fetch.testing import Simulator, SimulatorApp, simulator_server
from tests.conftest import API_KEY, IMAGES_URL, FakeClock


def test_the_key_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSLAB_API_KEY", API_KEY)
    client = AsyncModelsLab()
    assert client._config.api_key.get_secret_value() == API_KEY


def test_an_explicit_key_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSLAB_API_KEY", "from-env")
    assert AsyncModelsLab(api_key="explicit")._config.api_key.get_secret_value() == "explicit"


@pytest.mark.parametrize("key", [None, "", "   "])
@pytest.mark.parametrize("client_class", [AsyncModelsLab, ModelsLab])
def test_a_missing_key_says_how_to_provide_one(key: str | None, client_class: type) -> None:
    with pytest.raises(AuthenticationError) as caught:
        client_class(api_key=key)
    assert "api_key=" in str(caught.value)
    assert "MODELSLAB_API_KEY" in str(caught.value)


def test_a_key_of_the_wrong_type_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="api_key must be a str"):
        AsyncModelsLab(api_key=123)  # type: ignore[arg-type]


def test_default_base_url() -> None:
    assert AsyncModelsLab(api_key=API_KEY).base_url == "https://modelslab.com/api"


def test_base_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSLAB_BASE_URL", "http://127.0.0.1:8000/api/")
    assert AsyncModelsLab(api_key=API_KEY).base_url == "http://127.0.0.1:8000/api"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/api",
        "http://127.5.6.7/api",
        "http://localhost:8787/api",
        "http://[::1]:8000/api",
        "https://eu.modelslab.example/api",
    ],
)
def test_https_and_loopback_http_are_allowed(url: str) -> None:
    assert AsyncModelsLab(api_key=API_KEY, base_url=url).base_url == url


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://modelslab.com/api", "refusing plain http://"),
        ("http://10.0.0.5/api", "refusing plain http://"),
        ("ftp://modelslab.com/api", "not ftp://"),
        ("modelslab.com/api", "it has no scheme"),
        ("https://modelslab.com/api?x=1", "query or fragment"),
        ("https://user:pw@modelslab.com/api", "credentials"),
        ("https://exa\x00mple.com/api", "control or invalid character"),
        ("https://:80/api", "it has no host"),
        ("https:///api", "it has no host"),
        ("https://modelslab.com:99999/api", "port 99999 is not a TCP port"),
        ("https://modelslab.com:0/api", "port 0 is not a TCP port"),
        ("http://127.0.0.1:65536/api", "port 65536 is not a TCP port"),
        ("https://model slab.com/api", "spaces"),
        ("https://modelslab.com/my api", "spaces"),
        ("https://modelslab.com/api\t", None),  # stripped: a tab at the end is fine
        ("https://xn--/api", "not a valid host name"),
        ("https://xn--ls8h.la/api", "not a valid international domain name"),
        ("https://xn--a.com/api", "not a valid international domain name"),
        ("https://a..b/api", "not a valid host name"),
        ("https://-modelslab-.com/api", "not a valid host name"),
        ("https://%zz/api", "not a valid host name"),
        ("https://1.2.3.4.5/api", "neither an IP address nor a host name"),
        ("https://256.1.1.1/api", "not a URL"),
        ("https://exa\ud83dmple.com/api", "control or invalid character"),
    ],
)
def test_unsafe_or_malformed_base_urls_are_refused(url: str, complaint: str | None) -> None:
    if complaint is None:
        assert AsyncModelsLab(api_key=API_KEY, base_url=url).base_url == url.strip()
        return
    with pytest.raises(ConfigurationError) as caught:
        AsyncModelsLab(api_key=API_KEY, base_url=url)
    assert complaint in str(caught.value)
    assert "base_url" in str(caught.value)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.builds(
        "{}://{}{}/{}".format,
        st.sampled_from(["https", "http", "HTTPS", "ftp", ""]),
        st.one_of(
            st.sampled_from(["modelslab.com", "127.0.0.1", "[::1]", "xn--", "localhost"]),
            st.text(max_size=12),
        ),
        st.one_of(st.just(""), st.integers(-3, 10**6).map(":{}".format), st.text(max_size=4)),
        st.text(max_size=8),
    )
    | st.text(max_size=40)
)
def test_any_base_url_is_refused_at_construction_or_usable(url: str) -> None:
    # Whatever the string, the client is built with a URL both HTTP libraries read (host,
    # port in range), or refused then with ConfigurationError: never an untyped error,
    # never one that waits for the first request.
    try:
        client = AsyncModelsLab(api_key=API_KEY, base_url=url)
    except ConfigurationError:
        return
    parsed = httpx.URL(client.base_url)
    assert parsed.host and parsed.scheme in ("http", "https")
    assert parsed.port is None or 1 <= parsed.port <= 65535
    via_aiohttp = yarl.URL(client.base_url)
    assert via_aiohttp.host and via_aiohttp.port is not None and 1 <= via_aiohttp.port <= 65535


def test_timeouts_accept_seconds_an_httpx_timeout_or_none() -> None:
    assert AsyncModelsLab(api_key=API_KEY, timeout=5).timeout == httpx.Timeout(5.0)
    custom = httpx.Timeout(3.0, connect=1.0)
    assert AsyncModelsLab(api_key=API_KEY, timeout=custom).timeout is custom
    assert AsyncModelsLab(api_key=API_KEY, timeout=None).timeout == httpx.Timeout(None)


@pytest.mark.parametrize(
    "timeout",
    [
        0,
        -1,
        float("nan"),
        float("inf"),
        "5",
        True,
        # An httpx.Timeout too: aiohttp reads 0 as no limit at all, and cannot time an
        # infinite one (a bare OverflowError); httpx would time out at once.
        httpx.Timeout(0),
        httpx.Timeout(5.0, read=float("inf")),
        httpx.Timeout(5.0, connect=-1),
    ],
)
def test_bad_timeouts_are_refused(timeout: object) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        AsyncModelsLab(api_key=API_KEY, timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_retries", [-1, 1.5, "3", None, True])
def test_bad_max_retries_are_refused(max_retries: object) -> None:
    with pytest.raises(ConfigurationError, match="max_retries"):
        AsyncModelsLab(api_key=API_KEY, max_retries=max_retries)  # type: ignore[arg-type]


def test_options_are_readable_back() -> None:
    client = AsyncModelsLab(api_key=API_KEY, max_retries=0, timeout=2)
    assert client.max_retries == 0
    assert client.timeout == httpx.Timeout(2.0)
    assert repr(client) == ("AsyncModelsLab(base_url='https://modelslab.com/api', max_retries=0)")
    assert "max_retries=0" in repr(client._config)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"verify": "/no/such/ca.pem"}, "not a readable CA bundle"),
        ({"verify": 3}, "verify must be"),
        ({"cert": "/no/such/cert.pem"}, "cannot load the client certificate"),
        ({"proxy": "ftp://proxy.example"}, "proxy must be"),
        ({"proxy": "http://user:secret@"}, "proxy must be"),
        ({"default_headers": {"Content-Type": "text/plain"}}, "cannot set"),
        ({"default_headers": {"X-A": "b\r\nX-Injected: 1"}}, "line break"),
        ({"default_headers": ["x"]}, "mapping"),
        ({"trust_env": "no"}, "trust_env"),
        ({"retry_policy": {"max_retries": 3}}, "RetryPolicy"),
    ],
)
def test_unusable_options_are_refused_at_construction(
    options: dict[str, object], words: str
) -> None:
    with pytest.raises(ConfigurationError, match=words) as caught:
        AsyncModelsLab(api_key=API_KEY, **options)  # type: ignore[arg-type]
    assert "secret" not in str(caught.value)


@pytest.mark.integration
async def test_the_retry_policy_decides_statuses_count_and_backoff(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    route = router.post(IMAGES_URL)
    route.side_effect = [httpx.Response(502)] * 5 + [
        httpx.Response(200, json={"status": "success"})
    ]
    policy = RetryPolicy(
        max_retries=5, statuses=frozenset({502}), backoff_initial=1, backoff_max=4, jitter=0
    )
    async with AsyncModelsLab(api_key=API_KEY, clock=clock, retry_policy=policy) as client:
        assert (await client.images.fetch(1)).succeeded
        assert clock.sleeps == [1, 2, 4, 4, 4]
        route.side_effect = [httpx.Response(503)]
        with pytest.raises(Exception, match="503"):
            await client.images.fetch(2)
    assert route.call_count == 7  # 503 is not in the policy's statuses: one attempt


@pytest.mark.integration
async def test_the_cap_on_a_stated_wait_is_the_policys(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    route = router.post(IMAGES_URL).respond(
        429, json={"message": "Rate limit exceeded", "retry_after": 30}
    )
    async with AsyncModelsLab(
        api_key=API_KEY, clock=clock, retry_policy=RetryPolicy(max_stated_wait=10)
    ) as client:
        with pytest.raises(Exception, match="30 s"):
            await client.images.fetch(1)
    assert route.call_count == 1


@pytest.mark.integration
def test_the_default_policy_is_todays_behaviour() -> None:
    policy = RetryPolicy()
    assert policy.max_retries is None
    assert {408, 429, 500, 502, 503, 504, 520, 524} <= policy.statuses
    assert (policy.backoff(1), policy.backoff(2), policy.backoff(5)) == (0.5, 1.0, 8.0)
    assert policy.max_stated_wait == 60


@pytest.mark.integration
@pytest.mark.parametrize("field", ["backoff_initial", "jitter", "max_stated_wait"])
def test_a_policy_with_negative_numbers_is_refused(field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        RetryPolicy(**{field: -1})  # type: ignore[arg-type]


@pytest.mark.integration
@pytest.mark.parametrize("client_class", [AsyncModelsLab, ModelsLab])
def test_a_blocking_httpx_client_is_refused_at_construction(client_class: type) -> None:
    with httpx.Client() as blocking, pytest.raises(ConfigurationError, match=r"httpx\.AsyncClient"):
        client_class(api_key=API_KEY, http_client=blocking)


@pytest.mark.integration
async def test_with_options_changes_settings_and_shares_connections_and_limits(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    in_flight, most = 0, 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json={"status": "success", "output": ["https://a/0.png"]})

    router.post(IMAGES_URL).side_effect = slow
    async with AsyncModelsLab(
        api_key=API_KEY, clock=clock, max_concurrency=2, timeout=30
    ) as client:
        quick = client.with_options(timeout=5, max_retries=0, default_headers={"X-Call": "quick"})
        assert (quick.timeout.read, quick.max_retries) == (5, 0)
        assert (client.timeout.read, client.max_retries) == (30, 3)  # unchanged
        assert quick._transport.calls is client._transport.calls
        async with anyio.create_task_group() as tasks:
            for n in range(6):
                tasks.start_soon((client if n % 2 else quick).images.fetch, n)
        assert most <= 2  # one cap for both
        sent = [call.request.headers.get("x-call") for call in router.calls]
        assert sent.count("quick") == 3 and sent.count(None) == 3
    assert quick.closed  # closing one closes both


@pytest.mark.integration
async def test_with_options_shares_rate_limit_pauses(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    route = router.post(IMAGES_URL)
    route.side_effect = [
        httpx.Response(429, json={"message": "Rate limit exceeded", "retry_after": 20}),
        httpx.Response(200, json={"status": "success"}),
        httpx.Response(200, json={"status": "success"}),
    ]
    async with AsyncModelsLab(api_key=API_KEY, clock=clock) as client:
        with pytest.raises(Exception, match="20 s"):
            await client.with_options(max_retries=0).images.fetch(1)
        await client.images.fetch(2)  # waits out the pause the twin met
    assert clock.elapsed >= 20


@pytest.mark.integration
@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"timeout": -1}, "timeout"),
        ({"max_retries": "3"}, "max_retries"),
        ({"poll_policy": 3}, "PollPolicy"),
    ],
)
def test_with_options_checks_its_arguments(options: dict[str, object], words: str) -> None:
    client = AsyncModelsLab(api_key=API_KEY)
    with pytest.raises(ConfigurationError, match=words):
        client.with_options(**options)  # type: ignore[arg-type]


@pytest.mark.integration
def test_the_blocking_with_options_shares_the_loop_thread() -> None:
    simulator = Simulator(api_key=API_KEY)
    with simulator_server(SimulatorApp(simulator)) as base_url:
        client = ModelsLab(api_key=API_KEY, base_url=base_url)
        twin = client.with_options(timeout=3)
        job = simulator.queue()
        assert twin.images.fetch(job).succeeded
        assert client.images.fetch(job).succeeded
        assert twin._loop is client._loop
        del client
        gc.collect()  # the twin keeps the original, and so the loop thread, alive
        assert twin.images.fetch(job).succeeded
        twin.close()
        assert twin._loop.closed


@pytest.mark.integration
def test_on_update_reports_every_poll_of_a_blocking_wait() -> None:
    updates: list[tuple[object, ...]] = []
    simulator = Simulator(api_key=API_KEY, eta_error=0.0)
    with simulator_server(SimulatorApp(simulator)) as base_url:
        job = simulator.queue(ready_in=0.6)
        with ModelsLab(api_key=API_KEY, base_url=base_url) as client:
            result = client.images.wait(
                job, on_update=lambda u: updates.append((u.polls, u.status, u.next_poll_in))
            )
    assert result.succeeded
    assert updates[0][:2] == (1, Status.PROCESSING) and updates[0][2] is not None
    assert updates[-1] == (len(updates), Status.SUCCESS, None)


@pytest.mark.integration
async def test_on_update_reaches_wait_many_and_wait_for(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    route = router.post(f"{IMAGES_URL}/44")
    route.respond(200, json={"status": "success", "id": 44, "output": ["https://a/0.png"]})
    router.post(IMAGES_URL).respond(200, json={"status": "success", "output": ["https://a/0.png"]})
    seen: list[str] = []
    async with AsyncModelsLab(api_key=API_KEY, clock=clock) as client:
        async for _ in client.images.wait_many(
            ["1", "2"], on_update=lambda u: seen.append(u.request_id)
        ):
            pass
        queued = {"status": "processing", "id": 44, "eta": 3, "fetch_result": f"{IMAGES_URL}/44"}
        await client.wait_for(
            queued, on_update=lambda u: seen.append(f"for:{u.request_id}:{u.polls}")
        )
    assert sorted(seen[:2]) == ["1", "2"]
    assert seen[2:] == ["for:44:1", "for:44:2"]


@pytest.mark.integration
def test_several_blocking_clients_can_share_one_httpx_async_client() -> None:
    simulator = Simulator(api_key=API_KEY)
    with simulator_server(SimulatorApp(simulator)) as base_url:
        http_client = httpx.AsyncClient()
        first = ModelsLab(api_key=API_KEY, base_url=base_url, http_client=http_client)
        second = ModelsLab(api_key=API_KEY, base_url=base_url, http_client=http_client)
        job = simulator.queue()
        assert first.images.fetch(job).succeeded
        assert second.images.fetch(job).succeeded
        first.close()
        assert second.images.fetch(job).succeeded  # still running for the other client
        second.close()
        third = ModelsLab(api_key=API_KEY, base_url=base_url, http_client=http_client)
        assert third.images.fetch(job).succeeded
        third.close()


SCRIPT = """
import sys
from modelslab_fetch import ModelsLab, PollPolicy
from modelslab_fetch.testing import Faults, Simulator, SimulatorApp, simulator_server
key = sys.argv[1]
simulator = Simulator(api_key=key)
app = SimulatorApp(simulator, faults=Faults(error_rate=0.5), seed=1)
fast = PollPolicy(backoff_initial=0.02, backoff_max=0.05, min_interval=0.02)
with simulator_server(app) as base_url:
    with ModelsLab(api_key=key, base_url=base_url, poll_policy=fast) as client:
        for _ in range(4):
            client.images.wait(simulator.queue(ready_in=0.05))
"""


@pytest.mark.integration
@pytest.mark.parametrize(
    ("level", "expected", "absent"),
    [
        ("debug", ["DEBUG modelslab_fetch", "-> HTTP 200", "INFO modelslab_fetch"], []),
        ("info", ["INFO modelslab_fetch"], ["DEBUG"]),
        ("", [], ["modelslab_fetch"]),
        ("loud", ["MODELSLAB_LOG='loud' is not a level"], ["DEBUG", "INFO"]),
    ],
)
def test_modelslab_log_turns_logging_on_without_code(
    level: str, expected: list[str], absent: list[str]
) -> None:
    env = {**os.environ, "MODELSLAB_LOG": level}
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, API_KEY],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            cwd=folder,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    for words in expected:
        assert words in done.stderr
    for words in absent:
        assert words not in done.stderr
    assert API_KEY not in done.stderr


@pytest.mark.integration
def test_a_log_record_holding_a_lone_surrogate_is_written_by_any_handler() -> None:
    # A strict UTF-8 stream, as a log file opened with encoding="utf-8" is.
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    failed: list[logging.LogRecord] = []

    class Handler(logging.StreamHandler):  # type: ignore[type-arg]
        def handleError(self, record: logging.LogRecord) -> None:
            failed.append(record)

    handler = Handler(stream)
    logger = logging.getLogger("modelslab_fetch")
    install_log_redaction()
    logger.addHandler(handler)
    try:
        # WARNING: a CLI run elsewhere in the session may have raised our logger's level.
        logger.warning("the server said %s", "GPU busy \ud83d")
    finally:
        logger.removeHandler(handler)
    stream.flush()
    assert failed == []
    assert "the server said GPU busy \ufffd" in stream.buffer.getvalue().decode()


@pytest.mark.integration
def test_modelslab_log_info_means_info_in_the_command_too(tmp_path: Path) -> None:
    # The command's live view turns the logger down to DEBUG to count polls.
    simulator = Simulator(api_key=API_KEY)
    with simulator_server(SimulatorApp(simulator)) as base_url:
        job = simulator.queue(ready_in=0.3)
        env = {
            **os.environ,
            "MODELSLAB_LOG": "info",
            "MODELSLAB_API_KEY": API_KEY,
            "MODELSLAB_BASE_URL": base_url,
        }
        done = subprocess.run(
            [sys.executable, "-m", "modelslab_fetch", "wait", job],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "DEBUG" not in done.stderr
    assert API_KEY not in done.stderr
