"""`wait`'s results file can be trusted: killed, starved of disk, run twice, fed junk.

Each test drives the real command in a subprocess against the simulator on loopback.
"""

from __future__ import annotations

import io
import json
import random
import resource
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from modelslab_fetch.cli import main
from modelslab_fetch.cli._commands import Streams, emit
from modelslab_fetch.cli._lines import forgiving
from modelslab_fetch.cli._results import SOURCE, ResultsFile
from modelslab_fetch.testing._fixtures import SimulatorServer
from tests.cli_support import cli, command, env_for, finals, records
from tests.loopback import Reply, scripted_server
from tests.resume_memory import peak_rss_of_resume, write_finished_run

pytestmark = pytest.mark.integration


PNG_END = b"IEND\xaeB`\x82"


def file_size_limit(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def check_every_final_success_has_its_images(results: Path, images: Path) -> None:
    for record in records(results):
        if record.get("final") and record["ok"]:
            names = record["files"]
            assert len(names) == len(record["output"]) > 0
            for name in names:
                data = (images / name).read_bytes()
                assert data.startswith(b"\x89PNG") and data.endswith(PNG_END), name


def no_part_files(images: Path) -> bool:
    return not [p for p in images.iterdir() if p.name.endswith(".part")]


def test_killed_at_random_points_then_resumed_every_success_has_its_images(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    sim = modelslab_server.simulator
    ids = sim.queue_many(24, ready_in=(3600.0, 3600.0))  # made ready a third per run below
    for rid in ids[::4]:
        sim.jobs[rid].images = 3
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    results, images = tmp_path / "r.jsonl", tmp_path / "img"
    argv = cli("wait", "--ids-file", str(ids_file), "-o", str(results), "--dir", str(images))
    rng = random.Random(20261121)  # noqa: S311 - seeded kill times, not secrets
    finished_at_kills = []
    for third in range(3):
        before = len(finals(results)) if results.exists() else 0
        process = subprocess.Popen(
            [*argv, "--resume", "-q"], env=env_for(modelslab_server), stderr=subprocess.DEVNULL
        )
        polls = sum(job.polls for job in sim.jobs.values())
        deadline = time.monotonic() + 40  # start-up on a busy, shared machine
        while sum(job.polls for job in sim.jobs.values()) == polls:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        # This run's third of the jobs finishes over the next second; the kill falls at a
        # random point after the first of them is recorded (timed from the run, not from
        # its start-up, which a busy machine stretches).
        now = sim.clock()
        for rid in ids[8 * third : 8 * third + 8]:
            sim.jobs[rid].ready_at = now + rng.uniform(0.0, 1.0)
        while (len(finals(results)) if results.exists() else 0) == before:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.8))
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        check_every_final_success_has_its_images(results, images)
        finished_at_kills.append(len(finals(results)))
    # The kills fell mid-run: some ids were done and some were not.
    assert 0 < finished_at_kills[0] < len(ids), finished_at_kills
    # What a kill during a download leaves behind: cleaned up by the next run.
    stale = images / f".{ids[0]}-0.png.0badc0de.part"
    stale.write_bytes(b"\x89PNG half")
    done = command(modelslab_server, *argv[3:], "--resume")
    assert done.returncode == 0, done.stderr
    assert sorted(finals(results)) == sorted(ids)  # each final exactly once
    check_every_final_success_has_its_images(results, images)
    assert no_part_files(images)
    assert len(list(images.glob("*.png"))) == sum(sim.jobs[rid].images for rid in ids)


