"""The warm-up goes on until the cache it warms is warm, so the measured run does not count the
fetches a failed warm-up request left to do as misses of a warm cache."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bench.__main__ import WARMUP_ROUNDS, warm_up
from bench.workloads import WORKLOADS
from bench.wrk import WrkResult


def result(requests: int, errors: int = 0) -> WrkResult:
    return WrkResult(requests, 2.0, errors, 0, requests, 1.0, 1.0, 1.0, 1.0, 1.0)


class Rounds:
    """wrk as the warm-up sees it: the results of its rounds, in turn."""

    def __init__(self, *results: WrkResult) -> None:
        self.results = list(results)
        self.driven = 0

    def __call__(self, ids: Sequence[int | str], seconds: float) -> WrkResult:
        self.driven += 1
        return self.results.pop(0)


HOT = [str(i) for i in range(100)]


def test_a_round_without_errors_over_the_whole_hot_set_is_enough() -> None:
    rounds = Rounds(result(400))
    warm_up(WORKLOADS["agent360-warm"], HOT, 16, 2.0, rounds)
    assert rounds.driven == 1


def test_a_round_with_a_failed_request_is_followed_by_another(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rounds = Rounds(result(400, errors=3), result(400))
    warm_up(WORKLOADS["agent360-warm"], HOT, 16, 2.0, rounds)
    assert rounds.driven == 2
    assert "warm-up round 1 of at most 5: 3 of 400 requests failed" in capsys.readouterr().err


def test_a_round_that_did_not_reach_the_hot_set_is_followed_by_another() -> None:
    # 100 ids and 16 connections: 115 answers may leave one id unanswered.
    rounds = Rounds(result(115), result(116))
    warm_up(WORKLOADS["agent360-warm"], HOT, 16, 2.0, rounds)
    assert rounds.driven == 2


def test_a_workload_over_every_customer_is_not_asked_to_reach_them_all() -> None:
    rounds = Rounds(result(10))
    warm_up(WORKLOADS["orders-page"], [str(i) for i in range(10_000)], 16, 2.0, rounds)
    assert rounds.driven == 1


def test_the_rounds_are_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    rounds = Rounds(*(result(400, errors=1) for _ in range(WARMUP_ROUNDS)))
    warm_up(WORKLOADS["agent360-warm"], HOT, 16, 2.0, rounds)
    assert rounds.driven == WARMUP_ROUNDS
    assert "not warm after 5 warm-up rounds; measuring" in capsys.readouterr().err
