"""What each `modelslab-fetch` command does, on top of the library's public calls."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio

from .._async_client import AsyncModelsLab
from .._config import API_KEY_ENV
from .._downloads import Downloaded
from .._errors import AccountError, AuthenticationError, ConfigurationError, ModelsLabError
from .._models import FetchResult, Status
from ._ids import read_ids
from ._progress import ProgressView, choose_mode
from ._responses import read_responses, resource_named, start_waiting, unfinished
from ._results import ResultsFile, outcome_record, record_result
from ._words import account_stop_message

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Streams",
    "Summary",
    "UsageError",
    "collect",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DOWNLOADS_PENDING = 64


class UsageError(Exception):
    """A mistake in how the command was called; the message says what to do instead."""


@dataclass
class Summary:
    """What a `wait` run did, for the closing line and the exit status."""

    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    images: int = 0
    download_failures: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    stopped_by: AccountError | None = None
    """The account-level error that stopped the run early, if one did."""

    @property
    def all_ok(self) -> bool:
        """Whether every id succeeded and every image was saved."""
        return self.failed == 0 and not self.download_failures and self.stopped_by is None


@dataclass
class Streams:
    """Where a command writes: results on `out`, progress and messages on `err`."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)


def make_client(args: argparse.Namespace, **options: Any) -> AsyncModelsLab:
    """The client for a command, from `--base-url`, `--api-key-file` and the environment."""
    api_key = None
    if getattr(args, "api_key_file", None):
        try:
            api_key = Path(args.api_key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError) as exc:
            raise UsageError(f"cannot read --api-key-file: {exc}") from None
    elif not os.environ.get(API_KEY_ENV):
        raise UsageError(
            f"no API key: set {API_KEY_ENV} (or pass --api-key-file FILE); "
            "to see the tool work without one, run: modelslab-fetch demo"
        )
    try:
        return AsyncModelsLab(api_key=api_key, base_url=args.base_url, **options)
    except (ConfigurationError, AuthenticationError) as exc:
        raise UsageError(exc.message) from None


async def collect(
    client: AsyncModelsLab,
    ids: Iterable[str] | AsyncIterator[str],
    *,
    total: int | None,
    streams: Streams,
    view: ProgressView,
    results: ResultsFile | None,
    download_dir: Path | None,
    concurrency: int | None,
    timeout: float | None,
    as_json: bool,
    endpoint: str = "images",
    from_responses: bool = False,
) -> Summary:
    """Wait for every id, writing each outcome as it comes; the core of `wait` and `demo`.

    The ids are waited on at `endpoint`; with `from_responses`, `ids` are generation
    responses instead, each waited on at the endpoint it names.
    """
    summary = Summary()
    started = time.monotonic()

    async def download(result: FetchResult) -> None:
        assert download_dir is not None  # noqa: S101 - only started with a folder
        try:
            paths = await client.download(result, download_dir)
        except ModelsLabError as exc:
            summary.download_failures.append(f"{result.id}: {exc.message}")
        except Exception as exc:
            summary.download_failures.append(f"{result.id}: {exc}")
        else:
            summary.images += len(paths)

    async def tick() -> None:
        while True:
            await anyio.sleep(0.25)
            view.tick()

    # Downloads waiting to start are bounded too, so a slow CDN slows the batch down
    # instead of piling up tasks.
    download_slots = anyio.Semaphore(DOWNLOADS_PENDING)

    async def download_then_release(result: FetchResult) -> None:
        try:
            await download(result)
        finally:
            download_slots.release()

    async with anyio.create_task_group() as ticker:
        ticker.start_soon(tick)
        async with anyio.create_task_group() as downloads:
            batch = start_waiting(
                client,
                ids,
                endpoint=endpoint,
                from_responses=from_responses,
                concurrency=concurrency,
                timeout=timeout,
                on_progress=view.update,
            )
            async with batch:
                async for outcome in batch:
                    if isinstance(outcome.error, AccountError):
                        # The same answer awaits every other id: stop here, once, and
                        # record nothing (these ids are not final; --resume asks again).
                        summary.stopped_by = outcome.error
                        break
                    record = outcome_record(outcome)
                    if results is not None:
                        results.append(record)
                    else:
                        _print_record(streams.out, record, as_json=as_json)
                    if not outcome.ok:
                        summary.failed += 1
                        continue
                    summary.succeeded += 1
                    if download_dir is not None and outcome.result is not None:
                        await download_slots.acquire()
                        downloads.start_soon(download_then_release, outcome.result)
        ticker.cancel_scope.cancel()  # every download has finished: stop the redraws
    summary.elapsed = time.monotonic() - started
    view.finish()
    return summary


