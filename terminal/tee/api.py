"""The TEE's command interface, as types: commands, their parameters and results, error
codes, login methods. Both sides import this module; nothing here does any work.

Each command has one parameter dataclass and one result dataclass (`SIGNATURES`). On
the wire a dataclass is a map of its fields; decoding checks that the map has exactly
those fields with exactly those types (a bool is not an int, bytes are not a str), so
a malformed request is refused with BAD_PARAMETERS before any handler runs.
"""
from __future__ import annotations

import enum
import typing
from dataclasses import dataclass, field, fields


class ErrorCode(enum.IntEnum):
    """Return codes in the style of TEEC_ERROR_* / TEE_ERROR_* (GlobalPlatform TEE
    Client API 1.0, table 4-2); the 0x8000xxxx codes are implementation-defined."""

    SUCCESS = 0x00000000
    GENERIC = 0xFFFF0000
    ACCESS_DENIED = 0xFFFF0001
    CANCEL = 0xFFFF0002
    ACCESS_CONFLICT = 0xFFFF0003
    BAD_FORMAT = 0xFFFF0005
    BAD_PARAMETERS = 0xFFFF0006
    BAD_STATE = 0xFFFF0007
    ITEM_NOT_FOUND = 0xFFFF0008
    NOT_SUPPORTED = 0xFFFF000A
    BUSY = 0xFFFF000D
    COMMUNICATION = 0xFFFF000E
    SECURITY = 0xFFFF000F  # the sealed store was tampered with, swapped or lost its secret
    TARGET_DEAD = 0xFFFF3024
    MAC_INVALID = 0xFFFF3071
    NOT_PROVISIONED = 0x80000001  # a key the command needs is not installed yet
    NO_CARD = 0x80000002  # no tap before the timeout
    CARD_ERROR = 0x80000003  # reader or card failed during the transaction
    NO_FIX = 0x80000004  # the location source gave no fresh fix (or there is none configured)


class TeeError(Exception):
    """A command the TEE (or the channel to it) did not carry out."""

    def __init__(self, code: ErrorCode, detail: str = ""):
        super().__init__(f"{code.name}: {detail}" if detail else code.name)
        self.code = code
        self.detail = detail


class LoginMethod(enum.IntEnum):
    """TEEC_LOGIN_*: who the client says it is when it opens a session."""

    PUBLIC = 0x0
    USER = 0x1
    GROUP = 0x2
    APPLICATION = 0x4


@dataclass(frozen=True)
class Credentials:
    login: LoginMethod
    token: bytes = field(repr=False)  # handed to the TEE at spawn; see docs/tee.md


class Command(enum.IntEnum):
    STATUS = 0x01
    RESET_PROVISIONING = 0x02
    SIGN_KEY_DOWNLOAD = 0x10
    PIN_HOST_KEY = 0x11
    INSTALL_TMK = 0x12
    INSTALL_WORKING_KEYS = 0x13
    ATTEST = 0x14
    MAC = 0x20
    VERIFY_MAC = 0x21
    TRANSACT = 0x30
    END_TRANSACTION = 0x31
    PIN_BEGIN = 0x40
    PIN_KEY = 0x41
    PIN_BACKSPACE = 0x42
    PIN_ENTER = 0x43
    PIN_CANCEL = 0x44
    PASSCODE_BEGIN = 0x45  # face pay: the same keypad, for a passcode bound to a request's STAN
    PASSCODE_ENTER = 0x46
    LOCATION_REPORT = 0x50
    SEAL_FACE_TEMPLATE = 0x60


class TeeState(str, enum.Enum):
    READY = "READY"  # identity and at least a pinned host key
    NOT_PROVISIONED = "NOT_PROVISIONED"  # fresh identity, never activated
    TAMPERED = "TAMPERED"  # sealed store failed: only STATUS and RESET_PROVISIONING answer


# --- parameters and results ---------------------------------------------------------
@dataclass(frozen=True)
class Empty:
    pass


@dataclass(frozen=True)
class Status:
    state: str
    device_id: str
    device_public_key: bytes
    measurement: bytes
    check_values: dict[str, str]
    detail: str


@dataclass(frozen=True)
class KeyDownloadRequest:
    terminal_id: str
    nonce: bytes


@dataclass(frozen=True)
class Signature:
    signature: bytes


@dataclass(frozen=True)
class HostKey:
    public_key: bytes


@dataclass(frozen=True)
class TmkEnvelope:
    envelope: bytes
    terminal_id: str
    nonce: bytes


@dataclass(frozen=True)
class CheckValue:
    kcv: str


@dataclass(frozen=True)
class WorkingKeys:
    blocks: str
    check_values: dict[str, str]


@dataclass(frozen=True)
class CheckValues:
    values: dict[str, str]


@dataclass(frozen=True)
class Challenge:
    nonce: bytes


@dataclass(frozen=True)
class Evidence:
    evidence: bytes


@dataclass(frozen=True)
class MacInput:
    data: bytes


