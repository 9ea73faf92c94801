"""A process manager's state as JSON: the codec's strict rules, versions and upcasters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from messagebus._codec import WireCodec
from messagebus._errors import DecodeError, EncodeError, InvalidArgumentError
from messagebus._wire_types import Refused, decode_check, describe, encode_check

__all__ = ["StateCodec", "Upcaster"]

S = TypeVar("S")

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the state's JSON object of one version into the next version's (a dict in, out)."""


class StateCodec(Generic[S]):
    """Encodes and decodes one process manager's state type, strictly, as messages are.

    The JSON is what the bus's codec would write for a message field of that type (the
    same types, the same refusals: NaN, naive datetimes; the same custom types, read
    from ``codec`` when first used). A state stored at an older ``version`` is carried
    up by ``upcasters`` (``{1: v1_to_v2, 2: v2_to_v3}``) before it is built; a newer
    one is refused.

    Raises (from the constructor):
        InvalidArgumentError: a version below 1, or an upcaster missing from the chain.
    """

    def __init__(
        self,
        name: str,
        state_type: type[S],
        version: int,
        upcasters: Mapping[int, Upcaster] | None = None,
    ) -> None:
        if version < 1:
            raise InvalidArgumentError(f"process {name!r}: state version must be >= 1: {version}")
        chain = dict(upcasters or {})
        missing = [old for old in range(1, version) if old not in chain]
        if chain and missing:
            raise InvalidArgumentError(
                f"process {name!r}: no upcaster from state version(s) {missing} to the next"
            )
        self.name = name
        self.state_type = state_type
        self.version = version
        self._upcasters = chain
        self._codec: WireCodec | None = None
        self._encoder: msgspec.json.Encoder | None = None
        self._decoder: msgspec.json.Decoder[S] | None = None
        self._encode_check = encode_check(state_type)
        self._decode_check = decode_check(state_type)

    def bind(self, codec: WireCodec) -> None:
        """Use ``codec``'s custom types (the bus's), for types added to it at start-up."""
        self._codec = codec
        self._encoder = None
        self._decoder = None

    def _hooks(self) -> tuple[msgspec.json.Encoder, msgspec.json.Decoder[S]]:
        if self._encoder is None or self._decoder is None:
            custom = {} if self._codec is None else self._codec.custom_types

            def enc_hook(value: Any) -> Any:
                hooks = custom.get(type(value))
                if hooks is None:
                    raise EncodeError(f"{type(value).__qualname__} has no JSON form (add_type)")
                return hooks.encode(value)

            def dec_hook(python_type: type[Any], value: Any) -> Any:
                hooks = custom.get(python_type)
                if hooks is None:
                    raise DecodeError(
                        f"expected {python_type.__qualname__}, which has no JSON form"
                    )
                return hooks.decode(value)

            self._encoder = msgspec.json.Encoder(enc_hook=enc_hook, decimal_format="string")
            self._decoder = msgspec.json.Decoder(self.state_type, dec_hook=dec_hook)
        return self._encoder, self._decoder

    def encode(self, state: S) -> str:
        """Return ``state`` as JSON text.

        Raises:
            EncodeError: the state is not of the declared type, or a field has no JSON
                form (the message names it).
        """
        if not isinstance(state, self.state_type):
            raise EncodeError(
                f"process {self.name!r}: state must be a {self.state_type.__qualname__}, "
                f"not {type(state).__qualname__}"
            )
        encoder, _ = self._hooks()
        try:
            if self._encode_check is not None:
                self._encode_check(state, "state")
            return encoder.encode(state).decode()
        except Refused as exc:
            raise EncodeError(f"process {self.name!r}: cannot encode its state: {exc}") from exc
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise EncodeError(f"process {self.name!r}: cannot encode its state: {exc}") from exc

    def decode(self, text: str, version: int) -> S:
        """Return the state stored as ``text`` at ``version``, upcast to the current one.

        Raises:
            DecodeError: not this type's JSON (the message names the field), a version
                newer than this code knows, or an upcaster that failed.
        """
        _, decoder = self._hooks()
        if version > self.version:
            raise DecodeError(
                f"process {self.name!r}: stored state has version {version}; this code "
                f"knows up to {self.version}"
            )
        try:
            if version != self.version:
                data = msgspec.json.decode(text)
                for old in range(version, self.version):
                    data = self._upcasters[old](data)
                text = msgspec.json.encode(data).decode()
            state = decoder.decode(text)
            if self._decode_check is not None:
                # The strict rules msgspec leaves open (a decimal as a number, a time
                # without its offset) are checked on the JSON values, as for messages.
                self._decode_check(msgspec.json.decode(text), "state")
        except msgspec.ValidationError as exc:
            raise DecodeError(f"process {self.name!r}: {describe(exc, 'state')}") from exc
        except (msgspec.DecodeError, Refused, KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"process {self.name!r}: cannot decode its state: {exc}") from exc
        return state
