"""Reading generation responses for `wait --from-responses`, and picking `--endpoint`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .. import (
    AsyncBatch,
    AsyncFetchResource,
    AsyncModelsLab,
    ClientClosedError,
    ConfigurationError,
    FetchResult,
    ForeignFetchURLError,
    InvalidRequestIdError,
    Outcome,
    PollUpdate,
    Progress,
    endpoint_table,
    normalize_request_id,
)
from ._ids import numbered_lines
from ._idset import IdSet

__all__ = [
    "DEFAULT_ENDPOINT",
    "ENDPOINT_NAMES",
    "Line",
    "ResponseLines",
    "line_record",
    "resource_named",
    "start_waiting",
]

ENDPOINT_NAMES = tuple(endpoint_table())

_CHOOSE = "give --endpoint NAME (see --help)"
"""The `--endpoint` choices: every endpoint of the table, by its attribute name."""


def resource_named(client: AsyncModelsLab, name: str) -> AsyncFetchResource[Any]:
    """`client.video`, `client.enterprise.three_d`, ... for the table name `name`."""
    found: Any = client
    for part in name.split("."):
        found = getattr(found, part)
    resource: AsyncFetchResource[Any] = found
    return resource


DEFAULT_ENDPOINT = "images"
"""Where ids are waited on when `--endpoint` is not given (responses name their own)."""


class Counter(Protocol):
    """Where skipped inputs are counted: how many, and how many of them had failed."""

    count: int
    failed: int


@dataclass(frozen=True)
class Line:
    """Where an input of `wait --from-responses` came from, and what is wrong with it."""

    number: int
    """Its line in the file, from 1."""
    problem: str | None = None
    """Why it cannot be a generation response at all (it can never succeed), or None."""
    fetch_result: str | None = None
    """The response's `fetch_result`, if it has one (where it says to wait)."""
    has_id: bool = False
    """Whether the response states an `id` of its own."""


class ResponseLines:
    """The generation responses of `wait --from-responses`, and the line of each.

    Read lazily, as ids are. A line that is not a generation response (not JSON, not an
    object, no `status`, a failed request with no id) is passed on as its text, so the
    batch gives it an outcome of its own at once, named `line-N` by `collect`. The line
    of each input is kept only until its outcome arrives (`line_of`), so memory stays
    bounded by the inputs in flight.
    """

    def __init__(self, source: str, finished: IdSet, skipped: Counter) -> None:
        self._source = source
        self._finished = finished
        self._skipped = skipped
        self._lines: dict[int, Line] = {}
        self._handed = 0

    def __repr__(self) -> str:
        return f"ResponseLines({self._source!r})"

    async def items(self) -> AsyncIterator[object]:
        """The inputs for `wait_for_many`, less the lines `finished` (by `--resume`)."""
        async for number, text in numbered_lines(self._source, "--from-responses"):
            response, problem = _judged(text)
            # A line is known by its id; one with no id of its own, by its number (its
            # outcome was recorded as `line-N` if it could never succeed).
            key = (None if problem is not None else _key_of(response)) or f"line-{number}"
            if key in self._finished:
                self._skipped.count += 1
                self._skipped.failed += self._finished.failed(key)
                continue
            self._lines[self._handed] = _line(number, response, problem)
            self._handed += 1
            yield text if problem is not None else response

    def line_of(self, index: int) -> Line:
        """The line of the input at `index` (an outcome's `index`); asked once per input."""
        return self._lines.pop(index)


def _line(number: int, response: object, problem: str | None) -> Line:
    if problem is not None or not isinstance(response, dict):
        return Line(number, problem)
    fetch_result = response.get("fetch_result")
    stated = response.get("id")
    return Line(
        number,
        fetch_result=fetch_result if isinstance(fetch_result, str) and fetch_result else None,
        has_id=stated is not None and stated != "" and not isinstance(stated, bool),
    )


