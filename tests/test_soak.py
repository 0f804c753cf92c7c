"""The soak's small version: 2,000 ids through 5% faults of every kind, every id once."""

from __future__ import annotations

import pytest

from tests.soak import run_soak

pytestmark = pytest.mark.integration


@pytest.mark.soak  # nox -s soak (and CI): too slow for the default run
def test_soak_2000_ids_every_one_accounted_for_exactly_once() -> None:
    report = run_soak(2_000, seed=3)
    print(report.table())
    assert report.accounted_once
    assert report.failed_otherwise == {}
    assert report.succeeded + report.failed_as_simulated == 2_000
    assert report.failed_as_simulated > 0
    assert set(report.faults) >= {"5xx", "edge page", "truncated", "429"}
    assert report.retries >= sum(report.faults.values()) * 0.5


@pytest.mark.soak
def test_soak_20000_ids_and_write_the_reliability_table() -> None:
    from pathlib import Path

    from tests.soak import write_reliability

    report = run_soak(20_000, seed=11)
    print(report.table())
    write_reliability(
        Path(__file__).parent.parent / "docs" / "reliability.md", report, "nox -s soak"
    )
    assert report.accounted_once
    assert report.failed_otherwise == {}
