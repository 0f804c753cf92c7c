"""What each `modelslab-fetch` command does, on top of the library's public calls."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio

from .. import (
    API_KEY_ENV,
    AccountError,
    AsyncModelsLab,
    AuthenticationError,
    ConfigurationError,
    FetchResource,
    FetchResult,
    ModelsLabError,
    Outcome,
    RequestNotFoundError,
    Status,
)
from ._ids import IdsToRead, read_ids
from ._idset import IdSet, resume_key
from ._lines import json_line
from ._progress import Activity, ProgressView, choose_mode
from ._responses import (
    DEFAULT_ENDPOINT,
    ResponseLines,
    line_record,
    resource_named,
    start_waiting,
)
from ._results import SOURCE, ResultsFile, outcome_record, record_result
from ._usage import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, os_words
from ._words import account_stop_message, counted, in_plain_words, unknown_ids_hint

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Streams",
    "Summary",
    "UsageError",
    "collect",
    "prepare_folder",
    "resource_for",
]

DOWNLOADS_PENDING = 64

_CLOCK_SLACK_NS = 50_000_000


@dataclass
class Summary:
    """What a `wait` run did, for the closing line and the exit status."""

    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    skipped_failed: int = 0
    """Of the ids skipped by --resume, those whose final outcome was a failure."""
    repeated: int = 0
    unknown: int = 0
    """Of the ids that failed, those the server did not know."""
    images: int = 0
    """Files this run saved."""
    already_there: int = 0
    """Files found complete in the folder, kept as they were."""
    download_failures: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    stopped_by: AccountError | None = None
    """The account-level error that stopped the run early, if one did."""

    def count_failure(self, error: Exception | None) -> None:
        """One more id failed, with `error`."""
        self.failed += 1
        self.unknown += isinstance(error, RequestNotFoundError)

    @property
    def all_ok(self) -> bool:
        """Whether every id succeeded and every image was saved."""
        return (
            self.failed == 0
            and self.skipped_failed == 0
            and not self.download_failures
            and self.stopped_by is None
        )

    def as_event(self) -> dict[str, Any]:
        """The closing `--json` event."""
        return {
            "event": "summary",
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "skipped_failed": self.skipped_failed,
            "repeated": self.repeated,
            "images": self.images,
            "already_there": self.already_there,
            "download_failures": self.download_failures,
            "elapsed_s": round(self.elapsed, 2),
            "stopped": None if self.stopped_by is None else in_plain_words(self.stopped_by),
            "ok": self.all_ok,
        }


@dataclass
class Streams:
    """Where a command writes: results on `out`, progress and messages on `err`."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)


def emit(out: TextIO, event: dict[str, Any]) -> None:
    """Write one `--json` object on its own line (the only thing `--json` puts on stdout)."""
    out.write(json_line(event) + "\n")
    out.flush()


def resource_for(client: AsyncModelsLab, args: argparse.Namespace) -> FetchResource[Any]:
    """The endpoint a command works on, from `--endpoint` (the one place it is chosen)."""
    return resource_named(client, getattr(args, "endpoint", None) or DEFAULT_ENDPOINT)


def read_api_key(args: argparse.Namespace) -> str | None:
    """The key from `--api-key-file`, or None to use the environment's; checked first.

    `UsageError` if there is no key at all, or the file cannot be read or is empty.
    """
    if getattr(args, "api_key_file", None):
        try:
            api_key = Path(args.api_key_file).read_text(encoding="utf-8-sig").strip()
        except (OSError, UnicodeError) as exc:
            why = os_words(exc, args.api_key_file) if isinstance(exc, OSError) else "not text"
            raise UsageError(f"cannot read --api-key-file {why}") from None
        if not api_key:
            raise UsageError(f"--api-key-file {args.api_key_file} is empty; put the API key in it")
        return api_key
    if not os.environ.get(API_KEY_ENV, "").strip():
        raise UsageError(
            f"no API key: set {API_KEY_ENV} (or pass --api-key-file FILE); "
            "to see the tool work without one, run: modelslab-fetch demo"
        )
    return None


