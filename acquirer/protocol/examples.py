"""Canonical example messages, one per message pair, with fixed example keys.

docs/protocol.md shows their hex; tests decode that hex and compare it with what this
module builds, so the document cannot drift from the code. Regenerate the document's
examples with `python -m acquirer.protocol.examples`.
"""
from __future__ import annotations

from keys.mac import CBCMAC
from keys.symmetric import BlockCipher
from keys.tlv import encode_dict
from .codes import NetworkCode, TxnType
from .frame import Frame
from .message import Field60, Original, PrivateTag, encode, private_fields
from .settlement import encode_totals

EXAMPLE_TAK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # example only, never a real key
TID, MID = "T0000001", "898440358120001"


def _mac(data: bytes) -> bytes:
    return CBCMAC(BlockCipher("SM4", EXAMPLE_TAK), 2, 8).mac(data)


def _icc() -> str:
    return encode_dict({
        0x9F26: bytes.fromhex("1122334455667788"), 0x9F27: b"\x80", 0x9F10: bytes.fromhex("07010103A0A000010A01000000000000"),
        0x9F37: bytes.fromhex("A1B2C3D4"), 0x9F36: b"\x00\x2A", 0x95: bytes(5), 0x9A: bytes.fromhex("261123"),
        0x9C: b"\x00", 0x9F02: bytes.fromhex("000000012345"), 0x5F2A: bytes.fromhex("0156"), 0x82: bytes.fromhex("7C00"),
        0x9F1A: bytes.fromhex("0156"), 0x9F33: bytes.fromhex("E0E1C8"), 0x9F66: bytes.fromhex("26000080"),
    }).hex().upper()


