"""Image downloads: names from what was asked, atomic files, retries, hostile URLs kept out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelslab_fetch import (
    AsyncModelsLab,
    DownloadError,
    FetchResult,
    ModelsLab,
    RetryPolicy,
)
from modelslab_fetch._endpoints.table import endpoint_table
from modelslab_fetch._jobs._downloads import MAX_IMAGE_BYTES, file_name_for
from modelslab_fetch._jobs._part_files import PART_FILE, PartFile, remove_abandoned
from tests.cli_support import cli, env_for
from tests.conftest import API_KEY, BASE_URL, IMAGES_URL, FakeClock
from tests.loopback import (
    Behaviour,
    LoopbackServer,
    Peer,
    answer,
    raw,
    response_head,
    scripted_server,
)

Hostile = Callable[..., LoopbackServer]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def result(request_id: str, *urls: str) -> FetchResult:
    body = {"status": "success", "id": request_id, "output": list(urls)}
    return FetchResult.from_body(body, request_id=request_id)


async def test_images_are_saved_under_safe_names(
    tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.get("https://cdn.example/a/6ef3-0.png").respond(content=PNG)
    router.get("https://cdn.example/a/6ef3-1.jpg").respond(content=b"jpeg")
    paths = await client.download(
        result("77", "https://cdn.example/a/6ef3-0.png", "https://cdn.example/a/6ef3-1.jpg"),
        tmp_path / "out",
    )
    assert [p.name for p in paths] == ["77-0.png", "77-1.jpg"]
    assert paths[0].read_bytes() == PNG
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["77-0.png", "77-1.jpg"]


async def test_complete_files_are_not_downloaded_again(
    tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    route = router.get("https://cdn.example/x.png").respond(content=PNG)
    first = await client.download(result("5", "https://cdn.example/x.png"), tmp_path)
    again = await client.download(result("5", "https://cdn.example/x.png"), tmp_path)
    assert first == again
    assert route.call_count == 1


async def test_an_interrupted_download_leaves_no_file_and_resumes(
    tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    class BrokenStream(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield b"\x89PNG partial"
            raise httpx.ReadError("connection reset")

    route = router.get("https://cdn.example/big.png")
    route.side_effect = [
        httpx.Response(200, stream=BrokenStream()),
        httpx.Response(200, content=PNG),
    ]
    (tmp_path / ".9-0.png.dead.part").write_bytes(b"left by a killed run")
    async with AsyncModelsLab(api_key=API_KEY, max_retries=0) as no_retries:
        with pytest.raises(DownloadError, match="ReadError"):
            await no_retries.download(result("9", "https://cdn.example/big.png"), tmp_path)
    assert not (tmp_path / "9-0.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == [".9-0.png.dead.part"]  # ours cleaned up
    paths = await client.download(result("9", "https://cdn.example/big.png"), tmp_path)
    assert paths[0].read_bytes() == PNG


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.example/../../etc/passwd",
        "http://cdn.example/a/..%2F..%2F..%2Fetc%2Fcron.d%2Fx.png",
        "http://cdn.example/%2Fetc%2Fpasswd",
        "http://cdn.example/CON.png",
        "http://cdn.example/.bashrc",
        "http://cdn.example/evil.png%00.sh",
        "http://cdn.example/",
    ],
)
async def test_hostile_url_paths_cannot_escape_the_folder(
    url: str, tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.get(url__startswith="http://cdn.example/").respond(content=PNG)
    folder = tmp_path / "out"
    paths = await client.download(result("12", url), folder)
    assert len(paths) == 1
    assert paths[0].parent == folder
    assert paths[0].name.startswith("12-0.")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "javascript:alert(1)", "ftp://cdn.example/x.png", "/etc/passwd"]
)
async def test_odd_schemes_are_refused(
    url: str, tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    with pytest.raises(DownloadError, match="only http"):
        await client.download(result("3", url), tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("hostile_id", ["../../x", "/abs", "a b", "CON\x00", "x" * 300])
def test_hostile_ids_become_safe_names(hostile_id: str) -> None:
    name = file_name_for(hostile_id, 0, "https://cdn.example/x.png")
    assert "/" not in name and "\x00" not in name and not name.startswith(".")
    assert name.endswith("-0.png")


def test_unknown_extensions_become_bin() -> None:
    assert file_name_for("1", 2, "https://cdn.example/x.php?a=b") == "1-2.bin"


async def test_http_errors_and_oversized_images_are_download_errors(
    tmp_path: Path,
    client: AsyncModelsLab,
    router: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    router.get("https://cdn.example/gone.png").respond(404)
    router.get("https://cdn.example/huge.png").respond(content=b"x" * 2048)
    with pytest.raises(DownloadError, match="HTTP 404"):
        await client.download(result("1", "https://cdn.example/gone.png"), tmp_path)
    monkeypatch.setattr("modelslab_fetch._jobs._downloads.MAX_IMAGE_BYTES", 1024)
    with pytest.raises(DownloadError, match="larger than"):
        await client.download(result("2", "https://cdn.example/huge.png"), tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert MAX_IMAGE_BYTES > 1024


async def test_download_many_reports_each_result(
    tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.get("https://cdn.example/ok.png").respond(content=PNG)
    router.get("https://cdn.example/bad.png").respond(500)
    done = await client.download_many(
        [result("1", "https://cdn.example/ok.png"), result("2", "https://cdn.example/bad.png")],
        tmp_path,
    )
    assert [(d.request_id, d.ok) for d in done] == [("1", True), ("2", False)]
    assert isinstance(done[1].error, DownloadError)


def test_sync_downloads(tmp_path: Path, router: respx.MockRouter) -> None:
    router.get("https://cdn.example/s.png").respond(content=PNG)
    with ModelsLab(api_key=API_KEY) as client:
        assert client.download(result("4", "https://cdn.example/s.png"), tmp_path)[0].exists()
        assert client.download_many([result("5", "https://cdn.example/s.png")], tmp_path)[0].ok


async def test_malformed_image_urls_are_download_errors_and_spare_the_others(
    tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.get("https://cdn.example/ok.png").respond(content=b"\x89PNG")

    def result(rid: str, url: str) -> FetchResult:
        body = {"status": "success", "id": rid, "output": [url]}
        return FetchResult.from_body(body, request_id=rid)

    with pytest.raises(DownloadError):
        await client.download(result("1", "http://[::1/x.png"), tmp_path)
    done = await client.download_many(
        [result("1", "http://[::1/x.png"), result("2", "https://cdn.example/ok.png")], tmp_path
    )
    assert [d.ok for d in done] == [False, True]


# --- file names: from what the caller asked, never from the answer ------------------------


async def test_files_are_named_from_the_id_asked_never_from_the_answer(
    tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    # A server (a bug, a proxy's cache) answers three ids with one body id: three jobs,
    # three files, each with its own content.
    def answer_999(request: httpx.Request) -> httpx.Response:
        asked = json.loads(request.content)["request_id"]
        output = [f"https://cdn.example/{asked}.png"]
        return httpx.Response(200, json={"status": "success", "id": "999", "output": output})

    router.post(IMAGES_URL).side_effect = answer_999
    for rid in ("1", "2", "3"):
        router.get(f"https://cdn.example/{rid}.png").respond(content=rid.encode())
    results = [await client.images.fetch(rid) for rid in ("1", "2", "3")]
    assert [r.id for r in results] == ["999", "999", "999"]
    assert [r.request_id for r in results] == ["1", "2", "3"]
    done = await client.download_many(results, tmp_path)
    assert [(d.request_id, d.ok) for d in done] == [("1", True), ("2", True), ("3", True)]
    saved = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert saved == {"1-0.png": b"1", "2-0.png": b"2", "3-0.png": b"3"}


async def test_the_same_id_on_two_endpoints_gets_two_files(
    tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    # ModelsLab's ids are per product: 123 on images and 123 on realtime are two jobs.
    realtime_url = f"{BASE_URL}/v1/enterprise/realtime/fetch/123"
    router.post(IMAGES_URL).respond(
        json={"status": "success", "id": 123, "output": ["https://cdn.example/a.png"]}
    )
    router.post(realtime_url).respond(
        json={"status": "success", "id": 123, "output": ["https://cdn.example/b.png"]}
    )
    router.get("https://cdn.example/a.png").respond(content=b"images")
    router.get("https://cdn.example/b.png").respond(content=b"realtime")
    router.get("https://cdn.example/c.png").respond(content=b"routed")
    images = await client.images.fetch(123)
    realtime = await client.enterprise.realtime.fetch(123)
    assert (images.endpoint_name, realtime.endpoint_name) == ("images", "enterprise.realtime")
    first = await client.download(images, tmp_path)
    second = await client.download(realtime, tmp_path)
    assert [p.name for p in first + second] == ["123-0.png", "enterprise.realtime.123-0.png"]
    assert [p.read_bytes() for p in first + second] == [b"images", b"realtime"]
    # A generation response routed by its fetch_result is named the same way.
    queued = {
        "status": "success",
        "id": 7,
        "output": ["https://cdn.example/c.png"],
        "fetch_result": f"{BASE_URL}/v1/enterprise/video/fetch/7",
    }
    routed = await client.wait_for(queued)
    assert (routed.request_id, routed.endpoint_name) == ("7", "enterprise.video")
    assert [p.name for p in await client.download(routed, tmp_path)] == ["enterprise.video.7-0.png"]


def test_the_blocking_client_names_files_the_same_way(
    tmp_path: Path, router: respx.MockRouter
) -> None:
    router.post(f"{BASE_URL}/v6/video/fetch/5").respond(
        json={"status": "success", "id": "other", "output": ["https://cdn.example/v.mp4"]}
    )
    router.get("https://cdn.example/v.mp4").respond(content=b"mp4")
    with ModelsLab(api_key=API_KEY) as client:
        video = client.video.fetch(5)
        assert [p.name for p in client.download(video, tmp_path)] == ["video.5-0.mp4"]


_ENDPOINTS = [None, *endpoint_table()]
_IDS = st.one_of(
    st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True),
    st.text(min_size=1, max_size=12).filter(lambda t: t.strip() == t and t),
)


@settings(max_examples=300, deadline=None)
@given(
    st.tuples(st.sampled_from(_ENDPOINTS), _IDS, st.integers(0, 12)),
    st.tuples(st.sampled_from(_ENDPOINTS), _IDS, st.integers(0, 12)),
)
def test_no_two_jobs_share_a_file_name(
    one: tuple[str | None, str, int], other: tuple[str | None, str, int]
) -> None:
    def job(endpoint: str | None, request_id: str, index: int) -> tuple[str, str, int]:
        return (endpoint or "images", request_id, index)

    def name(endpoint: str | None, request_id: str, index: int) -> str:
        return file_name_for(request_id, index, "https://cdn.example/x.png", endpoint=endpoint)

    if job(*one) != job(*other):
        assert name(*one) != name(*other)
    assert not name(*one).startswith(".") and "/" not in name(*one)


# --- retries: a CDN that fails once does not fail the file --------------------------------

LOOPBACK_API = "http://127.0.0.1:9/api"  # never contacted; its outputs may be on loopback
QUICK = RetryPolicy(backoff_initial=0.01, backoff_max=0.05, jitter=0.0)


def first_then(first: Behaviour, then: Behaviour) -> Behaviour:
    """A behaviour: the first connection gets `first`, every later one `then`."""
    seen: list[Peer] = []

    async def behave(peer: Peer) -> None:
        seen.append(peer)
        await (first if len(seen) == 1 else then)(peer)

    return behave


async def drop(peer: Peer) -> None:
    """Read the request, then close the connection without a word."""
    await peer.read_request()
    peer.writer.close()


PNG_ANSWER = answer(body=PNG, headers={"Content-Type": "image/png"})


@pytest.mark.parametrize(
    "failure",
    [
        answer(503, body=b"busy"),
        answer(502, b"<html>bad gateway</html>", {"Content-Type": "text/html"}),
        drop,
    ],
    ids=["503", "502 edge page", "dropped connection"],
)
async def test_a_cdn_that_fails_once_then_serves_saves_the_file(
    hostile: Hostile, tmp_path: Path, failure: Behaviour
) -> None:
    server = hostile(first_then(failure, PNG_ANSWER))
    async with AsyncModelsLab(api_key=API_KEY, base_url=LOOPBACK_API, retry_policy=QUICK) as c:
        paths = await c.download(result("8", server.url("/a.png")), tmp_path)
    assert paths[0].read_bytes() == PNG
    assert len(server.requests) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["8-0.png"]  # no .part left behind


async def test_download_retries_follow_max_retries_and_say_how_many_were_made(
    hostile: Hostile, tmp_path: Path
) -> None:
    server = hostile(answer(503, body=b"busy"))
    options = {"api_key": API_KEY, "base_url": LOOPBACK_API, "retry_policy": QUICK}
    async with AsyncModelsLab(max_retries=2, **options) as client:  # type: ignore[arg-type]
        with pytest.raises(DownloadError) as caught:
            await client.download(result("8", server.url("/a.png")), tmp_path)
    assert len(server.requests) == 3
    assert caught.value.status_code == 503
    assert "HTTP 503" in str(caught.value) and "after 3 attempts" in str(caught.value)
    async with AsyncModelsLab(max_retries=0, **options) as client:  # type: ignore[arg-type]
        with pytest.raises(DownloadError, match="HTTP 503"):
            await client.download(result("8", server.url("/a.png")), tmp_path)
    assert len(server.requests) == 4
    assert list(tmp_path.iterdir()) == []


async def test_a_missing_file_is_not_retried(hostile: Hostile, tmp_path: Path) -> None:
    server = hostile(answer(404, body=b"gone"))
    async with AsyncModelsLab(api_key=API_KEY, base_url=LOOPBACK_API, retry_policy=QUICK) as c:
        with pytest.raises(DownloadError, match="HTTP 404") as caught:
            await c.download(result("8", server.url("/a.png")), tmp_path)
    assert len(server.requests) == 1
    assert "attempts" not in str(caught.value)


async def test_a_download_waits_what_the_cdn_states_unless_it_is_too_long(
    tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.get("https://cdn.example/r.png")
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200, content=PNG),
    ]
    paths = await client.download(result("1", "https://cdn.example/r.png"), tmp_path)
    assert paths[0].read_bytes() == PNG
    assert clock.sleeps == [7.0]
    router.get("https://cdn.example/later.png").respond(429, headers={"Retry-After": "3600"})
    with pytest.raises(DownloadError, match="HTTP 429") as caught:
        await client.download(result("2", "https://cdn.example/later.png"), tmp_path)
    assert caught.value.retry_after == 3600
    assert clock.sleeps == [7.0]  # an hour is not slept through, as for fetch()


# --- unusable output URLs: always a DownloadError that says why ---------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://cdn.example:99999/x.png", "port 99999 is not a TCP port"),
        ("http://cdn.example:0/x.png", "port 0 is not a TCP port"),
        ("http://xn--ls8h.la/x.png", "not a valid international domain name"),
        ("http://xn--/x.png", "not a valid host name"),
        ("http://ex ample.com/x.png", "not a valid host name"),
        ("http://exa\x00mple.com/x.png", "control or invalid character"),
        ("http://cdn.example/a\nb.png", "control or invalid character"),
        ("http:///x.png", "it has no host"),
        ("http://user:pw@cdn.example/x.png", "user name or password"),
        ("http://cdn.example@evil.example/x.png", "user name or password"),
        ("https://[::1/x.png", "not a URL"),
        ("http://1.2.3.4.5/x.png", "neither an IP address nor a host name"),
    ],
)
async def test_unusable_output_urls_are_download_errors_saying_why(
    url: str, why: str, tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.route().respond(content=PNG)
    with pytest.raises(DownloadError) as caught:
        await client.download(result("3", url), tmp_path)
    assert why in str(caught.value)
    assert caught.value.url == url
    assert not router.calls
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "location",
    [b"http://127.0.0.1:99999/x.png", b"http://xn--ls8h.la/x.png", b"http://exa\xc3mple/x.png"],
)
async def test_a_redirect_to_an_unusable_url_is_a_download_error(
    hostile: Hostile, tmp_path: Path, location: bytes
) -> None:
    # Over a real socket: the port was an ExceptionGroup (OverflowError) from the connect.
    hop = hostile(
        raw(b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n")
    )
    async with AsyncModelsLab(api_key=API_KEY, base_url=LOOPBACK_API, retry_policy=QUICK) as c:
        with pytest.raises(DownloadError) as caught:
            await c.download(result("4", hop.url("/a.png")), tmp_path)
    assert hop.url("/a.png") in str(caught.value)
    assert list(tmp_path.iterdir()) == []


_URL_TEXT = st.one_of(
    st.builds(
        "{}://{}{}{}".format,
        st.sampled_from(["http", "https", "HTTP", "ftp", ""]),
        st.one_of(
            st.sampled_from(["cdn.example", "xn--", "xn--ls8h.la", "exämple.com", "[::1", "@", ""]),
            st.text(max_size=10),
        ),
        st.one_of(st.just(""), st.integers(-5, 10**6).map(":{}".format), st.text(max_size=4)),
        st.one_of(st.just("/x.png"), st.text(max_size=10).map("/{}".format)),
    ),
    st.text(max_size=30),
)


_examples = iter(range(10**9))  # a fresh id per example: no file is "already there"


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(url=_URL_TEXT)
async def test_any_output_url_is_saved_or_a_download_error(
    url: str, tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    # One client for every example (the fixtures are made once per test): each is a
    # download through the whole check, refused (private addresses too) or fetched.
    router.route().respond(content=PNG)
    try:
        await client.download(result(str(next(_examples)), url), tmp_path / "out")
    except DownloadError as exc:
        assert exc.message  # noqa: PT017 - every refusal says why


# --- .part files: only those nobody writes any more are removed ----------------------------

_WRITER = """
import sys
import anyio
from modelslab_fetch import AsyncModelsLab, FetchResult

