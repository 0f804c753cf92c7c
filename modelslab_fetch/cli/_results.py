"""The results file of `wait`: one JSON line per id, written by one run at a time.

A line is written once everything asked of its id is done (with `--dir`, once its
images are on disk), and flushed at once, so a killed run loses nothing it reported.
Only lines that `wait` itself wrote (`"source": "modelslab-fetch wait"`) are trusted by
`--resume`; any other content makes the file refused, with its name and line number.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .. import (
    BadRequestError,
    FetchResult,
    GenerationFailedError,
    InvalidRequestIdError,
    Outcome,
    RequestNotFoundError,
)
from ._idset import IdSet, resume_key
from ._lines import json_line, physical_lines
from ._usage import UsageError, os_words
from ._words import counted, has_own_words, in_plain_words

try:  # POSIX; on Windows the file is opened without a lock (documented in docs/cli.md)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["SOURCE", "ResultsFile", "error_record", "outcome_record", "record_result"]

SOURCE = "modelslab-fetch wait"
"""The `source` of every line `wait` writes; `--resume` trusts no other line."""

_CUT_LINE = b'{"request_id"'  # how every line of ours starts: a kill may cut one short


def error_record(error: BaseException) -> dict[str, Any]:
    """The `error` of a results line: its type, message, and `words` in plain words.

    The message is the library's, as it is; for the errors the command words itself
    (their library message gives advice in Python's terms, `max_concurrency=`), the
    command's words instead.
    """
    words = in_plain_words(error)
    return {
        "type": type(error).__name__,
        "message": words if has_own_words(error) else str(error),
        "words": words,
    }


def outcome_record(outcome: Outcome[FetchResult], *, source: str | None = None) -> dict[str, Any]:
    """The JSON line for one outcome.

    `final` marks ids whose outcome will not change: a success, a failed generation, an
    id the server does not know. A job still processing, a timeout, a network error, a
    rate limit or an account problem is not final.
    """
    record: dict[str, Any] = {"request_id": outcome.request_id, "ok": outcome.ok}
    result = outcome.result
    if result is None and isinstance(outcome.error, GenerationFailedError):
        result = outcome.error.result
    record["status"] = None if result is None else result.status.value
    record["output"] = [] if result is None else list(result.output)
    record["message"] = None if result is None else result.message
    # Where the id was asked: files are named from it, now and by `download --from-results`.
    record["endpoint"] = None if result is None else result.endpoint_name
    record["error"] = None if outcome.error is None else error_record(outcome.error)
    finished = outcome.result is not None and outcome.result.finished
    record["final"] = (outcome.ok and finished) or isinstance(
        outcome.error,
        GenerationFailedError | InvalidRequestIdError | RequestNotFoundError | BadRequestError,
    )
    if source is not None:
        record["source"] = source
    return record


def record_result(record: dict[str, Any]) -> FetchResult | None:
    """The success result a results line describes, for downloading; None otherwise."""
    output = record.get("output")
    if not record.get("ok") or not output or not isinstance(output, list):
        return None
    if not all(isinstance(url, str) and url for url in output):
        return None  # a hand-edited or corrupt line: nothing to download from it
    request_id = str(record.get("request_id"))
    endpoint = record.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        endpoint = None  # a line of an earlier version: named as before, by id alone
    elif request_id.startswith(f"{endpoint}:"):  # a batch key told apart by endpoint
        request_id = request_id[len(endpoint) + 1 :]
    body = {"status": "success", "id": request_id, "output": record["output"]}
    try:
        return FetchResult.from_body(body, request_id=request_id, endpoint_name=endpoint)
    except ValueError:  # a hand-edited or corrupt line: nothing to download from it
        return None


def read_records(path: Path, *, option: str) -> list[dict[str, Any]]:
    """The lines `wait` wrote in `path`; `UsageError` names the first line that is not ours.

    A line cut short by a kill (it starts as ours but is not whole JSON) is skipped.
    """
    try:
        with path.open("rb") as file:
            return list(_records(file, path))
    except IsADirectoryError:
        raise UsageError(f"{option} {path} is a folder; give a file name") from None
    except OSError as exc:
        raise UsageError(f"cannot read {option} {os_words(exc, path)}") from None


def _records(file: BinaryIO, path: Path) -> Iterator[dict[str, Any]]:
    """The records of a results file, one at a time, whatever its line ends."""
    for number, raw in enumerate(physical_lines(file), start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except ValueError:
            if line.startswith(_CUT_LINE):
                continue  # written by a run that was killed mid-line
            record = None
        if not isinstance(record, dict) or record.get("source") != SOURCE:
            raise UsageError(
                f"{path} line {number} was not written by `modelslab-fetch wait`; "
                "refusing to resume from or append to it: give another --output file"
            )
        yield record


def _not_empty(path: Path, count: int) -> UsageError:
    return UsageError(
        f"{path} already holds {counted(count, 'result')}: add --resume to finish that run (ids "
        "already final are skipped), or --overwrite to start afresh"
    )


class ResultsFile:
    """The results file of one run: locked for that run, checked, appended line by line.

    `open()` does every check before any request is sent: the path is a writable file, no
    other run holds it, its lines are ours, and it is empty unless `resume` (or
    `overwrite`, which empties it) says what to do with what it holds.
    """

    def __init__(self, path: Path, *, resume: bool = False, overwrite: bool = False) -> None:
        self.path = path
        self._resume = resume
        self._overwrite = overwrite
        self._file: BinaryIO | None = None
        self._created = False
        self._written = False
        self._finished = IdSet()
        self.count = 0
        """How many results the file held when it was opened."""

    def __repr__(self) -> str:
        return f"ResultsFile({str(self.path)!r})"

    def open(self) -> ResultsFile:
        """Lock, check and read the file; `UsageError` says what is wrong and what to do."""
        path = self.path
        if path.is_dir():
            raise UsageError(f"--output {path} is a folder; give a file name in it instead")
        self._created = not path.exists()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot write --output {os_words(exc, path)}") from None
        file = os.fdopen(fd, "a+b")
        try:
            self._check(file)
        except BaseException:
            file.close()
            raise
        self._file = file
        return self

    def _check(self, file: BinaryIO) -> None:
        self._lock(file)
        file.seek(0)
        # Read a line at a time, keeping only what resuming needs (the final ids, and
        # which failed): a results file may hold millions of lines.
        for record in _records(file, self.path):
            self.count += 1
            if record.get("final") is True:
                key = resume_key(record.get("request_id"))
                if key is not None:
                    self._finished.add(key, failed=record.get("ok") is not True)
        self._finished.freeze()
        if self.count and self._overwrite:
            file.truncate(0)
            self.count, self._finished = 0, IdSet().freeze()
        elif self.count and not self._resume:
            raise _not_empty(self.path, self.count)
        end = file.seek(0, os.SEEK_END)
        if end:
            file.seek(end - 1)
            if file.read(1) not in (b"\n", b"\r"):
                file.write(b"\n")  # a run killed mid-line: start ours on a fresh line
                file.flush()

    def _lock(self, file: BinaryIO) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            return
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"another modelslab-fetch run is writing to {self.path}; wait for it to "
                "finish (or stop it), or give another --output file"
            ) from None

    def finished_ids(self) -> IdSet:
        """Ids with a final outcome in the file (a resumed run skips them), and which failed."""
        return self._finished

    def records(self) -> Iterator[dict[str, Any]]:
        """The lines the file held when opened, read again one at a time (for `--resume`)."""
        with self.path.open("rb") as file:
            yield from _records(file, self.path)

    def append(self, record: dict[str, Any]) -> None:
        """Write one line and hand it to the OS before returning (it survives a kill)."""
        if self._file is None:
            raise RuntimeError("ResultsFile.open() was not called")  # pragma: no cover
        line = json_line(record).encode("utf-8") + b"\n"
        self._written = True
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as exc:
            raise OSError(exc.errno, f"cannot write: {exc.strerror}", str(self.path)) from None

    def close(self) -> None:
        """Close the file (and release its lock); one this run created and left empty goes."""
        if self._file is None:
            return
        if self._created and not self._written:
            # A run that stopped before its first result (no key, a bad ids file...)
            # leaves no empty file behind; removed while still locked, so no other run
            # has it open.
            with contextlib.suppress(OSError):
                self.path.unlink()
        with contextlib.suppress(OSError):  # a full disk: the flush failed already
            self._file.close()
        self._file = None
