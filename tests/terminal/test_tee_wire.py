"""The wire to the TEE: a strict typed encoding, and typed command parameters."""
from __future__ import annotations

import socket

import pytest

from terminal.tee import api
from terminal.tee.api import Command, ErrorCode, TeeError
from terminal.tee.wire import MAX_FRAME, WireError, decode, encode, recv_frame, send_frame


@pytest.mark.parametrize("value", [None, True, False, 0, -1, 2**63 - 1, -(2**63), "", "收银", b"", b"\x00\xff",
                                   [1, "a", b"b", None], {"k": {"n": [True]}}])
def test_values_round_trip(value):
    assert decode(encode(value)) == value


def test_bool_stays_bool_and_tuple_becomes_list():
    assert decode(encode(True)) is True
    assert decode(encode((1, 2))) == [1, 2]


@pytest.mark.parametrize("raw, why", [
    (b"", "claims 1 bytes"),
    (b"X", "unknown type byte"),
    (b"I\x00\x00", "claims 8 bytes"),
    (b"B\x00\x00\x00\x05abc", "claims 5 bytes"),
    (b"S\x00\x00\x00\x02\xff\xfe", "not UTF-8"),
    (b"NN", "trailing bytes"),
    (b"M\x00\x00\x00\x01I" + bytes(8) + b"N", "not a string"),
    (b"M\x00\x00\x00\x02S\x00\x00\x00\x01aNS\x00\x00\x00\x01aN", "appears twice"),
    (b"L\xff\xff\xff\xff", "claims 4294967295 items"),
    (b"L\x00\x00\x00\x01" * 6 + b"N", "deeper"),
])
def test_malformed_values_are_refused_with_the_reason(raw, why):
    with pytest.raises(WireError, match=why):
        decode(raw)


@pytest.mark.parametrize("value", [1.5, object(), {1: "a"}, 2**63, {"a": {1, 2}}])
def test_values_outside_the_encoding_cannot_be_sent(value):
    with pytest.raises(WireError):
        encode(value)


def test_frames_are_length_prefixed_and_bounded():
    a, b = socket.socketpair()
    with a, b:
        send_frame(a, {"op": "x"})
        assert recv_frame(b) == {"op": "x"}
        a.sendall((MAX_FRAME + 1).to_bytes(4, "big"))
        with pytest.raises(WireError, match="above"):
            recv_frame(b)
        a.close()
        with pytest.raises(EOFError):
            recv_frame(b)


def test_every_command_has_a_typed_signature():
    assert set(api.SIGNATURES) == set(Command)


def test_parameters_must_match_their_dataclass_exactly():
    ok = api.from_wire(api.TransactRequest, {"amount": 100, "timeout_ms": 5000})
    assert ok == api.TransactRequest(100, 5000)
    for bad, why in [({"amount": 100}, "timeout_ms: missing"),
                     ({"amount": True, "timeout_ms": 5}, "amount: expected int"),
                     ({"amount": "100", "timeout_ms": 5}, "amount: expected int"),
                     ({"amount": 1, "timeout_ms": 5, "pan": "x"}, "unexpected field 'pan'")]:
        with pytest.raises(TeeError, match=why) as info:
            api.from_wire(api.TransactRequest, bad)
        assert info.value.code is ErrorCode.BAD_PARAMETERS
    with pytest.raises(TeeError, match="check_values"):
        api.from_wire(api.WorkingKeys, {"blocks": "x", "check_values": {"TPK": 1}})
    assert api.from_wire(api.PinPadLayout, {"layout": [1, 2], "min_digits": 4, "max_digits": 12}).layout == [1, 2]
