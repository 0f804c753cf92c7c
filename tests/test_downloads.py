"""Image downloads: safe names, atomic files, resumable, hostile URLs kept out."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import respx

from modelslab_fetch import AsyncModelsLab, DownloadError, FetchResult, ModelsLab
from modelslab_fetch._downloads import MAX_IMAGE_BYTES, file_name_for
from tests.conftest import API_KEY

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
    with pytest.raises(DownloadError, match="ReadError"):
        await client.download(result("9", "https://cdn.example/big.png"), tmp_path)
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
    monkeypatch.setattr("modelslab_fetch._downloads.MAX_IMAGE_BYTES", 1024)
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
