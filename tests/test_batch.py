"""fetch_many / wait_many: one outcome per input id, bounded, lazy, and stoppable."""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx

from modelslab_fetch import (
    APIStatusError,
    AsyncModelsLab,
    ConfigurationError,
    Failure,
    GenerationFailedError,
    InvalidRequestIdError,
    ModelsLab,
    Progress,
    ResponseParseError,
    Success,
    WaitTimeoutError,
)
from modelslab_fetch._jobs._batch import RECENT_OUTCOMES_KEPT
from tests.backends import asyncio_only, both_backends, collect, leftover_tasks, only_this_task_left
from tests.conftest import API_KEY, IMAGES_URL, FakeClock, echo_success, never_answer

# Each async test runs on asyncio and on trio (the trio half is pending issue 14).
anyio_backend = both_backends


def request_id_of(request: httpx.Request) -> str:
    return str(json.loads(request.content)["request_id"])


def success(request_id: str) -> httpx.Response:
    return httpx.Response(
        200, json={"status": "success", "id": request_id, "output": [f"https://x/{request_id}"]}
    )


class Server:
    """A respx side effect answering each id by its kind, counting requests per id."""

    def __init__(self, kinds: dict[str, str] | None = None, *, checkpoints: int = 0) -> None:
        self.kinds = kinds or {}
        self.calls: Counter[str] = Counter()
        self.checkpoints = checkpoints
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        request_id = request_id_of(request)
        self.calls[request_id] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(self.checkpoints):
                await anyio.lowlevel.checkpoint()
        finally:
            self.in_flight -= 1
        kind = self.kinds.get(request_id, "success")
        if kind == "success":
            return success(request_id)
        if kind == "processing":
            return httpx.Response(200, json={"status": "processing", "id": request_id, "eta": 5})
        if kind in ("failed", "error"):
            return httpx.Response(200, json={"status": kind, "id": request_id, "message": kind})
        if kind == "5xx":
            return httpx.Response(500, json={"message": "boom"})
        if kind == "not-json":
            return httpx.Response(200, text="<<garbage>>")
        raise AssertionError(kind)


MIX = {
    "1": "success",
    "2": "failed",
    "3": "error",
    "4": "processing",
    "5": "5xx",
    "6": "not-json",
    "7": "success",
}


async def test_wait_many_accounts_for_every_id_exactly_once(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=Server(MIX))
    ids: list[str | int] = [*MIX, "bad id", 8]
    outcomes = await collect(client.images.wait_many(ids, timeout=30))
    assert sorted(o.index for o in outcomes) == list(range(len(ids)))
    by_id = {o.request_id: o for o in outcomes}
    assert by_id["1"].ok and by_id["7"].ok and by_id["8"].ok
    assert by_id["1"].result is not None and by_id["1"].result.output == ["https://x/1"]
    assert isinstance(by_id["2"].error, GenerationFailedError)
    assert isinstance(by_id["3"].error, GenerationFailedError)
    assert isinstance(by_id["4"].error, WaitTimeoutError)
    assert isinstance(by_id["5"].error, WaitTimeoutError)  # 500s are polled through
    assert isinstance(by_id["5"].error.__cause__, APIStatusError)
    assert isinstance(by_id["6"].error, ResponseParseError)
    assert isinstance(by_id["bad id"].error, InvalidRequestIdError)
    for outcome in outcomes:
        assert outcome.ok == (outcome.error is None) == (outcome.result is not None)


