"""The `modelslab-fetch` command: fetch, wait, download, and a demo against a simulator."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import textwrap
import traceback
from collections.abc import Iterator, Sequence

import anyio

from .. import ModelsLabError, __version__

if sys.version_info < (3, 11):  # pragma: no cover - the builtin arrived in 3.11
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found,unused-ignore]
from ._commands import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Streams,
    UsageError,
    run_fetch,
    run_wait,
)
from ._demo import add_simulate_options, run_demo, run_simulate
from ._download import run_download
from ._lines import forgiving
from ._responses import ENDPOINT_NAMES
from ._usage import os_words
from ._words import in_plain_words

__all__ = ["main"]

EXIT_BROKEN_PIPE = 128 + 13
"""What a shell reports for a command killed by SIGPIPE: the reader went away."""

EXIT_CODES = """\
exit status:
  0    everything asked was done (every id succeeded, every image saved)
  1    some ids or images failed, or the account stopped the run (see the message)
  2    the command was called wrongly (nothing was sent)
  130  interrupted (Ctrl-C); with --output, --resume finishes the run
  141  whoever read the output stopped reading (`| head -1`): ended quietly"""

DEMO_EXIT_CODES = """\
exit status:
  0    every simulated job was accounted for as simulated, its images saved
  1    the demo did not go as simulated (see the message)
  2    the command was called wrongly (nothing was started)
  130  interrupted (Ctrl-C)"""

SIMULATE_EXIT_CODES = """\
exit status:
  0    stopped with Ctrl-C (it serves until then)
  2    the command was called wrongly, or cannot listen there (nothing was served)"""

KEY_HELP = (
    "The API key is read from MODELSLAB_API_KEY or --api-key-file (never from the command line)."
)


def main(  # noqa: PLR0911 - one exit per kind of ending
    argv: Sequence[str] | None = None, *, streams: Streams | None = None
) -> int:
    """Run the command line; return the exit status (0 ok, 1 some failed, 2 usage, 130)."""
    own_streams = streams is None
    if streams is None:
        # The process's own streams: whatever a server says must not make a write fail.
        forgiving(sys.stdout)
        forgiving(sys.stderr)
        streams = Streams()
    parser = _parser()
    try:
        # argparse prints usage errors and --help on sys.stderr/stdout: send them to ours.
        with contextlib.redirect_stderr(streams.err), contextlib.redirect_stdout(streams.out):
            args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage error (or --help) already
        return int(exit_.code or 0)
    name = f"modelslab-fetch {args.command}"
    garbled = _undecodable(args)
    if garbled is not None:
        streams.err.write(
            f"{name}: error: {garbled} holds bytes that are not text in this terminal's "
            "encoding; retype it, or set a UTF-8 locale (e.g. LANG=C.UTF-8)\n"
        )
        return EXIT_USAGE
    _quiet_library_logs()
    try:
        return _run(args, streams)
    except BrokenPipeError:
        # The reader went away (`modelslab-fetch fetch ... | head -1`): what it wanted it
        # has. Stop quietly, as a command killed by SIGPIPE does, with its status.
        if own_streams:
            _silence_broken_pipes()
        return EXIT_BROKEN_PIPE
    except UsageError as exc:
        streams.err.write(f"{name}: error: {exc}\n")
        return EXIT_USAGE
    except OSError as exc:
        # Writing results failed part way (a full disk, say): the file holds what was done.
        streams.err.write(f"{name}: error: {os_words(exc)}{_resume_hint(args)}\n")
        return EXIT_FAILED
    except ModelsLabError as exc:
        streams.err.write(f"{name}: error: {in_plain_words(exc)}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        streams.err.write(f"\ninterrupted{_resume_hint(args)}\n")
        return EXIT_INTERRUPTED
    except Exception as exc:
        # No input may show a Python traceback; this is a bug of ours, said in one line
        # (with the traceback only when asked for, by --verbose).
        if getattr(args, "verbose", False):
            streams.err.write("".join(traceback.format_exception(exc)))
        streams.err.write(
            f"{name}: unexpected error ({type(exc).__name__}: {exc}); please report it "
            "(run again with --verbose for details)\n"
        )
        return EXIT_FAILED


def _silence_broken_pipes() -> None:
    """Point a closed standard stream at /dev/null, so that nothing complains at exit.

    Python flushes standard output once more when it exits; into a closed pipe that
    prints "Exception ignored ... BrokenPipeError" (the fix Python's documentation
    gives for SIGPIPE).
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)