async def main(url, folder):
    body = {"status": "success", "id": "slow", "output": [url]}
    result = FetchResult.from_body(body, request_id="slow")
    async with AsyncModelsLab(api_key="k", base_url="http://127.0.0.1:9/api") as client:
        paths = await client.download(result, folder)
    print(paths[0].name)

anyio.run(main, sys.argv[1], sys.argv[2])
"""


def held_body(body: bytes, release: threading.Event) -> Behaviour:
    """A behaviour: headers and half of `body`, the rest once `release` (an Event) is set."""

    async def behave(peer: Peer) -> None:
        await peer.read_request()
        head = {"Content-Type": "image/png", "Content-Length": str(len(body))}
        await peer.send(response_head(200, head) + body[: len(body) // 2])
        while not release.is_set():  # noqa: ASYNC110 - set by the test, on another thread
            await asyncio.sleep(0.02)
        await peer.send(body[len(body) // 2 :])
        await peer.wait_for_close()

    return behave


def start_writer(url: str, folder: Path) -> subprocess.Popen[str]:
    """Another process downloading `url` into `folder`; returns once its .part file exists."""
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, url, str(folder)],
        env=env_for(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not [p for p in folder.iterdir() if PART_FILE.fullmatch(p.name)]:
        assert writer.poll() is None, writer.communicate()
        assert time.monotonic() < deadline, "the writer never started its download"
        time.sleep(0.02)
    return writer


def run_download_command(folder: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`modelslab-fetch download --from-results ... --dir folder`, for another file."""
    with scripted_server() as api:
        record = {
            "request_id": "fast",
            "ok": True,
            "status": "success",
            "output": [api.file_url("/fast.png", b"fast")],
            "final": True,
            "source": "modelslab-fetch wait",
        }
        results = tmp_path / "results.jsonl"
        results.write_text(json.dumps(record) + "\n", encoding="utf-8")
        env = env_for(MODELSLAB_API_KEY="k", MODELSLAB_BASE_URL=api.base_url)
        return subprocess.run(
            cli("download", "--from-results", str(results), "--dir", str(folder)),
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


def test_a_download_command_leaves_the_part_files_of_a_run_still_writing(
    hostile: Hostile, tmp_path: Path
) -> None:
    release = threading.Event()
    server = hostile(held_body(PNG, release))
    folder = tmp_path / "images"
    folder.mkdir()
    writer = start_writer(server.url("/slow.png"), folder)
    try:
        part = next(p for p in folder.iterdir() if PART_FILE.fullmatch(p.name))
        done = run_download_command(folder, tmp_path)
        assert done.returncode == 0, done.stderr
        assert part.exists()  # the other run's file, still being written, is still there
    finally:
        release.set()
    out, err = writer.communicate(timeout=30)
    assert writer.returncode == 0, err
    assert out.strip() == "slow-0.png"
    assert (folder / "slow-0.png").read_bytes() == PNG
    assert sorted(p.name for p in folder.iterdir()) == ["fast-0.png", "slow-0.png"]


def test_a_download_command_removes_the_part_files_of_a_killed_run(
    hostile: Hostile, tmp_path: Path
) -> None:
    server = hostile(held_body(PNG, threading.Event()))  # never finishes
    folder = tmp_path / "images"
    folder.mkdir()
    writer = start_writer(server.url("/slow.png"), folder)
    os.kill(writer.pid, signal.SIGKILL)
    writer.communicate(timeout=10)
    assert [p for p in folder.iterdir() if PART_FILE.fullmatch(p.name)]  # left behind
    (folder / ".old-0.png.0123abcd.part").write_bytes(b"from a version without locks")
    done = run_download_command(folder, tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["fast-0.png"]


def test_a_part_file_open_in_this_process_is_kept_and_a_renamed_one_untouched(
    tmp_path: Path,
) -> None:
    part = PartFile(tmp_path / "1-0.png")
    part.file.write(b"half")
    assert remove_abandoned(tmp_path) == 0
    assert part.path.exists()
    part.commit()
    assert remove_abandoned(tmp_path) == 0
    assert (tmp_path / "1-0.png").read_bytes() == b"half"
    os.mkfifo(tmp_path / ".2-0.png.00000000.part")  # not a file of ours: never opened to block
    assert remove_abandoned(tmp_path) == 0


def test_a_part_file_taken_by_a_cleaner_before_its_writer_locked_it_is_made_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelslab_fetch._jobs import _part_files

    (tmp_path / ".1-0.png.00000000.part").write_bytes(b"someone else's")
    names = iter(["00000000", "11111111", "22222222"])  # the first is taken already
    monkeypatch.setattr(
        "modelslab_fetch._jobs._part_files.secrets.token_hex", lambda _n: next(names)
    )
    real_lock = _part_files._lock
    raced: list[str] = []

    def cleaner_first(fd: int) -> bool:
        # A cleaner removes the new file in the instant between its creation and its lock.
        if not raced:
            raced.append("removed")
            (tmp_path / ".1-0.png.11111111.part").unlink()
        return real_lock(fd)

    monkeypatch.setattr(_part_files, "_lock", cleaner_first)
    part = PartFile(tmp_path / "1-0.png")
    assert raced == ["removed"]
    assert part.path.name == ".1-0.png.22222222.part"
    assert (tmp_path / ".1-0.png.00000000.part").read_bytes() == b"someone else's"
    part.file.write(b"mine")
    assert part.commit().read_bytes() == b"mine"
    assert remove_abandoned(tmp_path) == 1  # the other, unlocked: nobody writes it
    assert [p.name for p in tmp_path.iterdir()] == ["1-0.png"]
