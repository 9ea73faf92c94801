"""The AWS transport: SQS queues, SNS topics fanning out to them (asyncio only).

Needs the extra (``pip install 'anyio-messagebus[sqs]'``): importing this package imports
aiobotocore. :mod:`messagebus.transports` does not: it imports this package the first
time :class:`SQSTransport` or :class:`SQSDelivery` is asked of it.

- :class:`SQSTransport`: :class:`~messagebus.extension.Transport` on aiobotocore; its
  deliveries are :class:`SQSDelivery`.

One idea per module: the transport and how the contract maps onto AWS
(``_transport``), names and their lookup (``_names``), provisioning (``_provision``),
batch calls and their limits (``_batching``), sends of many tasks sharing calls
(``_coalesce``), the tasks that run those calls (``_background``), and AWS errors
translated to the library's (``_errors``).
"""

from messagebus.transports.sqs._transport import SQSDelivery, SQSTransport

__all__ = ["SQSDelivery", "SQSTransport"]
