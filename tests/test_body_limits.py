"""What an answer may cost: bodies capped by their decoded size across every encoding layer
(gzip bombs included, with the peak memory measured in a subprocess), oversize bodies refused
unread, and JSON nested past any sane depth a parse error, from the library and the command.
Over real sockets on 127.0.0.1, on both HTTP backends.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import anyio
import anyio.lowlevel
import httpx
import pytest

from modelslab_fetch import AsyncModelsLab, DownloadError
from modelslab_fetch._errors import (
    BackendConnectionError,
    BackendResponseTooLarge,
    DecodedTooLarge,
    DecodingError,
)
from modelslab_fetch._http._backends._contract import (
    MAX_RESPONSE_BYTES,
    Backend,
)
from modelslab_fetch._http._decoding import BodyDecoder
from modelslab_fetch._jobs._downloads import Downloader
from tests.backends import post, result
from tests.conftest import API_KEY, FakeClock
from tests.loopback import (
    LoopbackServer,
    answer,
    bomb_stream,
    gzip_bomb,
)

pytestmark = pytest.mark.integration


Hostile = Callable[..., LoopbackServer]


GiB = 2**30


@pytest.mark.parametrize("layers", [1, 2])
async def test_a_gzip_bomb_stops_at_the_cap(
    hostile: Hostile, backend: Backend, layers: int
) -> None:
    server = hostile(gzip_bomb(GiB, layers))
    with pytest.raises(BackendResponseTooLarge) as caught:
        await post(backend, server, timeout=5)
    assert caught.value.head == bytes(4096)


async def test_a_download_bomb_stops_at_the_cap(hostile: Hostile, tmp_path: Path) -> None:
    server = hostile(gzip_bomb(GiB, 2, content_type="image/png"))
    async with httpx.AsyncClient(timeout=5) as http:
        with pytest.raises(DownloadError, match="larger than 64 MB"):
            await Downloader(http).download(result(server.url("/a.png")), tmp_path)
    assert list(tmp_path.iterdir()) == []


async def test_layered_encodings_are_decoded(hostile: Hostile, backend: Backend) -> None:
    body = b'{"status": "success", "id": 1}'
    encoded = gzip.compress(zlib.compress(body))
    server = hostile(answer(body=encoded, headers={"Content-Encoding": "deflate, gzip"}))
    response = await post(backend, server)
    assert getattr(response, "content", None) == body
    assert b"accept-encoding: gzip, deflate" in server.requests[0].lower()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("gzip", b"not gzip at all"), ("compress", b"x"), ("br", b"x")],
)
async def test_an_undecodable_body_is_aconnection_error(
    hostile: Hostile, backend: Backend, encoding: str, body: bytes
) -> None:
    server = hostile(answer(body=body, headers={"Content-Encoding": encoding}))
    with pytest.raises(BackendConnectionError):
        await post(backend, server)


_PROBE = """
import asyncio, json, sys, tempfile
import httpx
from modelslab_fetch import FetchResult
from modelslab_fetch._http._backends._aiohttp import AiohttpBackend
from modelslab_fetch._http._backends._httpx import HttpxBackend
from modelslab_fetch._jobs._downloads import Downloader

def status(field):
    # VmHWM is the peak RSS, which clear_refs resets (ru_maxrss cannot be): so peaks
    # from the imports do not count, only what the request itself added.
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)

