"""The package's pytest fixtures work in a user's project under anyio or pytest-asyncio.

Each case runs pytest in a subprocess, in a scratch project that has only the installed
package: its `modelslab_server` and `modelslab_simulator` fixtures are plain sync fixtures,
so an async test gets them whichever async plugin runs it, and neither plugin is required.
"""

from __future__ import annotations

import textwrap

import pytest

pytestmark = pytest.mark.integration

USER_TESTS = """
import pytest

from modelslab_fetch import AsyncModelsLab, ModelsLab


def test_sync_code_meets_the_simulator(modelslab_server):
    job = modelslab_server.simulator.queue(ready_in=0.05)
    with ModelsLab() as client:
        assert client.images.wait(job).output[0].endswith(f"/generations/{job}-0.png")


{marker}
async def test_async_code_meets_the_simulator(modelslab_server, modelslab_simulator):
    assert modelslab_server.simulator is modelslab_simulator
    job = modelslab_simulator.queue(ready_in=0.05)
    async with AsyncModelsLab() as client:
        result = await client.images.wait(job)
    assert result.output[0].endswith(f"/generations/{job}-0.png")
"""


def run_user_project(pytester: pytest.Pytester, marker: str, *options: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=textwrap.dedent(USER_TESTS).replace("{marker}", marker))
    # Warnings are errors, as in a strict user project; no cache files in the scratch folder.
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error", *options)


def test_the_fixtures_serve_async_tests_under_anyio(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "import pytest\n\n\n@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n"
    )
    result = run_user_project(pytester, "@pytest.mark.anyio", "-p", "no:asyncio")
    result.assert_outcomes(passed=2)


def test_the_fixtures_serve_async_tests_under_pytest_asyncio(pytester: pytest.Pytester) -> None:
    # pytest-asyncio is not a dependency of ours (nor of the plugin); users may have it.
    pytest.importorskip("pytest_asyncio")
    # As a user's project sets it: without it, pytest-asyncio warns at start-up.
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = run_user_project(pytester, "@pytest.mark.asyncio", "-p", "asyncio")
    result.assert_outcomes(passed=2)


def test_the_plugin_needs_no_async_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="def test_it(modelslab_simulator):\n    assert modelslab_simulator.jobs == {}\n"
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:anyio", "-p", "no:asyncio", "-W", "error"
    )
    result.assert_outcomes(passed=1)


FAULTY_USER_TESTS = """
import pytest

from modelslab_fetch import InsufficientCreditsError, ModelsLab
from modelslab_fetch.testing import Faults, SimulatorServer


def test_faults_on_the_fixture_server(modelslab_server: SimulatorServer):
    assert isinstance(modelslab_server, SimulatorServer)
    assert modelslab_server.faults == Faults()
    job = modelslab_server.simulator.queue()
    modelslab_server.faults = Faults(account_error="no_credits")
    with ModelsLab() as client:
        with pytest.raises(InsufficientCreditsError):
            client.images.fetch(job)
        assert modelslab_server.faults_met == {"no credits": 1}
        modelslab_server.faults = Faults()  # and well again
        assert client.images.wait(job).succeeded
    assert modelslab_server.faults_met == {}
"""


def test_faults_can_be_set_on_the_fixture_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=FAULTY_USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=1)


WEBHOOK_USER_TESTS = """
import pytest

from modelslab_fetch import AsyncModelsLab


def test_push_with_the_fixture_client(modelslab_server, modelslab_webhooks):
    client = modelslab_webhooks.client
    simulator = modelslab_server.simulator
    response = simulator.queue_response(ready_in=0.5, **client.webhooks.fields())
    assert client.wait_for(response).succeeded
    assert modelslab_webhooks.answered == {200: 1}


@pytest.mark.anyio
async def test_push_with_my_own_async_client(modelslab_server, modelslab_webhooks):
    async with AsyncModelsLab() as client:
        modelslab_webhooks.receive_for(client)
        response = modelslab_server.simulator.queue_response(**client.webhooks.fields())
        assert (await client.wait_for(response)).succeeded
    assert modelslab_webhooks.answered == {200: 1}
"""


def test_the_webhook_fixture_serves_a_users_project(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "import pytest\n\n\n@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n"
    )
    pytester.makepyfile(test_user=WEBHOOK_USER_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:asyncio", "-W", "error"
    )
    result.assert_outcomes(passed=2)
