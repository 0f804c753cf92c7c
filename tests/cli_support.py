"""Running `modelslab-fetch` as users do: a subprocess against the simulator on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from modelslab_fetch.testing._fixtures import SimulatorServer

TIMEOUT = 30


def cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "modelslab_fetch", *argv]


def env_for(server: SimulatorServer | None = None, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELSLAB_")}
    if server is not None:
        env["MODELSLAB_BASE_URL"] = server.base_url
        env["MODELSLAB_API_KEY"] = server.api_key
    env.update(extra)
    return env


def command(
    server: SimulatorServer | None,
    *argv: str,
    stdin: str | None = None,
    preexec_fn: Callable[[], Any] | None = None,
    **extra_env: str,
) -> subprocess.CompletedProcess[str]:
    env = env_for(server, **extra_env)
    if preexec_fn is not None:
        # A resource limit applies to everything the process writes: keep a coverage
        # hook (pytest-cov's subprocess support) from writing its data under it too.
        env = {k: v for k, v in env.items() if not k.startswith(("COV_CORE_", "COVERAGE_"))}
    return subprocess.run(
        cli(*argv),
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        preexec_fn=preexec_fn,  # resource limits only
    )


def records(path: Path) -> list[dict[str, Any]]:
    """The whole JSON lines of a results file (a line cut by a kill is skipped)."""
    found = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def finals(path: Path) -> list[str]:
    return [str(r["request_id"]) for r in records(path) if r.get("final")]


@contextmanager
def simulate_command(*argv: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`modelslab-fetch simulate` on a free port, as a user runs it; yields its root URL
    (`http://127.0.0.1:PORT`, the API below `/api`) and the process, stopped by Ctrl-C."""
    from tests.loopback import free_port

    port = free_port()
    with subprocess.Popen(
        cli("simulate", "--port", str(port), *argv),
        env=env_for(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            root = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.get(f"{root}/_simulator/faults", timeout=1)
                    break
                except httpx.TransportError:
                    assert process.poll() is None, "modelslab-fetch simulate did not start"
                    assert time.monotonic() < deadline, "modelslab-fetch simulate did not answer"
                    time.sleep(0.05)
            yield root, process
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(10)
