"""Every Python example in README.md and docs/ runs as written against `modelslab-fetch simulate`.

A newcomer copies an example, starts `modelslab-fetch simulate` and points
MODELSLAB_BASE_URL at it: so that is what each ```python block meets here, the command
itself run as a subprocess (module-wide, as one would leave it running), with nothing
queued on it by the test. Each block is executed in a fresh namespace, in a scratch
folder; the `test_*` functions an example defines are then called with the fixtures they
name (`modelslab_server` is the pytest plugin's, as in a user's project). So the docs
cannot drift from the code, nor name an id the simulator does not know.
"""

from __future__ import annotations

import gc
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelslab_fetch.testing._fixtures import (
    new_simulator,
    serve_for_test,
    serve_webhooks_for_test,
)
from modelslab_fetch.testing._simulator import EXAMPLE_JOBS
from tests.cli_support import simulate_command

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


@pytest.fixture(scope="module")
def simulate() -> Iterator[str]:
    """`modelslab-fetch simulate` as a user runs it; yields its API root."""
    with simulate_command() as (root, _process):
        yield f"{root}/api"


def test_simulate_knows_every_id_the_examples_name(simulate: str) -> None:
    named = set()
    for page in PAGES:
        for code in BLOCK.findall(page.read_text()):
            named |= set(re.findall(r"\b1\d{7}\b", code))
    assert named <= set(EXAMPLE_JOBS), "an example names an id `simulate` does not queue"
    stats = httpx.get(simulate.removesuffix("/api") + "/_simulator/stats", timeout=5).json()
    assert set(EXAMPLE_JOBS) <= set(stats)


@pytest.mark.parametrize("code", EXAMPLES)
def test_example_runs(
    code: str,
    simulate: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELSLAB_BASE_URL", simulate)
    monkeypatch.setenv("MODELSLAB_API_KEY", "my-key")  # simulate accepts any key
    namespace: dict[str, Any] = {"__name__": "__docs_example__"}
    try:
        exec(compile(code, "<docs example>", "exec"), namespace)  # noqa: S102 - our own docs
        for name, value in list(namespace.items()):
            if name.startswith("test_") and inspect.isfunction(value):
                call_as_pytest_would(value, monkeypatch, tmp_path)
        capsys.readouterr()
    finally:
        # A client an example never closes (a module-level one) is closed when collected,
        # as at the end of the program it stands for: now, not during some later test.
        namespace.clear()
        gc.collect()


def call_as_pytest_would(test: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Call an example's test function with the plugin's fixtures it names."""
    wanted = inspect.signature(test).parameters
    simulator = new_simulator()
    fixtures: dict[str, Any] = {"modelslab_simulator": simulator, "tmp_path": tmp_path}
    if "modelslab_server" not in wanted and "modelslab_webhooks" not in wanted:
        test(**{arg: fixtures[arg] for arg in wanted})
        return
    with monkeypatch.context() as scoped:
        served = serve_for_test(simulator, scoped)
        fixtures["modelslab_server"] = next(served)
        hooks = serve_webhooks_for_test(fixtures["modelslab_server"], scoped)
        try:
            if "modelslab_webhooks" in wanted:
                fixtures["modelslab_webhooks"] = next(hooks)
            test(**{arg: fixtures[arg] for arg in wanted})
        finally:
            hooks.close()
            served.close()
