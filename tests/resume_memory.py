"""Peak memory of `wait --resume` over a large results file, measured for real.

Used by tests/test_cli_results.py (at 200,000 lines) and run by hand for the figure in
docs/cli.md (`python -m tests.resume_memory 1000000`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from modelslab_fetch.cli._results import SOURCE
from modelslab_fetch.testing import Simulator, SimulatorApp, simulator_server
from tests.cli_support import cli, env_for

FIRST_ID = 50_000_000


def write_finished_run(folder: Path, lines: int) -> tuple[Path, Path]:
    """A results file of `lines` final outcomes (one in 50 failed), and the ids file of that run."""
    ids_file, results = folder / "ids.txt", folder / "results.jsonl"
    with ids_file.open("w") as ids, results.open("w") as out:
        for n in range(lines):
            rid = str(FIRST_ID + 3 * n)  # spread out, as ids of one account are
            ids.write(rid + "\n")
            ok = n % 50 != 0
            record = {
                "request_id": rid,
                "ok": ok,
                "status": "success" if ok else "failed",
                "output": [f"https://cdn.example/generations/{rid}-0.png"] if ok else [],
                "message": None if ok else "GPU busy",
                "error": None,
                "final": True,
                "source": SOURCE,
                "files": [f"{rid}-0.png"] if ok else [],
            }
            out.write(json.dumps(record) + "\n")
    return ids_file, results


def peak_rss_of_resume(folder: Path, ids_file: Path, results: Path, base_url: str, key: str) -> int:
    """Peak resident memory, in bytes, of `wait --ids-file F -o R --resume` (os.wait4)."""
    env = env_for(None, MODELSLAB_BASE_URL=base_url, MODELSLAB_API_KEY=key)
    # Coverage's subprocess hook would measure itself too.
    env = {k: v for k, v in env.items() if not k.startswith(("COV_CORE_", "COVERAGE_"))}
    argv = cli("wait", "--ids-file", str(ids_file), "-o", str(results), "--resume", "-q")
    with (folder / "out").open("w") as out, (folder / "err").open("w+") as err:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        assert process.returncode == 1, err.read()  # one in 50 failed before: exit 1
    return usage.ru_maxrss * 1024  # kilobytes on Linux


def main(lines: int) -> None:  # pragma: no cover - run by hand
    simulator = Simulator(api_key="memory-key")
    with tempfile.TemporaryDirectory() as name, simulator_server(SimulatorApp(simulator)) as url:
        folder = Path(name)
        small = folder / "small"
        small.mkdir()
        baseline = peak_rss_of_resume(small, *write_finished_run(small, 10), url, "memory-key")
        ids_file, results = write_finished_run(folder, lines)
        peak = peak_rss_of_resume(folder, ids_file, results, url, "memory-key")
        size = results.stat().st_size
    print(
        f"{lines} lines ({size / 1e6:.0f} MB): peak RSS {peak / 2**20:.1f} MiB "
        f"(a 10-line file: {baseline / 2**20:.1f} MiB)"
    )


if __name__ == "__main__":  # pragma: no cover
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