def test_images_that_cannot_be_saved_are_not_reported_saved(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    # A file-size limit smaller than an image stands in for a full disk; the lines go to
    # stdout (a pipe, not limited) so only the images fail.
    ids = [modelslab_server.simulator.queue() for _ in range(4)]
    images = tmp_path / "img"
    done = command(
        modelslab_server,
        "wait",
        *ids,
        "--dir",
        str(images),
        "--json",
        "-q",
        preexec_fn=lambda: file_size_limit(200),
    )
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert {line["request_id"] for line in lines} == set(ids)
    assert not any(line["final"] or line["ok"] for line in lines)
    assert all("File too large" in line["error"]["words"] for line in lines)
    assert all("--resume" in line["error"]["words"] for line in lines)
    assert str(images) in lines[0]["error"]["words"]
    assert no_part_files(images)
    assert not list(images.glob("*.png"))


def test_a_results_file_that_hits_the_size_limit_is_named_and_resume_finishes(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    ids = modelslab_server.simulator.queue_many(30, ready_in=(0.0, 0.3))
    results, images = tmp_path / "r.jsonl", tmp_path / "img"
    argv = ("wait", *ids, "-o", str(results), "--dir", str(images))
    done = command(modelslab_server, *argv, "-q", preexec_fn=lambda: file_size_limit(3000))
    assert done.returncode == 1
    assert f"{results}: cannot write: File too large" in done.stderr
    assert "--resume" in done.stderr
    assert "Traceback" not in done.stderr
    assert 0 < len(finals(results)) < 30
    check_every_final_success_has_its_images(results, images)

    done = command(modelslab_server, *argv, "--resume")
    assert done.returncode == 0, done.stderr
    assert sorted(finals(results)) == sorted(ids)
    check_every_final_success_has_its_images(results, images)
    assert no_part_files(images)


def test_ctrl_c_exits_130_and_resume_finishes(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    ids = modelslab_server.simulator.queue_many(20, ready_in=(0.1, 3.0))
    results, images = tmp_path / "r.jsonl", tmp_path / "img"
    argv = ("wait", *ids, "-o", str(results), "--dir", str(images))
    process = subprocess.Popen(
        cli(*argv), env=env_for(modelslab_server), stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 20
    while not (results.exists() and records(results)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=20)
    assert process.returncode == 130
    assert f"results so far are in {results}" in err and "--resume" in err
    assert "Traceback" not in err
    check_every_final_success_has_its_images(results, images)
    done = command(modelslab_server, *argv, "--resume", "-q")
    assert done.returncode == 0, done.stderr
    assert sorted(finals(results)) == sorted(ids)


def test_resume_saves_the_images_of_successes_recorded_without_them(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    sim = modelslab_server.simulator
    ids = [sim.queue(images=2) for _ in range(3)]
    results, images = tmp_path / "r.jsonl", tmp_path / "img"
    assert command(modelslab_server, "wait", *ids, "-o", str(results)).returncode == 0
    polls = {rid: sim.jobs[rid].polls for rid in ids}
    done = command(
        modelslab_server, "wait", *ids, "-o", str(results), "--resume", "--dir", str(images)
    )
    assert done.returncode == 0, done.stderr
    assert "6 files saved" in done.stderr
    assert len(list(images.glob("*.png"))) == 6
    assert len(records(results)) == 3  # the outcomes did not change: no line added
    assert {rid: sim.jobs[rid].polls for rid in ids} == polls  # not asked again


def test_fetch_json_is_not_a_results_file_and_says_processing_is_not_final(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    later = modelslab_server.simulator.queue(ready_in=60)
    done = command(modelslab_server, "fetch", later, "--json")
    line = json.loads(done.stdout)
    assert (line["status"], line["final"]) == ("processing", False)
    results = tmp_path / "r.jsonl"
    results.write_text(done.stdout)
    done = command(modelslab_server, "wait", later, "-o", str(results), "--resume")
    assert done.returncode == 2
    assert f"{results} line 1 was not written by `modelslab-fetch wait`" in done.stderr


@pytest.mark.parametrize(
    "content",
    [
        "hello\nworld\n",
        '{"request_id": "1", "ok": true, "final": true}\n',
        "\x00\x01\x02\xff\n",
        "[1, 2]\n",
    ],
)
def test_a_results_file_that_is_not_ours_is_refused_and_left_alone(
    modelslab_server: SimulatorServer, tmp_path: Path, content: str
) -> None:
    rid = modelslab_server.simulator.queue()
    results = tmp_path / "notes.txt"
    results.write_text(content, encoding="latin-1")
    before = results.read_bytes()
    for extra in ((), ("--resume",)):
        done = command(modelslab_server, "wait", rid, "-o", str(results), *extra)
        assert done.returncode == 2
        assert f"{results} line 1 was not written by" in done.stderr
    assert results.read_bytes() == before
    assert modelslab_server.simulator.jobs[rid].polls == 0


def test_a_second_run_on_the_same_file_is_refused_while_the_first_runs(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    rid = modelslab_server.simulator.queue(ready_in=60)  # the first run is still waiting
    results = tmp_path / "r.jsonl"
    argv = ("wait", rid, "-o", str(results), "--resume", "-q")
    first = subprocess.Popen(cli(*argv), env=env_for(modelslab_server))
    deadline = time.monotonic() + 20
    while modelslab_server.simulator.jobs[rid].polls == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    second = command(modelslab_server, *argv)
    assert second.returncode == 2
    assert f"another modelslab-fetch run is writing to {results}" in second.stderr
    first.send_signal(signal.SIGINT)
    assert first.wait(20) == 130
    assert not results.exists()  # the first run recorded nothing; the second touched nothing


def test_a_second_run_without_resume_refuses_to_append(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    sim = modelslab_server.simulator
    ids = [sim.queue() for _ in range(2)]
    results = tmp_path / "r.jsonl"
    assert command(modelslab_server, "wait", *ids, "-o", str(results)).returncode == 0
    again = command(modelslab_server, "wait", *ids, "-o", str(results))
    assert again.returncode == 2
    assert "already holds 2 results" in again.stderr
    assert "--resume" in again.stderr and "--overwrite" in again.stderr
    assert len(records(results)) == 2
    fresh = command(modelslab_server, "wait", ids[0], "-o", str(results), "--overwrite")
    assert fresh.returncode == 0
    assert finals(results) == [ids[0]]


def test_an_id_given_twice_is_waited_on_and_recorded_once(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    rid = modelslab_server.simulator.queue()
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"{rid}\n{rid}\n {rid} \n")
    results = tmp_path / "r.jsonl"
    done = command(modelslab_server, "wait", "--ids-file", str(ids_file), "-o", str(results))
    assert done.returncode == 0, done.stderr
    assert Counter(finals(results)) == {rid: 1}


def test_resume_still_exits_1_for_ids_that_failed_before(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    sim = modelslab_server.simulator
    good, bad = sim.queue(), sim.queue(final="failed")
    results = tmp_path / "r.jsonl"
    assert command(modelslab_server, "wait", good, bad, "-o", str(results)).returncode == 1
    again = command(modelslab_server, "wait", good, bad, good, "-o", str(results), "--resume")
    assert again.returncode == 1  # nothing left to do, but not everything succeeded
    assert "2 already finished (skipped, 1 of them failed)" in again.stderr
    assert "1 repeated id waited on once" in again.stderr
    assert Counter(finals(results)) == {good: 1, bad: 1}


def test_resume_does_not_ask_again_for_text_that_is_no_id(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    # Text that is no id fails for good (its line is final): a resumed run that asked
    # again would append one more line for it on every --resume, for ever.
    good = modelslab_server.simulator.queue()
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"{good}\n../../etc/passwd\n")
    results = tmp_path / "r.jsonl"
    first = command(modelslab_server, "wait", "--ids-file", str(ids_file), "-o", str(results))
    assert first.returncode == 1, first.stderr
    assert Counter(finals(results)) == {good: 1, "../../etc/passwd": 1}
    for _ in range(2):
        again = command(
            modelslab_server, "wait", "--ids-file", str(ids_file), "-o", str(results), "--resume"
        )
        assert again.returncode == 1, again.stderr  # nothing to do; not all succeeded
        assert "2 already finished (skipped, 1 of them failed)" in again.stderr
        assert len(records(results)) == 2


def run_cli(*argv: str, base_url: str) -> subprocess.CompletedProcess[str]:
    env = env_for(MODELSLAB_API_KEY="k", MODELSLAB_BASE_URL=base_url)
    return subprocess.run(
        cli(*argv), env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_same_id_on_two_endpoints_is_saved_to_two_files_and_downloaded_again_so(
    tmp_path: Path,
) -> None:
    from tests.loopback import scripted_server

    with scripted_server() as api:
        base = api.base_url
        lines = [
            {
                "status": "success",
                "id": 123,
                "output": [api.file_url("/a.png", b"the images job")],
                "fetch_result": f"{base}/v6/images/fetch",
            },
            {
                "status": "success",
                "id": 123,
                "output": [api.file_url("/b.png", b"the realtime job")],
                "fetch_result": f"{base}/v1/enterprise/realtime/fetch/123",
            },
        ]
        queued = tmp_path / "queued.jsonl"
        queued.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        results, images, again = tmp_path / "r.jsonl", tmp_path / "images", tmp_path / "again"
        done = run_cli(
            "wait", "--from-responses", str(queued), "-o", str(results), "--download",
            str(images), base_url=base,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        expected = {
            "123-0.png": b"the images job",
            "enterprise.realtime.123-0.png": b"the realtime job",
        }
        assert {p.name: p.read_bytes() for p in images.iterdir()} == expected
        claimed = sorted(name for record in records(results) for name in record["files"])
        assert claimed == sorted(expected)
        done = run_cli(
            "download", "--from-results", str(results), "--dir", str(again), base_url=base
        )
        assert done.returncode == 0, done.stderr
        assert {p.name: p.read_bytes() for p in again.iterdir()} == expected


def test_answers_that_name_another_id_cannot_make_jobs_share_a_file(tmp_path: Path) -> None:
    from tests.loopback import Reply, scripted_server

    with scripted_server() as api:
        for rid in ("1", "2", "3"):
            output = [api.file_url(f"/{rid}.png", f"job {rid}".encode())]
            api.script(rid, Reply(200, {"status": "success", "id": "999", "output": output}))
        results, images = tmp_path / "r.jsonl", tmp_path / "images"
        done = run_cli(
            "wait", "1", "2", "3", "-o", str(results), "--download", str(images),
            base_url=api.base_url,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = {p.name: p.read_bytes() for p in images.iterdir()}
    assert saved == {"1-0.png": b"job 1", "2-0.png": b"job 2", "3-0.png": b"job 3"}
    assert sorted((r["request_id"], r["files"][0]) for r in records(results)) == [
        ("1", "1-0.png"),
        ("2", "2-0.png"),
        ("3", "3-0.png"),
    ]


def test_download_refuses_private_addresses_unless_allowed(tmp_path: Path) -> None:
    from tests.loopback import scripted_server

    with scripted_server() as files:
        record = {
            "request_id": "5",
            "ok": True,
            "status": "success",
            "output": [files.file_url("/5.png", b"five")],
            "final": True,
            "source": "modelslab-fetch wait",
        }
        results = tmp_path / "r.jsonl"
        results.write_text(json.dumps(record) + "\n", encoding="utf-8")
        # The API is elsewhere (never contacted: the results file says what to fetch).
        argv = ("download", "--from-results", str(results), "--dir", str(tmp_path / "d"))
        refused = run_cli(*argv, base_url="https://api.example/api")
        assert files.gets == []
        allowed = run_cli(*argv, "--allow-private-downloads", base_url="https://api.example/api")
        assert files.gets == ["/5.png"]
    assert refused.returncode == 1
    assert "loopback" in refused.stderr
    assert "--allow-private-downloads" in refused.stderr
    assert "allow_private_downloads=True" not in refused.stderr
    assert "Traceback" not in refused.stderr
    assert allowed.returncode == 0, allowed.stderr
    assert (tmp_path / "d" / "5-0.png").read_bytes() == b"five"


# Valid JSON a buggy server may send: an emoji cut in half leaves a lone surrogate, in a
# message, a nested value, a key, an error's words.
HALF_EMOJI_FAILED = (
    b'{"status": "failed", "id": 11, "message": "GPU busy \\ud83d",'
    b' "meta": {"\\udc00k": ["v\\ud800", {"x": "\\udfff"}]}, "extra\\ud83d": "y\\ud83d"}'
)


HALF_EMOJI_SUCCESS = (
    b'{"status": "success", "id": 12, "output": ["https://cdn.example/12.png"],'
    b' "message": "done \\ud83d", "tip": "\\udbff"}'
)


HALF_EMOJI_REFUSAL = b'{"status": "error", "message": "invalid value \\ud83d"}'


def test_a_lone_surrogate_from_the_server_is_written_everywhere_and_resumed(
    tmp_path: Path,
) -> None:
    with scripted_server() as server:
        server.script("11", Reply(200, HALF_EMOJI_FAILED))
        server.script("12", Reply(200, HALF_EMOJI_SUCCESS))
        server.script("13", Reply(400, HALF_EMOJI_REFUSAL))

        def run(*argv: str) -> subprocess.CompletedProcess[str]:
            # Standard output strict (as in any UTF-8 locale), every log line on stderr.
            return command(
                None,
                *argv,
                MODELSLAB_BASE_URL=server.base_url,
                MODELSLAB_API_KEY="k",
                PYTHONIOENCODING="utf-8:strict",
                MODELSLAB_LOG="debug",
            )

        results = tmp_path / "r.jsonl"
        runs = [
            run("wait", "11", "12", "13", "-o", str(results)),
            run("wait", "11", "12", "13", "-o", str(results), "--resume"),
            run("wait", "11", "12", "13", "--json", "-v"),
            run("fetch", "11", "12", "13"),
            run("fetch", "11", "12", "13", "--json"),
        ]
    for done in runs:
        assert done.returncode == 1, done.stderr  # 11 failed and 13 was refused
        assert "unexpected error" not in done.stderr
        assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
    lines = {r["request_id"]: r for r in records(results)}
    assert set(lines) == {"11", "12", "13"} and all(r["final"] for r in lines.values())
    assert lines["11"]["message"] == "GPU busy \ufffd"
    assert lines["12"]["ok"] and lines["12"]["output"] == ["https://cdn.example/12.png"]
    assert "invalid value" in lines["13"]["error"]["message"]
    assert "3 already finished (skipped, 2 of them failed)" in runs[1].stderr
    for done in (runs[2], runs[4]):
        events = [json.loads(line) for line in done.stdout.splitlines()]
        assert {e["request_id"] for e in events if e["event"] == "result"} == {"11", "12", "13"}
    assert "GPU busy \ufffd" in runs[3].stdout


def test_every_writer_of_the_command_takes_a_lone_surrogate(tmp_path: Path) -> None:
    record = {
        "request_id": "5",
        "ok": False,
        "final": True,
        "error": {"message": "busy \ud83d", "odd\udc80key": "\udbff"},
        "source": SOURCE,
    }
    path = tmp_path / "r.jsonl"
    results = ResultsFile(path).open()
    results.append(record)
    results.close()
    assert json.loads(path.read_bytes().decode("utf-8")) == record  # exact, and UTF-8
    resumed = ResultsFile(path, resume=True).open()
    assert "5" in resumed.finished_ids() and resumed.finished_ids().failed("5")
    resumed.close()
    # Standard output as in a UTF-8 locale (strict): made forgiving by the command.
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    forgiving(out)
    emit(out, {"event": "result", **record})
    out.write("5\tfailed\tbusy \ud83d\n")
    out.flush()
    first, second = out.buffer.getvalue().decode("utf-8").splitlines()
    assert json.loads(first)["error"] == record["error"]
    assert second == "5\tfailed\tbusy \\ud83d"


@pytest.mark.soak  # nox -s soak (and CI): too slow for the default run
def test_resume_keeps_only_what_it_needs_of_a_large_results_file(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    # 200,000 final lines (46 MB): once held whole, about 410 MB at peak. The goal is
    # at most 100 MB at a million lines; here, proportionally, 20 MB over a small file.
    server = (modelslab_server.base_url, modelslab_server.api_key)
    small = tmp_path / "small"
    small.mkdir()
    baseline = peak_rss_of_resume(small, *write_finished_run(small, 10), *server)
    ids_file, results = write_finished_run(tmp_path, 200_000)
    peak = peak_rss_of_resume(tmp_path, ids_file, results, *server)
    assert peak - baseline <= 20 * 2**20, (peak, baseline)


@pytest.mark.parametrize("ending", ["\r\n", "\r", "mixed"])
def test_ids_and_results_files_read_alike_whatever_their_line_ends(
    modelslab_server: SimulatorServer, tmp_path: Path, ending: str
) -> None:
    ids = [modelslab_server.simulator.queue() for _ in range(6)]
    lines = ["# six jobs", "", ids[0], ids[1], f"  {ids[2]}  ", ids[0], *ids[3:], "# end"]
    ends = ["\n", "\r\n", "\r"] if ending == "mixed" else [ending]
    text = "".join(line + ends[n % len(ends)] for n, line in enumerate(lines))
    ids_file = tmp_path / "ids.txt"
    ids_file.write_bytes(text.encode())
    results = tmp_path / "r.jsonl"
    done = command(
        modelslab_server, "wait", "--ids-file", str(ids_file), "-o", str(results), "--json"
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert {e["total"] for e in events if e["event"] in ("progress", "finished")} == {6}
    assert events[-1]["succeeded"] == 6 and events[-1]["repeated"] == 1
    assert sorted(finals(results)) == sorted(ids)
    # The results file, its lines ended the same way (an editor, a copy through Windows).
    written = results.read_bytes().decode().splitlines()
    results.write_bytes(
        "".join(line + ends[n % len(ends)] for n, line in enumerate(written)).encode()
    )
    again = command(
        modelslab_server, "wait", "--ids-file", str(ids_file), "-o", str(results), "--resume"
    )
    assert again.returncode == 0, again.stderr
    assert "6 already finished (skipped)" in again.stderr
    assert sorted(finals(results)) == sorted(ids)  # nothing added


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), streams=Streams(out=out, err=err))
    return code, out.getvalue(), err.getvalue()


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
    finals = [str(r["request_id"]) for r in records(results) if r.get("final")]
    assert sorted(finals) == sorted(ids)


def test_a_run_killed_half_way_then_resumed_loses_nothing_and_repeats_nothing(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    sim = modelslab_server.simulator
    ids = sim.queue_many(40, ready_in=(0.1, 4.0))
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    results = tmp_path / "results.jsonl"
    argv = cli("wait", "--ids-file", str(ids_file), "-o", str(results), "-q")
    process = subprocess.Popen(argv, env=env_for(modelslab_server))
    deadline = time.monotonic() + 30
    while len(records(results) if results.exists() else []) < 10:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    finished_before = {str(r["request_id"]) for r in records(results) if r.get("final")}
    assert 10 <= len(finished_before) < 40
    polls_before = {rid: sim.jobs[rid].polls for rid in finished_before}

    code, _out, err = run("wait", "--ids-file", str(ids_file), "-o", str(results), "--resume")
    assert code == 0, err
    finals = [str(r["request_id"]) for r in records(results) if r.get("final")]
    assert sorted(finals) == sorted(ids)  # nothing lost, nothing twice
    assert {rid: sim.jobs[rid].polls for rid in finished_before} == polls_before
