"""The modelslab-fetch command as users run it: wait, fetch, download, demo, simulate, exit codes.

In-process and as a subprocess, against the simulator. Its checks and messages are
tests/test_cli_usage.py, its results file and resume tests/test_cli_results.py, its progress
tests/test_cli_view.py.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelslab_fetch.cli import main
from modelslab_fetch.cli._commands import Streams
from modelslab_fetch.cli._progress import line_of
from modelslab_fetch.testing._fixtures import SimulatorServer
from tests.cli_support import cli, command, env_for

pytestmark = pytest.mark.integration


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), streams=Streams(out=out, err=err))
    return code, out.getvalue(), err.getvalue()


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
    code, out, err = run(
        "demo", "--jobs", "3", "--quiet", "--json", "--dir", str(tmp_path / "demo-json")
    )
    assert code == 0
    assert "push_and_poll" not in out  # no event of a comparison that never ran


def test_subprocess_exit_codes(modelslab_server: SimulatorServer, tmp_path: Path) -> None:
    env = env_for(modelslab_server)
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
        env=env_for(modelslab_server),
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
    from tests.loopback import free_port

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
