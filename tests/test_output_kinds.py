"""Outputs of every kind keep their real extension; the content type names the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
import respx

from modelslab_fetch import AsyncModelsLab, FetchResult
from modelslab_fetch._jobs._downloads import extension_for_content_type, file_name_for


def result(request_id: str, *urls: str) -> FetchResult:
    body = {"status": "success", "id": request_id, "output": list(urls)}
    return FetchResult.from_body(body, request_id=request_id)


@pytest.mark.parametrize(
    "ext",
    [
        ".mp4",
        ".webm",
        ".gif",
        ".mov",
        ".wav",
        ".mp3",
        ".ogg",
        ".flac",
        ".m4a",
        ".glb",
        ".gltf",
        ".obj",
        ".fbx",
        ".stl",
        ".ply",
        ".usdz",
        ".zip",
        ".png",
        ".jpg",
        ".jpeg",
        ".webp",
    ],
)
def test_known_output_kinds_keep_their_extension(ext: str) -> None:
    assert file_name_for("7", 0, f"https://cdn.example/a/b{ext.upper()}?x=1") == f"7-0{ext}"


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example/x.exe",
        "https://cdn.example/..%2F..%2Fetc%2Fpasswd",
        "https://cdn.example/x.wav%00.sh",
    ],
)
def test_other_extensions_are_not_kept(url: str) -> None:
    assert file_name_for("7", 1, url) == "7-1.bin"


def test_content_types_name_kinds_they_know() -> None:
    assert extension_for_content_type("audio/mpeg") == ".mp3"
    assert extension_for_content_type("Model/GLTF-Binary; charset=binary") == ".glb"
    assert extension_for_content_type("application/x-evil") is None
    assert extension_for_content_type(None) is None


async def test_a_url_without_a_kind_is_named_by_its_content_type_once(
    tmp_path: Path, client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    audio = router.get("https://cdn.example/get?id=1").respond(
        content=b"ID3 mp3 bytes", headers={"content-type": "audio/mpeg"}
    )
    odd = router.get("https://cdn.example/blob/2").respond(
        content=b"??", headers={"content-type": "application/x-evil"}
    )
    res = result("31", "https://cdn.example/get?id=1", "https://cdn.example/blob/2")
    first = await client.download(res, tmp_path)
    assert [p.name for p in first] == ["31-0.mp3", "31-1.bin"]
    assert first[0].read_bytes() == b"ID3 mp3 bytes"
    again = await client.download(res, tmp_path)
    assert again == first
    assert (audio.call_count, odd.call_count) == (1, 1)  # complete files are kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["31-0.mp3", "31-1.bin"]
