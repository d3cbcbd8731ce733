"""A card transaction inside the TEE: wait for a tap on the reader, run the EMV kernel,
keep the PAN here, and hand the normal world only masked and protected data.

The kernel (`terminal.kernel`) is imported when the first transaction runs, so the TEE
starts, provisions and MACs on a build without it (TRANSACT then answers NOT_SUPPORTED).
"""
from __future__ import annotations

import os
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from acquirer.protocol import EntryMode
from keys.model import KeyUsage
from keys.tlv import SENSITIVE_TAGS, TLVError, decode, encode_dict, flatten, mask_pan
from .api import CardOutcome, ErrorCode, TeeError

# Cardholder data never leaves in field 55: the PAN and track data go sealed in field 35
# (which also carries the expiry the host needs).
STRIPPED_TAGS = SENSITIVE_TAGS | {0x5F24}
DEFAULT_READER = "Virtual PCD 00 00"
_SHIPPED_CONFIG = Path(__file__).resolve().parents[1] / "kernel" / "default_config.toml"


@dataclass(frozen=True)
class KernelConfigFile:
    """The kernel configuration as read once at TEE start: measured and used as one."""

    path: Path
    raw: bytes | None  # None: the file does not exist

    @classmethod
    def read(cls, path: str | os.PathLike | None) -> "KernelConfigFile":
        path = Path(path) if path else _SHIPPED_CONFIG
        try:
            return cls(path, path.read_bytes())
        except FileNotFoundError:
            return cls(path, None)


@dataclass
class HeldCard:
    """The card of the current transaction, as the TEE keeps it for PIN entry."""

    handle: bytes
    pan: str = field(repr=False)


def _digits(value) -> str:
    """PAN or track 2 as upper-case text, whether the kernel gives BCD bytes or a string."""
    text = value.hex() if isinstance(value, (bytes, bytearray)) else str(value or "")
    return text.upper().replace("=", "D").rstrip("F")


def _name(value) -> str:
    return str(getattr(value, "name", value) or "")


def clean_icc_data(icc: bytes) -> bytes:
    """Field 55 without cardholder-data tags (the kernel should not put them there; if a
    future one does, they still stay inside)."""
    if not icc:
        return b""
    try:
        nodes = decode(bytes(icc))
    except TLVError:
        raise TeeError(ErrorCode.CARD_ERROR, "kernel returned field 55 that is not BER-TLV") from None
    if any(n.constructed for n in nodes):
        return encode_dict((t, v) for t, v in flatten(nodes).items() if t not in STRIPPED_TAGS)
    return b"".join(n.encode() for n in nodes if n.tag not in STRIPPED_TAGS)


class CardReaderPath:
    """The reader the TEE owns, and the kernel it runs on it with the configuration that
    was measured at start (parsed from the same bytes, so a file changed since is not used)."""

    def __init__(self, reader_name: str | None, kernel_config: KernelConfigFile, ca_keys: str | None = None):
        self.reader_name = reader_name or DEFAULT_READER
        self.config_file = kernel_config
        self.ca_keys = ca_keys
        self._kernel_instance = None
        self._request_type = None

    def _kernel(self):
        if self._kernel_instance is None:
            try:
                from terminal.kernel import ConfigError, Kernel, KernelConfig, TransactionRequest
            except ImportError:
                raise TeeError(ErrorCode.NOT_SUPPORTED, "this build has no EMV kernel") from None
            if self.config_file.raw is None:
                raise TeeError(ErrorCode.NOT_SUPPORTED, f"no kernel configuration at {self.config_file.path}")
            path = self.config_file.path
            try:
                doc = tomllib.loads(self.config_file.raw.decode("utf-8"))
                config = KernelConfig.from_dict(doc, source=str(path), base_dir=path.parent, ca_keys_path=self.ca_keys)
            except (ConfigError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise TeeError(ErrorCode.BAD_STATE, f"kernel configuration unusable: {exc}") from None
            self._kernel_instance = Kernel(config)
            self._request_type = TransactionRequest
        return self._kernel_instance

    def transact(self, keys, amount: int, timeout_s: float,
                 cancel: threading.Event) -> tuple[CardOutcome, HeldCard | None]:
        from hardware.errors import HardwareError, NoCard, WaitCancelled
        from hardware.reader import Reader

        if not keys.holds(KeyUsage.TDK):  # before the customer taps, not after
            raise TeeError(ErrorCode.NOT_PROVISIONED, "no TDK: sign on first")
        kernel = self._kernel()
        try:
            if amount <= 0:
                raise ValueError("must be above zero")
            request = self._request_type(amount=amount)
        except ValueError as exc:
            raise TeeError(ErrorCode.BAD_PARAMETERS, f"TransactRequest.amount: {exc}") from None
        try:
            with Reader.open(self.reader_name) as reader:
                session = reader.wait_for_card(timeout_s, cancel=cancel)
                try:
                    result = kernel.run(session, request)
                finally:
                    session.close()
        except WaitCancelled:
            raise TeeError(ErrorCode.CANCEL, "cancelled while waiting for a card") from None
        except NoCard:
            raise TeeError(ErrorCode.NO_CARD, f"no card within {timeout_s:g} s") from None
        except HardwareError as exc:
            raise TeeError(ErrorCode.CARD_ERROR, f"{type(exc).__name__}: {exc}") from None
        return protect(keys, result)


def protect(keys, result) -> tuple[CardOutcome, HeldCard | None]:
    """The kernel's result reduced to what may cross the boundary."""
    pan = _digits(result.pan)
    track2 = _digits(result.track2)
    if not pan and track2:
        pan = track2.split("D", 1)[0]
    held = HeldCard(os.urandom(16), pan) if pan else None
    cvm = _name(result.cvm)
    outcome = CardOutcome(
        outcome=_name(result.outcome),
        reason=str(result.reason or ""),
        masked_pan=mask_pan(pan) if pan else "",
        icc_data=clean_icc_data(result.icc_data or b""),
        sealed_track2=keys.seal(track2.encode("ascii")) if track2 else b"",
        psn=_digits(result.psn) or "00",
        entry_mode=(EntryMode.CONTACTLESS_PIN if cvm == "ONLINE_PIN" else EntryMode.CONTACTLESS_NO_PIN).value,
        cvm=cvm,
        relay_suspected=bool(result.relay_suspected),
        handle=held.handle if held else b"",
    )
    return outcome, held