def make_client(
    args: argparse.Namespace,
    api_key: str | None = None,
    *,
    activity: Activity | None = None,
    streams: Streams | None = None,
    **options: Any,
) -> AsyncModelsLab:
    """The client for a command, from `--base-url`, `--api-key-file` and the environment.

    Its events go to `activity` (the progress view's), or with `--verbose` to a fresh
    `Activity` that writes each retry and pause to `streams.err`.
    """
    if api_key is None:
        api_key = read_api_key(args)
    options.setdefault("allow_private_downloads", getattr(args, "allow_private_downloads", False))
    if activity is None and getattr(args, "verbose", False):
        activity = Activity(log=(streams or Streams()).err)
    try:
        return AsyncModelsLab(api_key=api_key, base_url=args.base_url, on_event=activity, **options)
    except ConfigurationError as exc:
        if exc.option == "base_url":
            raise UsageError(f"--base-url (or MODELSLAB_BASE_URL) is unusable: {exc}") from None
        raise UsageError(str(exc)) from None
    except AuthenticationError as exc:
        raise UsageError(in_plain_words(exc)) from None


def prepare_folder(path: Path, option: str) -> None:
    """Make sure images can be saved in `path` before any work.

    The `.part` files a killed run left there are the library's to remove: its first
    download into the folder does it, leaving alone those another run still writes.
    """
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a folder; give a folder to save into")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".modelslab-check-"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot save images in {option} {os_words(exc, path)}") from None


def count_files(summary: Summary, paths: Iterable[Path], since_ns: int) -> None:
    """Count `paths` as saved by this run, or as already there (kept as they were).

    The downloader keeps a complete file it finds and does not say so: a file last
    written before the downloads started was there already. File times come from the
    kernel's coarse clock (a tick, up to 10 ms behind): the start is moved back by 50
    ms, far less than a command takes to start, so a file of an earlier run is never
    taken for a new one. (On a file system that keeps times to the second or two, such
    as FAT, a new file may be counted as there already: only the count is wrong.)
    """
    since_ns -= _CLOCK_SLACK_NS
    for path in paths:
        try:
            written = path.stat().st_mtime_ns
        except OSError:  # gone since (another program): it was saved, as far as we know
            written = since_ns
        if written >= since_ns:
            summary.images += 1
        else:
            summary.already_there += 1


def files_words(summary: Summary, folder: Path | None = None) -> str:
    """`3 files saved, 2 already there`; `nothing new saved: 5 files already there`."""
    where = "" if folder is None else f" in {folder}/"
    if summary.already_there and not summary.images:
        return f"nothing new saved{where}: {counted(summary.already_there, 'file')} already there"
    words = f"{counted(summary.images, 'file')} saved{where}"
    if summary.already_there:
        words += f", {counted(summary.already_there, 'file')} already there"
    return words


def download_words(error: BaseException, folder: Path | None) -> str:
    """Why a result's files were not saved, in the command's words."""
    if isinstance(error, OSError) and not isinstance(error, ModelsLabError):
        return f"cannot save into {os_words(error, folder)}"
    return in_plain_words(error)


