"""A card as the host tests need one: personalised from the issuer's HSM, computing its
own cryptograms with keys.emv (the same data list as hardware/emvcard)."""
from __future__ import annotations

from dataclasses import dataclass, field

from acquirer.channels.issuer import IssuerSimulator
from keys import emv, keyblock
from keys.emv import CardFamily
from keys.hsm import HSM, issuer_key_name
from keys.model import Key, KeyUsage

PANS = {CardFamily.PBOC_SM4: "6214988660100000304", CardFamily.EMV_TDES: "4761739001010010"}
# Issuer application data as the simulated cards send it: the CVR (03 A0 00 00: ARQC asked
# first, second AC not asked) sits in bytes 4-7 in both formats.
IADS = {CardFamily.PBOC_SM4: bytes.fromhex("0701010" "3A00000" "040A01000000000000000000"),
        CardFamily.EMV_TDES: bytes.fromhex("06010A03A00000")}

@dataclass
class Card:
    """What a personalised card holds and does: its own AC key and its ATC."""

    family: CardFamily
    pan: str
    psn: str
    icc_master_key: bytes = field(repr=False)
    atc: int = 0

    def session_key(self, atc: bytes) -> bytes:
        return emv.derive_session_key(self.family, self.icc_master_key, atc)

    def field55(self, amount: int, *, atc: int | None = None, cid: int = 0x80) -> dict[int, bytes]:
        """Field 55 of an online request; the data list is spelled out here, independently."""
        if atc is None:
            self.atc += 1
            atc = self.atc
        t = {0x9F02: bytes.fromhex(f"{amount:012d}"), 0x9F1A: b"\x01\x56", 0x95: bytes(5), 0x5F2A: b"\x01\x56",
             0x9A: bytes.fromhex("250615"), 0x9C: b"\x00", 0x9F37: bytes.fromhex("A1B2C3D4"), 0x82: b"\x7C\x00",
             0x9F36: atc.to_bytes(2), 0x9F27: bytes([cid]), 0x9F33: bytes.fromhex("E0E1C8")}
        t[0x9F10] = IADS[self.family]
        data = (t[0x9F02] + bytes(6) + t[0x9F1A] + t[0x95] + t[0x5F2A] + t[0x9A] + t[0x9C] + t[0x9F37] + t[0x82]
                + t[0x9F36] + t[0x9F10][3:7])
        t[0x9F26] = emv.generate_ac(self.family, self.session_key(t[0x9F36]), data)
        return t

    def expected_issuer_data(self, icc: dict[int, bytes], arc: bytes) -> bytes:
        return emv.generate_arpc_method1(self.family, self.session_key(icc[0x9F36]), icc[0x9F26], arc) + arc


def luhn_complete(body: str) -> str:
    """`body` plus its Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def personalise(hsm: HSM, issuer: IssuerSimulator, family: CardFamily, pan: str | None = None,
                **settings) -> Card:
    pan = pan or PANS[family]
    settings = {"profile": f"test-{family.value.lower()}", "expiry": "2712", "balance": 100_000, "pin": "1234",
                **settings}
    issuer.open_account(pan, family=family, psn="01", **settings)
    zmk = Key.generate("SM4", "ZMK")
    hsm.import_clear("channel/perso/ZMK", zmk)  # the personalisation key ceremony
    block = hsm.export_icc_master_key(issuer_key_name(settings["profile"], "IMK_AC"), family, pan, "01",
                                      under="channel/perso/ZMK")
    return Card(family, pan, "01", keyblock.unwrap(zmk, block, KeyUsage.ICC_AC).material)
