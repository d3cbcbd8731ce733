"""Face pay's way to a wallet: a single-use payment code asked for under an agreement.

Face pay identifies the customer at the host (acquirer/face) and checks the payment
passcode; the money still moves at the customer's wallet. The customer has signed a
face-pay agreement with the wallet (`WalletBook.agree`, the customer app's
`/app/agree`), so the acquirer may ask that wallet for a payment code of the account,
already confirmed. The code is then paid like any customer-presented code
(`QRChannel.pay_customer_code`, source "face"): same routing, order book, reversal,
refunds, bills and reconciliation as QR. In the market this is a withholding agreement
(Alipay agreement pay, WeChat papay) or a face token used as `auth_code`.

Request (both sides import this module): `POST <provider base URL>/agreement/code`, a
compact JSON body `{"account","merchant","nonce","timestamp"}` signed with the key the
acquirer uses for that provider (RSA2 or SM2, base64 in `X-Acquirer-Signature`). The
wallet refuses an unknown merchant, a bad signature, a timestamp more than 300 s off and
a nonce it has seen. The answer `{"code","expires_in"}` is not signed: a forged one can
only make the payment fail, since the payment itself goes through the signed API.
"""
from __future__ import annotations

import json

from .adapter import WalletAdapter, WalletCallError, WalletProtocolError
from .codes import wallet_of_code
from .signing import nonce_str, sign_b64

SIGNATURE_HEADER = "X-Acquirer-Signature"
MAX_SKEW_S = 300.0
PATH = "/agreement/code"


class AgreementRefused(WalletCallError):
    """The wallet answered, and refused: no agreement, unknown account, bad signature."""

    def __init__(self, provider: str, reason: str, message: str):
        super().__init__(provider, f"{reason}: {message}")
        self.reason = reason


def request_body(merchant: str, account: str, timestamp: int, nonce: str) -> str:
    return json.dumps({"account": account, "merchant": merchant, "nonce": nonce, "timestamp": timestamp},
                      separators=(",", ":"), sort_keys=True)


async def agreement_code(adapter: WalletAdapter, account: str) -> str:
    """A confirmed single-use payment code for `account` at `adapter`'s wallet.

    Raises what `WalletAdapter.http` raises (unreachable, timeout) or AgreementRefused.
    Nothing has moved money yet when this returns or raises."""
    cfg = adapter.config
    body = request_body(cfg.merchant, account, int(adapter.clock()), nonce_str())
    status, _headers, raw = await adapter.http(
        "POST", cfg.base_url + PATH, data=body,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign_b64(cfg.signer, body)})
    try:
        data = json.loads(raw)
    except ValueError:
        if status >= 500:
            raise adapter.bad_gateway(status) from None
        raise WalletProtocolError(adapter.name, f"agreement code: unreadable answer (HTTP {status})") from None
    if status == 200 and isinstance(data, dict) and isinstance(data.get("code"), str):
        if wallet_of_code(data["code"]) is not adapter.wallet:
            raise WalletProtocolError(adapter.name, "agreement code: not a payment code of this wallet")
        return data["code"]
    if status >= 500:
        raise adapter.bad_gateway(status)
    error = data if isinstance(data, dict) else {}
    raise AgreementRefused(adapter.name, str(error.get("error", "refused")), str(error.get("message", "")))
