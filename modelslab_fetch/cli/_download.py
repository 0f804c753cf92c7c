"""`modelslab-fetch download`: save the images of finished jobs into a folder."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import AccountError, Downloaded, FetchResult, RequestNotFoundError, Status
from ._commands import (
    EXIT_FAILED,
    EXIT_OK,
    Streams,
    Summary,
    UsageError,
    count_files,
    download_words,
    emit,
    files_words,
    ids_from,
    make_client,
    need_ids,
    prepare_folder,
    read_api_key,
    resource_for,
)
from ._results import read_records, record_result
from ._words import account_stop_message, counted, in_plain_words, unknown_ids_hint

__all__ = ["run_download"]


def _results_in(path: Path) -> list[FetchResult]:
    if not path.exists():
        raise UsageError(f"no results file at {path}; write one with `wait --output FILE`")
    found = (record_result(record) for record in read_records(path, option="--from-results"))
    return [result for result in found if result is not None]


async def run_download(args: argparse.Namespace, streams: Streams) -> int:  # noqa: PLR0912
    """`modelslab-fetch download`: save the images of finished jobs into a folder."""
    folder = Path(args.dir)
    if args.from_results and (args.ids or args.ids_file):
        raise UsageError("give ids or --from-results FILE, not both")
    results: list[FetchResult] = []
    if args.from_results:
        results = _results_in(Path(args.from_results))
    else:
        need_ids(args)
    api_key = read_api_key(args)
    prepare_folder(folder, "--dir")
    say = _sayer(streams, as_json=args.json)
    not_downloadable = unknown = 0
    async with make_client(args, api_key, streams=streams) as client:
        if not args.from_results:
            ids = ids_from(args).ids
            async for outcome in resource_for(client, args).fetch_many(ids):
                unknown += isinstance(outcome.error, RequestNotFoundError)
                if isinstance(outcome.error, AccountError):
                    message = account_stop_message(outcome.error, results=None)
                    streams.err.write(f"modelslab-fetch download: {message}\n")
                    return EXIT_FAILED
                if outcome.result is not None and outcome.result.succeeded:
                    results.append(outcome.result)
                    continue
                not_downloadable += 1
                reason = (
                    in_plain_words(outcome.error)
                    if outcome.error is not None
                    else _not_ready_words(outcome.result)
                )
                say(
                    {"event": "skipped", "request_id": outcome.request_id, "reason": reason},
                    f"{outcome.request_id}: nothing to download: {reason}",
                )
        started_ns = time.time_ns()
        done: list[Downloaded] = await client.download_many(results, folder)
    files = Summary()
    for one in done:
        count_files(files, one.paths, started_ns)
    failures = [d for d in done if not d.ok]
    for one in done:
        if one.error is None:
            say(
                {
                    "event": "downloaded",
                    "request_id": one.request_id,
                    "files": [str(p) for p in one.paths],
                },
                None,
            )
        else:
            words = download_words(one.error, folder)
            say(
                {"event": "failed", "request_id": one.request_id, "error": words},
                f"{one.request_id}: files not saved: {words}",
            )
    nothing = not done and not not_downloadable
    if args.json:
        emit(
            streams.out,
            {
                "event": "summary",
                "images": files.images,
                "already_there": files.already_there,
                "folder": str(folder),
                "failed": len(failures),
                "not_downloadable": not_downloadable,
            },
        )
    elif not args.quiet:
        problems = [
            f"{counted(len(failures), 'id')} with files not saved" if failures else "",
            f"{counted(not_downloadable, 'id')} with nothing to download"
            if not_downloadable
            else "",
        ]
        said = "; ".join(p for p in problems if p)
        streams.err.write(files_words(files, folder) + (f" ({said})" if said else "") + "\n")
    hint = unknown_ids_hint(client.base_url, unknown, not_downloadable + len(results))
    if hint is not None:
        streams.err.write(hint + "\n")
    if nothing:
        streams.err.write(
            f"modelslab-fetch download: {args.from_results} holds no successes to download "
            "images for\n"
        )
    return EXIT_FAILED if failures or not_downloadable or nothing else EXIT_OK


def _not_ready_words(result: FetchResult | None) -> str:
    if result is None:
        return "no answer"
    if result.status is Status.PROCESSING:
        return "the job is still processing; run `modelslab-fetch wait ID --dir DIR`"
    return f"the job {result.status.value}" + (f": {result.message}" if result.message else "")


def _sayer(streams: Streams, *, as_json: bool) -> Callable[[dict[str, Any], str | None], None]:
    def say(event: dict[str, Any], words: str | None) -> None:
        if as_json:
            emit(streams.out, event)
        elif words is not None:
            streams.err.write(words + "\n")

    return say
