"""The first download into a folder removes the `.part` files a killed run left there.

Such a file is never complete, and its image is downloaded again; a `.part` file someone
still writes (locked by its writer, in this process or another) is left alone, and so is
every file that is not a download's temporary file. Done by the library itself, so a
program (or the command line) need not know the files' names or locks.
"""

from __future__ import annotations

from pathlib import Path

import respx

from modelslab_fetch import AsyncModelsLab, FetchResult, ModelsLab
from modelslab_fetch._jobs._part_files import PartFile
from tests.loopback import scripted_server

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def result(request_id: str, url: str) -> FetchResult:
    body = {"status": "success", "id": request_id, "output": [url]}
    return FetchResult.from_body(body, request_id=request_id)


async def test_the_first_download_into_a_folder_removes_abandoned_part_files(
    tmp_path: Path, router: respx.MockRouter
) -> None:
    router.get("https://cdn.example/1.png").respond(content=PNG, content_type="image/png")
    router.get("https://cdn.example/2.png").respond(content=PNG, content_type="image/png")
    abandoned = tmp_path / ".7-0.png.0badc0de.part"  # a killed run's: nobody holds its lock
    abandoned.write_bytes(b"\x89PNG half")
    writing = PartFile(tmp_path / "8-0.png")  # another download, still writing
    writing.file.write(b"half")
    kept = [tmp_path / ".notes.part", tmp_path / "x.0badc0de.part", tmp_path / "7-0.png"]
    for path in kept:
        path.write_bytes(b"not a download's temporary file")
    try:
        async with AsyncModelsLab(api_key="k") as client:
            await client.download(result("1", "https://cdn.example/1.png"), tmp_path)
            assert not abandoned.exists()
            assert writing.path.exists()
            assert all(path.exists() for path in kept)
            # Once per folder: a file abandoned since is left for the next client.
            later = tmp_path / ".9-0.png.0123abcd.part"
            later.write_bytes(b"half")
            await client.download(result("2", "https://cdn.example/2.png"), tmp_path)
            assert later.exists()
    finally:
        writing.discard()
    assert (tmp_path / "1-0.png").read_bytes() == PNG


def test_the_blocking_client_clears_a_folder_too(tmp_path: Path) -> None:
    with scripted_server() as server:
        url = server.file_url("/3.png", PNG)
        abandoned = tmp_path / "out" / ".3-0.png.00000000.part"
        abandoned.parent.mkdir()
        abandoned.write_bytes(b"half")
        with ModelsLab(api_key="k", base_url=server.base_url) as client:
            [path] = client.download(result("3", url), tmp_path / "out")
    assert path.read_bytes() == PNG
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["3-0.png"]
