"""The results file: one JSON line per id, appended and flushed as each finishes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from .._batch import Outcome
from .._errors import (
    BadRequestError,
    GenerationFailedError,
    InvalidRequestIdError,
    RequestNotFoundError,
)
from .._ids import normalize_request_id
from .._models import FetchResult
from ._words import in_plain_words

__all__ = ["ResultsFile", "outcome_record", "record_result"]


def outcome_record(outcome: Outcome[FetchResult]) -> dict[str, Any]:
    """The JSON line for one outcome. `final` marks ids a `--resume` need not ask again."""
    record: dict[str, Any] = {"request_id": outcome.request_id, "ok": outcome.ok}
    result = outcome.result
    if result is None and isinstance(outcome.error, GenerationFailedError):
        result = outcome.error.result
    record["status"] = None if result is None else result.status.value
    record["output"] = [] if result is None else list(result.output)
    record["message"] = None if result is None else result.message
    record["error"] = (
        None
        if outcome.error is None
        else {
            "type": type(outcome.error).__name__,
            "message": str(outcome.error),
            "words": in_plain_words(outcome.error),
        }
    )
    # Success, a failed generation and an id the server does not know (or refuses as
    # malformed) are final; a timeout, a network error, a rate limit or an account
    # problem (fixed by adding credits, say) is not: --resume asks again.
    record["final"] = outcome.ok or isinstance(
        outcome.error,
        GenerationFailedError | InvalidRequestIdError | RequestNotFoundError | BadRequestError,
    )
    return record


def record_result(record: dict[str, Any]) -> FetchResult | None:
    """The success result a results line describes, for downloading; None otherwise."""
    output = record.get("output")
    if not record.get("ok") or not output or not isinstance(output, list):
        return None
    if not all(isinstance(url, str) and url for url in output):
        return None  # a hand-edited or corrupt line: nothing to download from it
    request_id = str(record.get("request_id"))
    body = {"status": "success", "id": request_id, "output": record["output"]}
    try:
        return FetchResult.from_body(body, request_id=request_id)
    except ValueError:  # a hand-edited or corrupt line: nothing to download from it
        return None


class ResultsFile:
    """Appends result lines to a file, flushed one by one, so a killed run loses nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO | None = None

    def __repr__(self) -> str:
        return f"ResultsFile({str(self.path)!r})"

    def records(self) -> list[dict[str, Any]]:
        """Every readable line so far (a line cut short by a kill is skipped)."""
        if not self.path.exists():
            return []
        records = []
        with self.path.open(encoding="utf-8") as file:
            for line in file:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "request_id" in record:
                    records.append(record)
        return records

    def finished_ids(self) -> set[str]:
        """Ids with a final outcome in the file: a resumed run skips them."""
        finished = set()
        for record in self.records():
            if record.get("final"):
                try:
                    finished.add(normalize_request_id(record["request_id"]))
                except ValueError:
                    continue
        return finished

    def append(self, record: dict[str, Any]) -> None:
        """Write one line and hand it to the OS before returning (it survives a kill)."""
        if self._file is None:
            self._file = self._open()
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> TextIO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = self.path.open("a+", encoding="utf-8")
        # A run killed mid-line leaves no newline: start ours on a fresh line.
        if file.tell() > 0:
            file.seek(file.tell() - 1)
            if file.read(1) != "\n":
                file.write("\n")
        return file
