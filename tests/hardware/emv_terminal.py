"""A minimal test terminal for the simulated EMV cards, independent of hardware.emvcard.

It speaks APDUs through a `CardSession` and checks ODA from the formats written in
docs/cards.md (EMV Book 2 for RSA, the PBOC SM2 layout), sharing no code with the
cards: only keys.tlv (decoding) and keys.sm2 (the SM2 primitive).
"""
from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

from hardware.apdu import command
from keys.sm2 import SM2PublicKey
from keys.tlv import build_dol_data, decode, flatten

PPSE = b"2PAY.SYS.DDF01"
AC_TAGS = (0x9F02, 0x9F03, 0x9F1A, 0x95, 0x5F2A, 0x9A, 0x9C, 0x9F37)
CDOL1_TAGS = AC_TAGS


def pdol_values(amount: int = 0, ttq: str = "27800000", currency: str = "0156", un: bytes = b"\x12\x34\x56\x78"):
    return {0x9F66: bytes.fromhex(ttq), 0x9F02: bytes.fromhex(f"{amount:012d}"), 0x9F03: bytes(6),
            0x9F1A: bytes.fromhex("0156"), 0x95: bytes(5), 0x5F2A: bytes.fromhex(currency),
            0x9A: bytes.fromhex("250601"), 0x9C: b"\x00", 0x9F37: un}


class Terminal:
    def __init__(self, session) -> None:
        self.session = session

    def send(self, apdu: bytes) -> tuple[bytes, int]:
        return self.session.transmit(apdu)

    def select_ppse(self) -> dict[int, bytes]:
        data, sw = self.send(command(0x00, 0xA4, 0x04, 0x00, PPSE, le=0))
        assert sw == 0x9000, hex(sw)
        return flatten(data)

    def select(self, aid: bytes) -> tuple[dict[int, bytes], int]:
        data, sw = self.send(command(0x00, 0xA4, 0x04, 0x00, aid, le=0))
        return (flatten(data) if data else {}), sw

    def gpo_raw(self, pdol: bytes, values: dict[int, bytes]) -> tuple[bytes, int]:
        data = build_dol_data(pdol, values)
        return self.send(command(0x80, 0xA8, 0x00, 0x00, bytes([0x83, len(data)]) + data, le=0))

    def gpo(self, pdol: bytes, values: dict[int, bytes]) -> dict[int, bytes]:
        data, sw = self.gpo_raw(pdol, values)
        assert sw == 0x9000, hex(sw)
        return flatten(data)

    def read_record(self, sfi: int, record: int) -> tuple[bytes, int]:
        return self.send(command(0x00, 0xB2, record, (sfi << 3) | 4, le=0))

    def read_records(self, afl: bytes) -> tuple[dict[int, bytes], bytes]:
        """(all primitive tags of the records, static data to be authenticated)."""
        tags, static = {}, b""
        for i in range(0, len(afl), 4):
            sfi, first, last, oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
            for n in range(first, last + 1):
                data, sw = self.read_record(sfi, n)
                assert sw == 0x9000, (sfi, n, hex(sw))
                template = decode(data)[0]
                assert template.tag == 0x70
                if n - first < oda:
                    static += template.value  # SFI 1-10: the value of template 70 only
                for tag, value in flatten(data).items():
                    tags.setdefault(tag, value)
        return tags, static

    def get_data(self, tag: int) -> bytes | None:
        data, sw = self.send(command(0x80, 0xCA, tag >> 8, tag & 0xFF, le=0))
        return flatten(data)[tag] if sw == 0x9000 else None


def ac_data(values: dict[int, bytes], aip: bytes, atc: bytes, iad: bytes) -> bytes:
    """What the issuer MACs: PDOL/CDOL1 values, AIP, ATC and the CVR (IAD bytes 4-7)."""
    return b"".join(values[t] for t in AC_TAGS) + aip + atc + iad[3:7]


def ca_keys(state_dir: Path) -> dict[tuple[str, str], dict]:
    doc = tomllib.loads((state_dir / "ca_keys.toml").read_text())
    return {(e["rid"], e["index"]): e for e in doc["ca"]}


def terminal_dynamic_data(values: dict[int, bytes], card_auth: bytes) -> bytes:
    return values[0x9F37] + values[0x9F02] + values[0x5F2A] + card_auth


# -- RSA, EMV Book 2 ---------------------------------------------------------------
def _recover(modulus: int, exponent: int, data: bytes) -> bytes:
    size = (modulus.bit_length() + 7) // 8
    assert len(data) == size
    return pow(int.from_bytes(data, "big"), exponent, modulus).to_bytes(size, "big")


def verify_rsa_fdda(ca: dict, tags: dict[int, bytes], static: bytes, terminal_data: bytes) -> bytes:
    """Issuer cert -> ICC cert -> SDAD; returns the ICC dynamic data."""
    ca_n, ca_e = int(ca["modulus"], 16), int(ca["exponent"], 16)
    issuer = _recover(ca_n, ca_e, tags[0x90])
    assert issuer[0] == 0x6A and issuer[1] == 0x02 and issuer[-1] == 0xBC
    i_len = issuer[13]
    i_exp = tags[0x9F32]
    hashed = issuer[1:-21] + tags.get(0x92, b"") + i_exp
    assert hashlib.sha1(hashed).digest() == issuer[-21:-1], "issuer certificate hash"
    i_mod = (issuer[15:-21] + tags.get(0x92, b""))[:i_len]
    icc = _recover(int.from_bytes(i_mod, "big"), int.from_bytes(i_exp, "big"), tags[0x9F46])
    assert icc[0] == 0x6A and icc[1] == 0x04 and icc[-1] == 0xBC
    c_len = icc[19]
    hashed = icc[1:-21] + tags.get(0x9F48, b"") + tags[0x9F47] + static
    assert hashlib.sha1(hashed).digest() == icc[-21:-1], "ICC certificate hash"
    c_mod = (icc[21:-21] + tags.get(0x9F48, b""))[:c_len]
    sdad = _recover(int.from_bytes(c_mod, "big"), int.from_bytes(tags[0x9F47], "big"), tags[0x9F4B])
    assert sdad[0] == 0x6A and sdad[1] == 0x05 and sdad[2] == 0x01 and sdad[-1] == 0xBC
    assert hashlib.sha1(sdad[1:-21] + terminal_data).digest() == sdad[-21:-1], "SDAD hash"
    return sdad[4 : 4 + sdad[3]]


# -- SM2, PBOC layout ----------------------------------------------------------------
def verify_sm2_fdda(ca: dict, tags: dict[int, bytes], static: bytes, terminal_data: bytes) -> bytes:
    ca_key = SM2PublicKey.from_bytes(bytes.fromhex(ca["public_key"]))
    issuer = tags[0x90]
    assert issuer[0] == 0x12 and len(issuer) == 142
    ca_key.verify(issuer[-64:], issuer[:-64])
    issuer_key = SM2PublicKey.from_bytes(b"\x04" + issuer[14:78])
    icc = tags[0x9F46]
    assert icc[0] == 0x14 and len(icc) == 148
    issuer_key.verify(icc[-64:], icc[:-64] + static)
    icc_key = SM2PublicKey.from_bytes(b"\x04" + icc[20:84])
    sdad = tags[0x9F4B]
    assert sdad[0] == 0x15
    head = sdad[: 2 + sdad[1]]
    icc_key.verify(sdad[len(head):], head + terminal_data)
    return head[2:]
