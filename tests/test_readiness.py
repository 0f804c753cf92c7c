"""ReadinessEstimate with plain numbers: no event loop, no clock, just answers and times."""

from __future__ import annotations

import math

import pytest

from modelslab_fetch._jobs._readiness import ReadinessEstimate


def biased(ready: float, factor: float, at: float) -> float:
    """The eta of a server off by `factor` for every answer about this job."""
    return round((ready - at) * factor, 2)


def test_the_first_eta_polls_just_after_its_early_edge() -> None:
    estimate = ReadinessEstimate(band=0.4)
    estimate.observe(0.0, 7.0)
    lo, hi = estimate.interval()
    assert lo == pytest.approx(7.0 / 1.4 - 0.05)
    assert hi == pytest.approx(7.0 / 0.6 + 0.05)
    assert estimate.next_poll(0.0) == pytest.approx(lo + 0.6)


@pytest.mark.parametrize("factor", [0.6, 0.8, 1.0, 1.25, 1.4])
@pytest.mark.parametrize("ready", [3.0, 8.0])
def test_a_consistent_bias_is_learnt_from_two_answers(factor: float, ready: float) -> None:
    # Either the first poll after the early edge finds the job ready, or two answers
    # give the ready time and the poll lands there (after one more, confirming, if far).
    estimate = ReadinessEstimate()
    at, answers = 0.0, 0
    while at < ready:
        estimate.observe(at, biased(ready, factor, at))
        answers += 1
        if answers >= 2:
            assert estimate.learnt_ready_at() == pytest.approx(ready, abs=0.05)
        polled = estimate.next_poll(at)
        assert polled is not None
        at = polled
    assert answers <= 3
    assert at - ready <= (0.65 if answers == 1 else 0.1)


def test_two_biased_answers_give_the_ready_time_exactly() -> None:
    estimate = ReadinessEstimate()
    estimate.observe(0.0, 8.0)  # ready at 10, the server says 0.8 of the remaining time
    estimate.observe(2.0, 6.4)
    assert estimate.learnt_ready_at() == pytest.approx(10.0)


def test_an_unconfirmed_learnt_time_is_approached_no_further_than_reach() -> None:
    # Two answers fit a bias and fresh noise alike: poll at most `reach` past the edge.
    estimate = ReadinessEstimate()
    estimate.learnt_slack = 0.0
    estimate.observe(0.0, 8.0)
    estimate.observe(2.0, 6.4)
    lo, _ = estimate.interval()
    assert estimate.next_poll(2.0) == pytest.approx(lo + 0.8)
    estimate.observe(lo + 0.8, biased(10.0, 0.8, lo + 0.8))  # on the line: confirmed
    assert estimate.next_poll(lo + 0.8) == pytest.approx(10.0, abs=0.05)


def test_a_rate_outside_the_band_is_noise_not_a_bias() -> None:
    estimate = ReadinessEstimate(band=0.4)
    estimate.observe(0.0, 5.0)
    estimate.observe(1.0, 4.9)  # the eta fell 0.1 s in 1 s: no factor in the band
    assert estimate.learnt_ready_at() is None
    lo, _ = estimate.interval()
    assert estimate.next_poll(1.0) == pytest.approx(lo + 0.2)


