"""QR sales both ways and face sales, in payment terms, beside the card sale of `TerminalApp`.

Every method blocks (the UI calls them from workers) and returns a `SaleResult` with a
message a cashier can act on, recorded in the journal like a card sale, so history,
void, refund and settlement treat every channel alike. The journal's `masked` column
names the channel the customer used: "Alipay code 2812**********3456", "WeChat Pay
merchant QR", "face, UnionPay QR".
"""
from __future__ import annotations

from dataclasses import dataclass

from acquirer.protocol import PrivateTag, ResponseCode
from acquirer.wallets.codes import mask_code, wallet_of_code
from .app import SaleResult, TerminalApp
from .online import HostUnavailable, Outcome

WALLET_NAMES = {"alipay": "Alipay", "wechat": "WeChat Pay", "unionpay": "UnionPay QR"}
R = ResponseCode
REVERSAL_QUEUED = "The sale is not complete; the reversal is queued and sent automatically"


def wallet_name(wallet: str) -> str:
    return WALLET_NAMES.get(wallet, wallet or "wallet")


def _wallet_of(out: Outcome, fallback: str = "") -> str:
    return out.private.get(PrivateTag.CHANNEL, b"").decode("ascii", "replace") or fallback


@dataclass
class ShownQr:
    """A merchant QR on the screen: what the customer scans, and what names its sale."""

    outcome: Outcome
    wallet: str
    amount: int

    @property
    def url(self) -> str:
        return self.outcome.code_url


@dataclass
class FaceAttempt:
    """A recognised face waiting for its passcode: the sealed template is sent again with it."""

    template_field: bytes
    amount: int


class WalletFaceCheckout:
    def __init__(self, terminal: TerminalApp):
        self.terminal = terminal
        self.session = terminal.session

    def _offline(self, amount: int, channel: str, label: str, exc: Exception) -> SaleResult:
        return SaleResult(False, "98", f"Host unavailable: {exc}", amount, channel, label, next_step=REVERSAL_QUEUED)

    # --- the customer shows a payment code ----------------------------------------------
    def qr_sale(self, amount: int, code: str) -> SaleResult:
        """A scanned customer code. Above the wallet's no-password limit the host waits
        (up to a minute) while the customer confirms on the phone."""
        wallet = wallet_of_code(code)
        label = f"{wallet_name(wallet.value)} code {mask_code(code.strip())}" if wallet else "payment code"
        try:
            out = self.session.qr_sale(amount, code)
        except HostUnavailable as exc:
            return self._offline(amount, "qr", label, exc)
        result = self.terminal._result(out, amount, "qr", label, "sale")
        if out.code == R.INVALID_CARD.value:
            result.next_step = "That is not a wallet payment code: ask the customer to open the payment code page"
        elif out.code == R.SUSPECTED_FRAUD.value:
            result.next_step = "That code was used already: ask the customer to refresh the code"
        return result

    # --- the merchant shows a QR --------------------------------------------------------
    def show_qr(self, amount: int, wallet: str) -> ShownQr | SaleResult:
        """Precreate a merchant QR; a SaleResult when the host refused or did not answer."""
        label = f"{wallet_name(wallet)} merchant QR"
        try:
            out = self.session.precreate(amount, wallet)
        except HostUnavailable as exc:
            return self._offline(amount, "qr", label, exc)
        if not out.approved or not out.code_url:
            return SaleResult(False, out.code, out.text or "the wallet gave no QR", amount, "qr", label,
                              next_step="Try another wallet, or let the customer show a payment code")
        return ShownQr(out, wallet, amount)

    def wait_qr(self, shown: ShownQr, seconds: float) -> SaleResult | None:
        """One wait for the customer to pay; None while the QR is still unpaid."""
        label = f"{wallet_name(shown.wallet)} merchant QR"
        try:
            out = self.session.wait_paid(shown.outcome, timeout=seconds, cancel=False)
        except HostUnavailable as exc:
            try:
                self.session.cancel_precreate(shown.outcome)
            except HostUnavailable:
                pass  # queued: the reversal closes the QR once the host answers again
            return SaleResult(False, "98", f"Host unavailable: {exc}", shown.amount, "qr", label,
                              next_step="The QR is being closed (reversal queued); take another payment method")
        if out.code == R.USER_PAYING.value:
            return None
        return self.terminal._result(out, shown.amount, "qr", label, "sale")

    def cancel_qr(self, shown: ShownQr) -> str:
        """Withdraw the QR (its reversal closes it, or refunds a payment that raced the close)."""
        try:
            self.session.cancel_precreate(shown.outcome)
        except HostUnavailable:
            return "The host did not answer: the QR's reversal is queued and closes it later"
        return "QR withdrawn: the customer can no longer pay it"

    # --- face ----------------------------------------------------------------------------
    def face_start(self, amount: int, capture) -> FaceAttempt | SaleResult:
        """Seal the template in the TEE and send it: a recognised face asks for the passcode."""
        template_field = self.terminal.keys.seal_face_template(capture.template, capture.liveness)
        try:
            out = self.session.face_sale(amount, template_field)
        except HostUnavailable as exc:
            return SaleResult(False, "98", f"Host unavailable: {exc}", amount, "face", "face",
                              next_step="Nothing was charged; check the host link or take another payment method")
        if out.code == R.STEP_UP_REQUIRED.value and out.step_up == "PASSCODE":
            return FaceAttempt(template_field, amount)
        return self._face_result(out, amount)

    def face_pay(self, attempt: FaceAttempt) -> SaleResult:
        """Send the face again with the passcode typed on the TEE's keypad (its block is
        made inside the TEE for this request's STAN)."""
        try:
            out = self.session.face_sale(attempt.amount, attempt.template_field, self.terminal.keys.passcode_enter)
        except HostUnavailable as exc:
            return self._offline(attempt.amount, "face", "face", exc)
        return self._face_result(out, attempt.amount)

    def _face_result(self, out: Outcome, amount: int) -> SaleResult:
        wallet = _wallet_of(out)
        label = f"face, {wallet_name(wallet)}" if wallet else "face"
        result = self.terminal._result(out, amount, "face", label, "sale")
        result.next_step = {
            R.DO_NOT_HONOR.value: "Face not recognised: the customer pays by card or QR code",
            R.INCORRECT_PIN.value: "Wrong passcode: the customer enters it again",
            R.PIN_TRIES_EXCEEDED.value: "Face pay is locked for this customer: pay by card or QR; "
                                        "the acquirer unlocks it on request",
            R.NOT_PERMITTED_TERMINAL.value: "The face was not checked for liveness: use the camera, not a photo",
            R.NOT_PERMITTED_CARDHOLDER.value: "The customer's wallet does not allow face pay: pay another way",
        }.get(out.code, result.next_step)
        return result
