"""The ISO8583 dialect as one pyiso8583 spec (China UnionPay POS style, BCD numerics).

The message format is data: encode/decode are pyiso8583's pure functions over SPEC.
Framing (length, TPDU, header) is in `frame.py`; field meanings in docs/protocol.md.
"""
from __future__ import annotations


def _fixed_bcd(n: int, desc: str) -> dict:
    return {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": n, "len_count": "nibbles",
            "left_pad": "0", "desc": desc}


def _llvar_bcd(n: int, desc: str, len_type: int = 1) -> dict:
    return {"data_enc": "b", "len_enc": "bcd", "len_type": len_type, "max_len": n, "len_count": "nibbles",
            "right_pad": "F", "desc": desc}


def _fixed_ascii(n: int, desc: str) -> dict:
    return {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": n, "desc": desc}


def _var_ascii(n: int, desc: str, len_type: int) -> dict:
    return {"data_enc": "ascii", "len_enc": "bcd", "len_type": len_type, "max_len": n, "desc": desc}


def _var_binary(n: int, desc: str, len_type: int) -> dict:
    return {"data_enc": "b", "len_enc": "bcd", "len_type": len_type, "max_len": n, "desc": desc}


SPEC: dict = {
    "h": {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": 0, "desc": "(header in frame)"},
    "t": {"data_enc": "b", "len_enc": "b", "len_type": 0, "max_len": 2, "desc": "Message Type Identifier"},
    "p": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "Bitmap"},
    "1": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "Secondary bitmap (unused)"},
    "2": _llvar_bcd(19, "Primary Account Number (host-to-issuer only)"),
    "3": _fixed_bcd(6, "Processing Code"),
    "4": _fixed_bcd(12, "Amount, Transaction (fen)"),
    "11": _fixed_bcd(6, "System Trace Audit Number"),
    "12": _fixed_bcd(6, "Time, Local Transaction (hhmmss)"),
    "13": _fixed_bcd(4, "Date, Local Transaction (MMDD)"),
    "14": _fixed_bcd(4, "Date, Expiration (YYMM)"),
    "15": _fixed_bcd(4, "Date, Settlement (MMDD)"),
    "22": _fixed_bcd(3, "POS Entry Mode"),
    "23": _fixed_bcd(3, "Card Sequence Number"),
    "25": _fixed_bcd(2, "POS Condition Code"),
    "26": _fixed_bcd(2, "PIN Capture Code"),
    "32": _llvar_bcd(11, "Acquiring Institution Id"),
    "35": _var_binary(64, "Track 2 Equivalent, SM4-encrypted under the TDK", 1),
    "37": _fixed_ascii(12, "Retrieval Reference Number"),
    "38": _fixed_ascii(6, "Authorisation Code"),
    "39": _fixed_ascii(2, "Response Code"),
    "41": _fixed_ascii(8, "Terminal Id"),
    "42": _fixed_ascii(15, "Merchant Id"),
    "44": _var_ascii(99, "Additional Response Data (cashier text)", 1),
    "48": _var_binary(999, "Additional Data (settlement totals, batch upload)", 2),
    "49": _fixed_ascii(3, "Currency Code, Transaction"),
    "52": _var_binary(16, "PIN Block (8 bytes ISO-0, 16 bytes SM4 or ISO-4)", 1),
    "53": _fixed_bcd(16, "Security Related Control Information"),
    "54": _var_ascii(40, "Balance Amounts", 2),
    "55": _var_binary(512, "ICC Data (BER-TLV)", 2),
    "59": _var_binary(4096, "Private Data (BER-TLV, DFxx tags)", 2),
    "60": _llvar_bcd(17, "Reserved Private: type code, batch, network info, capability", 2),
    "61": _var_ascii(40, "Original Data: batch, STAN, MMDD, RRN", 2),
    "62": _var_binary(2048, "Key Material (key blocks, envelopes)", 2),
    "63": _var_ascii(63, "Card Organisation / Operator", 2),
    "64": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "MAC"},
}
