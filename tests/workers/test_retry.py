"""The one retry policy: defer without spending a retry, retry what is unavailable, fail the rest."""

from __future__ import annotations

import time

import pytest
import redis

from fieldrelay.batch import VersionConflict
from workers.admission import Deferred
from workers.connectors.errors import RateLimited, Rejected, Unavailable
from workers.retry import Next, RetryPolicy, run_step

POLICY = RetryPolicy(max_retries=2, max_backoff=8.0)


def test_a_deferral_keeps_its_attempt_and_waits_what_the_target_asked():
    decision = POLICY.decide(Deferred(3.0, "quota"), attempt=1)
    assert (decision.kind, decision.attempt, decision.reason) == ("defer", 1, "quota")
    assert 3.0 <= decision.delay <= 3.25


def test_a_lost_version_race_that_escapes_a_step_is_put_off_never_failed():
    # The event step evaluates again itself (workers/pipeline.py); should the refusal surface anywhere else,
    # the step runs again shortly, as a `busy` deferral that spends no retry.
    decision = POLICY.decide(VersionConflict("FIELDRELAY_VERSION_CONFLICT"), attempt=2)
    assert (decision.kind, decision.attempt, decision.reason) == ("defer", 2, "busy")


def test_unavailable_is_retried_until_the_budget_is_spent():
    exc = Unavailable("synchroteam", 503, "/x")
    assert [POLICY.decide(exc, attempt=a).kind for a in range(4)] == ["retry", "retry", "fail", "fail"]
    assert POLICY.decide(exc, attempt=0).attempt == 1
    assert all(0.5 <= POLICY.decide(exc, attempt=a).delay <= 8.0 for a in range(2))


def test_a_rate_limit_waits_for_its_reset_not_a_backoff():
    exc = RateLimited("synchroteam", 429, "/x", reset_at=time.time() + 30)
    assert 29 <= POLICY.decide(exc, attempt=0).delay <= 31.5


@pytest.mark.parametrize("exc", [Rejected("synergist", 400, "/x"), ValueError("a bug"), KeyError("k")])
def test_anything_else_fails_for_good_at_once(exc):
    decision = POLICY.decide(exc, attempt=0)
    assert decision.kind == "fail" and decision.attempt == 1 and type(exc).__name__ in decision.reason


def test_run_step_hands_each_outcome_to_its_caller():
    again: list[Next] = []
    failed: list[tuple[Exception, int]] = []

    def raising(exc: Exception):
        def step() -> None:
            raise exc

        return step

    run_step(
        raising(Unavailable("http", None, "/")), 0, POLICY, again=again.append, fail=lambda e, n: failed.append((e, n))
    )
    run_step(raising(ValueError("boom")), 0, POLICY, again=again.append, fail=lambda e, n: failed.append((e, n)))
    run_step(lambda: None, 0, POLICY, again=again.append, fail=lambda e, n: failed.append((e, n)))
    assert [n.kind for n in again] == ["retry"]
    assert [(type(e).__name__, n) for e, n in failed] == [("ValueError", 1)]


def test_a_redis_outage_reruns_the_step_instead_of_failing_it():
    calls = []

    def step() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise redis.ConnectionError("gone")

    run_step(step, 0, POLICY, again=lambda n: pytest.fail("not a retry"), fail=lambda e, n: pytest.fail("not a fail"))
    assert len(calls) == 2
