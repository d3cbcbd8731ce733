"""BER-TLV: round trips, strict errors, DOLs, masking of cardholder data."""
import pytest
from hypothesis import given, strategies as st

from keys.tlv import (TLV, TLVError, _read_length, _read_tag, build_dol_data, decode, describe, encode_dict, flatten,
                      is_constructed, mask_pan, objects, parse_dol, tlv, walk)

FCI = bytes.fromhex("6F1A840E325041592E5359532E4444463031A508880102" "5F2D027A68")


def test_decode_nested_fci():
    (fci,) = decode(FCI)
    assert fci.tag == 0x6F and fci.constructed
    assert fci.find(0x84).value == b"2PAY.SYS.DDF01"
    assert fci.find(0x88).value == b"\x02"
    assert fci.encode() == FCI


@given(st.dictionaries(st.sampled_from([0x5A, 0x82, 0x94, 0x9F02, 0x9F36, 0x9F10, 0xDF61, 0x9F4B]),
                       st.binary(max_size=300)))
def test_round_trip_of_primitives(items):
    assert flatten(encode_dict(items)) == items


def test_long_lengths_and_multibyte_tags():
    value = bytes(300)
    enc = tlv(0x9F4B, value)
    assert enc[:5] == bytes.fromhex("9F4B82012C")
    assert decode(enc)[0].value == value


@pytest.mark.parametrize("bad,where", [
    (bytes.fromhex("9F"), "truncated multi-byte tag"),
    (bytes.fromhex("5A"), "truncated length"),
    (bytes.fromhex("5A08123456"), "declares 8 bytes, only 3 remain"),
    (bytes.fromhex("5A85FFFFFFFFFF"), "unsupported length form"),
    (bytes.fromhex("700A5A08"), "declares 10 bytes"),
    (bytes.fromhex("70055A0812345678"), "tag 5A at offset 2 declares 8"),
])
def test_malformed_tlv_raises_with_offset(bad, where):
    with pytest.raises(TLVError, match=where):
        decode(bad)


def test_padding_bytes_between_objects_are_skipped():
    assert flatten(bytes.fromhex("00FF82021980") + bytes(2)) == {0x82: bytes.fromhex("1980")}


def test_pdol_parsing_and_data():
    pdol = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")
    assert parse_dol(pdol) == [(0x9F66, 4), (0x9F02, 6), (0x9F03, 6), (0x9F1A, 2), (0x95, 5),
                               (0x5F2A, 2), (0x9A, 3), (0x9C, 1), (0x9F37, 4)]
    data = build_dol_data(pdol, {0x9F02: bytes.fromhex("000000001000"), 0x9F37: b"\x01\x02\x03\x04"})
    assert len(data) == 33 and data[4:10] == bytes.fromhex("000000001000") and data[-4:] == b"\x01\x02\x03\x04"
    with pytest.raises(TLVError):
        parse_dol(bytes.fromhex("9F66"))


def test_describe_masks_pan_and_track2():
    rec = tlv(0x70, tlv(0x57, bytes.fromhex("6212345678901234567D30122011234500000F"))
              + tlv(0x5A, bytes.fromhex("6212345678901234567F")) + tlv(0x5F24, bytes.fromhex("301231")))
    text = describe(rec)
    assert "621234*********4567" in text and "Track 2" in text and "Expiry" in text
    assert "6212345678901234567" not in text and "D3012201" not in text


def test_mask_pan():
    assert mask_pan("6212345678901234") == "621234******1234"
    assert mask_pan("123") == "***"


def test_tlv_node_encodes_children():
    node = TLV(0x77, children=[TLV(0x9F27, b"\x80"), TLV(0x9F36, b"\x00\x01")])
    assert node.encode() == bytes.fromhex("77099F2701809F36020001")


def _outcome(fn, data):
    try:
        return fn(data)
    except TLVError as exc:
        return str(exc)


@given(st.binary(max_size=40))
def test_flatten_of_bytes_is_as_strict_as_decode(data):
    """flatten parses bytes without TLV nodes: the same dict, or the same error, as via decode."""
    assert _outcome(flatten, data) == _outcome(lambda d: flatten(decode(d)), data)


@given(st.binary(max_size=40))
def test_objects_are_decodes_top_level_as_strictly(data):
    """objects gives the top level without nodes: decode's (tag, value) pairs, or decode's error."""
    assert _outcome(objects, data) == _outcome(lambda d: [(n.tag, n.value) for n in decode(d)], data)


def test_objects_check_a_templates_contents():
    good = tlv(0x70, tlv(0x9F36, b"\x00\x01")) + tlv(0xDF03, b"\x01")
    assert objects(good) == [(0x70, tlv(0x9F36, b"\x00\x01")), (0xDF03, b"\x01")]
    with pytest.raises(TLVError, match="tag 9F36 at offset 2 declares 8 bytes"):
        objects(bytes.fromhex("7006") + bytes.fromhex("9F3608123456"))


def test_flatten_takes_the_first_occurrence_depth_first():
    data = (tlv(0x70, tlv(0x9F36, b"\x00\x01") + tlv(0x77, tlv(0x9F27, b"\x80") + tlv(0x9F36, b"\x00\x02")))
            + tlv(0x9F27, b"\x40") + tlv(0x9F8101, b"\x01"))
    assert flatten(data) == {0x9F36: b"\x00\x01", 0x9F27: b"\x80", 0x9F8101: b"\x01"}
    assert flatten(bytearray(data)) == flatten(decode(data))


def test_an_error_inside_a_template_names_the_offset_in_the_whole_data():
    data = tlv(0x82, b"\x19\x80") + bytes.fromhex("7006") + bytes.fromhex("9F3608123456")
    with pytest.raises(TLVError, match="tag 9F36 at offset 6 declares 8 bytes, only 3 remain"):
        flatten(data)


