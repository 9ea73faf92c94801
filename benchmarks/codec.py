"""Encode and decode of a small message with its envelope: the codec against raw msgspec.

    python benchmarks/codec.py [--n 20000] [--runs 5]

Rows: the strict codec (``WireCodec``), raw ``msgspec.json`` on the same data (the
envelope as a dict holding the attrs instance; decoding into a Struct holding the attrs
class: the least any codec on msgspec can do), and the codec before it (cattrs and
``json``, kept frozen in ``benchmarks/old_codec.py``). The target: within 2x of raw
msgspec for encode and for decode.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import msgspec

from messagebus import Envelope, Event, MessageRegistry, WireCodec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from old_codec import WireCodec as OldCodec


@attrs.frozen
class OrderPlaced(Event, name="shop.order.placed"):
    order_id: int
    customer: str
    skus: list[str]
    express: bool


class RawEvent(msgspec.Struct):
    specversion: str
    id: str
    source: str
    type: str
    time: datetime
    datacontenttype: str
    data: OrderPlaced
    messageversion: int
    correlationid: str
    attempt: int


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    registry = MessageRegistry()
    registry.add(OrderPlaced)
    new, old = WireCodec(registry, source="/shop"), OldCodec(registry, source="/shop")
    envelope = Envelope(OrderPlaced(7, "ada", ["a-1", "b-2"], True))
    body = new.encode(envelope)
    assert new.decode(body) == envelope
    assert old.decode(body) == envelope
    encoder, decoder = msgspec.json.Encoder(), msgspec.json.Decoder(RawEvent)

    def raw_encode() -> bytes:
        return encoder.encode(
            {
                "specversion": "1.0",
                "id": envelope.message_id,
                "source": "/shop",
                "type": envelope.message_type,
                "time": envelope.timestamp,
                "datacontenttype": "application/json",
                "data": envelope.message,
                "messageversion": envelope.message_version,
                "correlationid": envelope.correlation_id,
                "attempt": envelope.attempt,
            }
        )

    rows: dict[str, dict[str, Any]] = {
        "raw msgspec": {"encode": raw_encode, "decode": lambda: decoder.decode(body)},
        "WireCodec": {"encode": lambda: new.encode(envelope), "decode": lambda: new.decode(body)},
        "old codec": {"encode": lambda: old.encode(envelope), "decode": lambda: old.decode(body)},
    }
    times = {
        (name, op): min(timeit.repeat(fn, number=args.n, repeat=args.runs)) / args.n * 1e6
        for name, ops in rows.items()
        for op, fn in ops.items()
    }
    print(f"small message, {len(body)} bytes; best of {args.runs} x {args.n}")
    print(f"{'':<12} {'encode us':>10} {'x raw':>6} {'decode us':>10} {'x raw':>6}")
    for name in rows:
        encode, decode = times[(name, "encode")], times[(name, "decode")]
        print(
            f"{name:<12} {encode:>10.2f} {encode / times[('raw msgspec', 'encode')]:>6.2f}"
            f" {decode:>10.2f} {decode / times[('raw msgspec', 'decode')]:>6.2f}"
        )


if __name__ == "__main__":
    main()
