"""The command line hears of polls, retries and pauses through the client's public events.

Not through the library's log text: the view still counts polls and shows the last error
with the library's logging switched off, and `--verbose` writes the command's own line
for each retry and pause, in its own words.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
from collections.abc import Iterator

import pytest

from modelslab_fetch.cli import main
from modelslab_fetch.cli._commands import Streams
from tests.cli_support import cli, env_for
from tests.loopback import Reply, scripted_server

OK = {"status": "success", "id": 1, "output": ["https://cdn.example/1.png"]}
BUSY = Reply(503, {"message": "busy"})
LIMITED = Reply(429, {"message": "Too Many Requests"}, {"Retry-After": "1"})


@pytest.fixture
def library_logging_off() -> Iterator[None]:
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@pytest.mark.usefixtures("library_logging_off")
def test_the_view_counts_polls_without_the_librarys_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSLAB_API_KEY", "k")
    with scripted_server() as server:
        server.script("1", BUSY, BUSY, Reply(200, OK))
        server.script("2", Reply(200, {**OK, "id": 2}))
        out, err = io.StringIO(), io.StringIO()
        argv = ["wait", "1", "2", "--json", "--base-url", server.base_url]
        code = main(argv, streams=Streams(out=out, err=err))
    assert code == 0, err.getvalue()
    [finished] = [json.loads(line) for line in out.getvalue().splitlines() if '"finished"' in line]
    assert finished["polls"] == 4  # two 503s, then an answer for each id
    assert finished["requests_in_flight"] == 0


def test_verbose_writes_each_retry_and_pause_in_the_commands_words() -> None:
    with scripted_server() as server:
        server.script("1", LIMITED, BUSY, Reply(200, OK))
        done = subprocess.run(
            cli("wait", "1", "-v"),
            env=env_for(None, MODELSLAB_BASE_URL=server.base_url, MODELSLAB_API_KEY="k"),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "rate limited: every request paused for 1.0 s" in lines
    assert any(
        line.startswith("request 1: ModelsLab is rate limiting this account (it asked to wait 1 s)")
        and line.endswith("retrying in 1.0 s")
        for line in lines
    ), done.stderr
    assert any(
        line.startswith(
            'request 1: HTTP 503 Service Unavailable: \'{"message": "busy"}\'; retrying in '
        )
        for line in lines
    ), done.stderr
    assert "modelslab_fetch" not in done.stderr  # no library log record, as it was
    assert "max_concurrency" not in done.stderr
