"""Retry policies as data: when a failed run is tried again, and when it gives up.

A :class:`RetryPolicy` (max attempts, :class:`ExponentialBackoff` or
:class:`FixedBackoff`, jitter, a total deadline, which exceptions retry and which never
do) decides with a pure function, ``policy.decide(envelope, error, history)``, whose
answer is a :data:`Decision`: :class:`Retry` after a delay, :class:`GiveUp` (a dead
letter) or :class:`Discard`. Each :class:`Attempt` of the history is a number, a time
and an error. :data:`NEVER_RETRIED` lists the errors no policy retries.
:class:`~messagebus.middleware.RetryMiddleware` applies policies to handlers; the
worker and the outbox relay use the backoffs for their own waits.
"""

from messagebus._retry_policy import (
    NEVER_RETRIED,
    Attempt,
    Decision,
    Discard,
    ExponentialBackoff,
    FixedBackoff,
    GiveUp,
    Retry,
    RetryPolicy,
)

__all__ = [
    "NEVER_RETRIED",
    "Attempt",
    "Decision",
    "Discard",
    "ExponentialBackoff",
    "FixedBackoff",
    "GiveUp",
    "Retry",
    "RetryPolicy",
]
