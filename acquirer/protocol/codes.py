"""Message types, processing codes, field-60 codes and response codes of the dialect."""
from __future__ import annotations

import enum


class MTI(str, enum.Enum):
    NETWORK_REQUEST = "0800"
    NETWORK_RESPONSE = "0810"
    FINANCIAL_REQUEST = "0200"
    FINANCIAL_RESPONSE = "0210"
    ADVICE_REQUEST = "0220"  # refund (UnionPay POS tradition: refunds travel as advices)
    ADVICE_RESPONSE = "0230"
    STATUS_REQUEST = "0100"  # query of an original by STAN/RRN
    STATUS_RESPONSE = "0110"
    REVERSAL_REQUEST = "0400"
    REVERSAL_RESPONSE = "0410"
    SETTLEMENT_REQUEST = "0500"
    SETTLEMENT_RESPONSE = "0510"
    BATCH_UPLOAD_REQUEST = "0320"
    BATCH_UPLOAD_RESPONSE = "0330"

    @property
    def response(self) -> "MTI":
        found = _RESPONSES[self]
        if found is None:  # a response's "response" (0230 -> 0240) is no message of ours
            raise ValueError(f"{self.value} has no response MTI")
        return found


# the response to each message: the third digit one up, worked out once, not at every answer
_RESPONSES = {m: MTI._value2member_map_.get(m.value[:2] + str(int(m.value[2]) + 1) + m.value[3]) for m in MTI}


class TxnType(str, enum.Enum):
    """Field 60.1, the message type code: which operation a request is."""

    SIGN_ON = "00"
    SALE = "22"
    VOID = "23"
    REFUND = "25"
    QUERY = "30"
    QR_SALE = "31"  # customer-presented code
    QR_PRECREATE = "32"  # merchant-displayed code
    FACE_SALE = "33"
    SETTLEMENT = "50"
    BATCH_UPLOAD = "51"
    ACTIVATION = "90"
    KEY_DOWNLOAD = "91"
    LOCATION = "92"  # a periodic signed location report (0800, 60.3 = 401)
    ECHO = "99"


class NetworkCode(str, enum.Enum):
    """Field 60.3 in 0800 messages."""

    ACTIVATE = "101"  # one-time code + device public key -> terminal id confirmed
    KEY_DOWNLOAD = "102"  # TMK in an SM2 envelope to the device key
    CHALLENGE = "005"  # -> a single-use host nonce for the attestation of the next sign-on
    SIGN_ON = "004"  # attestation -> TPK/TAK/TDK under the TMK, batch opened
    SIGN_OFF = "002"
    ECHO = "301"
    STATIC_QR = "360"  # parameter range: the merchant's static aggregated code URL (59/DF10)
    LOCATION_REPORT = "401"  # a periodic signed location report (59/DF03) -> fence terms (59/DF20)
    NONE = "000"


PROCESSING_CODES = {
    TxnType.SALE: "000000",
    TxnType.QR_SALE: "000000",
    TxnType.FACE_SALE: "000000",
    TxnType.VOID: "200000",
    TxnType.REFUND: "200000",
    TxnType.QUERY: "300000",
    TxnType.QR_PRECREATE: "380000",
}


