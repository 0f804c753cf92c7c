"""Layer 2, many ids: stream one outcome per input id, bounded, lazy, nothing lost."""

from __future__ import annotations

import asyncio
import inspect
import sys
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
from types import TracebackType
from typing import Generic, TypeVar

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._errors import ConfigurationError
from ._ids import normalize_request_id
from ._models import FetchResult

if sys.version_info < (3, 11):  # pragma: no cover - the builtin arrived in 3.11
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]

__all__ = ["RECENT_OUTCOMES_KEPT", "Batch", "Outcome", "Progress"]

R = TypeVar("R", bound=FetchResult)

RECENT_OUTCOMES_KEPT = 4096
"""How many finished ids a batch remembers, so a repeat of one is answered without a request."""


@dataclass(frozen=True, slots=True)
class Outcome(Generic[R]):
    """What became of one input id of a batch: a result, or the error that stopped it."""

    request_id: str
    """The id as normalised (always text); for a malformed id, its text as given."""
    index: int
    """The id's position in the input, counting from 0."""
    result: R | None
    """The typed result, or None if `error` is set."""
    error: Exception | None
    """Why there is no result: any `ModelsLabError` (`GenerationFailedError`, ...)."""

    @property
    def ok(self) -> bool:
        """Whether there is a result and no error."""
        return self.error is None


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


