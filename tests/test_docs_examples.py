"""Every Python example in README.md and docs/ runs, against the simulator on loopback.

Each ```python block is executed as it is written, in a fresh namespace, in a scratch
folder, with MODELSLAB_BASE_URL and MODELSLAB_API_KEY pointing at a simulator that has
the ids the examples use; `test_*` functions an example defines are then called with
the fixtures they name. So the docs cannot drift from the code.
"""

from __future__ import annotations

import gc
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelslab_fetch.testing import Simulator
from modelslab_fetch.testing._fixtures import SimulatorServer, serve_for_test

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)

EXAMPLES = [
    pytest.param(code, id=f"{page.name}:{number}")
    for page in PAGES
    for number, code in enumerate(BLOCK.findall(page.read_text()), start=1)
]


def test_the_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 12


@pytest.fixture
def docs_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SimulatorServer]:
    simulator = Simulator(seed=0)  # any key is accepted, as "..." in the examples
    for request_id in ("13443927", "13443928", "13443929", "12202888"):
        simulator.queue(request_id=request_id, ready_in=0.05)
    simulator.queue(request_id="13443930", final="failed")
    monkeypatch.chdir(tmp_path)
    yield from serve_for_test(simulator, monkeypatch)


@pytest.mark.parametrize("code", EXAMPLES)
def test_example_runs(
    code: str, docs_server: SimulatorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace: dict[str, Any] = {"__name__": "__docs_example__"}
    try:
        exec(compile(code, "<docs example>", "exec"), namespace)  # noqa: S102 - our own docs
        fixtures = {
            "modelslab_server": docs_server,
            "modelslab_simulator": docs_server.simulator,
            "tmp_path": tmp_path,
        }
        for name, value in list(namespace.items()):
            if name.startswith("test_") and inspect.isfunction(value):
                value(**{arg: fixtures[arg] for arg in inspect.signature(value).parameters})
        capsys.readouterr()
    finally:
        # A client an example never closes (a module-level one) is closed when collected,
        # as at the end of the program it stands for: now, not during some later test.
        namespace.clear()
        gc.collect()
