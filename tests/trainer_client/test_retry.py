"""The retry decision's pure parts: backoff windows, Retry-After parsing; and the errors'
pickling (they cross Ray and torch.distributed boundaries)."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

import trainer_client as tc
from trainer_client._retry import backoff_delay, parse_retry_after


@given(
    st.integers(0, 20), st.floats(0, 1, exclude_max=True), st.floats(0.01, 5), st.floats(0.01, 60)
)
@settings(max_examples=200, deadline=None)
def test_backoff_delay_stays_in_its_window(attempt, jitter, base, cap):
    policy = tc.RetryPolicy(backoff_base=base, backoff_max=cap)
    delay = backoff_delay(policy, attempt, None, jitter)
    ceiling = min(cap, base * 2.0**attempt)
    assert ceiling / 2 <= delay <= ceiling


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0


def test_server_errors_survive_pickling():
    error = tc.AuthenticationError(401, "unauthorized", "bad key", "headers.authorization")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is tc.AuthenticationError and str(copy) == str(error)
    assert (copy.status, copy.code, copy.message, copy.field) == (
        401,
        "unauthorized",
        "bad key",
        "headers.authorization",
    )