async def test_fetch_many_accounts_for_every_id_exactly_once(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    server = Server(MIX)
    router.post(IMAGES_URL).mock(side_effect=server)
    outcomes = await collect(client.images.fetch_many(list(MIX)))
    by_id = {o.request_id: o for o in outcomes}
    assert len(outcomes) == len(MIX)
    # fetch answers whatever the status: failed/processing are results, not errors
    assert {rid for rid, o in by_id.items() if o.ok} == {"1", "2", "3", "4", "7"}
    assert isinstance(by_id["5"].error, APIStatusError)
    assert isinstance(by_id["6"].error, ResponseParseError)
    assert server.calls["1"] == 1
    assert server.calls["5"] == client.max_retries + 1


async def test_duplicates_get_an_outcome_each_and_the_server_is_asked_once(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    server = Server(checkpoints=3)
    router.post(IMAGES_URL).mock(side_effect=server)
    ids: list[str | int] = ["1", "2", "1", 1, "3", "2", " 1 "]
    outcomes = await collect(client.images.wait_many(ids, ordered=True))
    assert [o.index for o in outcomes] == list(range(len(ids)))
    assert [o.request_id for o in outcomes] == ["1", "2", "1", "1", "3", "2", "1"]
    assert all(o.ok for o in outcomes)
    assert server.calls == Counter({"1": 1, "2": 1, "3": 1})


async def test_a_repeat_long_after_is_still_answered_from_memory(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    server = Server()
    router.post(IMAGES_URL).mock(side_effect=server)
    ids = ["1", *map(str, range(100, 200)), "1"]
    outcomes = await collect(client.images.fetch_many(ids, concurrency=4))
    assert len(outcomes) == len(ids)
    assert server.calls["1"] == 1
    assert RECENT_OUTCOMES_KEPT >= 100


async def test_input_order_on_request(client: AsyncModelsLab, router: respx.MockRouter) -> None:
    class SlowFirst(Server):
        async def __call__(self, request: httpx.Request) -> httpx.Response:
            if request_id_of(request) == "0":
                for _ in range(50):
                    await anyio.lowlevel.checkpoint()
            return await super().__call__(request)

    router.post(IMAGES_URL).mock(side_effect=SlowFirst())
    ids = [str(n) for n in range(20)]
    completion = [o.index for o in await collect(client.images.fetch_many(ids, concurrency=8))]
    ordered = [
        o.index for o in await collect(client.images.fetch_many(ids, concurrency=8, ordered=True))
    ]
    assert completion != list(range(20))  # the slow head finished late
    assert ordered == list(range(20))


@asyncio_only  # a bare `async for`, left by a break or a cancellation
async def test_endless_input_is_read_lazily_and_an_early_break_stops_everything(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    server = Server(checkpoints=2)
    router.post(IMAGES_URL).mock(side_effect=server)
    pulled = 0

    def endless() -> Iterator[int]:
        nonlocal pulled
        for n in itertools.count():
            pulled += 1
            yield n

    taken = 0
    async for _outcome in client.images.wait_many(endless(), concurrency=4):
        taken += 1
        if taken == 10:
            break
    assert await only_this_task_left()
    assert pulled <= taken + 2 * 4 + 1  # outcomes buffered + ids in flight, then the break
    assert sum(server.calls.values()) <= pulled


async def test_async_iterable_input(client: AsyncModelsLab, router: respx.MockRouter) -> None:
    router.post(IMAGES_URL).mock(side_effect=Server())

    async def ids() -> AsyncIterator[str]:
        for n in range(5):
            await anyio.lowlevel.checkpoint()
            yield str(n)

    outcomes = await collect(client.images.wait_many(ids()))
    assert sorted([o.request_id for o in outcomes]) == list("01234")


@asyncio_only  # a bare `async for`, left by a break or a cancellation
async def test_cancelling_the_consumer_leaves_no_tasks(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    started = anyio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    router.post(IMAGES_URL).mock(side_effect=hang)

    async def consume() -> None:
        async for _ in client.images.wait_many(range(1000), concurrency=16):
            raise AssertionError("nothing should finish")

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await started.wait()
        tg.cancel_scope.cancel()
    assert await only_this_task_left()
    assert client._transport.in_flight == 0


async def test_async_with_stops_all_work_on_exit(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=Server(checkpoints=5))
    batch = client.images.fetch_many(itertools.count(), concurrency=8)
    async with batch:
        first = await batch.__anext__()
        assert first.ok
        assert "running" in repr(batch)
    assert leftover_tasks() == []
    assert "finished" in repr(batch)
    assert [o async for o in batch] == []  # a closed batch just ends
    await batch.aclose()  # twice is fine


async def test_the_client_wide_cap_holds_across_concurrent_batches(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    server = Server(checkpoints=10)
    router.post(IMAGES_URL).mock(side_effect=server)
    async with AsyncModelsLab(api_key=API_KEY, clock=clock, max_concurrency=5) as client:
        results: list[list[Success[Any] | Failure[Any]]] = [[], []]

        async def run(slot: int, ids: range) -> None:
            results[slot] = await collect(client.images.wait_many(ids, concurrency=50))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, 0, range(0, 100))
            tg.start_soon(run, 1, range(100, 200))
            tg.start_soon(client.images.fetch, 999)
    assert server.max_in_flight == 5
    assert len(results[0]) == len(results[1]) == 100
    assert sum(server.calls.values()) == 201


async def test_a_429_burst_pauses_the_whole_client_once(
    clock: FakeClock, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    burst = 8
    arrived = 0
    all_arrived = anyio.Event()
    second_round_at: list[float] = []
    seen: Counter[str] = Counter()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal arrived
        request_id = request_id_of(request)
        seen[request_id] += 1
        if seen[request_id] == 1:
            arrived += 1
            if arrived == burst:
                all_arrived.set()
            await all_arrived.wait()
            return httpx.Response(429, headers={"Retry-After": "5"})
        second_round_at.append(clock.now())
        return success(request_id)

    router.post(IMAGES_URL).mock(side_effect=handler)
    start = clock.now()
    with caplog.at_level(logging.WARNING, logger="modelslab_fetch"):
        async with AsyncModelsLab(api_key=API_KEY, clock=clock) as client:
            outcomes = await collect(client.images.fetch_many(range(burst)))
    assert all(o.ok for o in outcomes)
    pauses = [r for r in caplog.records if "pausing all requests" in r.getMessage()]
    assert len(pauses) == 1
    assert len(second_round_at) == burst
    assert all(at >= start + 5 for at in second_round_at)
    assert clock.now() - start == pytest.approx(5.0)


async def test_requests_per_second_paces_the_client(
    clock: FakeClock, router: respx.MockRouter
) -> None:
    starts: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        starts.append(clock.now())
        return success(request_id_of(request))

    router.post(IMAGES_URL).mock(side_effect=handler)
    async with AsyncModelsLab(api_key=API_KEY, clock=clock, max_requests_per_second=5) as client:
        outcomes = await collect(client.images.fetch_many(range(10)))
        await client.images.fetch(99)
    assert len(outcomes) == 10
    gaps = [b - a for a, b in itertools.pairwise(sorted(starts))]
    assert all(gap == pytest.approx(0.2) for gap in gaps)


async def test_progress_events_add_up(client: AsyncModelsLab, router: respx.MockRouter) -> None:
    router.post(IMAGES_URL).mock(side_effect=Server({"3": "failed", "5": "failed"}))
    events: list[Progress] = []
    ids = [str(n) for n in range(10)]
    outcomes = await collect(client.images.wait_many(ids, concurrency=3, on_progress=events.append))
    assert [e.done for e in events] == list(range(1, 11))
    assert all(e.total == 10 for e in events)
    assert all(0 <= e.in_flight <= 2 * 3 for e in events)  # working + finished, not yet taken
    last = events[-1]
    assert (last.succeeded, last.failed, last.in_flight) == (8, 2, 0)
    assert last.succeeded == sum(o.ok for o in outcomes)


async def test_progress_total_is_unknown_for_generators(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=Server())
    events: list[Progress] = []
    await collect(client.images.fetch_many((str(n) for n in range(3)), on_progress=events.append))
    assert [e.total for e in events] == [None, None, None]


@asyncio_only  # a bare `async for` or __anext__, with no `async with`
async def test_a_broken_input_iterable_surfaces_after_what_was_done(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=Server())

    def ids() -> Iterator[str]:
        yield "1"
        yield "2"
        raise OSError("disk gone")

    seen: list[str] = []

    async def consume() -> None:
        async for outcome in client.images.fetch_many(ids(), concurrency=1):
            seen.append(outcome.request_id)

    with pytest.raises(OSError, match="disk gone"):
        await consume()
    assert seen == ["1", "2"]
    assert await only_this_task_left()


@asyncio_only  # a bare `async for` or __anext__, with no `async with`
async def test_a_failing_progress_callback_surfaces(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=Server())

    def explode(progress: Progress) -> None:
        raise RuntimeError("ui crashed")

    async def consume() -> None:
        async for _ in client.images.fetch_many(range(5), on_progress=explode):
            pass

    with pytest.raises(RuntimeError, match="ui crashed"):
        await consume()


# These tests are sync on purpose (refused at the call, before any await); their `client`
# is an async fixture, which anyio's plugin runs only for tests that use `anyio_backend`.
@pytest.mark.usefixtures("anyio_backend")
@pytest.mark.parametrize("concurrency", [0, -1, 1.5, True])
def test_bad_concurrency_is_refused(concurrency: object, client: AsyncModelsLab) -> None:
    with pytest.raises(ConfigurationError, match="concurrency"):
        client.images.wait_many([1], concurrency=concurrency)  # type: ignore[arg-type]


@pytest.mark.usefixtures("anyio_backend")
def test_bad_wait_many_timeout_is_refused_at_the_call(client: AsyncModelsLab) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        client.images.wait_many([1], timeout=-1)


async def test_super_resolution_has_the_batch_calls_too(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    route = router.post(url__regex=r".*/super_resolution/fetch/(?P<rid>\d+)$")
    route.side_effect = lambda request, rid: success(rid)
    outcomes = await collect(client.enterprise.super_resolution.wait_many([1, 2, 3]))
    assert sorted(o.request_id for o in outcomes) == ["1", "2", "3"]
    fetched = await collect(client.enterprise.super_resolution.fetch_many([4]))
    assert fetched[0].ok


def test_sync_wait_many_streams_with_backpressure(router: respx.MockRouter) -> None:
    router.post(IMAGES_URL).mock(side_effect=Server())
    pulled = 0

    def ids() -> Iterator[int]:
        nonlocal pulled
        for n in range(2_000):
            pulled += 1
            yield n

    with ModelsLab(api_key=API_KEY) as client:
        iterator = client.images.wait_many(ids(), concurrency=8)
        first = next(iterator)
        assert first.ok
        assert pulled < 500  # streamed, not collected
        rest = list(iterator)
        assert len(rest) + 1 == 2_000
        assert sorted(o.index for o in [first, *rest]) == list(range(2_000))


def test_sync_break_stops_the_batch_and_the_client_stays_usable(router: respx.MockRouter) -> None:
    router.post(IMAGES_URL).mock(side_effect=Server())
    with ModelsLab(api_key=API_KEY) as client:
        for outcome in client.images.fetch_many(itertools.count(), concurrency=4):
            if outcome.index >= 5:
                break
        with client.images.wait_many(range(3), ordered=True) as batch:
            assert [o.index for o in batch] == [0, 1, 2]
            assert "Batch" in repr(batch)
        assert client.images.fetch(1).succeeded
        assert client.enterprise.super_resolution.fetch_many([]) is not None


def test_a_sync_batch_outliving_its_client_closes_quietly(router: respx.MockRouter) -> None:
    router.post(IMAGES_URL).mock(side_effect=Server())
    client = ModelsLab(api_key=API_KEY)
    batch = client.images.fetch_many(range(100), concurrency=2)
    assert next(batch).ok
    client.close()
    batch.close()
    batch.close()


@asyncio_only  # a bare `async for` or __anext__, with no `async with`
async def test_a_failing_progress_callback_loses_no_outcome(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=echo_success)

    def explode(progress: Progress) -> None:
        raise RuntimeError("ui crashed")

    batch = client.images.fetch_many(["1", "2", "3"], on_progress=explode, concurrency=1)
    first = await batch.__anext__()
    assert first.ok  # the outcome in hand is delivered
    with pytest.raises(RuntimeError, match="ui crashed"):
        await batch.__anext__()
    many = client.images.fetch_many([str(n) for n in range(50)], on_progress=explode)
    handed = await many.next_many(256)
    assert len(handed) == 1  # collection stops at the failing callback, nothing dropped
    with pytest.raises(RuntimeError, match="ui crashed"):
        await many.next_many(256)


@asyncio_only  # a bare `async for` or __anext__, with no `async with`
async def test_going_on_after_a_cancelled_wait_is_an_error_not_a_quiet_end(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=never_answer)
    batch = client.images.wait_many(["1", "2"])
    with anyio.move_on_after(0.05):
        await batch.__anext__()
    with pytest.raises(RuntimeError, match="start a new batch"):
        await batch.__anext__()


@asyncio_only  # a bare `async for` or __anext__, with no `async with`
async def test_aclose_lets_a_cancellation_of_its_caller_through(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=never_answer)
    batch = client.images.wait_many(["1"])
    with anyio.move_on_after(0.05):
        await batch.__anext__()
    reached_after = False
    with anyio.CancelScope() as scope:
        scope.cancel()
        await batch.aclose()
        reached_after = True
    assert not reached_after


async def test_a_generator_input_is_closed_when_the_batch_stops(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=echo_success)
    closed = threading.Event()

    def ids() -> Iterator[int]:
        try:
            n = 0
            while True:
                n += 1
                yield n
        finally:
            closed.set()

    async with client.images.fetch_many(ids(), concurrency=2) as batch:
        async for outcome in batch:
            if outcome.index >= 3:
                break
    assert closed.is_set()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_bare_async_for_on_trio_says_to_use_async_with(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    router.post(IMAGES_URL).mock(side_effect=echo_success)
    with pytest.raises(RuntimeError, match=r"async with client\.images\.wait_many"):
        async for _ in client.images.wait_many([1]):
            pass


# --- a file object is read as lines of ids ------------------------------------------------

IDS_FILE = (
    "\ufeff# ids queued on Monday\r\n1\r\n\r\n  2  \n# 3 was cancelled\n\t\n4\n"
    "   # indented comment\n5"
)


async def test_an_open_file_is_read_as_lines_of_ids(
    client: AsyncModelsLab, router: respx.MockRouter, tmp_path: Any
) -> None:
    server = Server()
    router.post(IMAGES_URL).mock(side_effect=server)
    path = tmp_path / "ids.txt"
    path.write_bytes(IDS_FILE.encode())
    with path.open(encoding="utf-8") as lines:
        outcomes = await collect(client.images.wait_many(lines, ordered=True))
        assert not lines.closed  # the file is yours to close
    assert [(o.index, o.request_id, o.ok) for o in outcomes] == [
        (0, "1", True),
        (1, "2", True),
        (2, "4", True),
        (3, "5", True),
    ]
    assert sorted(server.calls) == ["1", "2", "4", "5"]  # no comment, no blank was sent


async def test_a_binary_file_is_read_as_utf8_and_a_bad_line_fails_alone(
    client: AsyncModelsLab, router: respx.MockRouter, tmp_path: Any
) -> None:
    router.post(IMAGES_URL).mock(side_effect=Server())
    path = tmp_path / "ids.bin"
    path.write_bytes(b"\xef\xbb\xbf1\n\n# c\n2\xff\n3\n")
    with path.open("rb") as lines:
        outcomes = await collect(client.images.fetch_many(lines, ordered=True))
    assert [o.ok for o in outcomes] == [True, False, True]
    assert isinstance(outcomes[1].error, InvalidRequestIdError)
    assert outcomes[1].request_id == "2\\xff"


async def test_an_anyio_async_file_is_read_as_lines_of_ids(
    client: AsyncModelsLab, router: respx.MockRouter, tmp_path: Any
) -> None:
    router.post(IMAGES_URL).mock(side_effect=Server())
    path = tmp_path / "ids.txt"
    path.write_text(IDS_FILE, encoding="utf-8")
    async with await anyio.open_file(path, encoding="utf-8") as lines:
        outcomes = await collect(client.images.wait_many(lines, ordered=True))
    assert [o.request_id for o in outcomes] == ["1", "2", "4", "5"]


async def test_any_other_iterable_is_taken_item_by_item(
    client: AsyncModelsLab, router: respx.MockRouter
) -> None:
    # A list is what you built: an empty entry is answered (as a failure), never dropped.
    router.post(IMAGES_URL).mock(side_effect=Server())
    outcomes = await collect(client.images.fetch_many(["1\n", "", "# 2"], ordered=True))
    assert [o.ok for o in outcomes] == [True, False, False]


def test_the_blocking_client_reads_an_open_file_and_stdin_alike(
    router: respx.MockRouter, tmp_path: Any
) -> None:
    import io

    router.post(IMAGES_URL).mock(side_effect=Server())
    path = tmp_path / "ids.txt"
    path.write_text("13443927\n\n# done later\n13443928\n", encoding="utf-8")
    with ModelsLab(api_key=API_KEY) as client, open(path) as lines:  # as the README
        from_file = [o.request_id for o in client.images.wait_many(lines, ordered=True)]
        from_stream = [
            o.request_id
            for o in client.images.wait_many(io.StringIO(path.read_text()), ordered=True)
        ]
    assert from_file == from_stream == ["13443927", "13443928"]


@pytest.mark.anyio
async def test_work_that_returns_other_objects_is_remembered_as_it_came() -> None:
    # AsyncBatch is public and generic: a repeated id of work whose results are not our
    # own FetchResult gets the same object back, and the batch does not break on it.
    from modelslab_fetch import AsyncBatch

    answers: dict[str, object] = {}

    async def work(request_id: str) -> Any:
        answers[request_id] = {"asked": request_id}
        return answers[request_id]

    async with AsyncBatch(["a", "b", "a"], work, concurrency=2) as batch:
        outcomes = [outcome async for outcome in batch]
    assert [o.ok for o in outcomes] == [True, True, True]
    assert sorted(o.request_id for o in outcomes) == ["a", "a", "b"]
    assert all(o.result is answers[o.request_id] for o in outcomes)
