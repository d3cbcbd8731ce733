"""The secure world's keys: device identity, the host's pinned key, the TMK and the
working keys, and the only operations that use them.

Everything here answers with protected output (signatures, MACs, sealed fields, PIN
blocks, check values), never with a key. State persists only through `SealedStore`.
"""
from __future__ import annotations

import os
import threading

from acquirer.protocol import attestation
from keys import envelope, keyblock
from keys.errors import CryptoError, EnvelopeError, KeyBlockError
from keys.mac import CBCMAC, verify as verify_tag
from keys.model import Key, KeyAlgorithm, KeyUsage
from keys.pinblock import PinBlockFormat, encrypt_pin_block
from keys.sm2 import SM2PrivateKey, SM2PublicKey
from keys.symmetric import seal_field
from .sealed import SealedStore

WORKING = (KeyUsage.TPK, KeyUsage.TAK, KeyUsage.TDK)
_PIN_FORMATS = {KeyAlgorithm.SM4: PinBlockFormat.SM4, KeyAlgorithm.TDES: PinBlockFormat.ISO0,
                KeyAlgorithm.AES: PinBlockFormat.ISO4}


class NotProvisioned(CryptoError):
    """The operation needs a key the secure world does not hold yet (activate, download, sign on)."""


class SecureKeys:
    def __init__(self, store: SealedStore):
        self._store = store
        self._lock = threading.RLock()
        self._mac: CBCMAC | None = None
        self._issued: dict[str, int] = {}  # counter values handed out since this start
        self._latest_report: tuple | None = None  # ((terminal, source), fix, report): see location_report
        if store.exists():
            data = store.load()  # raises SealedStoreError when tampered or foreign
            self._device = SM2PrivateKey.from_bytes(bytes.fromhex(data["device_key"]))
            self.device_id = data["device_id"]
            self._host = SM2PublicKey.from_bytes(bytes.fromhex(data["host_key"])) if data.get("host_key") else None
            self._keys = {KeyUsage(u): Key(v["alg"], u, bytes.fromhex(v["key"]), v["version"])
                          for u, v in data.get("keys", {}).items()}
            self._counters = dict(data.get("counters", {}))  # name -> reserved high-water mark
        else:
            self._device = SM2PrivateKey.generate()
            self.device_id = "DEV-" + os.urandom(5).hex().upper()
            self._host = None
            self._keys = {}
            self._counters = {}
            self._persist()
        self._guard = envelope.ReplayGuard()
        if KeyUsage.TMK in self._keys:
            self._guard.versions[KeyUsage.TMK] = self._keys[KeyUsage.TMK].version

    def __repr__(self) -> str:
        held = ",".join(sorted(u.value for u in self._keys))
        return f"<SecureKeys device={self.device_id} keys=[{held}]>"

    def _persist(self) -> None:
        self._store.save({
            "device_id": self.device_id,
            "device_key": self._device.private_bytes().hex(),
            "host_key": self._host.to_bytes().hex() if self._host else None,
            "keys": {u.value: {"alg": k.algorithm.value, "key": k.material.hex(), "version": k.version}
                     for u, k in self._keys.items()},
            "counters": self._counters,
        })

    # --- identity --------------------------------------------------------------
    @property
    def device_public_key(self) -> bytes:
        return self._device.public_key.to_bytes()

    def sign(self, data: bytes) -> bytes:
        return self._device.sign(data)

    def sign_key_download(self, terminal_id: str, nonce: bytes) -> bytes:
        """The device's proof for a TMK request. Purpose-bound: the TEE offers this and
        `attest`, never `sign`, so the normal world cannot have arbitrary data signed."""
        return self._device.sign(attestation.key_download_proof(terminal_id, nonce))

    def pin_host_key(self, raw: bytes) -> None:
        """Trust this host key for envelopes from now on (done once, at activation)."""
        with self._lock:
            self._host = SM2PublicKey.from_bytes(raw)
            self._persist()

    def location_report(self, terminal_id: str, fix, kind: str = "gnss", reuse_s: float = 0.0) -> bytes:
        """A signed location report (acquirer/fence/report.py) of `fix` (a hardware
        `Fix`), under the next value of the persisted report counter. Purpose-bound like
        `attest`: the layout starts with its own magic, so it can never pass for a
        key-download proof or attestation evidence.

        With `reuse_s` (for a payment, which attaches "the latest signed fix") the last
        report is given again instead of a new one while it is that young and `fix` is
        where it was, within its error (MOVE_TOLERANCE_M at most), from the same source
        and cells: a terminal standing in its shop then costs the host one signature
        check per report interval, not one per sale, and any move is signed at once.
        Periodic reports pass 0: each is a new fix under a new counter."""
        from acquirer.fence.report import FixSource, build

        source = {"gnss": FixSource.GNSS, "fixed": FixSource.FIXED, "cell": FixSource.CELL,
                  "simulated": FixSource.SIMULATED}[kind]
        with self._lock:
            latest = self._latest_report
            if reuse_s > 0 and latest is not None and latest[0] == (terminal_id, source) \
                    and self._unmoved(latest[1], fix, reuse_s):
                return latest[2]
            report = build(self._device.sign, device_id=self.device_id, terminal_id=terminal_id,
                           counter=self.next_counter("location"), fix_time=fix.time, latitude=fix.latitude,
                           longitude=fix.longitude, accuracy_m=fix.accuracy_m, source=source,
                           cell_ids=fix.cell_ids)
            self._latest_report = ((terminal_id, source), fix, report)
            return report

    MOVE_TOLERANCE_M = 25.0  # a reused fix stands for positions at most this far from it

    @classmethod
    def _unmoved(cls, signed, fix, reuse_s: float) -> bool:
        from acquirer.fence.geometry import distance_m

        young = 0 <= (fix.time - signed.time).total_seconds() <= reuse_s
        if not young or tuple(fix.cell_ids) != tuple(signed.cell_ids):
            return False
        tolerance = min(max(fix.accuracy_m, signed.accuracy_m), cls.MOVE_TOLERANCE_M)
        return distance_m((signed.latitude, signed.longitude), (fix.latitude, fix.longitude)) <= tolerance

    COUNTER_RESERVE = 64

    def next_counter(self, name: str) -> int:
        """A persisted monotonic counter (location reports): never repeats, even after a
        crash. The sealed store keeps a reserved high-water mark, written once every
        COUNTER_RESERVE values; a restart continues above it (a gap, never a repeat), so
        a report costs a seal-and-fsync only once in COUNTER_RESERVE."""
        with self._lock:
            value = self._issued.get(name, int(self._counters.get(name, 0))) + 1
            self._issued[name] = value
            if value > int(self._counters.get(name, 0)):
                self._counters[name] = value + self.COUNTER_RESERVE - 1
                self._persist()
            return value

    # --- provisioning ----------------------------------------------------------
    def install_tmk(self, sealed_envelope: bytes, terminal_id: str, nonce: bytes) -> str:
        """Open the host's envelope (signature, addressee, freshness, nonce, version); returns the KCV."""
        with self._lock:
            if self._host is None:
                raise NotProvisioned("no host key pinned: activate first")
            key = envelope.open_envelope(self._device, self._host, sealed_envelope, terminal_id, self._guard,
                                         expected_nonce=nonce)
            if key.usage is not KeyUsage.TMK:
                raise EnvelopeError(f"envelope carries a {key.usage.value}, not a TMK")
            self._keys = {KeyUsage.TMK: key}  # working keys under the old TMK are dead
            self._mac = None
            self._persist()
            return key.kcv

    def install_working_keys(self, blocks: str, check_values: dict[str, str]) -> dict[str, str]:
        """Unwrap TPK/TAK/TDK key blocks under the TMK; every KCV must match the host's."""
        with self._lock:
            tmk = self._require(KeyUsage.TMK)
            size = keyblock.TOTAL_LEN
            if len(blocks) != size * len(WORKING):
                raise KeyBlockError(f"expected {len(WORKING)} key blocks of {size} characters")
            fresh = {}
            for i, usage in enumerate(WORKING):
                key = keyblock.unwrap(tmk, blocks[i * size : (i + 1) * size], usage)
                if check_values.get(usage.value) != key.kcv:
                    raise KeyBlockError(f"{usage.value} check value does not match the host's")
                fresh[usage] = key
            self._keys.update(fresh)
            self._mac = None
            self._persist()
            return {u.value: k.kcv for u, k in fresh.items()}

    def attest(self, measurement: bytes, nonce: bytes) -> bytes:
        return attestation.build(self.sign, self.device_id, measurement, nonce)

    def holds(self, usage: KeyUsage) -> bool:
        return usage in self._keys

    def check_values(self) -> dict[str, str]:
        return {u.value: k.kcv for u, k in self._keys.items()}

    def _require(self, usage: KeyUsage) -> Key:
        key = self._keys.get(usage)
        if key is None:
            raise NotProvisioned(f"no {usage.value}: {'download keys' if usage is KeyUsage.TMK else 'sign on'} first")
        return key

    # --- transaction operations ------------------------------------------------
    def mac(self, data: bytes) -> bytes:
        if self._mac is None:
            self._mac = CBCMAC(self._require(KeyUsage.TAK).cipher, 2, 8)
        return self._mac.mac(data)

    def verify_mac(self, data: bytes, tag: bytes) -> None:
        verify_tag(self.mac(data), tag)

    def seal(self, data: bytes) -> bytes:
        """Encrypt a sensitive field (track 2 equivalent) under the TDK."""
        return seal_field(self._require(KeyUsage.TDK).cipher, data)

    @property
    def pin_block_format(self) -> PinBlockFormat:
        """The PIN block format the TPK's algorithm implies (field 53, digit 1)."""
        return _PIN_FORMATS[self._require(KeyUsage.TPK).algorithm]

    def pin_block(self, pin: str, pan: str) -> bytes:
        tpk = self._require(KeyUsage.TPK)
        return encrypt_pin_block(_PIN_FORMATS[tpk.algorithm], tpk.cipher, pin, pan)
