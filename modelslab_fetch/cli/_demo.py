"""`modelslab-fetch demo` and `simulate`: the whole job against the local simulator."""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import math
import shutil
import socket
from collections import Counter
from pathlib import Path

import anyio

from .. import AsyncModelsLab
from ..testing import (
    DEFAULT_WEBHOOK_DELAY,
    ETA_ERROR_MODELS,
    MAX_WEBHOOK_TIMEOUT,
    WEBHOOK_TIMEOUT,
    Faults,
    Simulator,
    SimulatorApp,
    checked_webhook,
    run_simulator,
    simulator_server,
)
from ._commands import (
    EXIT_FAILED,
    EXIT_OK,
    Streams,
    UsageError,
    collect,
    emit,
    prepare_folder,
)
from ._progress import ProgressView, choose_mode
from ._results import ResultsFile
from ._side_by_side import SideBySide, side_by_side
from ._words import counted

__all__ = ["add_simulate_options", "run_demo", "run_simulate", "simulate_faults"]

DEMO_KEY = "demo-key-not-secret"
DEMO_FAULTS = Faults(
    latency=(0.002, 0.03),
    error_rate=0.02,
    edge_page_rate=0.01,
    rate_limit_every=150,
    rate_limit_burst=2,
    retry_after=0.5,
    # As ModelsLab's current docs show it: queue limits with the wait in the body, the
    # old HTTP 200 spam filter, and the odd shapes of optional fields.
    queue_limit_rate=0.01,
    queue_limit_wait=0.5,
    spam_filter_rate=0.01,
    spam_filter_wait=1,
    odd_shape_rate=0.2,
)


def run_demo(args: argparse.Namespace, streams: Streams) -> int:
    """Queue simulated jobs, wait for them all with progress, download their images."""
    folder = Path(args.dir)
    if folder.exists() and args.fresh:
        shutil.rmtree(folder)
    prepare_folder(folder, "--dir")
    # The demo's results are its own: each demo run starts the file afresh.
    results = ResultsFile(folder / "results.jsonl", overwrite=True).open()
    try:
        return _demo(args, streams, folder, results)
    finally:
        results.close()


def _demo(args: argparse.Namespace, streams: Streams, folder: Path, results: ResultsFile) -> int:
    simulator = Simulator(api_key=DEMO_KEY, seed=args.seed)
    app = SimulatorApp(simulator, faults=DEMO_FAULTS, seed=args.seed)
    err = streams.err
    prose = not (args.quiet or args.json)
    # Quiet: nothing is compared, so neither the comparison's simulator nor its receiver
    # is started (two servers, and a null push_and_poll event under --json).
    comparing = contextlib.nullcontext(None) if args.quiet else side_by_side(args.seed)
    with simulator_server(app) as base_url, comparing as beside:
        ids = simulator.queue_many(args.jobs, ready_in=(0.5, 6.0), failure_rate=0.03)
        expected_failures = sum(simulator.jobs[i].final != "success" for i in ids)
        if prose:
            err.write(
                f"simulator on {base_url} (faults: slow answers, 5xx, edge pages, rate limits, "
                "odd response shapes)\n"
                f"waiting for {counted(len(ids), 'queued job')}, downloading into {folder}/ ...\n"
            )
        view = ProgressView(
            streams.out if args.json else err,
            mode=choose_mode(err, quiet=args.quiet, as_json=args.json),
            total=len(ids),
        )

        async def main() -> tuple[int, int, int, float, int]:
            # Push and poll compared meanwhile, on jobs of their own: no time added.
            async with (
                anyio.create_task_group() as comparison,
                AsyncModelsLab(api_key=DEMO_KEY, base_url=base_url) as client,
            ):
                if beside is not None:
                    comparison.start_soon(beside.run)
                summary = await collect(
                    client,
                    ids,
                    streams=streams,
                    view=view,
                    results=results,
                    download_dir=folder,
                    concurrency=None,
                    timeout=60,
                    as_json=args.json,
                )
            return (
                summary.succeeded,
                summary.failed,
                summary.images,
                summary.elapsed,
                len(summary.download_failures),
            )

        try:
            succeeded, failed, images, elapsed, download_failures = anyio.run(main)
        finally:
            view.close()
        faults = Counter(app.faults.kinds)
    accounted = succeeded + failed == len(ids)
    as_simulated = failed == expected_failures and download_failures == 0
    _show_side_by_side(args, streams, beside)
    if args.json:
        emit(
            streams.out,
            {
                "event": "summary",
                "jobs": len(ids),
                "succeeded": succeeded,
                "failed": failed,
                "simulated_failures": expected_failures,
                "images": images,
                "folder": str(folder),
                "results": str(folder / "results.jsonl"),
                "faults": dict(faults),
                "elapsed_s": round(elapsed, 2),
                "ok": accounted and as_simulated,
            },
        )
    elif prose:
        met = ", ".join(f"{n}x {kind}" for kind, n in sorted(faults.items())) or "none"
        err.write(
            f"\n{counted(len(ids), 'job')} accounted for: {succeeded} succeeded, {failed} failed "
            f"({expected_failures} simulated to fail), in {elapsed:.1f}s\n"
            f"faults met and survived: {met}\n"
            f"{counted(images, 'image')} saved in {folder}/, results in "
            f"{folder / 'results.jsonl'}\n"
            "next: set MODELSLAB_API_KEY and run `modelslab-fetch wait ID...` on real jobs\n"
        )
    return EXIT_OK if accounted and as_simulated else EXIT_FAILED


