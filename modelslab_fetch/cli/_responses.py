"""Reading generation responses for `wait --from-responses`, and picking `--endpoint`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Container, Iterable
from typing import Any, Protocol

from .._async_client import AsyncModelsLab
from .._batch import AsyncBatch, ProgressCallback
from .._endpoint import AsyncFetchResource
from .._endpoints.table import endpoint_table
from .._ids import normalize_request_id
from .._models import FetchResult
from .._updates import UpdateCallback
from ._ids import read_ids

__all__ = ["ENDPOINT_NAMES", "read_responses", "resource_named", "start_waiting", "unfinished"]

ENDPOINT_NAMES = tuple(endpoint_table())
"""The `--endpoint` choices: every endpoint of the table, by its attribute name."""


def resource_named(client: AsyncModelsLab, name: str) -> AsyncFetchResource[Any]:
    """`client.video`, `client.enterprise.three_d`, ... for the table name `name`."""
    found: Any = client
    for part in name.split("."):
        found = getattr(found, part)
    resource: AsyncFetchResource[Any] = found
    return resource


def read_responses(source: str) -> AsyncIterator[object]:
    """The generation responses in `source` (a file, or - for stdin), one JSON object a line.

    Read lazily, as ids are. A line that is not JSON is passed on as its text, so that
    it gets an outcome of its own saying what is wrong instead of stopping the run.
    """
    lines = read_ids([], source, option="--from-responses").ids
    assert isinstance(lines, AsyncIterator)  # noqa: S101 - a file is always read lazily
    return _decoded(lines)


async def _decoded(lines: AsyncIterator[str]) -> AsyncIterator[object]:
    async for line in lines:
        try:
            yield json.loads(line)
        except ValueError:
            yield line


def _key_of(item: object) -> str | None:
    if not isinstance(item, dict):
        return None
    try:
        return normalize_request_id(item.get("id"))
    except ValueError:
        return None


class Counter(Protocol):
    """Anything with a `count` to add skipped inputs to."""

    count: int


async def unfinished(
    items: AsyncIterator[object], finished: Container[str], skipped: Counter
) -> AsyncIterator[object]:
    """`items` less the responses whose id is in `finished`; counts them in `skipped`."""
    async for item in items:
        key = _key_of(item)
        if key is not None and key in finished:
            skipped.count += 1
            continue
        yield item


def start_waiting(
    client: AsyncModelsLab,
    items: Iterable[Any] | AsyncIterator[Any],
    *,
    endpoint: str,
    from_responses: bool,
    concurrency: int | None,
    timeout: float | None,
    on_progress: ProgressCallback,
    on_update: UpdateCallback | None = None,
) -> AsyncBatch[FetchResult]:
    """The batch `wait` works through: ids on `endpoint`, or responses each on its own."""
    if from_responses:
        return client.wait_for_many(
            items,
            concurrency=concurrency,
            timeout=timeout,
            on_progress=on_progress,
            on_update=on_update,
        )
    batch: AsyncBatch[FetchResult] = resource_named(client, endpoint).wait_many(
        items,
        concurrency=concurrency,
        timeout=timeout,
        on_progress=on_progress,
        on_update=on_update,
    )
    return batch
