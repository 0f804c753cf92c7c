"""Batches: one outcome per input id, streamed as they finish, bounded, lazy, nothing lost."""

from __future__ import annotations

import inspect
import marshal
from collections import OrderedDict
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import anyio
import anyio.abc

from .._errors import ClientClosedError
from .._ids import ids_in_file, is_file, normalize_request_id
from .._numbers import checked_count
from .._results import FetchResult
from ._driver import BatchDriver

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = [
    "RECENT_OUTCOMES_KEPT",
    "AsyncBatch",
    "Batch",
    "Failure",
    "Outcome",
    "Progress",
    "Success",
    "outcome_of",
]

R = TypeVar("R", bound=FetchResult)

RECENT_OUTCOMES_KEPT = 4096
"""How many finished ids a batch remembers, so a repeat of one is answered without a request."""


class Outcome(Generic[R]):
    """What became of one input id of a batch: a `Success` or a `Failure`.

    Both carry `request_id`, `index`, `result`, `error` and `ok`. A batch yields
    `Success[R] | Failure[R]`, so `if outcome.ok:` narrows `outcome.result` to the
    result type (and `outcome.error` to an `Exception` otherwise) for a type checker.
    """

    __slots__ = ()

    if TYPE_CHECKING:

        @property
        def request_id(self) -> str:
            """The id as normalised (always text); for a malformed id, its text as given."""

        @property
        def index(self) -> int:
            """The id's position among the ids read, counting from 0.

            In a file object, blank lines and `#` comments are not ids and do not count.
            """

        @property
        def result(self) -> R | None:
            """The typed result, or None if `error` is set."""

        @property
        def error(self) -> Exception | None:
            """Why there is no result: any `ModelsLabError` (`GenerationFailedError`, ...)."""

        @property
        def ok(self) -> bool:
            """Whether there is a result and no error."""


@dataclass(frozen=True, slots=True)
class Success(Outcome[R]):
    """An input id that has its result."""

    request_id: str
    """The id as normalised (always text)."""
    index: int
    """The id's position among the ids read, counting from 0 (see `Outcome.index`)."""
    result: R
    """The typed result."""
    error: None = None
    """Always None."""

    @property
    def ok(self) -> Literal[True]:
        """Always True."""
        return True


@dataclass(frozen=True, slots=True)
class Failure(Outcome[R]):
    """An input id that has no result, and the error that says why."""

    request_id: str
    """The id as normalised (always text); for a malformed id, its text as given."""
    index: int
    """The id's position among the ids read, counting from 0 (see `Outcome.index`)."""
    error: Exception
    """Why there is no result: any `ModelsLabError` (`GenerationFailedError`, ...)."""
    result: None = None
    """Always None."""

    @property
    def ok(self) -> Literal[False]:
        """Always False."""
        return False


def outcome_of(
    request_id: str, index: int, result: R | None, error: Exception | None
) -> Success[R] | Failure[R]:
    """The `Success` (no error) or the `Failure` for one input position."""
    if error is None:
        assert result is not None  # noqa: S101 - work returns a result or raises
        return Success(request_id, index, result)
    return Failure(request_id, index, error)


@dataclass(frozen=True, slots=True)
class Progress:
    """Counts of a batch, passed to `on_progress` each time an outcome is delivered."""

    succeeded: int
    """Outcomes delivered with a result."""
    failed: int
    """Outcomes delivered with an error."""
    in_flight: int
    """Ids taken from the input whose outcome is not delivered yet."""
    total: int | None
    """How many ids the input holds, when it has a length; otherwise None."""

    @property
    def done(self) -> int:
        """Outcomes delivered so far, successes and failures together."""
        return self.succeeded + self.failed


ProgressCallback = Callable[[Progress], object]