def _show_side_by_side(
    args: argparse.Namespace, streams: Streams, beside: SideBySide | None
) -> None:
    if beside is None:
        return
    if args.json:
        emit(streams.out, beside.as_json())
    elif not args.quiet:
        streams.err.write("\n" + beside.prose())


def add_simulate_options(parser: argparse.ArgumentParser) -> None:
    """The options of `modelslab-fetch simulate` (read back by `simulate_faults`)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8787, help="port to listen on (1-65535)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of jobs and faults")
    parser.add_argument(
        "--jobs", type=int, default=0, metavar="N", help="queue N jobs and print their ids"
    )
    parser.add_argument("--accept-key", default=None, help="the only key accepted")
    parser.add_argument("--latency", type=float, default=0.0, help="max seconds per answer")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of 5xx answers")
    parser.add_argument("--edge-rate", type=float, default=0.0, help="share of HTML edge pages")
    parser.add_argument(
        "--eta-error-model",
        choices=ETA_ERROR_MODELS,
        default="per_answer",
        help="eta errors drawn afresh per answer, or one factor per job (a consistent bias)",
    )
    parser.add_argument("--rate-limit-every", type=int, default=0, help="a 429 burst every N")
    parser.add_argument(
        "--queue-limit-rate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help='share of ModelsLab\'s queue-limit 429s ("retry_after" in the body, no header)',
    )
    parser.add_argument(
        "--queue-limit-wait", type=float, default=1.0, metavar="SECONDS", help="wait they ask for"
    )
    parser.add_argument(
        "--queue-limit-wait-in",
        choices=("body", "reset-header", "both", "mixed"),
        default="body",
        help="where a queue-limit 429 names the wait (reset-header: X-RateLimit-Reset)",
    )
    parser.add_argument(
        "--spam-filter-rate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help='share of the older spam filter\'s HTTP 200 "Rate limit exceeded" answers',
    )
    parser.add_argument(
        "--account-error",
        choices=("no-credits", "plan", "bad-key", "bad-key-legacy"),
        help="refuse fetches: 402 no credits, 403 plan, 401 bad key, or HTTP 200 bad key",
    )
    parser.add_argument(
        "--account-error-after",
        type=int,
        default=0,
        metavar="N",
        help="answer the first N fetches normally before --account-error",
    )
    parser.add_argument(
        "--key-error-status",
        type=int,
        choices=(200, 401),
        default=200,
        help="how a key other than --accept-key is refused (default 200, the older form)",
    )
    parser.add_argument(
        "--odd-shapes",
        type=float,
        nargs="?",
        const=1.0,
        default=0.0,
        metavar="SHARE",
        help="share of answers in odd but valid shapes (alone: all of them)",
    )
    _add_webhook_options(parser)


def _add_webhook_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--webhook",
        metavar="URL",
        help="the jobs --jobs queues POST their final records to URL when they end, as "
        "ModelsLab does (a URL on this machine: 127.0.0.1, ::1 or localhost)",
    )
    parser.add_argument(
        "--webhook-drop-rate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of webhook deliveries never sent (ModelsLab's are best effort)",
    )
    parser.add_argument(
        "--webhook-duplicate-rate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of webhook deliveries sent twice",
    )
    parser.add_argument(
        "--webhook-delay",
        type=float,
        nargs=2,
        default=list(DEFAULT_WEBHOOK_DELAY),
        metavar=("LOW", "HIGH"),
        help="seconds from a job's readiness to its delivery, drawn between LOW and HIGH "
        "(default 0.02 0.2)",
    )
    parser.add_argument(
        "--webhook-timeout",
        type=float,
        default=WEBHOOK_TIMEOUT,
        metavar="SECONDS",
        help="how long a receiver has to answer a delivery (default 30, ModelsLab's)",
    )


def run_simulate(args: argparse.Namespace, streams: Streams) -> int:
    """Serve the simulator on loopback until interrupted."""
    faults = simulate_faults(args)
    _check_address(args.host, args.port)
    simulator = Simulator(
        api_key=args.accept_key,
        seed=args.seed,
        invalid_key_status=args.key_error_status,
        eta_error_model=args.eta_error_model,
    )
    app = SimulatorApp(simulator, faults=faults, seed=args.seed)
    # The ids the README and docs use, so their examples run against this as written.
    examples = simulator.queue_examples()
    ids = (
        simulator.queue_many(
            args.jobs, ready_in=(1.0, 8.0), failure_rate=0.05, webhook=args.webhook
        )
        if args.jobs
        else []
    )
    base_url = f"http://{args.host}:{args.port}/api"
    root = f"http://{args.host}:{args.port}"

    def banner() -> None:  # once the server can start: nothing is said for one that cannot
        if not _this_machine_only(args.host):
            streams.err.write(
                f"warning: --host {args.host} is not a loopback address: this is a test "
                f"server that accepts {'any key' if args.accept_key is None else 'one key'} "
                "and answers with made-up jobs, to anyone who can reach this address. Serve "
                "on 127.0.0.1 unless that is what you mean.\n"
            )
        streams.err.write(
            f"ModelsLab simulator on {base_url}\n"
            f"  point the SDK or the CLI at it: MODELSLAB_BASE_URL={base_url}\n"
            f"  key: {'any non-empty key' if args.accept_key is None else 'the one given'}\n"
            f"  the docs' example jobs: {', '.join(examples)} (ready in a few seconds)\n"
            f"  queue jobs: POST {root}/_simulator/jobs "
            '{"count": 10, "ready_in": [1, 8]}\n'
            f"  webhooks: POST {root}/_simulator/responses "
            '{"webhooks": [{"webhook": "http://127.0.0.1:9000/hooks/1", "track_id": "1"}]}\n'
            "    (one per job, as a generation request carries them): each job's end is POSTed "
            f"there {_deliveries(faults)}; counts: GET {root}/_simulator/webhooks\n"
        )
        if args.webhook is not None and ids:
            streams.err.write(f"  the {counted(len(ids), 'job')} of --jobs deliver to --webhook\n")
        if faults.account_error is not None:
            streams.err.write(
                f"  refusing every fetch after the first {faults.account_error_after} "
                f"({args.account_error})\n"
            )
        if ids:
            streams.out.write("\n".join(ids) + "\n")
            streams.out.flush()
        streams.err.write("Ctrl-C to stop\n")
        streams.err.flush()

    try:
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn stops on Ctrl-C by itself
            run_simulator(app, host=args.host, port=args.port, before_serving=banner)
    except SystemExit as exit_:  # pragma: no cover - the port was taken since the check
        if exit_.code:
            raise UsageError(
                f"the simulator could not listen on {args.host}:{args.port} (taken since "
                "checked?): give another --port"
            ) from None
    return EXIT_OK


_SHARES = {
    "--error-rate": "error_rate",
    "--edge-rate": "edge_rate",
    "--queue-limit-rate": "queue_limit_rate",
    "--spam-filter-rate": "spam_filter_rate",
    "--odd-shapes": "odd_shapes",
    "--webhook-drop-rate": "webhook_drop_rate",
    "--webhook-duplicate-rate": "webhook_duplicate_rate",
}


def simulate_faults(args: argparse.Namespace) -> Faults:
    """The `Faults` the `simulate` options ask for; `UsageError` says which option is wrong."""
    for option, name in _SHARES.items():
        share = getattr(args, name)
        if not 0.0 <= share <= 1.0:  # NaN too
            what = "webhook deliveries" if option.startswith("--webhook") else "fetches"
            raise UsageError(
                f"{option} is a share of {what} from 0 to 1 (0.05 is 5%), not {share:g}"
            )
    # Each fetch meets at most one fault, so shares beyond a whole would silently shrink.
    total = args.error_rate + args.edge_rate + args.queue_limit_rate + args.spam_filter_rate
    if total > 1.0:
        raise UsageError(
            f"--error-rate, --edge-rate, --queue-limit-rate and --spam-filter-rate add up to "
            f"{total:g}; each fetch meets at most one fault, so together they can be at most 1"
        )
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be from 1 to 65535, not {args.port}")
    for option, value in (
        ("--jobs", args.jobs),
        ("--latency", args.latency),
        ("--queue-limit-wait", args.queue_limit_wait),
        ("--rate-limit-every", args.rate_limit_every),
        ("--account-error-after", args.account_error_after),
    ):
        if value < 0:
            raise UsageError(f"{option} cannot be negative ({value:g}); use 0 for none")
    for option, value in (
        ("--latency", args.latency),
        ("--queue-limit-wait", args.queue_limit_wait),
    ):
        if not math.isfinite(value):
            raise UsageError(f"{option} must be a number of seconds, not {value}")
    low, high = args.webhook_delay
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low <= high <= 86_400.0):
        raise UsageError(
            f"--webhook-delay is LOW HIGH seconds after readiness, 0 <= LOW <= HIGH <= 86400, "
            f"not {low:g} {high:g}"
        )
    timeout = args.webhook_timeout
    if not (math.isfinite(timeout) and 0 < timeout <= MAX_WEBHOOK_TIMEOUT):
        raise UsageError(
            f"--webhook-timeout is the seconds a receiver has to answer, more than 0 and at "
            f"most {MAX_WEBHOOK_TIMEOUT:g}, not {timeout:g}"
        )
    _check_webhook(args)
    return Faults(
        latency=(0.0, args.latency),
        error_rate=args.error_rate,
        edge_page_rate=args.edge_rate,
        rate_limit_every=args.rate_limit_every,
        queue_limit_rate=args.queue_limit_rate,
        queue_limit_wait=args.queue_limit_wait,
        queue_limit_wait_in=args.queue_limit_wait_in.replace("-", "_"),
        spam_filter_rate=args.spam_filter_rate,
        account_error=None if args.account_error is None else args.account_error.replace("-", "_"),
        account_error_after=args.account_error_after,
        odd_shape_rate=args.odd_shapes,
        webhook_drop_rate=args.webhook_drop_rate,
        webhook_duplicate_rate=args.webhook_duplicate_rate,
        webhook_delay=(low, high),
        webhook_timeout=args.webhook_timeout,
    )


def _check_webhook(args: argparse.Namespace) -> None:
    if args.webhook is None:
        return
    if not args.jobs:
        raise UsageError(
            "--webhook is where the jobs of --jobs deliver: give --jobs N too (jobs queued "
            "later name their own webhook in the request)"
        )
    try:
        checked_webhook(args.webhook)
    except ValueError as problem:
        raise UsageError(f"--webhook: {problem}") from None


def _deliveries(faults: Faults) -> str:
    """When and how deliveries go, in words, for the banner."""
    low, high = faults.webhook_delay
    words = f"{low:g}-{high:g} s after it is ready"
    if faults.webhook_drop_rate:
        words += f", {faults.webhook_drop_rate:.0%} never sent"
    if faults.webhook_duplicate_rate:
        words += f", {faults.webhook_duplicate_rate:.0%} sent twice"
    return words


def _check_address(host: str, port: int) -> None:
    """`UsageError` in one line if the simulator cannot listen on `host`:`port`."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = "the port is taken (another simulator?): stop that, or give another --port"
        elif exc.errno == errno.EACCES:
            why = "permission denied: give a --port above 1023"
        else:
            why = f"{exc.strerror or exc}: check --host"
        raise UsageError(f"cannot listen on {host}:{port}: {why}") from None


def _this_machine_only(host: str) -> bool:
    """Whether a server listening on `host` can be reached from this machine alone."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may well be reachable from elsewhere
        return False
