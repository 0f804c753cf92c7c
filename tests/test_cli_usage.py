"""`modelslab-fetch` checks what it is given before working, and says what to do in its own words.

Its inputs (a key file, ids, a results file) each give a message on a problem, never a
traceback; id sets and line reading are exact and linear.

Driven as a subprocess against the simulator on loopback, asserting exit status and message;
the many hostile arguments are also fed in-process (fast), where a traceback would surface
as an exception.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from modelslab_fetch._errors import (
    APIConnectionError,
    AuthenticationError,
    ResponseParseError,
    WaitTimeoutError,
)
from modelslab_fetch.cli import main
from modelslab_fetch.cli._commands import Streams
from modelslab_fetch.cli._ids import check_ids_file
from modelslab_fetch.cli._idset import IdSet
from modelslab_fetch.cli._lines import physical_lines
from modelslab_fetch.cli._words import in_plain_words
from modelslab_fetch.testing._fixtures import SimulatorServer
from tests.cli_support import cli, command, env_for
from tests.conftest import API_KEY
from tests.loopback import LoopbackServer, free_port, never_answer

pytestmark = pytest.mark.integration


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), streams=Streams(out=out, err=err))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("output", "complaint"),
    [
        ("/proc/x.jsonl", "cannot write --output /proc/x.jsonl"),
        ("{tmp}", "is a folder; give a file name in it instead"),
    ],
)
def test_an_unwritable_output_is_refused_before_any_request(
    modelslab_server: SimulatorServer, tmp_path: Path, output: str, complaint: str
) -> None:
    rid = modelslab_server.simulator.queue()
    output = output.format(tmp=tmp_path)
    done = command(modelslab_server, "wait", rid, "-o", output)
    assert done.returncode == 2
    assert complaint.format(tmp=tmp_path) in done.stderr
    assert modelslab_server.simulator.jobs[rid].polls == 0


def test_a_download_folder_that_is_a_file_is_refused_once(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    ids = [modelslab_server.simulator.queue() for _ in range(3)]
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for argv in (
        ("download", *ids, "--dir", str(a_file)),
        ("wait", *ids, "--dir", str(a_file)),
    ):
        done = command(modelslab_server, *argv)
        assert done.returncode == 2
        assert done.stderr.count("is a file, not a folder") == 1
        assert "Errno" not in done.stderr
    assert all(modelslab_server.simulator.jobs[rid].polls == 0 for rid in ids)


def test_an_ids_file_with_a_byte_order_mark_is_read(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    ids = [modelslab_server.simulator.queue() for _ in range(2)]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(ids).encode() + b"\r\n")
    done = command(modelslab_server, "wait", "--ids-file", str(ids_file), "-q")
    assert done.returncode == 0, done.stdout
    assert [line.split("\t")[0] for line in done.stdout.splitlines()] == ids


@pytest.mark.parametrize(
    "content",
    ["13443927\ncaf\xe9\n".encode("latin-1"), b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00"],
)
def test_an_ids_file_that_is_not_utf8_is_refused_by_name(
    modelslab_server: SimulatorServer, tmp_path: Path, content: bytes
) -> None:
    rid = modelslab_server.simulator.queue(request_id="13443927")
    ids_file = tmp_path / "ids.bin"
    ids_file.write_bytes(content)
    done = command(modelslab_server, "wait", "--ids-file", str(ids_file))
    assert done.returncode == 2
    assert f"--ids-file {ids_file} is not UTF-8 text" in done.stderr
    assert "codec" not in done.stderr
    assert modelslab_server.simulator.jobs[rid].polls == 0


def test_standard_input_that_is_not_utf8_is_named(modelslab_server: SimulatorServer) -> None:
    done = subprocess.run(
        cli("wait", "-", "-q"),
        input=b"\xef\xbb\xbf987654\n\xff\xfe\n",
        env=env_for(modelslab_server),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert b"standard input is not UTF-8 text" in done.stderr
    assert b"Traceback" not in done.stderr


def test_download_exits_1_when_nothing_was_downloaded(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    later = modelslab_server.simulator.queue(ready_in=60)
    folder = str(tmp_path / "img")
    unknown = command(modelslab_server, "download", "987654", "--dir", folder)
    assert unknown.returncode == 1
    assert "987654: nothing to download: ModelsLab does not know this id" in unknown.stderr
    processing = command(modelslab_server, "download", later, "--dir", folder)
    assert processing.returncode == 1
    assert "still processing" in processing.stderr
    bad_key = command(
        modelslab_server, "download", later, "--dir", folder, MODELSLAB_API_KEY="wrong"
    )
    assert bad_key.returncode == 1
    assert "rejected the API key" in bad_key.stderr


def test_a_timeout_is_said_in_the_commands_terms(modelslab_server: SimulatorServer) -> None:
    later = modelslab_server.simulator.queue(ready_in=60)
    done = command(modelslab_server, "wait", later, "--timeout", "0.5", "-q")
    assert done.returncode == 1
    assert "not finished within --timeout 0.5 s" in done.stdout
    assert "wait()" not in done.stdout + done.stderr


def test_help_describes_each_command_with_defaults_exit_codes_and_an_example() -> None:
    done = command(None, "--help")  # once as a person runs it
    assert done.returncode == 0
    for name in ("fetch", "wait", "download", "demo", "simulate"):
        assert name in done.stdout
    assert "exit status of fetch, wait and download:" in done.stdout and "130" in done.stdout
    for name in ("fetch", "wait", "download", "demo", "simulate"):
        code, page, _err = run(name, "--help")
        assert code == 0
        assert "example:\n  modelslab-fetch " + name in page, name
        assert "exit status:" in page
    wait = run("wait", "--help")[1]
    assert "(default: 600.0)" in wait
    assert "(default: 1024)" in wait


def exit_statuses(page: str) -> set[int]:
    block = page.split("exit status:\n", 1)[1]
    return {int(line.split()[0]) for line in block.splitlines() if line.strip()}


def test_simulate_and_demo_list_the_exit_statuses_they_really_give(tmp_path: Path) -> None:
    simulate, demo = run("simulate", "--help")[1], run("demo", "--help")[1]
    assert exit_statuses(simulate) == {0, 2}
    assert "every id succeeded" not in simulate and "every id succeeded" not in demo
    assert exit_statuses(demo) == {0, 1, 2, 130}
    # simulate: 2 when it cannot serve, 0 once stopped with Ctrl-C.
    assert command(None, "simulate", "--port", "0").returncode == 2
    with subprocess.Popen(
        cli("simulate", "--port", str(free_port())), stderr=subprocess.PIPE, text=True
    ) as server:
        assert server.stderr is not None
        while "Ctrl-C to stop" not in server.stderr.readline():
            assert server.poll() is None
        server.send_signal(signal.SIGINT)
        assert server.wait(20) == 0
    # demo: 2 for a --dir it cannot use, 130 when interrupted.
    (tmp_path / "a-file").write_text("")
    assert command(None, "demo", "--dir", str(tmp_path / "a-file")).returncode == 2
    with subprocess.Popen(
        cli("demo", "--jobs", "50", "--dir", str(tmp_path / "demo")),
        stderr=subprocess.PIPE,
        text=True,
    ) as demo_run:
        assert demo_run.stderr is not None
        while "waiting for 50 queued jobs" not in demo_run.stderr.readline():
            assert demo_run.poll() is None
        demo_run.send_signal(signal.SIGINT)
        assert demo_run.wait(20) == 130


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["wait", "1", "--concurrency", "abc"], "expected a whole number, not 'abc'"),
        (["wait", "1", "--concurrency", "0"], "must be 1 or more"),
        (["wait", "1", "--timeout", "nan"], "must be more than 0 seconds"),
        (["wait", "1", "--timeout", "-1"], "must be more than 0 seconds"),
        (["demo", "--jobs", "-1"], "must be 1 or more"),
    ],
)
def test_option_values_are_checked_in_plain_words(argv: list[str], words: str) -> None:
    code, _out, err = run(*argv)
    assert code == 2
    assert words in err
    assert "_positive_int" not in err and "invalid" not in err


def test_an_empty_key_file_says_so(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("\n")
    code, _out, err = run("fetch", "1", "--api-key-file", str(key_file))
    assert code == 2
    assert f"--api-key-file {key_file} is empty" in err
    assert "api_key=" not in err


def test_json_puts_only_json_objects_on_stdout(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    sim = modelslab_server.simulator
    good, failed = sim.queue(), sim.queue(final="failed")
    runs = [
        ("fetch", good, failed, "--json"),
        ("wait", good, failed, "--json"),
        (
            "wait",
            good,
            "--json",
            "-o",
            str(tmp_path / "r.jsonl"),
            "--dir",
            str(tmp_path / "i"),
        ),
        ("download", good, failed, "--json", "--dir", str(tmp_path / "d")),
    ]
    for argv in runs:
        done = command(modelslab_server, *argv)
        events = [json.loads(line) for line in done.stdout.splitlines()]
        assert events, argv
        assert all(isinstance(event, dict) and "event" in event for event in events), argv
    assert events[-1]["event"] == "summary"
    kinds = {event["event"] for event in events}
    assert kinds == {"downloaded", "skipped", "summary"}


def test_demo_json_is_json_on_stdout_and_nothing_on_stderr(tmp_path: Path) -> None:
    done = command(None, "demo", "--jobs", "5", "--json", "--dir", str(tmp_path / "demo"))
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["event"] == "summary" and events[-1]["jobs"] == 5
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--port", "99999"], "--port must be from 1 to 65535"),
        (["--error-rate", "2"], "--error-rate is a share of fetches from 0 to 1"),
        (["--error-rate", "nan"], "--error-rate is a share"),
        (["--jobs", "-1"], "--jobs cannot be negative"),
        (["--latency", "inf"], "--latency must be a number of seconds"),
        (["--port", "x"], "invalid int value"),
    ],
)
def test_simulate_checks_its_options(argv: list[str], words: str) -> None:
    code, _out, err = run("simulate", *argv)
    assert code == 2
    assert words in err


def test_simulate_on_a_taken_port_says_so_in_one_line() -> None:
    with LoopbackServer(never_answer()) as taken:
        port = taken.port
        done = command(None, "simulate", "--port", str(port))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert f"cannot listen on 127.0.0.1:{port}: the port is taken" in done.stderr


HOSTILE = [
    "",
    "-",
    "--",
    " ",
    "\x00",
    "\udcff",
    "é" * 300,
    "../../etc/passwd",
    "/dev/null",
    "/proc/self/mem",
    "-1",
    "1e999",
    "nan",
    "{}",
    '{"request_id": 1}',
    "http://[::1",
    "x" * 5000,
]


OPTIONS = {
    "fetch": ["--ids-file", "--base-url", "--api-key-file"],
    "wait": [
        "--ids-file",
        "--base-url",
        "--api-key-file",
        "--concurrency",
        "--timeout",
        "--output",
        "--dir",
        "--download",
    ],
    "download": ["--ids-file", "--base-url", "--api-key-file", "--from-results", "--dir"],
    "demo": ["--jobs", "--seed", "--dir"],
    "simulate": [
        "--host",
        "--port",
        "--seed",
        "--jobs",
        "--latency",
        "--error-rate",
        "--queue-limit-wait",
        "--odd-shapes",
        "--account-error",
    ],
}


def test_no_hostile_argument_shows_a_traceback(
    modelslab_server: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The simulator knows no id: each run ends at once, whatever it was given.
    monkeypatch.chdir(tmp_path)
    tried = 0
    for name, options in OPTIONS.items():
        for option in options:
            for value in HOSTILE:
                argv = [name, option, value]
                if name in ("fetch", "wait", "download") and option != "--ids-file":
                    argv.append("1")
                if name == "download" and option != "--dir":
                    argv += ["--dir", "out"]
                if name in ("demo", "simulate") and option not in ("--dir", "--host"):
                    argv += ["--port", "99999"] if name == "simulate" else ["--dir", "/proc/x"]
                if name == "simulate" and option in ("--host",):
                    argv += ["--port", "99999"]
                if name == "demo":
                    argv += ["--dir", "/proc/x"]
                code, _out, err = run(*argv)
                tried += 1
                assert "unexpected error" not in err, argv
                assert "Traceback" not in err, argv
                assert code in (1, 2), (argv, err)
    assert tried > 300


def test_a_run_stopped_before_its_first_result_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELSLAB_API_KEY", raising=False)
    results = tmp_path / "r.jsonl"
    code, _out, err = run("wait", "1", "-o", str(results))
    assert code == 2 and "no API key" in err
    monkeypatch.setenv("MODELSLAB_API_KEY", "k")
    code, _out, err = run("wait", "1", "-o", str(results), "--base-url", "ftp://x")
    assert code == 2 and "--base-url" in err
    assert not results.exists()


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("the server rejected the API key; check api_key= or MODELSLAB_API_KEY"),
        WaitTimeoutError(request_id="1", timeout=5, result=None),
        ResponseParseError(  # as the library words an edge page where JSON was due
            "HTTP 502 response is an HTML page; ModelsLab fetch endpoints answer JSON "
            "(is base_url right?)",
            excerpt="<html><body>Bad gateway</body></html>",
            status_code=502,
            problem="an HTML page",
        ),
        APIConnectionError("could not talk to x (boom), or pass your own http_client"),
        OSError("plain"),
    ],
)
def test_messages_are_in_the_commands_terms(error: Exception) -> None:
    words = in_plain_words(error)
    for library in ("api_key=", "wait()", "fetch()", "base_url", "http_client"):
        assert library not in words


# ------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["wait"], "give request ids"),
        (["wait", "1", "--resume"], "--resume needs --output"),
        (["wait", "1", "--ids-file", "x"], "not both"),
        (["wait", "--ids-file", "/nonexistent/ids.txt"], "cannot read --ids-file"),
        (["wait", "1", "--base-url", "http://modelslab.com/api"], "refusing plain http"),
        (["download", "--dir", "d", "--from-results", "/nonexistent.jsonl"], "no results file"),
    ],
)
def test_usage_errors_exit_2_and_say_what_to_do(
    argv: list[str], complaint: str, modelslab_server: SimulatorServer
) -> None:
    code, _out, err = run(*argv)
    assert code == 2
    assert complaint in err


def test_a_missing_key_points_to_the_environment_and_the_demo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MODELSLAB_API_KEY", raising=False)
    code, _out, err = run("wait", "123")
    assert code == 2
    assert "MODELSLAB_API_KEY" in err
    assert "modelslab-fetch demo" in err


@pytest.mark.parametrize("argv", [["wait", "1", "--timeout", "0"], ["nonsense"], []])
def test_argparse_errors_exit_2(argv: list[str]) -> None:
    assert run(*argv)[0] == 2


def test_key_file(
    modelslab_server: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELSLAB_API_KEY")
    key_file = tmp_path / "key"
    key_file.write_text(modelslab_server.api_key + "\n")
    rid = modelslab_server.simulator.queue()
    assert run("fetch", rid, "--api-key-file", str(key_file))[0] == 0
    assert run("fetch", rid, "--api-key-file", str(tmp_path / "missing"))[0] == 2


# ------------------------------------------------------------------- inputs


def run_cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    code = main(list(argv), streams=Streams(out=io.StringIO(), err=err))
    return code, err.getvalue()


def test_cli_input_problems_are_messages_not_tracebacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSLAB_API_KEY", API_KEY)
    empty_key = tmp_path / "key"
    empty_key.write_text("\n")
    code, err = run_cli("fetch", "1", "--api-key-file", str(empty_key))
    assert code == 2
    assert "empty" in err
    assert run_cli("wait", "1", "-", "2")[0] == 2
    latin = tmp_path / "ids.txt"
    latin.write_bytes(b"12\xff34\n")
    code, err = run_cli("wait", "--ids-file", str(latin), "--base-url", "http://127.0.0.1:9/api")
    assert code == 2  # checked before any work, and named
    assert f"--ids-file {latin} is not UTF-8 text" in err


def test_a_corrupt_results_line_is_skipped_by_download(tmp_path: Path) -> None:
    from modelslab_fetch.cli._results import record_result

    assert record_result({"request_id": "1", "ok": True, "output": [1, 2]}) is None
    assert record_result({"request_id": "1", "ok": True, "output": ["u"]}) is not None


def test_id_sets_are_exact_compact_and_know_what_was_met() -> None:
    ids = IdSet()
    for key, failed in [("123", False), ("0123", True), ("123", True), ("9" * 30, False)]:
        ids.add(key, failed=failed)
    ids.add("a-uuid-like-id")
    ids.add(str(2**63))  # past what a number is kept as: kept as text, exactly
    for number in range(200_000, 0, -1):  # more than one sorted run
        ids.add(str(number * 7))
    ids.freeze()
    assert len(ids) == 200_000 + 5  # "123" once, the others as they are
    assert "123" in ids and "0123" in ids and "9" * 30 in ids and str(2**63) in ids
    assert "124" not in ids and "00123" not in ids and "" not in ids
    assert ids.failed("123") and ids.failed("0123") and not ids.failed("a-uuid-like-id")
    assert "1400000" in ids and "1400007" not in ids
    assert ids.first_sight("123") and not ids.first_sight("123")
    assert ids.first_sight("a-uuid-like-id") and not ids.first_sight("a-uuid-like-id")
    assert not ids.first_sight("124")  # not in the set: never "met"


def test_one_line_without_an_end_is_read_in_linear_time(tmp_path: Path) -> None:
    # 32 MB with no line end: read by joining chunks onto what came before, it took
    # seconds (quadratic); each byte is looked at once now.
    one_line = tmp_path / "ids.txt"
    one_line.write_bytes(b"1" * (32 * 2**20))
    started = time.monotonic()
    assert check_ids_file(one_line)[0] == 1  # one entry (not an id: too long)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"1\n2\r\n3\r4", ["1", "2", "3", "4"]),
        (b"1\r\r\n2", ["1", "", "2"]),
        (b"\xef\xbb\xbf1\r\n\r\n", ["\ufeff1", ""]),
    ],
)
def test_lines_end_at_lf_crlf_or_cr_across_chunk_edges(
    data: bytes, lines: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for size in (1, 2, 3, 1 << 16):
        monkeypatch.setattr("modelslab_fetch.cli._lines.CHUNK", size)
        assert [raw.decode() for raw in physical_lines(io.BytesIO(data))] == lines