def test_fresh_noise_keeps_every_poll_before_readiness_or_just_after() -> None:
    import random

    rng = random.Random(3)  # noqa: S311 - a simulation
    late = []
    for _ in range(2000):
        ready = rng.uniform(1, 8)
        estimate = ReadinessEstimate()
        at = 0.0
        while at < ready:
            estimate.observe(at, (ready - at) * (1 + rng.uniform(-0.4, 0.4)))
            polled = estimate.next_poll(at)
            assert polled is not None and polled >= at + 0.3 - 1e-9
            at = polled
        late.append(at - ready)
    late.sort()
    assert late[len(late) // 2] < 0.3
    assert late[int(0.95 * len(late))] < 0.7


def test_without_an_eta_there_is_nothing_to_go_on() -> None:
    estimate = ReadinessEstimate()
    estimate.observe(0.0, None)
    estimate.observe(1.0, None)
    assert estimate.next_poll(1.0) is None
    assert estimate.interval() == (1.0, math.inf)  # not ready at 1.0, no later bound


def test_a_non_finite_eta_counts_as_none() -> None:
    estimate = ReadinessEstimate()
    estimate.observe(0.0, math.nan)
    assert estimate.next_poll(0.0) is None


def test_an_eta_of_zero_polls_after_min_interval() -> None:
    estimate = ReadinessEstimate(min_interval=0.3)
    estimate.observe(5.0, 0.0)
    assert estimate.next_poll(5.0) == pytest.approx(5.3)


def test_never_earlier_than_min_interval_after_the_answer() -> None:
    estimate = ReadinessEstimate(min_interval=0.5)
    estimate.observe(0.0, 10.0)
    estimate.observe(9.0, 0.01)
    assert estimate.next_poll(9.0) == pytest.approx(9.5)


def test_never_later_than_max_interval_after_the_answer() -> None:
    estimate = ReadinessEstimate(max_interval=30.0)
    estimate.observe(0.0, 300.0)
    assert estimate.next_poll(0.0) == pytest.approx(30.0)


def test_an_eta_that_jumps_up_restarts_from_the_newest_answer_with_a_wider_band() -> None:
    estimate = ReadinessEstimate(band=0.4)
    estimate.observe(0.0, 2.0)
    estimate.observe(1.0, 20.0)  # requeued: the old interval (1.38, 3.38) is contradicted
    assert estimate.contradictions == 1
    assert estimate.band > 0.4
    lo, hi = estimate.interval()
    assert lo > 1.0 + 20.0 / 1.7
    assert hi > 21.0


def test_still_processing_after_the_late_edge_widens_the_band() -> None:
    estimate = ReadinessEstimate(band=0.4)
    estimate.observe(0.0, 3.0)
    _, hi = estimate.interval()
    estimate.observe(hi + 1.0, None)  # should have been ready by then
    assert estimate.contradictions >= 1
    lo, new_hi = estimate.interval()
    assert lo == hi + 1.0  # not ready then: a hard fact
    assert new_hi >= lo
    assert estimate.next_poll(hi + 1.0) is not None


def test_widening_ends_even_with_no_absolute_term() -> None:
    estimate = ReadinessEstimate(band=0.9)
    estimate.absolute = 0.0
    estimate.observe(0.0, 1.0)
    estimate.observe(1000.0, None)
    lo, hi = estimate.interval()
    assert lo <= hi


@pytest.mark.parametrize("ready", [60.0, 150.0, 300.0])
@pytest.mark.parametrize("factor", [0.6, 1.4])
def test_long_jobs_with_a_bias_end_near_zero_lateness(ready: float, factor: float) -> None:
    estimate = ReadinessEstimate()
    at, polls = 0.0, 1
    while at < ready:
        estimate.observe(at, biased(ready, factor, at))
        polled = estimate.next_poll(at)
        assert polled is not None
        at, polls = polled, polls + 1
    assert at - ready < 0.2
    assert polls <= 2 + math.ceil(ready / 30)  # max_interval caps each gap at 30 s


def test_repr_names_the_band_and_interval() -> None:
    estimate = ReadinessEstimate(band=0.4)
    estimate.observe(0.0, 1.4)
    assert repr(estimate).startswith("ReadinessEstimate(band=0.40, interval=(0.95")


def test_only_the_latest_answers_are_kept() -> None:
    estimate = ReadinessEstimate(max_interval=30.0)
    for n in range(1000):
        estimate.observe(n * 30.0, 1e6)  # a job that never ends
    assert len(estimate._etas) == 16
    lo, hi = estimate.interval()
    assert lo <= hi
    assert estimate.next_poll(999 * 30.0) == pytest.approx(1000 * 30.0)