def _undecodable(args: argparse.Namespace) -> str | None:
    """The first argument holding undecodable bytes (surrogate escapes), by its option."""
    for key, value in vars(args).items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and any(
                char == "\x00" or "\udc80" <= char <= "\udcff" for char in item
            ):
                return "an id" if key == "ids" else f"--{key.replace('_', '-')}"
    return None


def _resume_hint(args: argparse.Namespace) -> str:
    output = getattr(args, "output", None)
    if output:
        return f"; results so far are in {output}: run the same command with --resume to finish"
    if args.command == "wait":
        return "; use --output FILE to keep results across interruptions"
    return ""


class _Help(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and each option's default when it has a telling one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" not in text
            and action.option_strings
            and default not in (None, False, argparse.SUPPRESS)
        ):
            text += " (default: %(default)s)"
        return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    example: str,
    *,
    exit_codes: str = EXIT_CODES,
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=summary,
        description=f"{summary}.\n\n" + "\n".join(textwrap.wrap(description, 79)),
        epilog=f"example:\n  {example}\n\n{exit_codes}",
        formatter_class=_Help,
    )


def _common(sub: argparse.ArgumentParser, json_help: str) -> None:
    sub.add_argument(
        "--base-url", metavar="URL", help="API root (default: $MODELSLAB_BASE_URL or ModelsLab's)"
    )
    sub.add_argument("--api-key-file", metavar="FILE", help="read the API key from FILE")
    sub.add_argument("--json", action="store_true", help=json_help)
    sub.add_argument("--quiet", "-q", action="store_true", help="no progress or summary")
    sub.add_argument("--verbose", "-v", action="store_true", help="also log retries and pauses")


def _ids(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("ids", nargs="*", metavar="ID", help="request ids, or - for standard input")
    sub.add_argument(
        "--ids-file",
        metavar="FILE",
        help="one id per line, UTF-8; blank lines and # comments skipped (- for stdin)",
    )
    sub.add_argument(
        "--endpoint",
        choices=ENDPOINT_NAMES,
        metavar="NAME",
        help="the fetch endpoint the ids were queued on (default: images; with "
        "--from-responses, the one each response names): " + ", ".join(ENDPOINT_NAMES),
    )


def _private_downloads(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--allow-private-downloads",
        action="store_true",
        help="let downloads reach private, loopback and link-local addresses (by default "
        "only public ones: an output URL into your own network is refused)",
    )


def add_wait_options(wait: argparse.ArgumentParser) -> None:
    """The options of `modelslab-fetch wait` (ids and common options included)."""
    _ids(wait)
    _common(wait, "JSON objects on stdout, one per line: results, progress, summary")
    wait.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="ids waited on at once (default: 1024)",
    )
    wait.add_argument(
        "--timeout", type=_seconds, default=600.0, metavar="SECONDS", help="longest wait per id"
    )
    wait.add_argument(
        "--output", "-o", metavar="FILE", help="write one JSON line per id here, as each is done"
    )
    wait.add_argument(
        "--resume", action="store_true", help="finish the run in --output: skip ids final there"
    )
    wait.add_argument(
        "--overwrite", action="store_true", help="empty --output first (its results are lost)"
    )
    wait.add_argument(
        "--dir",
        metavar="DIR",
        help="save each success's images into DIR (as `download --dir` does) before its line",
    )
    _private_downloads(wait)
    # Its first name, kept (hidden) so that scripts written for it still run.
    wait.add_argument("--download", dest="dir", metavar="DIR", help=argparse.SUPPRESS)
    wait.add_argument(
        "--from-responses",
        metavar="FILE",
        help="generation responses, one JSON object a line (- for stdin); each is waited "
        "on at the endpoint its fetch_result names, or at --endpoint if given",
    )


