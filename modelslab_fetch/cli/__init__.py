"""The `modelslab-fetch` command: fetch, wait, download, and a demo against a simulator."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import anyio

from .._errors import ModelsLabError

if sys.version_info < (3, 11):  # pragma: no cover - the builtin arrived in 3.11
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]
from .._version import __version__
from ._commands import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Streams,
    UsageError,
    run_download,
    run_fetch,
    run_wait,
)
from ._demo import add_simulate_options, run_demo, run_simulate
from ._responses import ENDPOINT_NAMES

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, *, streams: Streams | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 some failed, 2 usage)."""
    streams = streams or Streams()
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage error already
        return int(exit_.code or 0)
    _route_logs(streams, verbose=getattr(args, "verbose", False))
    try:
        return _run(args, streams)
    except UsageError as exc:
        streams.err.write(f"modelslab-fetch {args.command}: error: {exc}\n")
        return EXIT_USAGE
    except (OSError, UnicodeError, ModelsLabError) as exc:
        # Reading ids or writing results failed part way, or the server refused the key:
        # the results file holds what was done.
        streams.err.write(f"modelslab-fetch {args.command}: error: {exc}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        output = getattr(args, "output", None)
        hint = (
            f"; results so far are in {output}: run the same command with --resume to finish"
            if output
            else "; use --output FILE to keep results across interruptions"
        )
        streams.err.write(f"\ninterrupted{hint}\n")
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelslab-fetch",
        description="Collect ModelsLab's queued images: fetch, wait, download. "
        "The API key is read from MODELSLAB_API_KEY (never from the command line).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--base-url", help="API root (default: $MODELSLAB_BASE_URL or ModelsLab)")
        sub.add_argument("--api-key-file", metavar="FILE", help="read the API key from FILE")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.add_argument("--quiet", "-q", action="store_true", help="no progress or summary")
        sub.add_argument("--verbose", "-v", action="store_true", help="log retries and pauses")

    def ids(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("ids", nargs="*", metavar="ID", help="request ids, or - for stdin")
        sub.add_argument("--ids-file", metavar="FILE", help="one id per line (- for stdin)")
        sub.add_argument(
            "--endpoint",
            default="images",
            choices=ENDPOINT_NAMES,
            metavar="NAME",
            help="the fetch endpoint the ids were queued on (default: images): "
            + ", ".join(ENDPOINT_NAMES),
        )

    fetch = commands.add_parser("fetch", help="ask once where each job stands")
    ids(fetch)
    common(fetch)
    fetch.set_defaults(run=run_fetch)

    wait = commands.add_parser("wait", help="wait for every job to finish")
    ids(wait)
    common(wait)
    wait.add_argument("--concurrency", type=_positive_int, help="ids waited on at once")
    wait.add_argument("--timeout", type=_positive_float, default=600.0, help="seconds per id")
    wait.add_argument("--output", "-o", metavar="FILE", help="append a JSON line per id here")
    wait.add_argument("--resume", action="store_true", help="skip ids finished in --output")
    wait.add_argument("--download", metavar="DIR", help="save the images of successes here")
    wait.add_argument(
        "--from-responses",
        metavar="FILE",
        help="generation responses, one JSON object a line (- for stdin); each is waited "
        "on at the endpoint its fetch_result names",
    )
    wait.set_defaults(run=run_wait)

    download = commands.add_parser("download", help="save the images of finished jobs")
    ids(download)
    common(download)
    download.add_argument("--from-results", metavar="FILE", help="a results file of `wait`")
    download.add_argument("--dir", required=True, help="folder to save into")
    download.set_defaults(run=run_download)

    demo = commands.add_parser("demo", help="see it all work against a local simulator")
    demo.add_argument("--jobs", type=_positive_int, default=200)
    demo.add_argument("--dir", default="modelslab-demo", help="where images go")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--fresh", action="store_true", help="empty --dir first")
    demo.add_argument("--json", action="store_true")
    demo.add_argument("--quiet", "-q", action="store_true")
    demo.set_defaults(run=run_demo)

    simulate = commands.add_parser("simulate", help="serve a ModelsLab simulator on loopback")
    add_simulate_options(simulate)
    simulate.set_defaults(run=run_simulate)
    return parser


def _run(args: argparse.Namespace, streams: Streams) -> int:
    try:
        if args.command in ("demo", "simulate"):
            return int(args.run(args, streams))
        return int(anyio.run(args.run, args, streams))
    except BaseExceptionGroup as group:
        # Task groups wrap what their bodies raised, nested ones more than once; a sole
        # error is shown as itself.
        sole: BaseException = group
        while isinstance(sole, BaseExceptionGroup) and len(sole.exceptions) == 1:
            sole = sole.exceptions[0]
        if sole is group:
            raise
        raise sole from None


def _route_logs(streams: Streams, *, verbose: bool) -> None:
    # The library logs retries and 429 pauses; on a terminal those lines would tear the
    # live progress line, and the summary reports the faults met anyway. --verbose
    # shows them.
    logger = logging.getLogger("modelslab_fetch")
    for old in list(logger.handlers):
        if getattr(old, "_modelslab_cli", False):
            logger.removeHandler(old)
    handler: logging.Handler = (
        logging.StreamHandler(streams.err) if verbose else logging.NullHandler()
    )
    handler._modelslab_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    if verbose:
        logger.setLevel(logging.INFO)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def console_main() -> None:  # pragma: no cover - the installed script's entry point
    """Entry point of the `modelslab-fetch` script."""
    sys.exit(main())