def check_concurrency(concurrency: int) -> int:
    """Return `concurrency` if it is a usable batch width (an int >= 1)."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"concurrency must be an int >= 1; got {concurrency!r}")
    return concurrency


class Batch(Generic[R]):
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
        self._engine = _Engine(
            ids, work, concurrency=check_concurrency(concurrency), ordered=ordered
        )
        self._receive = self._engine.receive
        self._driver: asyncio.Task[None] | None = None
        self._on_progress = on_progress
        self._total = len(ids) if hasattr(ids, "__len__") else None  # type: ignore[arg-type]
        self._succeeded = 0
        self._failed = 0
        self._callback_error: Exception | None = None
        self._interrupted = False

    def __repr__(self) -> str:
        state = "not started" if self._driver is None else "running"
        if self._driver is not None and self._driver.done():
            state = "finished"
        engine = self._engine
        return f"Batch(concurrency={engine.concurrency}, ordered={engine.ordered}, {state})"

    def __aiter__(self) -> Batch[R]:
        return self

    async def __anext__(self) -> Outcome[R]:
        if self._callback_error is not None:
            error, self._callback_error = self._callback_error, None
            self._abandon()
            raise error
        if self._interrupted:
            raise RuntimeError(
                "this batch stopped when a wait for its next outcome was cancelled; "
                "ids it had read may be unanswered: start a new batch for them"
            )
        if self._driver is None:
            # A task of its own, not a task group: an async iterator cannot hold a task
            # group open across its yields. Inside, the work is structured (anyio task
            # group), and the driver is always cancelled on aclose(), at the end of an
            # `async with`, or when this iterator is dropped (the task holds only the
            # engine, never this handle, so dropping it is seen at once).
            self._driver = asyncio.get_running_loop().create_task(self._engine.drive())
        try:
            try:  # anyio's receive() always yields to the loop first; skip that when ready
                outcome = self._receive.receive_nowait()
            except anyio.WouldBlock:
                outcome = await self._receive.receive()
        except anyio.EndOfStream:
            self._receive.close()
            await self._raise_driver_failure()
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
            in_flight=self._engine.positions_read - done,
            total=self._total,
        )
        try:
            self._on_progress(progress)
        except Exception as exc:
            self._callback_error = exc

    async def next_many(self, limit: int) -> list[Outcome[R]]:
        """Wait for the next outcome, then take up to `limit` that are ready; [] at the end."""
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
        driver = self._driver
        if driver is None:
            self._engine.send.close()
        elif not driver.done():
            driver.cancel()
            # asyncio.wait, not `await driver`: the driver's cancellation must end here,
            # while a cancellation of the task calling aclose() must go on through.
            await asyncio.wait({driver})
        if driver is not None:
            _mark_retrieved(driver)
        self._receive.close()

    async def __aenter__(self) -> Batch[R]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if hasattr(self, "_driver"):  # else __init__ failed and nothing was started
            self._abandon()

    def _abandon(self) -> None:
        """Stop the work without waiting for it (for places that cannot await)."""
        driver = self._driver
        if driver is None:
            self._engine.send.close()
        elif not driver.done():
            loop = driver.get_loop()
            if _running_loop() is loop:
                _stop_unread(driver)
            elif not loop.is_closed():  # dropped in another thread: ask the loop's own
                loop.call_soon_threadsafe(_stop_unread, driver)
        else:
            _mark_retrieved(driver)
        self._receive.close()

    async def _raise_driver_failure(self) -> None:
        assert self._driver is not None  # noqa: S101 - the stream ends only after a start
        if self._driver.cancelled():
            return
        try:
            await self._driver
        except BaseExceptionGroup as group:
            # Our own work never raises (errors become outcomes): what is left is a bug
            # in the input iterable or the progress callback; show it as it was raised.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise


class _Engine(Generic[R]):
    """The state and tasks behind one `Batch`: reads ids, runs work, delivers outcomes."""

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
        self.send: MemoryObjectSendStream[Outcome[R]]
        self.receive: MemoryObjectReceiveStream[Outcome[R]]
        # Buffered up to `concurrency`, so finished work rarely waits for the consumer's
        # turn on the event loop; still bounded, as the slots are.
        self.send, self.receive = anyio.create_memory_object_stream[Outcome[R]](concurrency)
        # One slot per input position, from reading it until its outcome is taken: this
        # bounds work in flight, outcomes held for ordering, and how far input is read.
        self.slots = anyio.Semaphore(concurrency)
        self.waiting: dict[str, list[int]] = {}
        self.recent: OrderedDict[str, tuple[R | None, Exception | None]] = OrderedDict()
        self.held: dict[int, Outcome[R]] = {}
        self.next_index = 0
        self.emit_lock = anyio.Lock()
        self.task_group: anyio.abc.TaskGroup
        self.workers = 0
        self.busy = 0

    async def drive(self) -> None:
        source = _Source(self.ids)
        async with source, self.send, anyio.create_task_group() as tg:
            self.task_group = tg
            self.start_worker(source)
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
            found, raw = await source.next()
            if not found:
                self.slots.release()
                return
            position = self.positions_read
            self.positions_read += 1
            self.busy += 1
            if self.busy == self.workers and self.workers < self.concurrency:
                self.start_worker(source)
            try:
                await self.take(position, raw)
            finally:
                self.busy -= 1

    async def take(self, position: int, raw: object) -> None:
        try:
            request_id = normalize_request_id(raw)
        except ValueError as exc:
            await self.deliver(Outcome(_text_of(raw), position, None, exc))
            return
        if request_id in self.waiting:  # a repeat of an id in progress: answer it with that
            self.waiting[request_id].append(position)
            return
        if request_id in self.recent:
            self.recent.move_to_end(request_id)
            await self.deliver(Outcome(request_id, position, *self.recent[request_id]))
            return
        self.waiting[request_id] = [position]
        result: R | None = None
        error: Exception | None = None
        try:
            result = await self.work(request_id)
        except Exception as exc:
            error = exc
        self.recent[request_id] = (result, error)
        if len(self.recent) > RECENT_OUTCOMES_KEPT:
            self.recent.popitem(last=False)
        for waiting_position in self.waiting.pop(request_id):
            await self.deliver(Outcome(request_id, waiting_position, result, error))

    async def deliver(self, outcome: Outcome[R]) -> None:
        if not self.ordered:
            await self.emit(outcome)
            return
        self.held[outcome.index] = outcome
        async with self.emit_lock:
            while self.next_index in self.held:
                await self.emit(self.held.pop(self.next_index))
                self.next_index += 1

    async def emit(self, outcome: Outcome[R]) -> None:
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


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _stop_unread(driver: asyncio.Task[None]) -> None:
    # Whatever the driver ends with now has no one left to read it: that is not an
    # unretrieved exception ("Task exception was never retrieved" in the log).
    driver.add_done_callback(_mark_retrieved)
    driver.cancel()


def _mark_retrieved(task: asyncio.Task[None]) -> None:
    # A failure nobody iterated far enough to see is still not "never retrieved".
    if task.done() and not task.cancelled():
        task.exception()


def _text_of(raw: object) -> str:
    return raw if isinstance(raw, str) else repr(raw)


class _Source:
    """The input ids, read one at a time by many workers; remembers why it broke, if it did."""

    def __init__(self, ids: Iterable[object] | AsyncIterable[object]) -> None:
        self._sync: Iterator[object] | None = None
        self._async: AsyncIterator[object] | None = None
        if isinstance(ids, AsyncIterable):
            self._async = aiter(ids)
        else:
            self._sync = iter(ids)
        self._lock = anyio.Lock()  # two workers must not await one async iterator at once
        self._done = False
        self.failure: Exception | None = None

    async def next(self) -> tuple[bool, object]:
        """The next id as `(True, id)`, or `(False, None)` once the input is over."""
        if self._done:
            return False, None
        try:
            if self._sync is not None:
                return True, next(self._sync)
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
