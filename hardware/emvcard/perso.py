"""Personalisation: turn a profile into a card image, with keys from the issuer's HSM.

The key ceremony, as a personalisation bureau runs it:
1. The issuer master key IMK_AC is generated inside the HSM under
   `issuer/<profile>/IMK_AC` and never leaves it in clear.
2. The perso device makes a fresh SM4 ZMK and loads it into the HSM (`import_clear`,
   the ceremony's clear-component step) under `issuer/<profile>/ZMK`.
3. The HSM derives the card's ICC master key (option A) and exports it wrapped under
   that ZMK; only the perso device unwraps it, and writes it into the card image.
ODA keys: the CA signs the issuer key (SM2 for PBOC cards, RSA for EMV cards); the
issuer key signs the ICC key. The PBOC issuer's SM2 key lives in the HSM
(`issuer/<profile>/SIGN`); the RSA issuer key in `<state>/issuers/` (the HSM has no
RSA keys). The card image (keys and records: the "chip") is `<state>/cards/<name>.card.json`.
"""
from __future__ import annotations

import calendar
import json
import os
from dataclasses import dataclass
from pathlib import Path

from keys import keyblock
from keys.emv import CardFamily
from keys.hsm import HSM, issuer_key_name
from keys.model import Key, KeyAlgorithm, KeyUsage
from keys.sm2 import SM2PrivateKey
from keys.tlv import tlv

from . import oda_rsa, oda_sm2
from .ca import CertificateAuthority, write_private
from .oda_rsa import RSAKeyPair
from .profile import Profile, ProfileError

SFI_TRACK, SFI_APP = 1, 2
ISSUER_RSA_BITS = 1408  # equal to the CA's: its modulus overflows the certificate into tag 92
ICC_RSA_BITS = 1152  # overflows the ICC certificate into tag 9F48, and 9F4B still fits GPO
PDOL = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")
CDOL1 = bytes.fromhex("9F02069F03069F1A0295055F2A029A039C019F3704")
CDOL2 = bytes.fromhex("8A0295059F3704")
CVM_LIST = bytes.fromhex("0000000000000000" "4203" "1E03" "1F00")  # online PIN, signature, no CVM
IAC = {0x9F0D: "D84000A800", 0x9F0E: "0010000000", 0x9F0F: "D84004F800"}  # default, denial, online


@dataclass
class CardImage:
    """What the chip holds after personalisation. Never printed with its keys."""

    profile: Profile
    icc_master_key: bytes
    records: dict[tuple[int, int], bytes]  # (SFI, record number) -> record template 70
    afl: bytes
    aip: bytes
    icc_sm2: SM2PrivateKey | None = None
    icc_rsa: RSAKeyPair | None = None
    imk_kcv: str = ""  # check value of the issuer key it was derived from: a new IMK means a new card

    def __repr__(self) -> str:
        return f"<CardImage {self.profile.name} PAN {self.profile.masked_pan} records {sorted(self.records)}>"


def image_path(state_dir: str | os.PathLike, profile: Profile) -> Path:
    return Path(state_dir) / "cards" / f"{profile.name}.card.json"


def state_path(state_dir: str | os.PathLike, profile: Profile) -> Path:
    return Path(state_dir) / "cards" / f"{profile.name}.state.json"


def _bcd(digits: str) -> bytes:
    return bytes.fromhex(digits + ("F" if len(digits) % 2 else ""))


def track2(profile: Profile) -> bytes:
    """Tag 57: PAN D YYMM service code discretionary data, F-padded to whole bytes."""
    return _bcd(f"{profile.pan}D{profile.expiry_yymm}{profile.service_code}{'0' * 8}")


def expiry_date(profile: Profile) -> bytes:
    year, month = profile.expiry
    last_day = calendar.monthrange(year, month)[1]
    return bytes.fromhex(f"{year % 100:02d}{month:02d}{last_day:02d}")


def aip_of(profile: Profile) -> bytes:
    # byte 1: DDA (here fDDA), cardholder verification, terminal risk management, issuer authentication
    return bytes([(0x20 if profile.fdda else 0) | 0x10 | 0x08 | 0x04, 0x00])


