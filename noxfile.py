"""The single entry point for tests, lint and type checks: `nox -s tests lint typecheck`."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite with line and branch coverage (>= 90% enforced)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Measure throughput, CPU per request, polling and memory; rewrite docs/performance.md."""
    session.install(
        "-e",
        ".[simulator,redis]",  # redis: the fleet benchmarks (benchmarks/fleet.py)
        "uvicorn[standard]",  # httptools and uvloop: a server fast enough not to be measured
        "psutil",
        "httpx-aiohttp",
        "modelslab-py[async]",
        "requests",  # modelslab-py imports it without declaring it
    )
    session.run("python", "benchmarks/bench.py", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """The slow tests: 20,000 ids through 5% faults of every kind (rewrites
    docs/reliability.md), and the reliability tests too slow for the default run (marked
    `soak`). CI runs them all but the 20,000 ids: `nox -s soak -- -k "not 20000"`."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "soak", "-s", "--no-cov", "tests", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with --strict (warnings are errors) into site/."""
    session.install("-e", ".[docs]")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session
def build(session: nox.Session) -> None:
    """Build the wheel and the sdist into dist/ and check their metadata."""
    session.install("build", "twine")
    session.run("python", "-m", "build", "--outdir", "dist")
    session.run("twine", "check", "--strict", *_dists())


def _dists() -> list[str]:
    return [str(path) for path in sorted(Path("dist").iterdir())]


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff, and the layers' import contracts."""
    session.install("ruff>=0.6", "import-linter>=2.1")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # The contracts in pyproject.toml: data flows one way down, and the command line and
    # the simulator use only the public package. import-linter reads the source (the
    # package need not be installed) from the project root.
    session.run("lint-imports", "--no-cache")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Check the package, the tests and tests/type_checks (the public API as used) strictly."""
    session.install("-e", ".[test]", "mypy>=1.11")
    session.run("mypy", "--strict")
