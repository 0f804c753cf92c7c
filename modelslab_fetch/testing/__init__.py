"""A local ModelsLab simulator, for tests, demos and benchmarks without the internet.

`Simulator` holds the queue; `SimulatorApp` serves it as an ASGI app, which runs
in-process through `httpx.ASGITransport` (no socket) or on loopback under uvicorn.
"""

from ._asgi import SimulatorApp
from ._simulator import SimulatedJob, Simulator

__all__ = ["SimulatedJob", "Simulator", "SimulatorApp"]