def messages() -> dict[str, tuple[dict, bool]]:
    """name -> (fields, MAC-ed?)."""
    base = {"41": TID, "42": MID}
    enc_track2 = "5A" * 32  # stands for SM4-CBC(TDK, track 2 equivalent, padded)
    return {
        "activation-request": ({"t": "0800", "11": "000001", **base,
                                "59": private_fields({PrivateTag.ACTIVATION_CODE: b"493817",
                                                      PrivateTag.DEVICE_ID: b"DEV-5F3A9C",
                                                      PrivateTag.DEVICE_PUBLIC_KEY: bytes.fromhex("04" + "11" * 64)}),
                                "60": Field60(TxnType.ACTIVATION.value, "000000", NetworkCode.ACTIVATE.value).encode()},
                               False),
        "activation-response": ({"t": "0810", "11": "000001", "39": "00", **base,
                                 "59": private_fields({PrivateTag.HOST_PUBLIC_KEY: bytes.fromhex("04" + "22" * 64)}),
                                 "60": Field60(TxnType.ACTIVATION.value, "000000", NetworkCode.ACTIVATE.value).encode()},
                                False),
        "key-download-request": ({"t": "0800", "11": "000002", **base,
                                  "59": private_fields({PrivateTag.NONCE: bytes(range(16))}),
                                  "60": Field60(TxnType.KEY_DOWNLOAD.value, "000000", NetworkCode.KEY_DOWNLOAD.value).encode()},
                                 False),
        "key-download-response": ({"t": "0810", "11": "000002", "39": "00", **base, "62": "4B455631" + "33" * 40,
                                   "60": Field60(TxnType.KEY_DOWNLOAD.value, "000000", NetworkCode.KEY_DOWNLOAD.value).encode()},
                                  False),
        "sign-on-request": ({"t": "0800", "11": "000003", **base,
                             "59": private_fields({PrivateTag.NONCE: bytes(range(16)),
                                                   PrivateTag.ATTESTATION: bytes.fromhex("44" * 96)}),
                             "60": Field60(TxnType.SIGN_ON.value, "000000", NetworkCode.SIGN_ON.value).encode()},
                            False),
        "sign-on-response": ({"t": "0810", "11": "000003", "12": "101500", "13": "1123", "37": "611230000003",
                              "39": "00", **base, "62": "53303134345030" + "30" * 40,
                              "59": private_fields({PrivateTag.KEY_CHECK_VALUES: b"TPK:A1B2C3 TAK:D4E5F6 TDK:0A1B2C"}),
                              "60": Field60(TxnType.SIGN_ON.value, "000001", NetworkCode.SIGN_ON.value).encode()},
                             False),
        "static-qr-request": ({"t": "0800", "11": "000004", **base,
                               "60": Field60(TxnType.SIGN_ON.value, "000001", NetworkCode.STATIC_QR.value).encode()},
                              False),
        "static-qr-response": ({"t": "0810", "11": "000004", "39": "00", **base, "44": "static code",
                                "59": private_fields({PrivateTag.MERCHANT_QR: b"https://pay.acquirer.example/s/"
                                                      b"898440358120001-3F9A1C07-5E0B8D2A41C7F3906B1E4D8A2C7F5B93"}),
                                "60": Field60(TxnType.SIGN_ON.value, "000001", NetworkCode.STATIC_QR.value).encode()},
                               False),
        "sale-request": ({"t": "0200", "3": "000000", "4": "000000012345", "11": "000042", "12": "101530",
                          "13": "1123", "22": "072", "23": "001", "25": "00", "35": enc_track2, **base, "49": "156",
                          "55": _icc(), "60": Field60(TxnType.SALE.value, "000001").encode()}, True),
        "sale-response": ({"t": "0210", "3": "000000", "4": "000000012345", "11": "000042", "12": "101530",
                           "13": "1123", "15": "1124", "25": "00", "37": "611230000042", "38": "A1B2C3", "39": "00",
                           **base, "49": "156", "55": encode_dict({0x91: bytes.fromhex("5566778899AABBCC3030")}).hex().upper(),
                           "59": private_fields({PrivateTag.MASKED_PAN: b"621234******1234"}),
                           "60": Field60(TxnType.SALE.value, "000001").encode(), "63": "CUP"}, True),
        "void-request": ({"t": "0200", "3": "200000", "4": "000000012345", "11": "000043", "25": "00", **base,
                          "49": "156", "60": Field60(TxnType.VOID.value, "000001").encode(),
                          "61": Original("000001", "000042", "1123", "611230000042").encode()}, True),
        "refund-request": ({"t": "0220", "3": "200000", "4": "000000005000", "11": "000050", "25": "00", **base,
                            "49": "156", "60": Field60(TxnType.REFUND.value, "000002").encode(),
                            "61": Original("000001", "000042", "1123", "611230000042").encode()}, True),
        "reversal-request": ({"t": "0400", "3": "000000", "4": "000000012345", "11": "000042", "22": "072",
                              "25": "98", **base, "39": "98", "49": "156",
                              "60": Field60(TxnType.SALE.value, "000001").encode()}, True),
        "query-request": ({"t": "0100", "3": "300000", "11": "000044", **base,
                           "60": Field60(TxnType.QUERY.value, "000001").encode(),
                           "61": Original("000001", "000042", "1123", "").encode()}, True),
        "query-response": ({"t": "0110", "3": "300000", "4": "000000012345", "11": "000044", "37": "611230000042",
                            "38": "A1B2C3", "39": "00", **base,
                            "44": "SALE APPROVED", "60": Field60(TxnType.QUERY.value, "000001").encode(),
                            "61": Original("000001", "000042", "1123", "611230000042").encode()}, True),
        **_wallet_messages(base),
        **_location_messages(base),
        "settlement-request": ({"t": "0500", "11": "000051", **base, "49": "156",
                                "48": encode_totals({"CD": (1, 12345, 1, 5000)}),
                                "60": Field60(TxnType.SETTLEMENT.value, "000001", "201").encode()}, True),
        "settlement-response": ({"t": "0510", "11": "000051", "15": "1124", "39": "00", **base,
                                 "60": Field60(TxnType.SETTLEMENT.value, "000001", "201").encode(),
                                 "44": "BALANCED"}, True),
    }


