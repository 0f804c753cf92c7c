"""The command line on every endpoint: `--endpoint`, and `wait --from-responses`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelslab_fetch.cli import main
from modelslab_fetch.cli._commands import Streams
from modelslab_fetch.testing._fixtures import SimulatorServer
from tests.cli_support import env_for

pytestmark = pytest.mark.integration


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), streams=Streams(out=out, err=err))
    return code, out.getvalue(), err.getvalue()


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_wait_on_an_endpoint_downloads_its_kind(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    sim = modelslab_server.simulator
    ids = [str(sim.queue_response("video", ready_in=0.1)["id"]) for _ in range(3)]
    out, folder = tmp_path / "r.jsonl", tmp_path / "videos"
    code, _out, err = run("wait", "--endpoint", "video", *ids, "-o", str(out), "--dir", str(folder))
    assert code == 0, err
    assert sorted(str(r["request_id"]) for r in records(out)) == sorted(ids)
    saved = sorted(folder.iterdir())
    assert [p.suffix for p in saved] == [".mp4"] * 3
    assert all(p.read_bytes()[4:8] == b"ftyp" for p in saved)
    assert all(sim.polls([i])[i] >= 1 for i in ids)


def test_fetch_on_a_nested_endpoint(modelslab_server: SimulatorServer) -> None:
    rid = str(modelslab_server.simulator.queue_response("enterprise.three_d", ready_in=0)["id"])
    code, out, _err = run("fetch", "--endpoint", "enterprise.three_d", rid, "--json")
    assert code == 0
    record = json.loads(out)
    assert record["status"] == "success"
    assert str(record["output"][0]).endswith(".glb")


def test_an_unknown_endpoint_is_a_usage_error_listing_the_names() -> None:
    code, _out, err = run("wait", "--endpoint", "holograms", "1")
    assert code == 2
    assert "enterprise.three_d" in err  # argparse's words, written to the command's stream


def test_wait_from_responses_each_on_its_own_endpoint_with_resume_and_download(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    sim = modelslab_server.simulator
    responses = [
        sim.queue_response("video", ready_in=0.1),
        sim.queue_response("voice", ready_in=0.2),
        sim.queue_response("enterprise.three_d", ready_in=0.1),
        sim.queue_response("images", ready_in=0.1),
    ]
    foreign = {"status": "processing", "id": 5, "fetch_result": "https://elsewhere.example/x"}
    file = tmp_path / "responses.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in [*responses, foreign]) + "not json\n")
    out, folder = tmp_path / "r.jsonl", tmp_path / "files"
    code, _out, err = run(
        "wait", "--from-responses", str(file), "-o", str(out), "--dir", str(folder)
    )
    assert code == 1  # the foreign and the broken lines failed, and said so
    done = records(out)
    assert len(done) == 6
    assert sum(bool(r["ok"]) for r in done) == 4
    assert sorted(p.suffix for p in folder.iterdir()) == [".glb", ".mp4", ".png", ".wav"]
    polls_before = sim.polls()

    code, _out, err = run("wait", "--from-responses", str(file), "-o", str(out), "--resume")
    # The broken line can never succeed: final. The foreign one could, with another
    # --base-url: tried again (nothing is sent to it).
    assert "5 already finished (skipped, 1 of them failed)" in err
    assert sim.polls() == polls_before  # nothing finished was asked again
    assert code == 1


def test_from_responses_and_ids_together_is_a_usage_error(tmp_path: Path) -> None:
    file = tmp_path / "r.jsonl"
    file.write_text("{}\n")
    code, _out, err = run("wait", "1", "--from-responses", str(file))
    assert (code, "not both" in err) == (2, True)
    code, _out, err = run("wait", "--from-responses", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "--from-responses" in err


def test_from_responses_on_stdin_in_a_real_process(modelslab_server: SimulatorServer) -> None:
    queued = modelslab_server.simulator.queue_response("v7.voice", ready_in=0.1)
    done = subprocess.run(
        [sys.executable, "-m", "modelslab_fetch", "wait", "--from-responses", "-", "--json"],
        input=json.dumps(queued) + "\n",
        capture_output=True,
        text=True,
        env=env_for(modelslab_server),
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    [record] = [event for event in events if event["event"] == "result"]
    assert record["status"] == "success"
    assert str(record["output"][0]).endswith(".wav")


def wait_command(server: SimulatorServer, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelslab_fetch", "wait", *argv],
        capture_output=True,
        text=True,
        env=env_for(server),
        timeout=60,
        check=False,
    )


def test_from_responses_honours_endpoint_keeps_successes_and_names_bad_lines_by_number(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    sim = modelslab_server.simulator
    named = sim.queue_response("video", ready_in=0.1)
    bare = sim.queue_response("video", ready_in=0.1)
    del bare["fetch_result"]  # only --endpoint can say where it waits
    already = {"status": "success", "id": 4242, "output": ["https://cdn.example/4242.mp4"]}
    lines = [
        json.dumps(named),
        "# queued this morning",
        json.dumps(bare),
        json.dumps(already),  # finished, no fetch_result: as wait_for takes it
        "not json",
        "[1, 2]",
        json.dumps({"status": "error", "message": "Invalid Api Key"}),
        json.dumps({"status": "processing", "eta": 5}),  # no id anywhere
    ]
    file = tmp_path / "responses.jsonl"
    file.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.jsonl"
    done = wait_command(
        modelslab_server, "--from-responses", str(file), "--endpoint", "video", "-o", str(out)
    )
    assert done.returncode == 1, done.stderr
    found = {str(r["request_id"]): r for r in records(out)}
    good = [str(named["id"]), str(bare["id"]), "4242"]
    assert set(found) == {*good, "line-5", "line-6", "line-7", "line-8"}
    assert all(found[rid]["ok"] for rid in good)
    assert found["4242"]["output"] == ["https://cdn.example/4242.mp4"]
    for n in (5, 6, 7, 8):
        bad = found[f"line-{n}"]
        assert bad["final"] is True and bad["ok"] is False
        words = bad["error"]["words"]  # type: ignore[index]
        assert words.startswith(f"line {n}")
        for library in ("endpoint=", "input-", "client.", "wait_for", "base_url"):
            assert library not in words, words
    assert "Invalid Api Key" in found["line-7"]["error"]["words"]  # type: ignore[index]
    polls = sim.polls()

    again = wait_command(
        modelslab_server,
        *("--from-responses", str(file), "--endpoint", "video", "-o", str(out), "--resume"),
    )
    assert again.returncode == 1  # the bad lines failed, for good
    assert "7 already finished (skipped, 4 of them failed)" in again.stderr
    assert len(records(out)) == 7  # no line tried again
    assert sim.polls() == polls


def test_a_response_only_another_endpoint_could_route_is_tried_again_by_resume(
    modelslab_server: SimulatorServer, tmp_path: Path
) -> None:
    bare = modelslab_server.simulator.queue_response("voice", ready_in=0.1)
    del bare["fetch_result"]
    file = tmp_path / "responses.jsonl"
    file.write_text(json.dumps(bare) + "\n")
    out = tmp_path / "r.jsonl"
    done = wait_command(modelslab_server, "--from-responses", str(file), "-o", str(out))
    assert done.returncode == 1
    [line] = records(out)
    assert (line["request_id"], line["final"]) == ("line-1", False)
    words = line["error"]["words"]  # type: ignore[index]
    assert words.startswith(f"line 1 (id {bare['id']}): ") and "--endpoint NAME" in words
    assert "endpoint=" not in words
    again = wait_command(
        modelslab_server,
        *("--from-responses", str(file), "-o", str(out), "--resume", "--endpoint", "voice"),
    )
    assert again.returncode == 0, again.stderr
    assert records(out)[-1]["request_id"] == str(bare["id"]) and records(out)[-1]["ok"]