# --- the one-pass scanner against a lazy reference parse ----------------------------------------
def _lazy_decode(data: bytes, offset: int = 0) -> list[TLV]:
    """The reference: EMV Book 3's reading, object by object, a template's contents before the
    next object, raising at the first malformed byte met (what the scanner's callers must raise)."""
    out, i = [], 0
    while i < len(data):
        if data[i] in (0x00, 0xFF):
            i += 1
            continue
        start = i
        tag, i = _read_tag(data, i)
        length, i = _read_length(data, i)
        if i + length > len(data):
            raise TLVError(f"tag {tag:X} at offset {offset + start} declares {length} bytes, "
                           f"only {len(data) - i} remain")
        value = data[i:i + length]
        out.append(TLV(tag, value, _lazy_decode(value, offset + i) if is_constructed(tag) else []))
        i += length
    return out


def _lazy_flatten(data: bytes) -> dict[int, bytes]:
    result: dict[int, bytes] = {}
    for n in walk(_lazy_decode(data)):
        if not n.constructed:
            result.setdefault(n.tag, n.value)
    return result


_PIECES = st.one_of(
    st.builds(tlv, st.sampled_from([0x82, 0x95, 0x9F36, 0x5F2A, 0xDF03, 0x9F8101]), st.binary(max_size=6)),
    st.builds(lambda inner: tlv(0x70, inner), st.binary(max_size=8)),  # a template, its contents often broken
    st.builds(lambda a, b: tlv(0x77, tlv(0x9F27, a) + b), st.binary(max_size=2), st.binary(max_size=4)),
    st.sampled_from([b"\x00", b"\xff", b"\x9f", b"\x81", b"\x9f\x36\x08\x01", b"\x84\x01\x02\x03\x04\x05"]),
    st.binary(max_size=4))


@given(st.one_of(st.binary(max_size=48), st.lists(_PIECES, max_size=6).map(b"".join)))
def test_decode_objects_and_flatten_are_the_lazy_parse_error_for_error(data):
    """Same nodes, pairs and dict, or the same first error in document order (a broken template
    before a broken top-level object raises the template's), as a parse that raises as it reads."""
    assert _outcome(decode, data) == _outcome(_lazy_decode, data)
    assert _outcome(objects, data) == _outcome(lambda d: [(n.tag, n.value) for n in _lazy_decode(d)], data)
    assert _outcome(flatten, data) == _outcome(_lazy_flatten, data)


def test_a_broken_template_raises_before_a_broken_object_after_it():
    data = bytes.fromhex("7003") + bytes.fromhex("9F3609") + bytes.fromhex("9F2705")
    with pytest.raises(TLVError, match="tag 9F36 at offset 2 declares 9 bytes, only 0 remain"):
        flatten(data)
    with pytest.raises(TLVError, match="tag 9F36 at offset 2"):
        objects(data)


@given(st.dictionaries(st.integers(0, 0xFFFFFF), st.binary(max_size=200), max_size=5))
def test_encode_dict_is_tag_length_value_as_written_out(items):
    def written_out(tag: int, value: bytes) -> bytes:
        n = len(value)
        size = (n.bit_length() + 7) // 8
        length = bytes([n]) if n < 0x80 else bytes([0x80 | size]) + n.to_bytes(size)
        return tag.to_bytes(max(1, (tag.bit_length() + 7) // 8)) + length + value
    assert encode_dict(items) == b"".join(written_out(t, v) for t, v in items.items())


@given(st.lists(_PIECES, min_size=1, max_size=6).map(b"".join), st.data())
def test_flatten_of_bytes_laid_out_as_before_is_the_lazy_parse(data, draw):
    """flatten answers bytes of a length it saw from that layout: with other values in the same
    places (a new sale's amounts and cryptogram), or any byte changed, it is still the parse's."""
    from keys import tlv as module

    module._FLAT_LAYOUTS.clear()
    assert _outcome(flatten, data) == _outcome(_lazy_flatten, data)
    for _ in range(3):
        again = bytearray(data)
        for i in draw.draw(st.lists(st.integers(0, max(len(data) - 1, 0)), max_size=3)):
            if data:
                again[i] = draw.draw(st.integers(0, 255))
        assert _outcome(flatten, bytes(again)) == _outcome(_lazy_flatten, bytes(again))


def test_field_55_of_the_next_sale_is_answered_from_the_layout():
    from keys import tlv as module

    module._FLAT_LAYOUTS.clear()
    sale = [(0x9F02, b"\x00\x00\x00\x00\x01\x00"), (0x9F36, b"\x00\x01"), (0x9F26, bytes(8)), (0x70, b"")]
    first = encode_dict(sale[:3]) + tlv(0x77, tlv(0x9F27, b"\x80") + tlv(0x9F36, b"\xff\xff"))
    assert flatten(first) == _lazy_flatten(first) and len(first) in module._FLAT_LAYOUTS
    following = encode_dict([(0x9F02, b"\x00\x00\x00\x00\x99\x00"), (0x9F36, b"\x00\x02"), (0x9F26, b"\x11" * 8)]) \
        + tlv(0x77, tlv(0x9F27, b"\x40") + tlv(0x9F36, b"\x00\x00"))
    assert flatten(following) == _lazy_flatten(following) == {0x9F02: b"\x00\x00\x00\x00\x99\x00", 0x9F36: b"\x00\x02",
                                                             0x9F26: b"\x11" * 8, 0x9F27: b"\x40"}
    moved = following.replace(b"\x9f\x27\x01", b"\x9f\x28\x01")  # another tag where 9F27 was: parsed again
    assert flatten(moved)[0x9F28] == b"\x40" and 0x9F27 not in flatten(moved)
