"""The command's inputs: a key file, ids, a results file; each problem a message, no traceback."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from modelslab_fetch.cli import main
from modelslab_fetch.cli._commands import Streams
from modelslab_fetch.cli._ids import check_ids_file
from modelslab_fetch.cli._idset import IdSet
from modelslab_fetch.cli._lines import physical_lines
from tests.conftest import API_KEY


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
