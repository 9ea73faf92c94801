"""Message ids: time-ordered UUIDs in the version 7 layout (RFC 9562).

``uuid.uuid4()`` costs about ten floor dispatches on the machines we measure on; this
builds the same 128 bits from ``time.time_ns()`` and ``random.getrandbits()`` at a
fraction of that, and ids sort by creation time to the millisecond, which keeps
database indexes on them compact. Ids are only made when something asks for one.
"""

from __future__ import annotations

from random import getrandbits
from time import time_ns

__all__ = ["new_message_id"]

_VERSION_7 = 0x7 << 76
_VARIANT_RFC = 0x2 << 62


def new_message_id() -> str:
    """Return a new UUIDv7 as 36-character lowercase text.

    48 bits of Unix milliseconds, then 74 random bits around the version and variant
    fields. Ids made in the same millisecond are unique (74 random bits) but not ordered
    among themselves.
    """
    rand = getrandbits(74)
    value = (
        (time_ns() // 1_000_000) << 80
        | _VERSION_7
        | (rand >> 62) << 64
        | _VARIANT_RFC
        | (rand & 0x3FFF_FFFF_FFFF_FFFF)
    )
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
