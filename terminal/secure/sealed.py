"""Sealed storage: the secure world's keys and counters at rest.

The sealed file is SM4-GCM under a key derived (HMAC-SM3) from a device secret that
only the secure world's user can read (a file created 0600; a TPM-held secret is the
documented next step). The associated data binds the blob to the device id and a
format tag: a tampered file or a file from another device fails to open. A generation
counter is kept inside the blob; rolling back to an older sealed copy of the same
device is NOT detected without a hardware monotonic counter (a TPM NV index), which is
the documented next step. Writes are atomic (temp file + fsync + rename).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from keys.errors import DecryptionError
from keys.hashes import hmac_sm3
from keys.symmetric import sm4_gcm_decrypt, sm4_gcm_encrypt

FORMAT = b"softpos-sealed-v1"


class SealedStoreError(Exception):
    """The sealed store cannot be opened: tampered, swapped or from another device.
    The terminal refuses to transact until it is re-provisioned."""


def _read_secret(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
    if path.stat().st_mode & 0o077:
        raise SealedStoreError(f"device secret {path} is readable by others: refuse to use it")
    secret = path.read_bytes()
    if len(secret) != 32:
        raise SealedStoreError(f"device secret {path} has the wrong size")
    return secret


class SealedStore:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.path = self.directory / "sealed.bin"
        self.secret_path = self.directory / "device.secret"
        self._key = hmac_sm3(_read_secret(self.secret_path), b"seal")[:16]
        self.generation = 0
        self._last_blob: bytes | None = None  # what this process last read or wrote

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> dict:
        raw = self.path.read_bytes()
        if len(raw) < 12 + 16:
            raise SealedStoreError("sealed store is truncated")
        try:
            clear = sm4_gcm_decrypt(self._key, raw[:12], raw[12:], FORMAT)
        except DecryptionError:
            raise SealedStoreError("sealed store failed its integrity check (tampered, or from another device)") from None
        data = json.loads(clear)
        self.generation = int(data.get("_generation", 0))
        self._last_blob = raw
        return data

    def check(self) -> None:
        """Raise SealedStoreError if the file or the device secret changed since this
        process last read or wrote them: a swap, a tamper or a rollback to an older copy
        made while the secure world was running (a restart is caught by `load`)."""
        if self._last_blob is None:
            return
        if not self.secret_path.exists():
            raise SealedStoreError("device secret is gone")
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise SealedStoreError("sealed store is gone") from None
        if raw != self._last_blob:
            raise SealedStoreError("sealed store was changed outside the secure world "
                                   "(tampered, swapped or rolled back)")

    def wipe(self) -> None:
        """Delete the sealed file and the device secret (re-provisioning starts from zero)."""
        for path in (self.path, self.path.with_suffix(".tmp"), self.secret_path):
            path.unlink(missing_ok=True)
        self._last_blob = None

    def save(self, data: dict) -> None:
        self.generation += 1
        data = dict(data, _generation=self.generation)
        nonce = os.urandom(12)
        blob = nonce + sm4_gcm_encrypt(self._key, nonce, json.dumps(data, sort_keys=True).encode(), FORMAT)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._last_blob = blob
