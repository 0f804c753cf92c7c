"""The command's inputs: a key file, ids, a results file; each problem a message, no traceback."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from modelslab_fetch.cli import main
from modelslab_fetch.cli._commands import Streams
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