class AsyncBatch(Generic[R]):
    """An async iterator of one `Outcome` per input id, `concurrency` ids worked on at once.

    Input is read lazily, only as fast as outcomes are consumed, so an endless generator
    is fine. Repeated ids share one piece of work. Use it as `async for outcome in batch`,
    best inside `async with batch:` so that leaving early stops all work at once;
    otherwise the work is cancelled when the iterator is dropped or `aclose()`d.
    """

    def __init__(
        self,
        ids: Iterable[object] | AsyncIterable[object],
        work: Callable[[str], Awaitable[R]],
        *,
        concurrency: int,
        ordered: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self._work = _BatchWork(
            ids, work, concurrency=checked_count("concurrency", concurrency, 1), ordered=ordered
        )
        self._receive = self._work.receive
        self._driver = BatchDriver(self._work)
        self._task_group: anyio.abc.TaskGroup | None = None
        self._on_progress = on_progress
        self._total = len(ids) if hasattr(ids, "__len__") else None  # type: ignore[arg-type]
        self._succeeded = 0
        self._failed = 0
        self._callback_error: Exception | None = None
        self._interrupted = False

    def __repr__(self) -> str:
        work = self._work
        state = self._driver.state
        return f"AsyncBatch(concurrency={work.concurrency}, ordered={work.ordered}, {state})"

    def __aiter__(self) -> AsyncBatch[R]:
        return self

    async def __anext__(self) -> Success[R] | Failure[R]:
        if self._callback_error is not None:
            error, self._callback_error = self._callback_error, None
            self._abandon()
            raise error
        if self._interrupted:
            raise RuntimeError(
                "this batch stopped when a wait for its next outcome was cancelled; "
                "ids it had read may be unanswered: start a new batch for them"
            )
        if not self._driver.started:
            self._driver.start_detached()
        try:
            try:  # anyio's receive() always yields to the loop first; skip that when ready
                outcome = self._receive.receive_nowait()
            except anyio.WouldBlock:
                outcome = await self._receive.receive()
        except anyio.EndOfStream:
            self._receive.close()
            await self._driver.raise_failure()
            raise StopAsyncIteration from None
        except anyio.ClosedResourceError:  # aclose() came first
            raise StopAsyncIteration from None
        except BaseException:
            # Cancelled (or interrupted) while waiting: like an async generator, the
            # batch ends here, and its work stops now rather than whenever the
            # iterator happens to be garbage-collected. Going on after that is an error,
            # not a quiet end, since ids it had read would go unanswered.
            self._interrupted = True
            self._abandon()
            raise
        self._delivered(outcome)
        return outcome

    def _delivered(self, outcome: Outcome[R]) -> None:
        # Progress is counted where outcomes reach the consumer, so `done` never runs
        # ahead of what was handed over. A failing callback must not cost the outcome
        # in hand: its error is raised at the next step, and the batch stops there.
        if outcome.ok:
            self._succeeded += 1
        else:
            self._failed += 1
        if self._on_progress is None or self._callback_error is not None:
            return
        done = self._succeeded + self._failed
        progress = Progress(
            succeeded=self._succeeded,
            failed=self._failed,
            in_flight=self._work.positions_read - done,
            total=self._total,
        )
        try:
            self._on_progress(progress)
        except Exception as exc:
            self._callback_error = exc

    async def next_many(self, limit: int) -> list[Success[R] | Failure[R]]:
        """Wait for the next outcome, then take up to `limit` in all that are ready now.

        Returns [] at the end. For consumers that handle outcomes in groups (a database
        write per group, a thread hand-off per group: the blocking `SyncBatch` uses it so
        that outcomes cross to your thread a few hundred at a time).
        """
        try:
            outcomes = [await self.__anext__()]
        except StopAsyncIteration:
            return []
        while len(outcomes) < limit and self._callback_error is None:
            try:
                outcome = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            self._delivered(outcome)
            outcomes.append(outcome)
        return outcomes

    async def aclose(self) -> None:
        """Stop all work of the batch and wait until it has stopped. Safe to call twice."""
        if not self._driver.started:
            self._work.send.close()
        else:
            await self._driver.stop()
        self._receive.close()

    async def __aenter__(self) -> AsyncBatch[R]:
        # The structured form: the work runs in a task group this batch owns, for as
        # long as the `async with` block. It is the only form on trio, where nothing
        # may run outside a task group.
        if self._driver.started:
            raise RuntimeError("enter `async with batch:` before iterating it, not after")
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._driver.start_in(self._task_group)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.aclose()
        finally:
            task_group, self._task_group = self._task_group, None
            if task_group is not None:
                # The group holds only the driver, which never raises into it (it keeps
                # what went wrong for the consumer) and has stopped by now: the body's
                # own exception is no business of the group's, and goes on as itself,
                # not wrapped in an ExceptionGroup.
                await task_group.__aexit__(None, None, None)

    def __del__(self) -> None:
        if hasattr(self, "_driver"):  # else __init__ failed and nothing was started
            self._abandon()

    def _abandon(self) -> None:
        """Stop the work without waiting for it (for places that cannot await)."""
        if not self._driver.started:
            self._work.send.close()
        else:
            self._driver.stop_soon()
        self._receive.close()


class _BatchWork(Generic[R]):
    """The state and tasks behind one `AsyncBatch`: reads ids, runs work, delivers outcomes."""

    def __init__(
        self,
        ids: Iterable[object] | AsyncIterable[object],
        work: Callable[[str], Awaitable[R]],
        *,
        concurrency: int,
        ordered: bool,
    ) -> None:
        self.ids = ids
        self.work = work
        self.concurrency = concurrency
        self.ordered = ordered
        self.positions_read = 0
        self.send: MemoryObjectSendStream[Success[R] | Failure[R]]
        self.receive: MemoryObjectReceiveStream[Success[R] | Failure[R]]
        # Buffered up to `concurrency`, so finished work rarely waits for the consumer's
        # turn on the event loop; still bounded, as the slots are.
        self.send, self.receive = anyio.create_memory_object_stream[Success[R] | Failure[R]](
            concurrency
        )
        # One slot per input position, from reading it until its outcome is taken: this
        # bounds work in flight, outcomes held for ordering, and how far input is read.
        self.slots = anyio.Semaphore(concurrency)
        self.waiting: dict[str, list[int]] = {}
        self.recent: OrderedDict[str, _Memo] = OrderedDict()
        self.held: dict[int, Success[R] | Failure[R]] = {}
        self.next_index = 0
        self.emit_lock = anyio.Lock()
        self.task_group: anyio.abc.TaskGroup
        self.workers = 0
        self.busy = 0
        self.closed_under_it: ClientClosedError | None = None

    async def drive(self) -> None:
        source = _Source(self.ids)
        async with source, self.send, anyio.create_task_group() as tg:
            self.task_group = tg
            self.start_worker(source)
        if self.closed_under_it is not None:
            raise self.closed_under_it
        if source.failure is not None:
            # Every id read before the input broke has had its outcome; now say why it ended.
            raise source.failure

    def start_worker(self, source: _Source) -> None:
        self.workers += 1
        self.task_group.start_soon(self.work_through, source)

    async def work_through(self, source: _Source) -> None:
        # A pool of workers, grown on demand up to `concurrency`, takes positions from
        # the input in turn: cheaper than a task per id, and just as bounded.
        while True:
            try:  # the common case needs no trip through the event loop
                self.slots.acquire_nowait()
            except anyio.WouldBlock:
                await self.slots.acquire()
            # A list or a generator is read without a coroutine; an async source awaits.
            found, raw = source.next_now() if source.is_sync else await source.next()
            if not found:
                self.slots.release()
                return
            position = self.positions_read
            self.positions_read += 1
            self.busy += 1
            if self.busy == self.workers and self.workers < self.concurrency:
                self.start_worker(source)
            try:
                await self.answer_position(position, raw)
            finally:
                self.busy -= 1

    async def answer_position(self, position: int, raw: object) -> None:
        try:
            request_id = normalize_request_id(raw)
        except ValueError as exc:
            await self.deliver(Failure(_text_of(raw), position, exc))
            return
        if request_id in self.waiting:  # a repeat of an id in progress: answer it with that
            self.waiting[request_id].append(position)
            return
        if request_id in self.recent:
            self.recent.move_to_end(request_id)
            await self.deliver(
                outcome_of(request_id, position, *_recalled(self.recent[request_id]))
            )
            return
        self.waiting[request_id] = [position]
        result: R | None = None
        error: Exception | None = None
        try:
            result = await self.work(request_id)
        except ClientClosedError as exc:
            # The client closed under the batch: the batch ends, raising that where the
            # consumer reads on (as a closed file does), rather than failing every id
            # still to come one by one.
            self.closed_under_it = self.closed_under_it or exc
            self.task_group.cancel_scope.cancel()
            return
        except Exception as exc:
            error = exc
        self.recent[request_id] = _memo_of(result, error)
        if len(self.recent) > RECENT_OUTCOMES_KEPT:
            self.recent.popitem(last=False)
        for waiting_position in self.waiting.pop(request_id):
            await self.deliver(outcome_of(request_id, waiting_position, result, error))

    async def deliver(self, outcome: Success[R] | Failure[R]) -> None:
        if not self.ordered:
            await self.hand_over_and_free_slot(outcome)
            return
        self.held[outcome.index] = outcome
        async with self.emit_lock:
            while self.next_index in self.held:
                await self.hand_over_and_free_slot(self.held.pop(self.next_index))
                self.next_index += 1

    async def hand_over_and_free_slot(self, outcome: Success[R] | Failure[R]) -> None:
        # Handing an outcome over ends its position's life in the batch: the slot taken
        # when the id was read is free again, and the next id can be read.
        try:
            try:  # anyio's send() always yields to the loop first; skip that when there is room
                self.send.send_nowait(outcome)
            except anyio.WouldBlock:
                await self.send.send(outcome)
        except anyio.BrokenResourceError:
            # The consumer is gone (the batch was dropped after a `break`, and a worker
            # ran before the driver's cancellation reached it): stop all work quietly,
            # rather than end the driver with an error nobody will ever look at.
            self.task_group.cancel_scope.cancel()
            return
        self.slots.release()


_Memo = tuple[type[FetchResult], bytes, str, "str | None"] | tuple[object, Exception | None]
"""What a batch remembers of a finished id: a result as its class, its body marshalled,
the id asked and the endpoint's name; or (result, error) as they came."""


def _memo_of(result: object, error: Exception | None) -> _Memo:
    # A result is kept as bytes, not as itself: bytes hold no references, so the
    # garbage collector never looks at them. Thousands of live results (a model, its
    # dicts and lists, a dozen objects each) made it run every ~40 requests and cost
    # more CPU than the request itself (see docs/performance.md). A repeat is rare, and
    # reads the bytes again into an equal result. marshal, not json: a fourth of the
    # cost, and decoded JSON is all it has to hold. A batch's work may return anything
    # (AsyncBatch is generic): only our own results are kept as bytes.
    if not isinstance(result, FetchResult):
        return (result, error)
    request_id = result.request_id
    try:
        packed = marshal.dumps(result.raw)
    except ValueError:  # pragma: no cover - raw is decoded JSON, which marshal holds
        return (result, error)
    return (type(result), packed, request_id, result.endpoint_name)


def _recalled(memo: _Memo) -> tuple[Any, Exception | None]:
    """The (result, error) a memo stands for."""
    if len(memo) == 2:
        return memo
    kind, packed, request_id, endpoint_name = memo
    body = marshal.loads(packed)  # noqa: S302 - bytes this process made, never input
    return kind.from_body(body, request_id=request_id, endpoint_name=endpoint_name), None


def _text_of(raw: object) -> str:
    return raw if isinstance(raw, str) else repr(raw)


class _Source:
    """The input ids, read one at a time by many workers; remembers why it broke, if it did.

    A file object is read as the command line's `--ids-file` is: one id a line, stripped;
    blank lines and lines starting with `#` are skipped (an outcome's `index` counts the
    ids read, not the lines). Any other iterable is taken item by item, one outcome each.
    """

    def __init__(self, ids: Iterable[object] | AsyncIterable[object]) -> None:
        self._sync: Iterator[object] | None = None
        self._async: AsyncIterator[object] | None = None
        if is_file(ids):
            # Wrapped in a generator of ours, which __aexit__ closes; the file stays yours.
            ids = ids_in_file(ids)
        if isinstance(ids, AsyncIterable):
            self._async = aiter(ids)
        else:
            self._sync = iter(ids)
        self._lock = anyio.Lock()  # two workers must not await one async iterator at once
        self._done = False
        self.failure: Exception | None = None

    @property
    def is_sync(self) -> bool:
        """Whether the input is a plain iterable, read by `next_now()`."""
        return self._sync is not None

    def next_now(self) -> tuple[bool, object]:
        """`next()` of a plain iterable, without a coroutine."""
        if self._done:
            return False, None
        try:
            assert self._sync is not None  # noqa: S101 - asked only when is_sync
            return True, next(self._sync)
        except StopIteration:
            self._done = True
        except Exception as exc:
            self._done = True
            self.failure = exc
        return False, None

    async def next(self) -> tuple[bool, object]:
        """The next id of an async input as `(True, id)`, or `(False, None)` once over."""
        if self._done:
            return False, None
        try:
            async with self._lock:
                if self._done:
                    return False, None
                assert self._async is not None  # noqa: S101 - one of the two is set
                return True, await anext(self._async)
        except (StopIteration, StopAsyncIteration):
            self._done = True
        except Exception as exc:
            self._done = True
            self.failure = exc
        return False, None

    async def __aenter__(self) -> _Source:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # The batch consumed the input: a generator left suspended would keep whatever
        # it holds (a file, a connection) open until garbage collection. Other
        # iterables (a list, your open file) are yours to close.
        self._done = True
        if inspect.isgenerator(self._sync):
            self._sync.close()
        if inspect.isasyncgen(self._async):
            with anyio.CancelScope(shield=True):
                await self._async.aclose()


Batch = AsyncBatch
"""The former name of `AsyncBatch`, kept so that existing imports work."""