def _application_record(profile: Profile) -> bytes:
    items = [
        (0x5A, _bcd(profile.pan)), (0x5F24, expiry_date(profile)),
        (0x5F25, bytes.fromhex(f"{profile.effective[0] % 100:02d}{profile.effective[1]:02d}01")),
        (0x5F28, bytes.fromhex(profile.country)), (0x5F30, bytes.fromhex("0" + profile.service_code)),
        (0x5F34, bytes.fromhex(profile.psn)), (0x9F07, bytes.fromhex("FF00")), (0x8E, CVM_LIST),
        *((tag, bytes.fromhex(value)) for tag, value in IAC.items()),
        (0x8C, CDOL1), (0x8D, CDOL2), (0x9F08, bytes.fromhex("0030")), (0x9F42, bytes.fromhex(profile.currency)),
        (0x9F4A, b"\x82"),
    ]
    return b"".join(tlv(t, v) for t, v in items)


def _track_record(profile: Profile) -> bytes:
    if profile.faults.malformed_record:
        good = track2(profile)
        # The inner 57 claims more bytes than the record holds: a TLV decoder must refuse it.
        return tlv(0x70, bytes([0x57, len(good) + 16]) + good)
    return tlv(0x70, tlv(0x57, track2(profile)) + tlv(0x5F34, bytes.fromhex(profile.psn)))


def _issuer_cert_expiry(profile: Profile) -> tuple[int, int]:
    return profile.expiry[0] + 3, 12