def _wallet_messages(base: dict) -> dict[str, tuple[dict, bool]]:
    """QR both ways and face (docs/protocol.md, "QR and face")."""
    qr = {"12": "101530", "13": "1123", "22": "032", "25": "00", **base, "49": "156"}
    order = {PrivateTag.ORDER_ID: b"T0000001-000001-000060", PrivateTag.CHANNEL: b"wechat"}
    paid = {"15": "1124", "37": "611230000060", "38": "001234", "39": "00", "44": "paid"}
    sale = {"3": "000000", "4": "000000012345", "11": "000060", **qr,
            "60": Field60(TxnType.QR_SALE.value, "000001").encode()}
    pre = {"3": "380000", "4": "000000002580", **qr, "60": Field60(TxnType.QR_PRECREATE.value, "000001").encode()}
    wait = {**pre, "11": "000062", "61": Original("000001", "000061", "0000", "").encode()}
    merchant_order = {PrivateTag.ORDER_ID: b"T0000001-000001-000061", PrivateTag.CHANNEL: b"alipay"}
    face = {"3": "000000", "4": "000000001500", **qr, "22": "092",
            "60": Field60(TxnType.FACE_SALE.value, "000001").encode()}
    template = bytes.fromhex("66" * 544)  # stands for the template sealed under the TDK (docs/face.md)
    return {
        "qr-sale-request": ({"t": "0200", **sale, "59": private_fields({PrivateTag.QR_CODE: b"134567890123456789"})},
                            True),
        "qr-sale-response": ({"t": "0210", **sale, **paid, "59": private_fields(order)}, True),
        "precreate-request": ({"t": "0200", **pre, "11": "000061",
                               "59": private_fields({PrivateTag.CHANNEL: b"alipay"})}, True),
        "precreate-response": ({"t": "0210", **pre, "11": "000061", "39": "00", "44": "show the QR to the customer",
                                "59": private_fields({**merchant_order, PrivateTag.MERCHANT_QR:
                                                      b"https://qr.alipay.com/bax0Xq3vT9bW2kLmN8pR"})}, True),
        "qr-wait-request": ({"t": "0200", **wait}, True),
        "qr-wait-response": ({"t": "0210", **wait, **paid, "37": "611230000061",
                              "59": private_fields(merchant_order)}, True),
        "face-sale-request": ({"t": "0200", **face, "11": "000063",
                               "59": private_fields({PrivateTag.FACE_TEMPLATE: template})}, True),
        "face-step-up-response": ({"t": "0210", **face, "11": "000063", "39": "1A",
                                   "44": "face recognised: enter the payment passcode",
                                   "59": private_fields({PrivateTag.STEP_UP: b"PASSCODE"})}, True),
        "face-passcode-request": ({"t": "0200", **face, "11": "000064",
                                   "59": private_fields({PrivateTag.FACE_TEMPLATE: template,
                                                         PrivateTag.PASSCODE_BLOCK: bytes.fromhex("77" * 16)})},
                                  True),
    }


def _location_messages(base: dict) -> dict[str, tuple[dict, bool]]:
    from acquirer.fence.report import FixSource, encode_body
    from acquirer.fence.terms import FenceTerms

    report = encode_body("DEV-5F3A9C", "T0000001", 42, 1_763_864_130.0, 31.2304, 121.4737, 8.0,
                         FixSource.GNSS) + bytes.fromhex("55" * 64)  # the device's SM2 signature
    terms = FenceTerms(31.2304, 121.4737, 500.0, report_every_s=600, max_fix_age_s=1200).encode()
    f60 = Field60(TxnType.LOCATION.value, "000001", NetworkCode.LOCATION_REPORT.value).encode()
    return {
        "location-report-request": ({"t": "0800", "11": "000070", **base, "59": private_fields({PrivateTag.LOCATION:
                                    report}), "60": f60}, False),
        "location-report-response": ({"t": "0810", "11": "000070", "39": "00", **base, "44": "inside the fence",
                                      "59": private_fields({PrivateTag.FENCE_TERMS: terms}), "60": f60}, False),
    }


def framed() -> dict[str, bytes]:
    out = {}
    for name, (fields, maced) in messages().items():
        raw = encode(fields, _mac if maced else None)
        src, dst = (0x0001, 0x0000) if name.endswith("request") else (0x0000, 0x0001)
        out[name] = Frame(raw, dst, src).encode()
    return out


if __name__ == "__main__":
    for name, raw in framed().items():
        print(f"<!-- example: {name} -->\n```hex\n{raw.hex().upper()}\n```\n")