async def main(mode, url):
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    baseline = status("VmRSS")
    try:
        if mode == "download":
            async with httpx.AsyncClient(timeout=30) as http:
                body = {"status": "success", "id": "1", "output": [url]}
                result = FetchResult.from_body(body, request_id="1")
                with tempfile.TemporaryDirectory() as folder:
                    await Downloader(http).download(result, folder)
        else:
            backend = AiohttpBackend(max_connections=1) if mode == "aiohttp" else (
                HttpxBackend(httpx.AsyncClient(), owned=True))
            try:
                await backend.post(url, b"{}", {}, httpx.Timeout(30))
            finally:
                await backend.aclose()
        error = None
    except Exception as exc:
        error = type(exc).__name__
    peak = status("VmHWM")
    print(json.dumps({"growth": peak - baseline, "error": error}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def probe(mode: str, url: str) -> dict[str, object]:
    """Run one request in a fresh interpreter; return its peak RSS growth and error."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "NO_PROXY": "*"},
    )
    outcome: dict[str, object] = json.loads(done.stdout)
    outcome["seconds"] = time.monotonic() - started
    return outcome


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("mode", ["aiohttp", "httpx", "download"])
@pytest.mark.parametrize(("size", "layers"), [(GiB, 1), (4 * GiB, 2)], ids=["1GiB-1", "4GiB-2"])
def test_bombs_leave_memory_flat(
    hostile: Hostile, mode: str, size: int, layers: int, capsys: pytest.CaptureFixture[str]
) -> None:
    server = hostile(gzip_bomb(size, layers))
    outcome = probe(mode, server.url("/a.png"))
    expected = "DownloadError" if mode == "download" else "BackendResponseTooLarge"
    assert outcome["error"] == expected
    growth = outcome["growth"]
    assert isinstance(growth, int)
    assert growth < 100 * 2**20, f"peak RSS grew by {growth / 2**20:.0f} MB"
    with capsys.disabled():
        print(f"\n  bomb {size // GiB} GiB x{layers} via {mode}: peak RSS +{growth / 2**20:.1f} MB")


def decode(encoding: str | None, data: bytes, limit: int = 2**30, chunk: int = 7) -> bytes:
    decoder = BodyDecoder(encoding, limit)
    out = bytearray()
    for start in range(0, len(data), chunk):
        for piece in decoder.feed(data[start : start + chunk]):
            out += piece
    for piece in decoder.finish():
        out += piece
    return bytes(out)


TEXT = b"modelslab " * 5000


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "data", "expected"),
    [
        (None, TEXT, TEXT),
        ("identity", TEXT, TEXT),
        ("gzip", gzip.compress(TEXT), TEXT),
        ("x-gzip", gzip.compress(TEXT), TEXT),
        ("GZIP, gzip", gzip.compress(gzip.compress(TEXT)), TEXT),
        ("deflate", zlib.compress(TEXT), TEXT),
        ("deflate", raw_deflate(TEXT), TEXT),
        ("gzip", gzip.compress(TEXT) + gzip.compress(b"!"), TEXT + b"!"),
        ("gzip", gzip.compress(TEXT) + b"\x00" * 8, TEXT),
        ("gzip", b"", b""),
    ],
)
def test_the_decoder_undoes_each_encoding(
    encoding: str | None, data: bytes, expected: bytes
) -> None:
    assert decode(encoding, data) == expected
    assert decode(encoding, data, chunk=2**16) == expected


@pytest.mark.parametrize(
    ("encoding", "data", "message"),
    [
        ("gzip", b"plain text", "not valid gzip"),
        ("gzip", gzip.compress(TEXT)[:-12], "ends inside"),
        ("deflate", b"\x78", "ends inside"),
        ("br", b"x", "br-encoded"),
        ("zstd", b"x", "zstd-encoded"),
        ("compress", b"x", "unknown Content-Encoding"),
    ],
)
def test_the_decoder_refuses_what_it_cannot_decode(
    encoding: str, data: bytes, message: str
) -> None:
    with pytest.raises(DecodingError, match=message):
        decode(encoding, data)


def test_the_decoder_counts_decoded_bytes_across_layers() -> None:
    bomb = b"".join(bomb_stream(GiB, 2))
    assert len(bomb) < 10_000
    with pytest.raises(DecodedTooLarge) as caught:
        decode("gzip, gzip", bomb, limit=MAX_RESPONSE_BYTES, chunk=2**16)
    assert caught.value.head == bytes(4096)
    assert caught.value.limit == MAX_RESPONSE_BYTES


async def test_a_gzip_bomb_through_the_client_stops_at_the_cap(clock: FakeClock) -> None:
    from modelslab_fetch import ResponseParseError
    from tests.loopback import Reply, scripted_server

    bomb = gzip.compress(b'{"status": "success", "x": "' + b"0" * (11 * 2**20) + b'"}')
    assert len(bomb) < 100_000
    with scripted_server() as server:
        server.script("1", Reply(200, bomb, {"content-encoding": "gzip"}))
        async with AsyncModelsLab(api_key=API_KEY, base_url=server.base_url, clock=clock) as c:
            with pytest.raises(ResponseParseError, match="larger than 10 MB"):
                await c.images.fetch(1)
    await anyio.lowlevel.checkpoint()


def deep_body(levels: int) -> bytes:
    """A success whose `meta` nests `levels` lists deep: 600 levels is a 1.3 kB body."""
    head = b'{"status": "success", "id": 1, "output": ["https://cdn.example/1.png"], "meta": '
    return head + b"[" * levels + b"]" * levels + b"}"


# 600 passes json.loads and used to break every later walk of the value (redaction,
# pydantic); 5,000 trips json's own recursion guard.
DEPTHS = pytest.mark.parametrize("levels", [65, 600, 5000])


@DEPTHS
@pytest.mark.parametrize("http_backend", ["aiohttp", "httpx"])
async def test_deeply_nested_json_is_a_parse_error_from_fetch_wait_and_wait_many(
    hostile: Hostile, levels: int, http_backend: Literal["aiohttp", "httpx"]
) -> None:
    from modelslab_fetch import ResponseParseError

    server = hostile(answer(body=deep_body(levels)))
    async with AsyncModelsLab(
        base_url=server.base_url, api_key="k", max_retries=0, http_backend=http_backend
    ) as client:
        with pytest.raises(ResponseParseError, match="nested more than 64 levels deep"):
            await client.images.fetch("1")
        with pytest.raises(ResponseParseError, match="nested more than 64 levels deep"):
            await client.images.wait("1", timeout=5)
        async with client.images.wait_many(["1", "2"], timeout=5) as batch:
            outcomes = [outcome async for outcome in batch]
    assert sorted(o.request_id for o in outcomes) == ["1", "2"]
    assert all(isinstance(o.error, ResponseParseError) for o in outcomes)


def test_json_nested_just_within_the_limit_still_reads() -> None:
    from modelslab_fetch._http._answers import decode_response
    from modelslab_fetch._http._backends._contract import RawResponse

    body = deep_body(63)  # 63 lists inside the object: 64 levels
    decoded = decode_response(
        RawResponse(200, {}, body, "http://127.0.0.1/api"), body, request_id="1", now=0.0
    )
    assert isinstance(decoded, dict)
    assert decoded["status"] == "success"


@DEPTHS
def test_deeply_nested_json_fails_the_id_on_the_command_line(
    hostile: Hostile, levels: int, tmp_path: Path
) -> None:
    from tests.cli_support import command

    server = hostile(answer(body=deep_body(levels)))
    url = server.base_url
    fetched = command(None, "fetch", "1", MODELSLAB_BASE_URL=url, MODELSLAB_API_KEY="k")
    out = str(tmp_path / "r.jsonl")
    waited = command(
        None, "wait", "1", "2", "-o", out, MODELSLAB_BASE_URL=url, MODELSLAB_API_KEY="k"
    )
    for done in (fetched, waited):
        assert done.returncode == 1, done.stderr
        assert "unexpected" not in done.stderr
        assert "Traceback" not in done.stderr
    assert "nested more than 64 levels" in fetched.stdout + fetched.stderr
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert sorted(record["request_id"] for record in records) == ["1", "2"]
    assert all("nested more than 64 levels" in json.dumps(record) for record in records)


def test_deeply_nested_generation_responses_fail_their_line_on_the_command_line(
    tmp_path: Path,
) -> None:
    from tests.cli_support import command

    queued = {"status": "processing", "id": 1, "fetch_result": "http://127.0.0.1:9/api/v6/x/1"}
    lines = [
        json.dumps(queued)[:-1] + ', "meta": ' + "[" * 600 + "]" * 600 + "}",
        '{"status": "processing", "id": 2, "meta": ' + "[" * 5000 + "]" * 5000 + "}",
    ]
    source = tmp_path / "queued.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.jsonl"
    done = command(
        None,
        "wait",
        "--from-responses",
        str(source),
        "-o",
        str(out),
        MODELSLAB_BASE_URL="http://127.0.0.1:9/api",  # never contacted: nothing is sent
        MODELSLAB_API_KEY="k",
    )
    assert done.returncode == 1, done.stderr
    assert "unexpected" not in done.stderr
    assert "Traceback" not in done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2
    assert not any(record["ok"] for record in records)
