"""The wire protocol: documented examples decode, framing limits, MAC, masking."""
import asyncio
import re
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from acquirer.protocol import (MTI, Field60, Frame, FrameError, Original, PrivateTag, ProtocolError, ResponseCode,
                               decode, describe, encode, mac_input, private_fields, read_frame, read_private)
from acquirer.protocol import examples
from keys.errors import MACError
from keys.mac import CBCMAC
from keys.symmetric import BlockCipher

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
TAK = CBCMAC(BlockCipher("SM4", examples.EXAMPLE_TAK), 2, 8)


def _doc_examples() -> dict[str, bytes]:
    text = DOC.read_text()
    found = re.findall(r"<!-- example: ([\w-]+) -->\s*```hex\s*([0-9A-F]+)\s*```", text)
    return {name: bytes.fromhex(h) for name, h in found}


def test_every_documented_example_decodes_to_what_the_code_builds():
    documented = _doc_examples()
    built = examples.framed()
    assert set(documented) == set(built) and len(documented) >= 15
    for name, raw in documented.items():
        assert raw == built[name], f"docs/protocol.md example {name} is stale"
        frame = Frame.decode_body(raw[2:])
        doc = decode(frame.message)
        fields, maced = examples.messages()[name]
        for k, v in fields.items():
            assert doc[k] == v, (name, k)
        if maced:
            data, tag = mac_input(frame.message)
            TAK.verify(data, tag)


def test_documented_sale_request_fields():
    raw = _doc_examples()["sale-request"]
    doc = decode(Frame.decode_body(raw[2:]).message)
    assert doc["t"] == MTI.FINANCIAL_REQUEST.value and doc["4"] == "000000012345" and doc["11"] == "000042"
    assert Field60.decode(doc["60"]).type_code == "22" and Field60.decode(doc["60"]).batch == "000001"


def test_every_response_code_and_private_tag_is_documented():
    text = DOC.read_text()
    for code in ResponseCode:
        assert f"`{code.value}` | {code.meaning}" in text
    for tag in PrivateTag:
        assert f"| {tag.value:X} | {tag.name} |" in text


def test_tampered_message_fails_its_mac():
    raw = bytearray(Frame.decode_body(_doc_examples()["sale-request"][2:]).message)
    raw[20] ^= 0x01
    data, tag = mac_input(bytes(raw))
    with pytest.raises(MACError):
        TAK.verify(data, tag)


def test_message_without_mac_is_reported():
    raw = encode({"t": "0800", "11": "000001", "41": "T0000001", "42": "898440358120001"})
    with pytest.raises(ProtocolError, match="no MAC"):
        mac_input(raw)


@pytest.mark.parametrize("raw,field", [
    (b"\x02", "t"),
    (bytes.fromhex("0200") + bytes(3), "p"),
    (bytes.fromhex("02004000000000000000") + bytes.fromhex("1962"), "2"),
    (bytes.fromhex("0200200000000000000000000000"), "3"),
])
def test_malformed_messages_name_the_field(raw, field):
    with pytest.raises(ProtocolError) as err:
        decode(raw)
    assert err.value.field == field


def test_encode_errors_name_the_field():
    with pytest.raises(ProtocolError) as err:
        encode({"t": "0200", "4": "12345678901234"})
    assert err.value.field == "4"


@given(amount=st.integers(0, 999_999_999_999), stan=st.integers(0, 999_999),
       tid=st.text("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=8, max_size=8))
def test_round_trip(amount, stan, tid):
    doc = {"t": "0200", "3": "000000", "4": f"{amount:012d}", "11": f"{stan:06d}", "41": tid,
           "42": "898440358120001", "60": Field60("22", "000007").encode()}
    back = decode(encode(doc, TAK.mac))
    assert {k: back[k] for k in doc} == doc


def test_field_helpers():
    f = Field60("22", "000123", "004")
    assert Field60.decode(f.encode()) == f
    o = Original("000001", "000042", "1123", "611230000042")
    assert Original.decode(o.encode()) == o
    with pytest.raises(ProtocolError, match="field 61"):
        Original.decode("12ab")
    items = {PrivateTag.QR_CODE: b"134567890123456789", PrivateTag.LOCATION: b"\x01\x02"}
    assert read_private({"59": private_fields(items)}) == items
    with pytest.raises(ProtocolError, match="field 59"):
        read_private({"59": "DF0105"})


def test_describe_masks_sensitive_data():
    doc = decode(Frame.decode_body(_doc_examples()["sale-request"][2:]).message)
    doc["2"] = "6212345678901234567"
    doc["52"] = "AB" * 16
    doc["59"] = private_fields({PrivateTag.QR_CODE: b"134567890123456789",
                                PrivateTag.PASSCODE_BLOCK: bytes(16), PrivateTag.ORDER_ID: b"ORD-1"})
    text = describe(doc)
    assert "621234*********4567" in text and "6212345678901234567" not in text
    assert "AB" * 16 not in text and "5A" * 32 not in text and "134567890123456789" not in text
    assert "PIN block, 16 bytes" in text and "PASSCODE_BLOCK=<16 bytes masked>" in text and "ORDER_ID=ORD-1" in text


def test_frame_round_trip_and_reply():
    f = Frame(b"\x08\x00" + bytes(8) + b"x" * 10, 0x0000, 0x0001)
    g = Frame.decode_body(f.encode()[2:])
    assert g == f
    r = g.reply(b"\x08\x10" + bytes(18))
    assert (r.destination, r.source) == (0x0001, 0x0000)


@pytest.mark.parametrize("body,reason", [
    (b"\x61" + bytes(30), "TPDU id"),
    (b"\x60" + bytes(4) + b"\x70" + bytes(25), "application type"),
    (b"\x60" + bytes(5), "too short"),
])
def test_bad_frames(body, reason):
    with pytest.raises(FrameError, match=reason):
        Frame.decode_body(body)


def _read(data: bytes, timeout=1.0, max_len=8192):
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_frame(reader, timeout, max_len)
    return asyncio.run(go())


def test_read_frame_limits():
    good = Frame(b"\x08\x00" + bytes(8) + b"x" * 10).encode()
    assert _read(good).message.startswith(b"\x08\x00")
    assert _read(b"") is None
    with pytest.raises(FrameError, match="exceeds"):
        _read(b"\xff\xff" + bytes(10))
    with pytest.raises(FrameError, match="closed after 3 of"):
        _read(good[:5])
    with pytest.raises(FrameError, match="inside a length prefix"):
        _read(good[:1])


def test_read_frame_times_out_on_a_stalled_peer():
    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(b"\x00\x40\x60")
        return await read_frame(reader, 0.05)
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(go())


def test_mti_response_mapping():
    assert MTI.FINANCIAL_REQUEST.response is MTI.FINANCIAL_RESPONSE
    assert MTI.REVERSAL_REQUEST.response is MTI.REVERSAL_RESPONSE
    assert MTI.NETWORK_REQUEST.response is MTI.NETWORK_RESPONSE