def _parser() -> argparse.ArgumentParser:
    # argparse, not Typer/Click: the help a person needs (descriptions, defaults, exit
    # statuses, an example) is a formatter and an epilog away; argparse already exits 2
    # on usage errors, prints into our streams, and adds no dependency to the package.
    # rich is used where it earns its place: the live view.
    parser = argparse.ArgumentParser(
        prog="modelslab-fetch",
        description="Collect ModelsLab's queued images: fetch, wait, download.\n\n" + KEY_HELP,
        epilog="run `modelslab-fetch COMMAND --help` for each command's options (and "
        "exit statuses); start with `modelslab-fetch demo`\n\n"
        + EXIT_CODES.replace("exit status:", "exit status of fetch, wait and download:", 1),
        formatter_class=_Help,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fetch = _command(
        commands,
        "fetch",
        "Ask once where each job stands",
        "Prints one line per id: id, status, and the image URLs or the reason. "
        "Exits 1 if any job failed or could not be asked. " + KEY_HELP,
        "modelslab-fetch fetch 13443927 13443928",
    )
    _ids(fetch)
    _common(fetch, "one JSON object per id on stdout")
    fetch.set_defaults(run=run_fetch)

    wait = _command(
        commands,
        "wait",
        "Wait for every job to finish, optionally saving the images",
        "Polls each id until it succeeds or fails. With --output, each id's line is written "
        "once everything asked of it is done (with --dir: its files saved), so an "
        "interrupted run is finished by the same command with --resume. " + KEY_HELP,
        "modelslab-fetch wait --ids-file ids.txt -o results.jsonl --dir images/",
    )
    add_wait_options(wait)
    wait.set_defaults(run=run_wait)

    download = _command(
        commands,
        "download",
        "Save the images of finished jobs into a folder",
        "From a results file of `wait`, or by asking for each id once. Files are named "
        "{id}-{n}.{ext} ({endpoint}.{id}-{n}.{ext} for endpoints other than images); "
        "complete files already there are kept. Exits 1 if any id had "
        "nothing to download or any image was not saved. " + KEY_HELP,
        "modelslab-fetch download --from-results results.jsonl --dir images/",
    )
    _ids(download)
    _common(download, "one JSON object per id on stdout, then a summary")
    download.add_argument("--from-results", metavar="FILE", help="a results file of `wait`")
    download.add_argument("--dir", required=True, metavar="DIR", help="folder to save into")
    _private_downloads(download)
    download.set_defaults(run=run_download)

    demo = _command(
        commands,
        "demo",
        "See it all work against a local simulator",
        "Queues simulated jobs on a simulator on loopback, with faults, waits for them "
        "with progress and saves their images. No API key needed.",
        "modelslab-fetch demo --jobs 50 --dir demo/",
        exit_codes=DEMO_EXIT_CODES,
    )
    demo.add_argument("--jobs", type=_positive_int, default=200, metavar="N", help="jobs to queue")
    demo.add_argument("--dir", default="modelslab-demo", help="where images and results go")
    demo.add_argument("--seed", type=int, default=7, help="the simulator's random seed")
    demo.add_argument("--fresh", action="store_true", help="empty --dir first")
    demo.add_argument("--json", action="store_true", help="JSON objects on stdout, no prose")
    demo.add_argument("--quiet", "-q", action="store_true", help="no progress or summary")
    demo.set_defaults(run=run_demo)

    simulate = _command(
        commands,
        "simulate",
        "Serve a ModelsLab simulator on loopback",
        "Answers ModelsLab's fetch calls with simulated jobs and chosen faults, until "
        "Ctrl-C. Point code at it with MODELSLAB_BASE_URL.",
        "modelslab-fetch simulate --port 8787 --jobs 20 --error-rate 0.05",
        exit_codes=SIMULATE_EXIT_CODES,
    )
    add_simulate_options(simulate)
    simulate.set_defaults(run=run_simulate)
    return parser


def _run(args: argparse.Namespace, streams: Streams) -> int:
    try:
        if args.command in ("demo", "simulate"):
            return int(args.run(args, streams))
        return int(anyio.run(args.run, args, streams))
    except BaseExceptionGroup as group:
        # Task groups wrap what their bodies raised, nested ones more than once; several
        # tasks may fail alike at once (a full disk): the first is shown, as itself, and an
        # interruption wins over everything.
        leaves = list(_leaves(group))
        first = next((e for e in leaves if isinstance(e, KeyboardInterrupt)), leaves[0])
        raise first from None


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def _quiet_library_logs() -> None:
    # The library's log lines are for programs (MODELSLAB_LOG=info shows them): on a
    # terminal they would tear the live progress line, and the command hears of retries
    # and pauses through the client's events instead (`--verbose` writes those). Without
    # a handler, Python would print the library's warnings on stderr as they are.
    logger = logging.getLogger("modelslab_fetch")
    if not any(getattr(old, "_modelslab_cli", False) for old in logger.handlers):
        handler = logging.NullHandler()
        handler._modelslab_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def console_main() -> None:  # pragma: no cover - the installed script's entry point
    """Entry point of the `modelslab-fetch` script."""
    sys.exit(main())
