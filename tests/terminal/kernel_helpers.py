"""Helpers the kernel tests share: the issuer's view of field 55."""
from __future__ import annotations

from acquirer.channels.issuer_cryptogram import read_cryptogram
from keys.hsm import issuer_key_name
from keys.tlv import decode, flatten

ARC_APPROVED, ARC_DECLINED = b"00", b"05"


def field55(result) -> dict[int, bytes]:
    nodes = decode(result.icc_data)
    assert all(not n.constructed for n in nodes)  # a flat list of primitive TLVs
    return flatten(nodes)


def issuer_checks_arqc(hsm, profile: str, result, arc: bytes = ARC_APPROVED) -> bytes:
    """What the issuer simulator does with field 55: rebuild the covered data, verify, ARPC."""
    cryptogram = read_cryptogram(result.family, field55(result))
    return hsm.verify_arqc(issuer_key_name(profile, "IMK_AC"), result.family, result.pan, result.psn,
                           cryptogram.atc, cryptogram.data, cryptogram.ac, arc)


class DirectSession:
    """A card application answered in-process, without pcscd: for unit tests that script or
    damage a card's answers. `alter(n, command, answer) -> answer` may rewrite answer n."""

    def __init__(self, app, alter=None) -> None:
        self.app, self.alter, self.count = app, alter, 0
        app.power_on()

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        answer = self.app.process_apdu(bytes(apdu))
        if self.alter is not None:
            answer = self.alter(self.count, bytes(apdu), answer)
        self.count += 1
        return answer[:-2], int.from_bytes(answer[-2:], "big")