def _print_record(out: TextIO, record: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
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
        parts.append(f"{summary.skipped} already finished (skipped)")
    if summary.images:
        parts.append(f"{summary.images} images saved")
    err.write(f"done in {summary.elapsed:.1f}s: " + ", ".join(parts) + "\n")
    for failure in summary.download_failures[:10]:
        err.write(f"  download failed: {failure}\n")
    if summary.failed and results is not None:
        err.write(
            f'failed ids are in {results.path} ("ok": false); those not final (timeouts, '
            "network errors) are asked again by the same command with --resume\n"
        )
    err.flush()


async def run_wait(args: argparse.Namespace, streams: Streams) -> int:
    """`modelslab-fetch wait`: wait for every id; results as JSON lines; exit 0/1."""
    if args.resume and not args.output:
        raise UsageError("--resume needs --output FILE: it skips the ids finished in that file")
    from_responses = args.from_responses is not None
    if from_responses and (args.ids or args.ids_file):
        raise UsageError("give ids or --from-responses FILE, not both")
    ids, total = _responses_from(args) if from_responses else _ids_from(args)
    results = ResultsFile(Path(args.output)) if args.output else None
    skipped = _Counter()
    if results is not None and args.resume:
        if from_responses:
            ids = unfinished(ids, results.finished_ids(), skipped)  # type: ignore[arg-type]
        else:
            ids, total = _without(ids, results.finished_ids(), total, skipped)
    view = ProgressView(
        streams.err, mode=choose_mode(streams.err, quiet=args.quiet, as_json=args.json), total=total
    )
    client = make_client(args)
    try:
        async with client:
            summary = await collect(
                client,
                ids,
                total=total,
                streams=streams,
                view=view,
                results=results,
                download_dir=Path(args.download) if args.download else None,
                concurrency=args.concurrency,
                timeout=args.timeout,
                as_json=args.json,
                endpoint=args.endpoint,
                from_responses=from_responses,
            )
    finally:
        if results is not None:
            results.close()
    summary.skipped = skipped.count
    if not args.quiet:
        print_summary(streams, summary, results=results)
    if summary.stopped_by is not None:
        message = account_stop_message(summary.stopped_by, results=args.output)
        streams.err.write(f"modelslab-fetch wait: {message}\n")
    return EXIT_OK if summary.all_ok else EXIT_FAILED


def _responses_from(args: argparse.Namespace) -> tuple[AsyncIterator[Any], None]:
    try:
        return read_responses(args.from_responses), None
    except OSError as exc:
        raise UsageError(f"cannot read --from-responses: {exc.strerror}") from None


def _ids_from(args: argparse.Namespace) -> tuple[Iterable[str] | AsyncIterator[str], int | None]:
    if not args.ids and not args.ids_file:
        raise UsageError("give request ids as arguments, with --ids-file FILE, or - for stdin")
    if args.ids and args.ids_file:
        raise UsageError("give ids as arguments or with --ids-file, not both")
    try:
        return read_ids(args.ids, args.ids_file)
    except OSError as exc:
        raise UsageError(f"cannot read --ids-file: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


@dataclass
class _Counter:
    count: int = 0


def _without(
    ids: Iterable[str] | AsyncIterator[str],
    finished: set[str],
    total: int | None,
    skipped: _Counter,
) -> tuple[Iterable[str] | AsyncIterator[str], int | None]:
    """`ids` less those in `finished`, counted in `skipped` (lazily, for a lazy input)."""

    def keep(request_id: str) -> bool:
        if request_id.strip() in finished:
            skipped.count += 1
            return False
        return True

    async def remaining() -> AsyncIterator[str]:
        async for request_id in ids:  # type: ignore[union-attr]
            if keep(request_id):
                yield request_id

    if isinstance(ids, AsyncIterator):
        return remaining(), None
    kept = [request_id for request_id in ids if keep(request_id)]
    return kept, len(kept)


async def run_fetch(args: argparse.Namespace, streams: Streams) -> int:
    """`modelslab-fetch fetch`: one status line per id; exit 1 if any failed or errored."""
    ids, _total = _ids_from(args)
    bad = 0
    async with make_client(args) as client:
        async for outcome in resource_named(client, args.endpoint).fetch_many(ids, ordered=True):
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
    return EXIT_FAILED if bad else EXIT_OK


def _results_in(path: Path) -> list[FetchResult]:
    if not path.exists():
        raise UsageError(f"no results file at {path}; write one with `wait --output FILE`")
    found = (record_result(record) for record in ResultsFile(path).records())
    return [result for result in found if result is not None]


async def run_download(args: argparse.Namespace, streams: Streams) -> int:
    """`modelslab-fetch download`: save the images of finished jobs into a folder."""
    folder = Path(args.dir)
    results: list[FetchResult] = []
    if args.from_results:
        results = _results_in(Path(args.from_results))
    async with make_client(args) as client:
        if not args.from_results:
            ids, _total = _ids_from(args)
            async for outcome in resource_named(client, args.endpoint).fetch_many(ids):
                if isinstance(outcome.error, AccountError):
                    message = account_stop_message(outcome.error, results=None)
                    streams.err.write(f"modelslab-fetch download: {message}\n")
                    return EXIT_FAILED
                if outcome.result is not None and outcome.result.succeeded:
                    results.append(outcome.result)
                else:
                    reason = outcome.error or f"status {outcome.result.status.value}"  # type: ignore[union-attr]
                    streams.err.write(f"{outcome.request_id}: not downloadable ({reason})\n")
        done: list[Downloaded] = await client.download_many(results, folder)
    saved = sum(len(d.paths) for d in done)
    failures = [d for d in done if not d.ok]
    for failure in failures:
        streams.err.write(f"{failure.request_id}: download failed: {failure.error}\n")
    if not args.quiet:
        streams.err.write(f"{saved} images in {folder}/ ({len(failures)} results failed)\n")
    return EXIT_FAILED if failures else EXIT_OK
