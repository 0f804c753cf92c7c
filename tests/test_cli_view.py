"""The command's progress: the live view on a terminal, plain and JSON lines elsewhere.

It shows life (ids waiting, requests, polls, the last error, a steady time left), and hears
of polls, retries and pauses through the client's public events, not the library's log
text: the view still counts polls with the library's logging switched off, and `--verbose`
writes the command's own line for each retry and pause, in its own words.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import random
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelslab_fetch import (
    APIConnectionError,
    ClientPaused,
    RateLimitError,
    RequestFailed,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
)
from modelslab_fetch._jobs._batch import Progress
from modelslab_fetch.cli import main
from modelslab_fetch.cli._commands import Streams
from modelslab_fetch.cli._progress import Activity, ProgressView, RateEstimate, choose_mode, line_of
from modelslab_fetch.testing._fixtures import SimulatorServer
from tests.cli_support import cli, env_for
from tests.loopback import Reply, free_port, scripted_server


def test_time_left_is_hidden_until_it_means_something() -> None:
    estimate = RateEstimate(started=0.0)
    estimate.observe(1.0, 3)
    assert estimate.seconds_left(1.0, 3, 100) is None  # too early, too few
    estimate.observe(4.0, 10)
    assert estimate.seconds_left(4.0, 10, 100) is None  # still under 5 s
    estimate.observe(6.0, 14)
    left = estimate.seconds_left(6.0, 14, 100)
    assert left is not None and 20 < left < 60
    assert estimate.seconds_left(6.0, 14, None) is None  # no total, no estimate


def finish_predictions(estimate: RateEstimate, finish_times: list[float]) -> list[float]:
    total = len(finish_times)
    predicted = []
    for tick in range(1, int(4 * max(finish_times))):
        now = tick / 4
        done = sum(t <= now for t in finish_times)
        estimate.observe(now, done)
        left = estimate.seconds_left(now, done, total)
        if left is not None and now >= 15 and done < 0.9 * total:
            predicted.append(now + left)
    return predicted


def test_time_left_is_smoothed() -> None:
    # 300 ids finishing at random over 60 s (as queued jobs do), sampled 4 times a second.
    rng = random.Random(12)  # noqa: S311 - seeded test data
    finish_times = sorted(rng.uniform(0.5, 60.0) for _ in range(300))
    smoothed = finish_predictions(RateEstimate(0.0), finish_times)
    jumpy = finish_predictions(RateEstimate(0.0, time_constant=0.5), finish_times)
    assert smoothed
    # The predicted finishing time stays near the truth (60 s) and moves far less than an
    # estimate from the last second or so.
    assert all(45 < finish < 80 for finish in smoothed)
    spread = max(smoothed) - min(smoothed)
    assert spread < (max(jumpy) - min(jumpy)) / 2


def test_activity_counts_polls_and_keeps_the_last_error_in_plain_words() -> None:
    activity = Activity()
    url = "http://127.0.0.1:8787/api/v6/images/fetch"
    error = APIConnectionError(
        f"could not talk to {url} (ClientConnectorError: Cannot connect to host "
        "127.0.0.1:8787 [Connect call failed])",
        url=url,
        cause="connection refused",
    )
    activity(RequestSent("1", url))
    activity(RequestFailed("1", url, error, 0.01))
    activity(RetryScheduled("1", 1, 0.5, error))
    assert activity.last_error == "cannot reach 127.0.0.1:8787: connection refused; retrying"
    activity(RequestSent("1", url))
    activity(ResponseReceived("1", url, 200, 0.02, None))
    assert activity.polls == 2
    assert activity.last_error is None


def test_with_verbose_each_retry_and_pause_is_a_line_in_the_commands_words() -> None:
    log = io.StringIO()
    activity = Activity(log=log)
    limited = RateLimitError(
        "the server asks to slow down; lower max_concurrency or max_requests_per_second",
        response=httpx.Response(429, request=httpx.Request("POST", "http://x/api")),
        retry_after=2.0,
    )
    activity(ClientPaused(2.0, limited))
    activity(RetryScheduled("7", 3, 2.0, limited))
    lines = log.getvalue().splitlines()
    assert lines == [
        "rate limited: every request paused for 2.0 s",
        "request 7: ModelsLab is rate limiting this account (it asked to wait 2 s): try again "
        "later, or wait on fewer ids at once (`wait --concurrency N`); retrying in 2.0 s",
    ]
    assert "max_concurrency" not in log.getvalue()


def test_the_line_shows_requests_polls_and_errors_before_anything_finishes() -> None:
    now = [0.0]
    activity = Activity()
    activity.polls = 7
    activity.last_error = "cannot reach 127.0.0.1:9: connection refused; retrying"
    view = ProgressView(
        io.StringIO(),
        mode="plain",
        total=50,
        clock=lambda: now[0],
        activity=activity,
        requests_in_flight=lambda: 3,
    )
    for _ in range(5):
        view.note_read()
    view.update(Progress(0, 0, 0, None))
    line = line_of(view.state(1.0))
    assert line.startswith("0/50 done · 0 failed · 5 waiting · 3 requests in flight · 7 polls")
    assert line.endswith("cannot reach 127.0.0.1:9: connection refused; retrying")
    assert "left" not in line


def read_screen(master: int, seconds: float, until: bytes | None = None) -> bytes:
    chunks = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
        if until is not None and until in b"".join(chunks):
            break
    return b"".join(chunks)


def on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = pty.openpty()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    return process, master


@pytest.mark.integration
def test_an_unreachable_server_is_shown_within_seconds_on_a_terminal(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = env_for(MODELSLAB_API_KEY="k", MODELSLAB_BASE_URL=f"http://127.0.0.1:{port}/api")
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("1\n2\n3\n")
    process, master = on_a_terminal(
        cli("wait", "--ids-file", str(ids_file), "-o", str(tmp_path / "r.jsonl")), env
    )
    try:
        # Timed from the first frame, not from the start of a Python process on a busy
        # machine: the failure shows within seconds of the view appearing.
        screen = read_screen(master, 20, until=b"0/3 done")
        assert b"0/3 done" in screen  # a total, from the file
        shown = time.monotonic()
        words = f"cannot reach 127.0.0.1:{port}: connection refused; retrying".encode()
        screen += read_screen(master, 10, until=words)
        assert words in screen
        assert time.monotonic() - shown < 10
        screen += read_screen(master, 10, until=b"3 waiting")  # every id taken up
        assert b"3 waiting" in screen
        assert b"polls" in screen
        process.send_signal(signal.SIGINT)
        screen += read_screen(master, 5)
        assert process.wait(10) == 130
        assert b"--resume" in screen
        assert b"Traceback" not in screen
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        os.close(master)


@pytest.mark.integration
def test_the_live_view_counts_up_to_the_total(modelslab_server: SimulatorServer) -> None:
    ids = [modelslab_server.simulator.queue(ready_in=0.3) for _ in range(4)]
    process, master = on_a_terminal(cli("wait", *ids), env_for(modelslab_server))
    try:
        screen = read_screen(master, 20)
        assert process.wait(20) == 0
    finally:
        os.close(master)
    assert b"\x1b[?25l" in screen and b"\x1b[?25h" in screen  # cursor hidden, then shown
    assert b"4/4 done" in screen
    assert b"done in" in screen


def test_a_single_id_shows_its_own_polls() -> None:
    from modelslab_fetch import PollUpdate, Status
    from modelslab_fetch.cli._progress import ProgressView, line_of

    out = io.StringIO()
    view = ProgressView(out, mode="plain", total=1, interval=0.0)
    view.note_poll(
        PollUpdate(
            request_id="13443927",
            polls=3,
            status=Status.PROCESSING,
            eta=20.0,
            next_poll_in=5.0,
            elapsed=12.0,
        )
    )
    line = line_of(view.state(0.0))
    assert line == "13443927: queued, about 20s left (poll 3, next in 5.0s)"
    view.note_poll(
        PollUpdate(
            request_id="13443927",
            polls=4,
            status=Status.SUCCESS,
            eta=None,
            next_poll_in=None,
            elapsed=17.0,
        )
    )
    assert line_of(view.state(0.0)).startswith("0/1 done")  # over: the run's counts again


def test_outside_a_terminal_a_single_job_counts_down_and_never_repeats_a_line() -> None:
    # The server says "about 14 s" once; the next poll is about 10 s away, so two plain
    # lines (every 5 s) fall between the polls.
    with scripted_server() as server:
        server.script(
            "77",
            Reply(200, {"status": "processing", "id": 77, "eta": 14}),
            Reply(200, {"status": "success", "id": 77, "output": ["https://cdn.example/77.png"]}),
        )
        env = env_for(None, MODELSLAB_BASE_URL=server.base_url, MODELSLAB_API_KEY="k")
        done = subprocess.run(
            cli("wait", "77"), env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert done.returncode == 0, done.stderr
    job_lines = [line for line in done.stderr.splitlines() if line.startswith("77: queued")]
    assert len(job_lines) >= 2, done.stderr
    assert len(set(job_lines)) == len(job_lines), done.stderr  # each says something new
    assert sum("about 14s left" in line for line in job_lines) <= 1
    assert "about 9s left" in done.stderr or "about 4s left" in done.stderr  # counted down


# ------------------------------------------------------- views chosen and drawn


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.integration
def test_progress_modes_are_chosen_from_the_stream_and_flags() -> None:
    assert choose_mode(FakeTerminal(), quiet=False, as_json=False) == "live"
    assert choose_mode(io.StringIO(), quiet=False, as_json=False) == "plain"
    assert choose_mode(FakeTerminal(), quiet=True, as_json=False) == "quiet"
    assert choose_mode(io.StringIO(), quiet=False, as_json=True) == "json"


@pytest.mark.integration
def test_live_view_redraws_one_line_with_counts() -> None:
    now = [0.0]
    stream = FakeTerminal()
    view = ProgressView(stream, mode="live", total=10, clock=lambda: now[0])
    now[0] = 2.0
    view.update(Progress(succeeded=3, failed=1, in_flight=5, total=10))
    view.finish()
    screen = stream.getvalue()
    assert "4/10 done · 1 failed · 5 waiting" in screen
    assert screen.count("\n") == 1  # one line, redrawn in place, ended when finished
    assert screen.endswith("\n\x1b[?25h")  # and the cursor shown again


@pytest.mark.integration
def test_plain_and_json_views() -> None:
    now = [0.0]
    plain, as_json, quiet = io.StringIO(), io.StringIO(), io.StringIO()
    views = [
        ProgressView(plain, mode="plain", clock=lambda: now[0], interval=5),
        ProgressView(as_json, mode="json", clock=lambda: now[0], interval=5),
        ProgressView(quiet, mode="quiet", clock=lambda: now[0]),
    ]
    for second in range(1, 11):
        now[0] = float(second)
        for view in views:
            view.update(Progress(succeeded=second, failed=0, in_flight=1, total=None))
    for view in views:
        view.finish()
    plain_lines = plain.getvalue().splitlines()
    assert "\r" not in plain.getvalue()
    assert len(plain_lines) == 3  # at 1 s, at 6 s, and the final line
    assert plain_lines[-1].startswith("10 done · 0 failed")
    events = [json.loads(line) for line in as_json.getvalue().splitlines()]
    assert events[-1]["event"] == "finished" and events[-1]["succeeded"] == 10
    assert quiet.getvalue() == ""


@pytest.mark.integration
def test_progress_under_a_pseudo_terminal(modelslab_server: SimulatorServer) -> None:
    ids = [modelslab_server.simulator.queue(ready_in=0.3) for _ in range(4)]
    master, slave = pty.openpty()
    process = subprocess.Popen(
        cli("wait", *ids),
        env=env_for(modelslab_server),
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert process.wait(30) == 0
    screen = b"".join(chunks).decode()
    assert "\x1b[" in screen  # drawn live, not as plain lines
    assert "4/4 done" in screen


@pytest.mark.integration
def test_plain_progress_when_not_a_terminal(modelslab_server: SimulatorServer) -> None:
    rid = modelslab_server.simulator.queue()
    done = subprocess.run(
        cli("wait", rid),
        env=env_for(modelslab_server),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "\r" not in done.stderr
    assert "1/1 done" in done.stderr
    assert done.stdout.startswith(f"{rid}\tsuccess\t")


# ------------------------------------------------- through events, not log text


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