def _judged(text: str) -> tuple[object, str | None]:
    """The response on a line, or why the line is not one."""
    try:
        response = json.loads(text)
    except (ValueError, RecursionError):
        return None, "not JSON: expected a generation response, one JSON object a line"
    if not isinstance(response, dict):
        return None, (
            f"JSON, but not an object ({_shape(response)}): expected a generation "
            "response, one JSON object a line"
        )
    status = response.get("status")
    if not isinstance(status, str):
        return None, "no `status`: not a generation response"
    if status.strip().lower() in ("error", "failed") and _key_of(response) is None:
        said = response.get("message") or response.get("messege")
        words = f": {said}" if isinstance(said, str) and said.strip() else ""
        return None, f"the generation request itself failed, so no job was queued{words}"
    return response, None


def _shape(value: object) -> str:
    return {list: "a list", str: "a string", bool: "true or false", type(None): "null"}.get(
        type(value), "a number"
    )


def _key_of(item: object) -> str | None:
    if not isinstance(item, dict):
        return None
    try:
        return normalize_request_id(item.get("id"))
    except ValueError:
        return None


def line_record(
    outcome: Outcome[FetchResult], line: Line, *, base_url: str
) -> dict[str, Any] | None:
    """The results line for an input whose line is the problem, or None if it is not.

    Named `line-N`: the line is what to look at. Final when the line can never succeed
    (not a response, no usable id); not final when other options could route it (no
    `fetch_result` without `--endpoint`, a `fetch_result` outside `--base-url`): the
    same command with `--resume` and those options tries it again. The words come from
    the error's class and the line itself; the library's advice is about its own
    arguments (`endpoint=`), this one about the command's options.
    """
    error = outcome.error
    if line.problem is not None:
        words, final, kind = line.problem, True, "BadLine"
    elif isinstance(error, InvalidRequestIdError):
        words, final, kind = _id_words(error, line), True, type(error).__name__
    elif isinstance(error, ConfigurationError) and not isinstance(error, ClientClosedError):
        words, final = _route_words(error, line, base_url), False
        kind = type(error).__name__
    else:
        return None
    about = "" if outcome.request_id.startswith("input-") else f" (id {outcome.request_id})"
    words = f"line {line.number}{about}: {words}"
    return {
        "request_id": f"line-{line.number}",
        "ok": False,
        "status": None,
        "output": [],
        "message": None,
        "error": {"type": kind, "message": words, "words": words},
        "final": final,
    }


def start_waiting(
    client: AsyncModelsLab,
    items: Iterable[Any] | AsyncIterator[Any],
    *,
    endpoint: str | None,
    from_responses: bool,
    concurrency: int | None,
    timeout: float | None,
    on_progress: Callable[[Progress], object],
    on_update: Callable[[PollUpdate], object] | None = None,
) -> AsyncBatch[FetchResult]:
    """The batch `wait` works through: ids on `endpoint`, or responses each on its own.

    Responses are waited on where their `fetch_result` says, or all at `endpoint` when
    one is given (as `wait_for(endpoint=)` does).
    """
    if from_responses:
        return client.wait_for_many(
            items,
            endpoint=endpoint,
            concurrency=concurrency,
            timeout=timeout,
            on_progress=on_progress,
            on_update=on_update,
        )
    batch: AsyncBatch[FetchResult] = resource_named(client, endpoint or DEFAULT_ENDPOINT).wait_many(
        items,
        concurrency=concurrency,
        timeout=timeout,
        on_progress=on_progress,
        on_update=on_update,
    )
    return batch


def _id_words(error: InvalidRequestIdError, line: Line) -> str:
    if line.has_id:  # an id that is no id: the library says what is wrong with it
        return error.message
    return (
        "the response carries no request id (`id`), nor one in its fetch_result; give the "
        "id itself instead: modelslab-fetch wait ID --endpoint NAME"
    )


def _route_words(error: ConfigurationError, line: Line, base_url: str) -> str:
    url = line.fetch_result
    if isinstance(error, ForeignFetchURLError):
        return (
            f"refusing to fetch from {url!r}: it is not below --base-url {base_url}, and "
            "the API key would be sent there; nothing was sent. If that URL is right, point "
            f"--base-url (or MODELSLAB_BASE_URL) there; else {_CHOOSE}"
        )
    if url is None:
        return f"the response has no fetch_result URL to tell its endpoint; {_CHOOSE}"
    return f"its fetch_result {url!r} names no known fetch endpoint; {_CHOOSE}"