class ResponseCode(str, enum.Enum):
    APPROVED = "00"
    INVALID_MERCHANT = "03"
    DO_NOT_HONOR = "05"
    INVALID_TRANSACTION = "12"
    INVALID_AMOUNT = "13"
    INVALID_CARD = "14"
    ORIGINAL_NOT_FOUND = "25"
    FORMAT_ERROR = "30"
    LOST_CARD = "41"
    INSUFFICIENT_FUNDS = "51"
    EXPIRED_CARD = "54"
    INCORRECT_PIN = "55"
    NOT_PERMITTED_CARDHOLDER = "57"
    NOT_PERMITTED_TERMINAL = "58"
    SUSPECTED_FRAUD = "59"
    EXCEEDS_LIMIT = "61"
    RESTRICTED_CARD = "62"
    ORIGINAL_AMOUNT_INCORRECT = "64"
    EXCEEDS_FREQUENCY = "65"
    PIN_TRIES_EXCEEDED = "75"
    SIGN_ON_AGAIN = "77"
    DUPLICATE = "94"
    SYSTEM_ERROR = "96"
    TERMINAL_NOT_REGISTERED = "97"
    ISSUER_TIMEOUT = "98"
    MAC_ERROR = "A0"
    STEP_UP_REQUIRED = "1A"
    GEOFENCE_VIOLATION = "G1"
    TERMINAL_LOCKED = "L1"
    ATTESTATION_FAILED = "K1"
    CRYPTOGRAM_FAILED = "K2"
    USER_PAYING = "U1"

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]

    @property
    def approved(self) -> bool:
        return self is ResponseCode.APPROVED


_MEANINGS = {
    ResponseCode.APPROVED: "approved",
    ResponseCode.INVALID_MERCHANT: "invalid merchant",
    ResponseCode.DO_NOT_HONOR: "do not honour",
    ResponseCode.INVALID_TRANSACTION: "invalid transaction",
    ResponseCode.INVALID_AMOUNT: "invalid amount",
    ResponseCode.INVALID_CARD: "invalid card number",
    ResponseCode.ORIGINAL_NOT_FOUND: "original transaction not found",
    ResponseCode.FORMAT_ERROR: "format error",
    ResponseCode.LOST_CARD: "lost or blocked card",
    ResponseCode.INSUFFICIENT_FUNDS: "insufficient funds",
    ResponseCode.EXPIRED_CARD: "expired card",
    ResponseCode.INCORRECT_PIN: "incorrect PIN",
    ResponseCode.NOT_PERMITTED_CARDHOLDER: "transaction not permitted to cardholder",
    ResponseCode.NOT_PERMITTED_TERMINAL: "transaction not permitted to terminal",
    ResponseCode.SUSPECTED_FRAUD: "suspected fraud",
    ResponseCode.EXCEEDS_LIMIT: "exceeds amount limit",
    ResponseCode.RESTRICTED_CARD: "restricted card",
    ResponseCode.ORIGINAL_AMOUNT_INCORRECT: "amount exceeds what remains of the original",
    ResponseCode.EXCEEDS_FREQUENCY: "exceeds frequency limit",
    ResponseCode.PIN_TRIES_EXCEEDED: "PIN tries exceeded",
    ResponseCode.SIGN_ON_AGAIN: "sign on again",
    ResponseCode.DUPLICATE: "duplicate transmission (original response replayed)",
    ResponseCode.SYSTEM_ERROR: "system malfunction",
    ResponseCode.TERMINAL_NOT_REGISTERED: "terminal not registered",
    ResponseCode.ISSUER_TIMEOUT: "issuer or channel did not answer in time",
    ResponseCode.MAC_ERROR: "MAC verification failed",
    ResponseCode.STEP_UP_REQUIRED: "step-up required (PIN or passcode)",
    ResponseCode.GEOFENCE_VIOLATION: "terminal outside its location fence",
    ResponseCode.TERMINAL_LOCKED: "terminal locked by the acquirer",
    ResponseCode.ATTESTATION_FAILED: "terminal attestation refused",
    ResponseCode.CRYPTOGRAM_FAILED: "application cryptogram failed verification",
    ResponseCode.USER_PAYING: "customer is confirming on the phone",
}


class EntryMode(str, enum.Enum):
    """Field 22: digits 1-2 how the card was read, digit 3 PIN capability (1 PIN, 2 none)."""

    CONTACTLESS_PIN = "071"
    CONTACTLESS_NO_PIN = "072"
    QR_CODE = "032"
    FACE = "092"
    KEYED = "012"


class PinFormat(str, enum.Enum):
    """Field 53 digit 1."""

    ISO0 = "2"
    ISO4 = "4"
    SM4 = "6"
