"""The command meets ModelsLab's account, rate-limit and not-found answers as a person would.

Run as users run it: `modelslab-fetch` in a subprocess, against the simulator on loopback,
asserting exit status, what it says and what it writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelslab_fetch.testing import Faults, Simulator, SimulatorApp, simulator_server
from tests.loopback import Reply, scripted_server

pytestmark = pytest.mark.integration

KEY = "cli-wire-errors-key"


def serve(faults: Faults) -> Iterator[tuple[str, Simulator, SimulatorApp]]:
    simulator = Simulator(api_key=KEY, seed=1)
    app = SimulatorApp(simulator, faults=faults, seed=1)
    with simulator_server(app) as base_url:
        yield base_url, simulator, app


def command(base_url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELSLAB_API_KEY": KEY, "MODELSLAB_BASE_URL": base_url}
    return subprocess.run(
        [sys.executable, "-m", "modelslab_fetch", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("refusal", "words"),
    [
        ("no_credits", "no credits left on this ModelsLab account"),
        ("plan", "plan does not allow"),
        ("bad_key", "rejected the API key"),
    ],
)
def test_wait_stops_at_an_account_refusal_with_one_message(
    refusal: str, words: str, tmp_path: Path
) -> None:
    for base_url, simulator, app in serve(Faults(account_error=refusal)):  # type: ignore[arg-type]
        ids = simulator.queue_many(60, ready_in=(0.0, 0.1))
        results = tmp_path / "r.jsonl"
        done = command(base_url, "wait", *ids, "-o", str(results), "--concurrency", "8")
        sent = sum(app.faults.kinds.values())
    assert done.returncode == 1
    assert done.stderr.count(words) == 1, done.stderr
    assert "--resume" in done.stderr
    assert "Traceback" not in done.stderr
    assert sent <= 32  # the client's max_concurrency, not one request per id
    assert not results.exists() or results.read_text() == ""  # nothing recorded as final


def test_fetch_names_an_unknown_id_in_plain_words() -> None:
    for base_url, _simulator, _app in serve(Faults()):
        done = command(base_url, "fetch", "987654")
    assert done.returncode == 1
    assert "987654" in done.stdout
    assert "ModelsLab does not know this id" in done.stdout
    assert "Traceback" not in done.stderr


def test_wait_polls_through_rate_limits_to_success(tmp_path: Path) -> None:
    faults = Faults(
        queue_limit_rate=0.2, queue_limit_wait=0.05, spam_filter_rate=0.2, spam_filter_wait=0
    )
    for base_url, simulator, app in serve(faults):
        ids = simulator.queue_many(20, ready_in=(0.0, 0.3))
        results = tmp_path / "r.jsonl"
        done = command(base_url, "wait", *ids, "-o", str(results))
        kinds = dict(app.faults.kinds)
    assert done.returncode == 0, done.stderr
    assert kinds.get("queue limit", 0) + kinds.get("spam filter", 0) > 0
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(records) == 20
    assert all(record["ok"] for record in records)


LIBRARY_NAMES = ("max_concurrency", "max_requests_per_second", "api_key=", "base_url", "endpoint=")


def test_advice_names_the_commands_options_not_the_librarys() -> None:
    # Every answer a rate limit: the library's advice ("lower max_concurrency or
    # max_requests_per_second") reaches the results, the words and the --verbose log.
    with scripted_server() as server:
        server.script(
            "1",
            Reply(429, {"status": "error", "message": "Too many requests"}, {"retry-after": "0"}),
        )
        env = {**os.environ, "MODELSLAB_API_KEY": KEY, "MODELSLAB_BASE_URL": server.base_url}
        runs = [
            subprocess.run(
                [sys.executable, "-m", "modelslab_fetch", *argv],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
            for argv in (
                ["fetch", "1", "--json"],
                ["fetch", "1"],
                ["wait", "1", "--timeout", "1", "-v"],
            )
        ]
    for done in runs:
        assert done.returncode == 1, done.stderr
        for name in LIBRARY_NAMES:
            assert name not in done.stdout + done.stderr, (name, done.stdout, done.stderr)
    assert "--concurrency N" in runs[0].stdout and "--concurrency N" in runs[1].stdout
    assert "--concurrency N" in runs[2].stderr  # the --verbose log lines


def test_every_id_unknown_at_a_url_without_api_hints_that_the_url_is_wrong(
    tmp_path: Path,
) -> None:
    for base_url, simulator, _app in serve(Faults()):
        ids = simulator.queue_many(3, ready_in=(0.0, 0.0))
        root = base_url.removesuffix("/api")  # a common slip: the host alone
        wrong = [
            command(root, "fetch", *ids),
            command(root, "wait", *ids),
            command(root, "download", *ids, "--dir", str(tmp_path / "d")),
        ]
        unknown_at_the_right_url = command(base_url, "fetch", "987654")
    for done in wrong:
        assert done.returncode == 1
        assert done.stderr.count("hint: ") == 1, done.stderr
        assert f"the server at {root} did not know any of the 3 ids" in done.stderr
        assert "does not end in /api" in done.stderr and "--base-url" in done.stderr
    assert "hint" not in unknown_at_the_right_url.stderr  # the id itself is what is wrong