class Personaliser:
    """Personalises cards of one state directory against one issuer HSM."""

    def __init__(self, state_dir: str | os.PathLike, hsm: HSM, ca: CertificateAuthority | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.hsm = hsm
        self.ca = ca or CertificateAuthority.load_or_create(self.state_dir)

    def icc_master_key(self, profile: Profile) -> bytes:
        """Steps 1-3 of the key ceremony above; returns the card's own AC key."""
        algorithm = KeyAlgorithm.SM4 if profile.family is CardFamily.PBOC_SM4 else KeyAlgorithm.TDES
        imk_name = issuer_key_name(profile.name, KeyUsage.IMK_AC)
        if not self.hsm.exists(imk_name):
            self.hsm.generate(imk_name, algorithm, KeyUsage.IMK_AC)
        elif self.hsm.info(imk_name).algorithm is not algorithm:
            raise ProfileError(f"HSM key {imk_name} is {self.hsm.info(imk_name).algorithm.value}, "
                               f"profile {profile.name} needs {algorithm.value}")
        zmk = Key.generate(KeyAlgorithm.SM4, KeyUsage.ZMK)
        zmk_name = issuer_key_name(profile.name, KeyUsage.ZMK)
        self.hsm.import_clear(zmk_name, zmk)
        block = self.hsm.export_icc_master_key(imk_name, profile.family, profile.pan, profile.psn, under=zmk_name)
        icc = keyblock.unwrap(zmk, block, KeyUsage.ICC_AC)
        if profile.faults.wrong_ac_key:
            return os.urandom(16)  # a key the issuer never derived: every AC fails at the host
        return icc.material

    def _issuer_rsa(self, profile: Profile) -> RSAKeyPair:
        path = self.state_dir / "issuers" / f"{profile.name}-rsa.pem"
        if not path.exists():
            write_private(path, RSAKeyPair.generate(ISSUER_RSA_BITS).to_pem())
        return RSAKeyPair.from_pem(path.read_bytes())

    def _issuer_sm2_name(self, profile: Profile) -> str:
        name = issuer_key_name(profile.name, KeyUsage.SIGN)
        if not self.hsm.exists(name):
            self.hsm.generate(name, KeyAlgorithm.SM2, KeyUsage.SIGN)
        return name

    def _check_ca(self, profile: Profile) -> None:
        rid, index = ((self.ca.sm2_rid, self.ca.sm2_index) if profile.is_pboc else (self.ca.rsa_rid, self.ca.rsa_index))
        if (profile.ca_rid, profile.ca_index) != (rid, index):
            raise ProfileError(f"profile {profile.name}: the test CA has RID {rid.hex().upper()} index "
                               f"{index:02X} for {profile.family.value} cards")

    def _oda_records(self, profile: Profile, static_data: bytes, image: CardImage) -> list[bytes]:
        serial_i, serial_c = os.urandom(3), os.urandom(3)
        index = tlv(0x8F, bytes([profile.ca_index]))
        if profile.is_pboc:
            issuer_name = self._issuer_sm2_name(profile)
            issuer_cert = oda_sm2.issuer_certificate(self.ca.sm2.sign, self.hsm.public_key(issuer_name), profile.pan,
                                                     _issuer_cert_expiry(profile), serial_i)
            image.icc_sm2 = SM2PrivateKey.generate()
            icc_cert = oda_sm2.icc_certificate(lambda data: self.hsm.sign(issuer_name, data),
                                               image.icc_sm2.public_key, profile.pan, profile.expiry, serial_c,
                                               static_data)
            return [tlv(0x70, index + tlv(0x90, issuer_cert)), tlv(0x70, tlv(0x9F46, icc_cert))]
        issuer = self._issuer_rsa(profile)
        issuer_cert, issuer_rem = oda_rsa.issuer_certificate(self.ca.rsa, issuer.public, profile.pan,
                                                             _issuer_cert_expiry(profile), serial_i)
        image.icc_rsa = RSAKeyPair.generate(ICC_RSA_BITS)
        icc_cert, icc_rem = oda_rsa.icc_certificate(issuer, image.icc_rsa.public, profile.pan, profile.expiry,
                                                    serial_c, static_data)
        first = index + tlv(0x90, issuer_cert) + tlv(0x9F32, issuer.public.exponent_bytes)
        second = tlv(0x9F46, icc_cert) + tlv(0x9F47, image.icc_rsa.public.exponent_bytes)
        return [tlv(0x70, first + (tlv(0x92, issuer_rem) if issuer_rem else b"")),
                tlv(0x70, second + (tlv(0x9F48, icc_rem) if icc_rem else b""))]

    def personalise(self, profile: Profile) -> CardImage:
        """A new card image for `profile`, written to the state directory."""
        self._check_ca(profile)
        app_record = _application_record(profile)
        aip = aip_of(profile)
        image = CardImage(profile, self.icc_master_key(profile), {}, b"", aip,
                          imk_kcv=self.hsm.info(issuer_key_name(profile.name, KeyUsage.IMK_AC)).kcv)
        records = {(SFI_TRACK, 1): _track_record(profile), (SFI_APP, 1): tlv(0x70, app_record)}
        if profile.fdda:
            # Static data to be authenticated: the ODA record's value, then the AIP (9F4A lists 82).
            for n, record in enumerate(self._oda_records(profile, app_record + aip, image), start=2):
                records[(SFI_APP, n)] = record
        last_app = max(n for sfi, n in records if sfi == SFI_APP)
        image.records = records
        image.afl = bytes([SFI_TRACK << 3, 1, 1, 0, SFI_APP << 3, 1, last_app, 1 if profile.fdda else 0])
        save_image(self.state_dir, image)
        return image


def save_image(state_dir: str | os.PathLike, image: CardImage) -> None:
    key = image.icc_sm2.to_pem() if image.icc_sm2 else image.icc_rsa.to_pem() if image.icc_rsa else b""
    doc = {
        "profile": image.profile.name, "digest": image.profile.digest,
        "icc_master_key": image.icc_master_key.hex(), "icc_key": key.decode(),
        "icc_key_type": "SM2" if image.icc_sm2 else "RSA" if image.icc_rsa else "",
        "records": {f"{sfi}.{n}": rec.hex() for (sfi, n), rec in sorted(image.records.items())},
        "afl": image.afl.hex(), "aip": image.aip.hex(), "imk_kcv": image.imk_kcv,
    }
    write_private(image_path(state_dir, image.profile), json.dumps(doc, indent=1).encode())


def load_image(state_dir: str | os.PathLike, profile: Profile) -> CardImage | None:
    """The saved image of `profile`, or None when there is none or the profile changed since."""
    try:
        doc = json.loads(image_path(state_dir, profile).read_text())
    except FileNotFoundError:
        return None
    if doc.get("digest") != profile.digest or doc.get("profile") != profile.name:
        return None
    key_pem = doc["icc_key"].encode()
    records = {}
    for where, rec in doc["records"].items():
        sfi, n = where.split(".")
        records[(int(sfi), int(n))] = bytes.fromhex(rec)
    return CardImage(
        profile, bytes.fromhex(doc["icc_master_key"]), records, bytes.fromhex(doc["afl"]), bytes.fromhex(doc["aip"]),
        icc_sm2=SM2PrivateKey.from_pem(key_pem) if doc["icc_key_type"] == "SM2" else None,
        icc_rsa=RSAKeyPair.from_pem(key_pem) if doc["icc_key_type"] == "RSA" else None,
        imk_kcv=doc.get("imk_kcv", ""),
    )


def issued_under(image: CardImage, hsm: HSM) -> bool:
    """Whether the HSM still holds the issuer master key this card was personalised from."""
    name = issuer_key_name(image.profile.name, KeyUsage.IMK_AC)
    return hsm.exists(name) and hsm.info(name).kcv == image.imk_kcv
