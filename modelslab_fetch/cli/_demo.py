"""`modelslab-fetch demo` and `simulate`: the whole job against the local simulator."""

from __future__ import annotations

import argparse
import contextlib
import shutil
from collections import Counter
from pathlib import Path

import anyio

from .._async_client import AsyncModelsLab
from ..testing import Faults, Simulator, SimulatorApp, run_simulator, simulator_server
from ._commands import EXIT_FAILED, EXIT_OK, Streams, collect
from ._progress import ProgressView, choose_mode
from ._results import ResultsFile

__all__ = ["run_demo", "run_simulate"]

DEMO_KEY = "demo-key-not-secret"
DEMO_FAULTS = Faults(
    latency=(0.002, 0.03),
    error_rate=0.02,
    edge_page_rate=0.01,
    rate_limit_every=150,
    rate_limit_burst=2,
    retry_after=0.5,
)


def run_demo(args: argparse.Namespace, streams: Streams) -> int:
    """Queue simulated jobs, wait for them all with progress, download their images."""
    simulator = Simulator(api_key=DEMO_KEY, seed=args.seed)
    app = SimulatorApp(simulator, faults=DEMO_FAULTS, seed=args.seed)
    folder = Path(args.dir)
    err = streams.err
    with simulator_server(app) as base_url:
        ids = simulator.queue_many(args.jobs, ready_in=(0.5, 6.0), failure_rate=0.03)
        expected_failures = sum(simulator.jobs[i].final != "success" for i in ids)
        if not args.quiet:
            err.write(
                f"simulator on {base_url} (faults: slow answers, 5xx, edge pages, 429s)\n"
                f"waiting for {len(ids)} queued jobs, downloading into {folder}/ ...\n"
            )
        results = ResultsFile(folder / "results.jsonl")
        view = ProgressView(
            err, mode=choose_mode(err, quiet=args.quiet, as_json=args.json), total=len(ids)
        )

        async def main() -> tuple[int, int, int, float, int]:
            async with AsyncModelsLab(api_key=DEMO_KEY, base_url=base_url) as client:
                summary = await collect(
                    client,
                    ids,
                    total=len(ids),
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

        if folder.exists() and args.fresh:
            shutil.rmtree(folder)
        try:
            succeeded, failed, images, elapsed, download_failures = anyio.run(main)
        finally:
            results.close()
        faults = Counter(app.faults.injected)
    accounted = succeeded + failed == len(ids)
    as_simulated = failed == expected_failures and download_failures == 0
    if not args.quiet:
        met = ", ".join(f"{n}x HTTP {status}" for status, n in sorted(faults.items())) or "none"
        err.write(
            f"\n{len(ids)} jobs accounted for: {succeeded} succeeded, {failed} failed "
            f"({expected_failures} were simulated to fail), in {elapsed:.1f}s\n"
            f"faults met and survived: {met}\n"
            f"{images} images saved in {folder}/, results in {folder / 'results.jsonl'}\n"
            "next: set MODELSLAB_API_KEY and run `modelslab-fetch wait ID...` on real jobs\n"
        )
    return EXIT_OK if accounted and as_simulated else EXIT_FAILED


def run_simulate(args: argparse.Namespace, streams: Streams) -> int:
    """Serve the simulator on loopback until interrupted."""
    simulator = Simulator(api_key=args.accept_key, seed=args.seed)
    faults = Faults(
        latency=(0.0, args.latency),
        error_rate=args.error_rate,
        edge_page_rate=args.edge_rate,
        rate_limit_every=args.rate_limit_every,
    )
    app = SimulatorApp(simulator, faults=faults, seed=args.seed)
    ids = (
        simulator.queue_many(args.jobs, ready_in=(1.0, 8.0), failure_rate=0.05) if args.jobs else []
    )
    base_url = f"http://{args.host}:{args.port}/api"
    streams.err.write(
        f"ModelsLab simulator on {base_url}\n"
        f"  point the SDK or the CLI at it: MODELSLAB_BASE_URL={base_url}\n"
        f"  key: {'any non-empty key' if args.accept_key is None else 'the one given'}\n"
        f"  queue jobs: POST http://{args.host}:{args.port}/_simulator/jobs "
        '{"count": 10, "ready_in": [1, 8]}\n'
    )
    if ids:
        streams.out.write("\n".join(ids) + "\n")
        streams.out.flush()
    streams.err.write("Ctrl-C to stop\n")
    streams.err.flush()
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn stops on Ctrl-C by itself
        run_simulator(app, host=args.host, port=args.port)
    return EXIT_OK