async def collect(
    client: AsyncModelsLab,
    ids: Iterable[Any] | AsyncIterator[Any],
    *,
    streams: Streams,
    view: ProgressView,
    results: ResultsFile | None,
    download_dir: Path | None,
    concurrency: int | None,
    timeout: float | None,
    as_json: bool,
    endpoint: str | None = None,
    lines: ResponseLines | None = None,
) -> Summary:
    """Wait for every id, writing each outcome once all asked of it is done.

    With a download folder, a success's line is written only after its images are on
    disk: an id whose line says it is final has everything; one without a line (the run
    was interrupted) or with a non-final line is done again by `--resume`. The ids are
    waited on at `endpoint` (default: images); with `lines`, `ids` are its generation
    responses instead, each waited on at the endpoint it names (or at `endpoint`), and
    an input whose line is the problem is recorded as `line-N`.
    """
    summary = Summary()
    # The second clock is the one file times are written with (see count_files).
    started, started_ns = time.monotonic(), time.time_ns()

    def write(record: dict[str, Any]) -> None:
        if results is not None:
            results.append(record)
        else:
            _print_record(streams.out, record, as_json=as_json)

    async def download_then_write(result: FetchResult, record: dict[str, Any]) -> None:
        assert download_dir is not None  # noqa: S101 - only started with a folder
        try:
            paths = await client.download(result, download_dir)
        except Exception as exc:
            words = download_words(exc, download_dir)
            summary.download_failures.append(f"{result.request_id}: {words}")
            record.update(
                ok=False,
                final=False,
                error={
                    "type": type(exc).__name__,
                    "message": words,
                    "words": f"the job succeeded but its files were not saved: {words}; "
                    "run the same command with --resume to try again",
                },
            )
        else:
            count_files(summary, paths, started_ns)
            record["files"] = [path.name for path in paths]
        finally:
            download_slots.release()
        write(record)

    async def tick() -> None:
        while True:
            view.tick()
            await anyio.sleep(0.25)

    # Downloads waiting to start are bounded too, so a slow CDN slows the batch down
    # instead of piling up tasks.
    download_slots = anyio.Semaphore(DOWNLOADS_PENDING)

    async with anyio.create_task_group() as ticker:
        ticker.start_soon(tick)
        async with anyio.create_task_group() as downloads:
            batch = start_waiting(
                client,
                _counted(ids, view),
                endpoint=endpoint,
                from_responses=lines is not None,
                concurrency=concurrency,
                timeout=timeout,
                on_progress=view.update,
                # One id: the view follows its polls ("queued, about 20s left").
                on_update=view.note_poll if view.total == 1 else None,
            )
            async with batch:
                async for outcome in batch:
                    if isinstance(outcome.error, AccountError):
                        # The same answer awaits every other id: stop here, once, and
                        # record nothing (these ids are not final; --resume asks again).
                        summary.stopped_by = outcome.error
                        break
                    record = _record_of(outcome, lines, client.base_url)
                    if not outcome.ok:
                        summary.count_failure(outcome.error)
                        write(record)
                        continue
                    summary.succeeded += 1
                    if download_dir is not None and outcome.result is not None:
                        await download_slots.acquire()
                        downloads.start_soon(download_then_write, outcome.result, record)
                    else:
                        write(record)
        ticker.cancel_scope.cancel()  # every download has finished: stop the redraws
    summary.elapsed = time.monotonic() - started
    view.finish()
    return summary


def _record_of(
    outcome: Outcome[FetchResult], lines: ResponseLines | None, base_url: str
) -> dict[str, Any]:
    if lines is not None:
        problem = line_record(outcome, lines.line_of(outcome.index), base_url=base_url)
        if problem is not None:  # the line itself is what to fix: named by its number
            return {**problem, "source": SOURCE}
    return outcome_record(outcome, source=SOURCE)


def _counted(
    ids: Iterable[Any] | AsyncIterator[Any], view: ProgressView
) -> Iterable[Any] | AsyncIterator[Any]:
    """`ids`, telling the view as each is taken (so it shows ids waited on at once)."""

    def plain() -> Iterable[Any]:
        for request_id in ids:  # type: ignore[union-attr]
            view.note_read()
            yield request_id

    async def lazy() -> AsyncIterator[Any]:
        async for request_id in ids:  # type: ignore[union-attr]
            view.note_read()
            yield request_id

    return lazy() if isinstance(ids, AsyncIterator) else plain()


