"""The modelslab-fetch command, in-process and as a subprocess, against the simulator."""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelslab_fetch._jobs._batch import Progress
from modelslab_fetch.cli import main
from modelslab_fetch.cli._commands import Streams
from modelslab_fetch.cli._progress import ProgressView, choose_mode, line_of
from modelslab_fetch.cli._results import SOURCE
from modelslab_fetch.testing._fixtures import SimulatorServer
from tests.cli_support import command

pytestmark = pytest.mark.integration


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), streams=Streams(out=out, err=err))
    return code, out.getvalue(), err.getvalue()


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def subprocess_env(server: SimulatorServer) -> dict[str, str]:
    return {
        **os.environ,
        "MODELSLAB_BASE_URL": server.base_url,
        "MODELSLAB_API_KEY": server.api_key,
    }


# ------------------------------------------------------------------------ in-process


def test_wait_writes_one_line_per_id_and_exits_0(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    ids = [modelslab_server.simulator.queue(ready_in=0.2) for _ in range(5)]
    out_file = tmp_path / "results.jsonl"
    code, out, err = run("wait", *ids, "--output", str(out_file))
    assert code == 0
    records = lines(out_file)
    assert sorted(str(r["request_id"]) for r in records) == sorted(ids)
    assert all(r["ok"] and r["final"] and r["status"] == "success" for r in records)
    assert out == ""
    assert "5 succeeded, 0 failed" in err


def test_any_failure_exits_1_and_says_where_to_look(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    good = modelslab_server.simulator.queue()
    bad = modelslab_server.simulator.queue(final="failed")
    out_file = tmp_path / "r.jsonl"
    code, _out, err = run("wait", good, bad, "-o", str(out_file))
    assert code == 1
    failed = [r for r in lines(out_file) if not r["ok"]]
    assert [r["request_id"] for r in failed] == [bad]
    assert failed[0]["error"]["type"] == "GenerationFailedError"  # type: ignore[index]
    assert failed[0]["final"] is True
    assert "1 succeeded, 1 failed" in err
    assert "--resume" in err


def test_without_output_results_go_to_stdout(modelslab_server: SimulatorServer) -> None:
    rid = modelslab_server.simulator.queue()
    code, out, _err = run("wait", rid, "--quiet")
    assert code == 0
    request_id, status, detail = out.strip().split("\t")
    assert (request_id, status) == (rid, "success")
    assert detail.endswith(f"{rid}-0.png")
    code, out, _err = run("wait", rid, "--json", "--quiet")
    assert json.loads(out)["output"][0].endswith(".png")


def test_ids_from_a_file_and_from_stdin(
    modelslab_server: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [modelslab_server.simulator.queue() for _ in range(3)]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# queued today\n" + "\n".join(ids) + "\n\n")
    code, out, _ = run("wait", "--ids-file", str(ids_file), "-q")
    assert code == 0
    assert len(out.splitlines()) == 3
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(ids)))
    code, out, _ = run("wait", "-", "-q")
    assert code == 0
    assert len(out.splitlines()) == 3


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


def test_fetch_prints_one_status_per_id(modelslab_server: SimulatorServer) -> None:
    sim = modelslab_server.simulator
    ready, later, failed = sim.queue(), sim.queue(ready_in=60), sim.queue(final="failed")
    code, out, _ = run("fetch", ready, later, failed)
    assert code == 1
    statuses = [line.split("\t")[:2] for line in out.splitlines()]
    assert statuses == [[ready, "success"], [later, "processing"], [failed, "failed"]]
    assert run("fetch", ready)[0] == 0


def test_one_option_names_the_image_folder_and_the_old_name_still_runs(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    for name in ("wait", "download", "demo"):
        assert "--dir DIR" in run(name, "--help")[1], name
    assert "--download" not in run("wait", "--help")[1]  # the old name: hidden, not gone
    rid = modelslab_server.simulator.queue()
    code, _out, err = run("wait", rid, "--download", str(tmp_path / "old"))
    assert code == 0, err
    assert [p.name for p in (tmp_path / "old").iterdir()] == [f"{rid}-0.png"]


def test_wait_downloads_images_as_they_finish(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    ids = [modelslab_server.simulator.queue(ready_in=0.1, images=2) for _ in range(3)]
    code, _out, err = run("wait", *ids, "--dir", str(tmp_path / "img"), "-o", str(tmp_path / "r"))
    assert code == 0
    files = sorted(p.name for p in (tmp_path / "img").iterdir())
    assert files == sorted(f"{rid}-{n}.png" for rid in ids for n in range(2))
    assert all((tmp_path / "img" / name).read_bytes().startswith(b"\x89PNG") for name in files)
    assert "6 files saved" in err


def test_download_from_results_and_by_id(modelslab_server: SimulatorServer, tmp_path: Path) -> None:
    sim = modelslab_server.simulator
    ids = [sim.queue() for _ in range(2)]
    failed = sim.queue(final="failed")
    results = tmp_path / "r.jsonl"
    run("wait", *ids, failed, "-o", str(results))
    code, _out, err = run("download", "--from-results", str(results), "--dir", str(tmp_path / "a"))
    assert code == 0
    assert len(list((tmp_path / "a").iterdir())) == 2
    code, _out, err = run("download", ids[0], failed, "--dir", str(tmp_path / "b"))
    assert code == 1  # one id had nothing to download: not everything asked was done
    assert f"{failed}: nothing to download: the job failed" in err
    assert [p.name for p in (tmp_path / "b").iterdir()] == [f"{ids[0]}-0.png"]


def test_download_run_twice_says_the_files_are_already_there(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    sim = modelslab_server.simulator
    ids = [sim.queue(images=2) for _ in range(2)]
    results, folder = tmp_path / "r.jsonl", tmp_path / "images"
    assert command(modelslab_server, "wait", *ids, "-o", str(results)).returncode == 0
    argv = ("download", "--from-results", str(results), "--dir", str(folder))
    first = command(modelslab_server, *argv)
    assert first.returncode == 0, first.stderr
    assert first.stderr.strip() == f"4 files saved in {folder}/"
    (folder / f"{ids[0]}-1.png").unlink()  # one goes missing
    second = command(modelslab_server, *argv)
    assert second.returncode == 0
    assert second.stderr.strip() == f"1 file saved in {folder}/, 3 files already there"
    third = command(modelslab_server, *argv, "--json")
    summary = json.loads(third.stdout.splitlines()[-1])
    assert (summary["images"], summary["already_there"]) == (0, 4)
    fourth = command(modelslab_server, *argv)
    assert fourth.stderr.strip() == f"nothing new saved in {folder}/: 4 files already there"
    # wait says it the same way, on a second run into the same folder.
    again = command(modelslab_server, "wait", ids[0], "--dir", str(folder))
    assert "1 succeeded, 0 failed, nothing new saved: 2 files already there" in again.stderr


def test_counts_agree_with_their_nouns(modelslab_server: SimulatorServer, tmp_path: Path) -> None:
    rid = modelslab_server.simulator.queue()
    done = command(modelslab_server, "download", rid, "--dir", str(tmp_path / "one"))
    assert done.stderr.strip() == f"1 file saved in {tmp_path / 'one'}/"
    failed = modelslab_server.simulator.queue(final="failed")
    done = command(modelslab_server, "download", failed, "--dir", str(tmp_path / "none"))
    assert "(1 id with nothing to download)" in done.stderr
    done = command(modelslab_server, "wait", rid, rid)
    assert "1 repeated id waited on once" in done.stderr
    line = line_of(
        {
            "succeeded": 0,
            "failed": 0,
            "total": 2,
            "waiting": 1,
            "requests_in_flight": 1,
            "polls": 1,
            "rate_per_s": None,
            "seconds_left": None,
            "elapsed_s": 1.0,
            "last_error": None,
        }
    )
    assert "1 request in flight · 1 poll ·" in line


def test_resume_skips_final_ids_and_tolerates_a_cut_line(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    sim = modelslab_server.simulator
    ids = [sim.queue() for _ in range(6)]
    results = tmp_path / "r.jsonl"
    done_before = ids[:3]
    results.write_text(
        "".join(
            json.dumps({"request_id": rid, "ok": True, "final": True, "source": SOURCE}) + "\n"
            for rid in done_before
        )
        + json.dumps({"request_id": ids[3], "ok": False, "final": False, "source": SOURCE})
        + "\n"
        + '{"request_id": "'
        + ids[4]  # a line cut short by a kill
    )
    code, _out, err = run("wait", *ids, "-o", str(results), "--resume")
    assert code == 0
    assert "3 already finished (skipped)" in err
    assert all(sim.jobs[rid].polls == 0 for rid in done_before)
    finals = [str(r["request_id"]) for r in lines_tolerant(results) if r.get("final")]
    assert sorted(finals) == sorted(ids)


def lines_tolerant(path: Path) -> list[dict[str, object]]:
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def test_demo_accounts_for_every_job_and_saves_images(tmp_path: Path) -> None:
    code, _out, err = run("demo", "--jobs", "25", "--dir", str(tmp_path / "demo"))
    assert code == 0, err
    assert "25 jobs accounted for" in err
    images = [p for p in (tmp_path / "demo").iterdir() if p.suffix == ".png"]
    succeeded = int(err.split("accounted for: ")[1].split(" succeeded")[0])
    assert len(images) == succeeded > 0
    assert len(lines(tmp_path / "demo" / "results.jsonl")) == 25
    assert "push and poll side by side" in err
    assert "polling alone" in err and "webhooks + polling" in err


def test_demo_collects_the_same_jobs_with_and_without_webhooks(tmp_path: Path) -> None:
    code, out, _err = run("demo", "--jobs", "3", "--json", "--dir", str(tmp_path / "demo"))
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    (beside,) = [event for event in events if event["event"] == "push_and_poll"]
    polling, push = beside["polling"], beside["webhooks"]
    assert polling["finished"] == polling["jobs"] == push["finished"] == push["jobs"] == 40
    assert polling["deliveries"] == 0
    assert push["deliveries"] == 40  # every job's end reached the receiver, once
    # A wait that ends on its delivery makes one fetch, the confirming one; polling
    # alone makes at least that (jobs of 1-6 s are rarely ready at the first poll).
    assert 1 <= push["fetches_per_job"] <= 1.1
    assert polling["fetches_per_job"] > push["fetches_per_job"]
    assert events[-1]["event"] == "summary"


def test_a_quiet_demo_compares_nothing(tmp_path: Path) -> None:
    code, out, err = run("demo", "--jobs", "3", "--quiet", "--dir", str(tmp_path / "demo"))
    assert code == 0
    assert "side by side" not in out + err


# -------------------------------------------------------------------- progress views


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_modes_are_chosen_from_the_stream_and_flags() -> None:
    assert choose_mode(FakeTerminal(), quiet=False, as_json=False) == "live"
    assert choose_mode(io.StringIO(), quiet=False, as_json=False) == "plain"
    assert choose_mode(FakeTerminal(), quiet=True, as_json=False) == "quiet"
    assert choose_mode(io.StringIO(), quiet=False, as_json=True) == "json"


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


# ---------------------------------------------------------------------- subprocesses


def cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "modelslab_fetch", *argv]


def test_subprocess_exit_codes(modelslab_server: SimulatorServer, tmp_path: Path) -> None:
    env = subprocess_env(modelslab_server)
    ok = modelslab_server.simulator.queue()
    failed = modelslab_server.simulator.queue(final="error")
    runs = {
        0: cli("wait", ok, "-q"),
        1: cli("wait", ok, failed, "-q"),
        2: cli("wait"),
    }
    for expected, argv in runs.items():
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == expected, done.stderr


def test_a_run_killed_half_way_then_resumed_loses_nothing_and_repeats_nothing(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    sim = modelslab_server.simulator
    ids = sim.queue_many(40, ready_in=(0.1, 4.0))
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    results = tmp_path / "results.jsonl"
    argv = cli("wait", "--ids-file", str(ids_file), "-o", str(results), "-q")
    process = subprocess.Popen(argv, env=subprocess_env(modelslab_server))
    deadline = time.monotonic() + 30
    while len(lines_tolerant(results) if results.exists() else []) < 10:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    finished_before = {str(r["request_id"]) for r in lines_tolerant(results) if r.get("final")}
    assert 10 <= len(finished_before) < 40
    polls_before = {rid: sim.jobs[rid].polls for rid in finished_before}

    code, _out, err = run("wait", "--ids-file", str(ids_file), "-o", str(results), "--resume")
    assert code == 0, err
    finals = [str(r["request_id"]) for r in lines_tolerant(results) if r.get("final")]
    assert sorted(finals) == sorted(ids)  # nothing lost, nothing twice
    assert {rid: sim.jobs[rid].polls for rid in finished_before} == polls_before


def test_progress_under_a_pseudo_terminal(modelslab_server: SimulatorServer) -> None:
    ids = [modelslab_server.simulator.queue(ready_in=0.3) for _ in range(4)]
    master, slave = pty.openpty()
    process = subprocess.Popen(
        cli("wait", *ids),
        env=subprocess_env(modelslab_server),
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


def test_plain_progress_when_not_a_terminal(modelslab_server: SimulatorServer) -> None:
    rid = modelslab_server.simulator.queue()
    done = subprocess.run(
        cli("wait", rid),
        env=subprocess_env(modelslab_server),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "\r" not in done.stderr
    assert "1/1 done" in done.stderr
    assert done.stdout.startswith(f"{rid}\tsuccess\t")


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
@pytest.mark.parametrize("name", ["fetch", "wait"])
def test_a_reader_that_stops_early_ends_the_command_quietly(
    modelslab_server: SimulatorServer, name: str, stream: str
) -> None:
    # `modelslab-fetch fetch ID... | head -1` (or `2>&1 | head -1`).
    ids = [modelslab_server.simulator.queue(ready_in=0) for _ in range(300)]
    merged = subprocess.STDOUT if stream == "stderr" else subprocess.PIPE
    with subprocess.Popen(
        cli(name, *ids),
        env=subprocess_env(modelslab_server),
        stdout=subprocess.PIPE,
        stderr=merged,
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline()  # the first line: all `head -1` wants
        process.stdout.close()
        status = process.wait(30)
        complaint = "" if process.stderr is None else process.stderr.read().decode()
    assert status == 141  # as a command killed by SIGPIPE
    assert "Broken pipe" not in complaint and "Exception ignored" not in complaint
    assert "error" not in complaint


def test_simulate_serves_until_stopped(tmp_path: Path) -> None:
    from tests.local_server import free_port

    port = free_port()
    argv = cli("simulate", "--port", str(port), "--jobs", "2")
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        try:
            assert process.stdout is not None
            ids = [process.stdout.readline().strip() for _ in range(2)]
            env = {
                **os.environ,
                "MODELSLAB_BASE_URL": f"http://127.0.0.1:{port}/api",
                "MODELSLAB_API_KEY": "k",
            }
            for _ in range(100):
                fetched = subprocess.run(
                    cli("fetch", *ids), env=env, capture_output=True, text=True, check=False
                )
                if "processing" in fetched.stdout or "success" in fetched.stdout:
                    break
                time.sleep(0.1)
            assert [line.split("\t")[0] for line in fetched.stdout.splitlines()] == ids
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(10)