@dataclass(frozen=True)
class MacTag:
    tag: bytes


@dataclass(frozen=True)
class MacCheck:
    data: bytes
    tag: bytes


@dataclass(frozen=True)
class TransactRequest:
    amount: int  # fen
    timeout_ms: int  # how long to wait for a tap


@dataclass(frozen=True)
class CardOutcome:
    """Everything the normal world learns of a card transaction: masked or protected."""

    outcome: str
    reason: str
    masked_pan: str
    icc_data: bytes  # field 55, cardholder-data tags removed
    sealed_track2: bytes  # field 35, SM4 under the TDK
    psn: str
    entry_mode: str
    cvm: str
    relay_suspected: bool
    handle: bytes  # names the card held inside the TEE, for PIN entry


@dataclass(frozen=True)
class TransactionHandle:
    handle: bytes


@dataclass(frozen=True)
class PinPadLayout:
    layout: list[int]  # layout[position] is the digit shown at that position
    min_digits: int
    max_digits: int


@dataclass(frozen=True)
class PinPosition:
    position: int


@dataclass(frozen=True)
class PinProgress:
    digits: int  # how many digits are entered: enough to draw the asterisks


@dataclass(frozen=True)
class PinBlock:
    block: bytes
    format: str


@dataclass(frozen=True)
class PasscodeRequest:
    stan: str  # the face sale request the block is for: its PAN field is made from the STAN


@dataclass(frozen=True)
class FaceTemplate:
    template: bytes  # 128 little-endian float32 (acquirer.face.wire)
    liveness: bool


@dataclass(frozen=True)
class SealedField:
    sealed: bytes


@dataclass(frozen=True)
class LocationRequest:
    terminal_id: str
    timeout_ms: int  # how long to wait for a fix
    max_age_ms: int  # a fix older than this is no fix
    reuse_ms: int  # 0: a new report; > 0 (payments): the last one again while this young and unmoved


@dataclass(frozen=True)
class SignedLocation:
    report: bytes  # acquirer/fence/report.py layout, signed by the device key


SIGNATURES: dict[Command, tuple[type, type]] = {
    Command.STATUS: (Empty, Status),
    Command.RESET_PROVISIONING: (Empty, Status),
    Command.SIGN_KEY_DOWNLOAD: (KeyDownloadRequest, Signature),
    Command.PIN_HOST_KEY: (HostKey, Empty),
    Command.INSTALL_TMK: (TmkEnvelope, CheckValue),
    Command.INSTALL_WORKING_KEYS: (WorkingKeys, CheckValues),
    Command.ATTEST: (Challenge, Evidence),
    Command.MAC: (MacInput, MacTag),
    Command.VERIFY_MAC: (MacCheck, Empty),
    Command.TRANSACT: (TransactRequest, CardOutcome),
    Command.END_TRANSACTION: (TransactionHandle, Empty),
    Command.PIN_BEGIN: (TransactionHandle, PinPadLayout),
    Command.PIN_KEY: (PinPosition, PinProgress),
    Command.PIN_BACKSPACE: (Empty, PinProgress),
    Command.PIN_ENTER: (Empty, PinBlock),
    Command.PIN_CANCEL: (Empty, PinProgress),
    Command.PASSCODE_BEGIN: (Empty, PinPadLayout),
    Command.PASSCODE_ENTER: (PasscodeRequest, PinBlock),
    Command.SEAL_FACE_TEMPLATE: (FaceTemplate, SealedField),
    Command.LOCATION_REPORT: (LocationRequest, SignedLocation),
}


# --- dataclass <-> wire map ----------------------------------------------------------
def to_wire(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _matches(value, kind) -> bool:
    origin = typing.get_origin(kind)
    if origin is dict:
        key_t, val_t = typing.get_args(kind)
        return isinstance(value, dict) and all(_matches(k, key_t) and _matches(v, val_t) for k, v in value.items())
    if origin is list:
        (item_t,) = typing.get_args(kind)
        return isinstance(value, list) and all(_matches(v, item_t) for v in value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return type(value) is kind


def from_wire(cls: type, data) -> object:
    """`cls` built from a decoded map, or TeeError(BAD_PARAMETERS) naming the field."""
    if not isinstance(data, dict):
        raise TeeError(ErrorCode.BAD_PARAMETERS, f"{cls.__name__}: expected a map")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    extra = sorted(set(data) - set(names))
    if extra:
        raise TeeError(ErrorCode.BAD_PARAMETERS, f"{cls.__name__}: unexpected field {extra[0]!r}")
    for name in names:
        if name not in data:
            raise TeeError(ErrorCode.BAD_PARAMETERS, f"{cls.__name__}.{name}: missing")
        if not _matches(data[name], hints[name]):
            raise TeeError(ErrorCode.BAD_PARAMETERS,
                           f"{cls.__name__}.{name}: expected {getattr(hints[name], '__name__', hints[name])}")
    return cls(**{name: data[name] for name in names})