def _print_record(out: TextIO, record: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        emit(out, {"event": "result", **record})
        return
    detail = " ".join(record["output"]) or record["message"] or ""
    if record["error"] is not None:
        detail = record["error"]["words"]
    out.write(f"{record['request_id']}\t{record['status'] or 'error'}\t{detail}\n")
    out.flush()


def print_summary(streams: Streams, summary: Summary, *, results: ResultsFile | None) -> None:
    """The closing lines: counts, where things went, and what to do next."""
    err = streams.err
    parts = [f"{summary.succeeded} succeeded", f"{summary.failed} failed"]
    if summary.skipped:
        failed_before = (
            f", {summary.skipped_failed} of them failed" if summary.skipped_failed else ""
        )
        parts.append(f"{summary.skipped} already finished (skipped{failed_before})")
    if summary.repeated:
        parts.append(f"{counted(summary.repeated, 'repeated id')} waited on once")
    if summary.images or summary.already_there:
        parts.append(files_words(summary))
    err.write(f"done in {summary.elapsed:.1f}s: " + ", ".join(parts) + "\n")
    for failure in summary.download_failures[:10]:
        err.write(f"  files not saved: {failure}\n")
    if len(summary.download_failures) > 10:
        err.write(f"  ... and {len(summary.download_failures) - 10} more\n")
    if (summary.failed or summary.skipped_failed or summary.download_failures) and results:
        err.write(
            f'failed ids are in {results.path} ("ok": false); those not final (timeouts, '
            "network errors, files not saved) are done again by the same command with "
            "--resume\n"
        )
    err.flush()


async def run_wait(args: argparse.Namespace, streams: Streams) -> int:
    """`modelslab-fetch wait`: wait for every id; results as JSON lines; exit 0/1."""
    if args.resume and not args.output:
        raise UsageError("--resume needs --output FILE: it skips the ids finished in that file")
    if args.overwrite and not args.output:
        raise UsageError("--overwrite needs --output FILE: it empties that file first")
    if args.resume and args.overwrite:
        raise UsageError("give --resume (finish the run in the file) or --overwrite, not both")
    if args.from_responses is not None:
        if args.ids or args.ids_file:
            raise UsageError("give ids or --from-responses FILE, not both")
        if args.from_responses != "-":
            read_ids([], args.from_responses, option="--from-responses")  # checked now
    else:
        need_ids(args)
    api_key = read_api_key(args)
    folder = Path(args.dir) if args.dir else None
    if folder is not None:
        prepare_folder(folder, "--dir")
    results = (
        ResultsFile(Path(args.output), resume=args.resume, overwrite=args.overwrite).open()
        if args.output
        else None
    )
    try:
        return await _wait(args, streams, results=results, folder=folder, api_key=api_key)
    finally:
        if results is not None:
            results.close()


async def _wait(
    args: argparse.Namespace,
    streams: Streams,
    *,
    results: ResultsFile | None,
    folder: Path | None,
    api_key: str | None,
) -> int:
    finished = results.finished_ids() if results is not None else IdSet().freeze()
    skipped = _Counter()
    lines = None
    ids: Iterable[Any] | AsyncIterator[Any]
    if args.from_responses is not None:
        lines = ResponseLines(args.from_responses, finished, skipped)
        ids, total = lines.items(), None
    else:
        ids, total = _without(ids_from(args, finished), finished, skipped)
    # With --verbose, each retry and pause is a line of its own (the view is plain then).
    activity = Activity(log=streams.err if args.verbose else None)
    client = make_client(args, api_key, activity=activity)
    view_stream = streams.out if args.json else streams.err
    view = ProgressView(
        view_stream,
        mode=choose_mode(streams.err, quiet=args.quiet, as_json=args.json, verbose=args.verbose),
        total=total,
        activity=activity,
        requests_in_flight=lambda: client.requests_in_flight,
    )
    try:
        async with client:
            again = Summary()
            if results is not None and folder is not None:
                again = await _images_again(client, results, folder)
            summary = await collect(
                client,
                ids,
                streams=streams,
                view=view,
                results=results,
                download_dir=folder,
                concurrency=args.concurrency,
                timeout=args.timeout,
                as_json=args.json,
                endpoint=args.endpoint,
                lines=lines,
            )
    finally:
        view.close()
    summary.skipped = skipped.count
    summary.skipped_failed = skipped.failed
    summary.repeated = skipped.repeated
    summary.images += again.images
    summary.already_there += again.already_there
    summary.download_failures[:0] = again.download_failures
    if args.quiet:
        pass
    elif args.json:
        emit(streams.out, summary.as_event())
    else:
        print_summary(streams, summary, results=results)
    if summary.stopped_by is not None:
        message = account_stop_message(summary.stopped_by, results=args.output)
        streams.err.write(f"modelslab-fetch wait: {message}\n")
    hint = unknown_ids_hint(client.base_url, summary.unknown, summary.succeeded + summary.failed)
    if hint is not None:
        streams.err.write(hint + "\n")
    return EXIT_OK if summary.all_ok else EXIT_FAILED


async def _images_again(client: AsyncModelsLab, results: ResultsFile, folder: Path) -> Summary:
    """Save the images of successes recorded final whose files are not all in `folder`.

    A run without `--dir`, or files deleted since: the line stays as it is (the
    job's outcome has not changed); only the images are fetched again.
    """
    missing = []
    for record in results.records():
        if record.get("final") is not True or not record.get("ok"):
            continue
        files = record.get("files")
        if isinstance(files, list) and all(
            isinstance(name, str) and (folder / Path(name).name).is_file() for name in files
        ):
            continue
        result = record_result(record)
        if result is not None:
            missing.append(result)
    summary = Summary()
    if not missing:
        return summary
    started_ns = time.time_ns()
    for done in await client.download_many(missing, folder):
        count_files(summary, done.paths, started_ns)
        if done.error is not None:
            words = download_words(done.error, folder)
            summary.download_failures.append(f"{done.request_id}: {words}")
    return summary


def need_ids(args: argparse.Namespace) -> None:
    if not args.ids and not args.ids_file:
        raise UsageError("give request ids as arguments, with --ids-file FILE, or - for stdin")
    if args.ids and args.ids_file:
        raise UsageError("give ids as arguments or with --ids-file, not both")


def ids_from(args: argparse.Namespace, known: Container[str] = ()) -> IdsToRead:
    need_ids(args)
    return read_ids(args.ids, args.ids_file, known)


@dataclass
class _Counter:
    count: int = 0
    failed: int = 0
    repeated: int = 0


def _without(
    given: IdsToRead, finished: IdSet, skipped: _Counter
) -> tuple[Iterable[str] | AsyncIterator[str], int | None]:
    """The ids less those in `finished` and repeats, counted in `skipped` (lazily, if lazy)."""
    # Ids finished before, and those of a file (counted before the first request), are
    # marked as met in their compact sets (a byte each): a run of millions stays small.
    # Only ids not counted before (from standard input) are remembered here.
    counted = given.counted if given.counted is not None else IdSet().freeze()
    seen: set[str] = set()

    def keep(request_id: str) -> bool:
        key = resume_key(request_id)
        if key is None:
            return True  # the batch reports it as invalid, in plain words
        if key in finished:
            if finished.first_sight(key):
                skipped.count += 1
                skipped.failed += finished.failed(key)
            else:
                skipped.repeated += 1
            return False
        if key in counted:
            first = counted.first_sight(key)
        else:
            first = key not in seen
            seen.add(key)
        skipped.repeated += not first
        return first

    async def remaining() -> AsyncIterator[str]:
        async for request_id in given.ids:  # type: ignore[union-attr]
            if keep(request_id):
                yield request_id

    if isinstance(given.ids, AsyncIterator):
        return remaining(), given.total
    kept = [request_id for request_id in given.ids if keep(request_id)]
    return kept, len(kept)


async def run_fetch(args: argparse.Namespace, streams: Streams) -> int:
    """`modelslab-fetch fetch`: one status line per id; exit 1 if any failed or errored."""
    ids = ids_from(args).ids
    bad = asked = unknown = 0
    async with make_client(args, streams=streams) as client:
        async for outcome in resource_for(client, args).fetch_many(ids, ordered=True):
            if isinstance(outcome.error, AccountError):
                message = account_stop_message(outcome.error, results=None)
                streams.err.write(f"modelslab-fetch fetch: {message}\n")
                return EXIT_FAILED
            record = outcome_record(outcome)
            _print_record(streams.out, record, as_json=args.json)
            finished_badly = outcome.result is not None and outcome.result.status in (
                Status.FAILED,
                Status.ERROR,
            )
            bad += (not outcome.ok) or finished_badly
            asked += 1
            unknown += isinstance(outcome.error, RequestNotFoundError)
    hint = unknown_ids_hint(client.base_url, unknown, asked)
    if hint is not None:
        streams.err.write(hint + "\n")
    return EXIT_FAILED if bad else EXIT_OK
