"""A small blog service built on messagebus, run by ``messagebus demo``.

It shows every idea of the library on the embedded defaults (in-process dispatch, dead
letters in SQLite): a command with one handler and an event with two subscribers, a
rejected command, a flaky subscriber that succeeds on its third attempt, a failing one
that becomes a dead letter and is replayed once fixed. Beside it, a billing service
whose process manager cancels a paid subscription when its payment never comes, on a
fake clock.
"""

from messagebus.demo._app import (
    POSTS_TABLE,
    Blog,
    PostPublished,
    ProcessPayment,
    PublishPost,
    Receipt,
    RegisterUser,
    UserRegistered,
    build_bus,
)
from messagebus.demo._billing import (
    PAYMENT_WINDOW,
    Billing,
    CancelUnpaidSubscription,
    PaymentReceived,
    SendInvoice,
    Subscription,
    SubscriptionActivated,
    SubscriptionCancelled,
    SubscriptionRequested,
    build_billing,
    subscriptions,
)
from messagebus.demo._story import configure_logging, main

__all__ = [
    "PAYMENT_WINDOW",
    "POSTS_TABLE",
    "Billing",
    "Blog",
    "CancelUnpaidSubscription",
    "PaymentReceived",
    "PostPublished",
    "ProcessPayment",
    "PublishPost",
    "Receipt",
    "RegisterUser",
    "SendInvoice",
    "Subscription",
    "SubscriptionActivated",
    "SubscriptionCancelled",
    "SubscriptionRequested",
    "UserRegistered",
    "build_billing",
    "build_bus",
    "configure_logging",
    "main",
    "subscriptions",
]
