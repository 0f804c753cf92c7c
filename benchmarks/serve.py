"""Run the simulator on loopback for the benchmarks: python benchmarks/serve.py PORT."""

from __future__ import annotations

import sys

import uvicorn

from modelslab_fetch.testing import Simulator, SimulatorApp


def main() -> None:
    port = int(sys.argv[1])
    app = SimulatorApp(Simulator(auto_ready=True, seed=1))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
