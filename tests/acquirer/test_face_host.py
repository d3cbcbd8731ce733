"""Face sales through a real host on loopback: the terminal sends a sealed template, the host
identifies the customer 1:N and steps up to the passcode, wrong passcodes count and
lock, and the right one pays from the customer's wallet under a face-pay agreement.
The payment is in the ledger and in the settlement like any other."""
from __future__ import annotations

import pytest

from acquirer.ledger import Channel, Status, TxnKind
from acquirer.protocol import ResponseCode
from acquirer.wallets.codes import Wallet
from acquirer.wallets.customer_cli import agree, payment_code
from terminal.face.checkout import FaceCapture, face_template_field, passcode_block
from tests.acquirer.conftest import TERMINAL, WALLET_PASSWORD
from tests.face.conftest import photos  # noqa: F401  (the session's templates, the model loaded once)

R = ResponseCode
OBAMA_PASSCODE, BIDEN_PASSCODE = "802413", "590217"


@pytest.fixture
def face_lane(wallet_lane, photos):  # noqa: F811
    """Obama (two photos) pays with his Alipay account under an agreement; Biden enrolled,
    linked to WeChat, never agreed."""
    lane = wallet_lane
    books = lane.wallets.services.books
    books[Wallet.ALIPAY].add_account("obama", WALLET_PASSWORD, 50_000)
    books[Wallet.WECHAT].add_account("biden", WALLET_PASSWORD, 50_000)
    lane.wallets.run(agree(lane.wallets.app_url(Wallet.ALIPAY), "obama", WALLET_PASSWORD))
    face = lane.host.service.face
    face.enrol_templates("obama", [photos["obama.jpg"].template, photos["obama2.jpg"].template], "alipay:obama",
                         OBAMA_PASSCODE)
    face.enrol_templates("biden", [photos["biden.jpg"].template], "wechat:biden", BIDEN_PASSCODE)
    return lane


def df02(lane, photos, name="obama3.jpg", liveness=True) -> bytes:  # noqa: F811
    """What the terminal's checkout sends: the template sealed under its TDK."""
    return face_template_field(FaceCapture(photos[name].template, liveness, "test capture"), lane.keys.seal)


def passcode(lane, digits: str):
    return lambda stan: passcode_block(lane.keys.pin_block, digits, stan)


def pay(lane, photos, amount, digits, name="obama3.jpg"):  # noqa: F811
    template = df02(lane, photos, name)
    first = lane.session.face_sale(amount, template)
    if first.code != R.STEP_UP_REQUIRED.value:
        return first
    assert first.step_up == "PASSCODE"
    return lane.session.face_sale(amount, template, passcode(lane, digits))


def obama_balance(lane) -> int:
    return lane.wallets.balance(Wallet.ALIPAY, "obama")


def test_a_recognised_face_steps_up_a_wrong_passcode_declines_the_right_one_pays(face_lane, photos):  # noqa: F811
    lane = face_lane
    template = df02(lane, photos)
    first = lane.session.face_sale(1_500, template)
    assert first.code == R.STEP_UP_REQUIRED.value and first.step_up == "PASSCODE"
    assert lane.ledger.journal() == []  # a step-up moves no money
    wrong = lane.session.face_sale(1_500, template, passcode(lane, "111112"))
    assert wrong.code == R.INCORRECT_PIN.value and "2 tries left" in wrong.text
    right = lane.session.face_sale(1_500, template, passcode(lane, OBAMA_PASSCODE))
    assert right.approved, right
    assert obama_balance(lane) == 50_000 - 1_500
    sale = lane.ledger.find_original(TERMINAL, batch=right.batch, stan=right.stan)
    assert (sale.kind, sale.channel, sale.status, sale.amount) == (TxnKind.FACE, Channel.FACE, Status.APPROVED,
                                                                   1_500)
    assert lane.ledger.find_original(TERMINAL, batch=wrong.batch, stan=wrong.stan).status is Status.DECLINED
    assert lane.host.service.face.store.customer("obama").failures == 0  # the right passcode reset the count


def test_repeated_wrong_passcodes_lock_face_pay(face_lane, photos):  # noqa: F811
    lane = face_lane
    codes = [pay(lane, photos, 1_000, "111112").code for _ in range(3)]
    assert codes == [R.INCORRECT_PIN.value, R.INCORRECT_PIN.value, R.PIN_TRIES_EXCEEDED.value]
    assert pay(lane, photos, 1_000, OBAMA_PASSCODE).code == R.PIN_TRIES_EXCEEDED.value  # the face alone now
    assert obama_balance(lane) == 50_000
    assert lane.host.service.face.store.customer("obama").locked


def test_a_passcode_block_made_for_another_request_is_refused_and_not_counted(face_lane, photos):  # noqa: F811
    lane = face_lane
    stolen = passcode_block(lane.keys.pin_block, OBAMA_PASSCODE, "000001")  # captured from an earlier request
    out = lane.session.face_sale(1_000, df02(lane, photos), lambda stan: stolen)
    assert out.code == R.FORMAT_ERROR.value and "DF0C" in out.text
    assert lane.host.service.face.store.customer("obama").failures == 0


def test_a_stranger_and_an_unchecked_face_are_declined(face_lane, photos):  # noqa: F811
    lane = face_lane
    lane.host.service.face.withdraw("obama", operator="test", reason="consent withdrawn")
    assert lane.session.face_sale(1_000, df02(lane, photos)).code == R.DO_NOT_HONOR.value
    unchecked = lane.session.face_sale(1_000, df02(lane, photos, "biden.jpg", liveness=False))
    assert unchecked.code == R.NOT_PERMITTED_TERMINAL.value


def test_a_customer_without_an_agreement_with_the_wallet_is_not_debited(face_lane, photos):  # noqa: F811
    lane = face_lane
    out = pay(lane, photos, 1_000, BIDEN_PASSCODE, "biden.jpg")
    assert out.code == R.NOT_PERMITTED_CARDHOLDER.value and "agreement" in out.text
    assert lane.wallets.balance(Wallet.WECHAT, "biden") == 50_000


def test_a_face_sale_is_refunded_and_reversed_through_the_wallet(face_lane, photos):  # noqa: F811
    lane = face_lane
    sale = pay(lane, photos, 3_000, OBAMA_PASSCODE)
    assert lane.session.refund(sale.batch, sale.stan, 1_000).approved
    assert obama_balance(lane) == 50_000 - 2_000
    refund = lane.ledger.find_original(TERMINAL, batch=lane.session.batch, stan=f"{int(sale.stan) + 1:06d}")
    assert (refund.kind, refund.channel) == (TxnKind.REFUND, Channel.FACE)
    other = pay(lane, photos, 400, OBAMA_PASSCODE)
    lane.session._queue_reversal(other.fields)
    assert lane.session.flush_reversals() == 1
    assert obama_balance(lane) == 50_000 - 2_000
    assert lane.ledger.find_original(TERMINAL, batch=other.batch, stan=other.stan).status is Status.REVERSED


def test_settlement_balances_card_qr_and_face_together(face_lane, photos, tmp_path):  # noqa: F811
    lane = face_lane
    assert lane.session.sale(1_000, lane.card_data(1_000)).approved
    code = lane.wallets.run(payment_code(lane.wallets.app_url(Wallet.WECHAT), "alice", WALLET_PASSWORD))["code"]
    assert lane.session.qr_sale(2_000, code).approved
    face = pay(lane, photos, 1_500, OBAMA_PASSCODE)
    assert face.approved
    assert lane.session.refund(face.batch, face.stan, 500).approved
    batch = lane.session.batch
    totals = lane.ledger.totals(TERMINAL, batch)
    assert (totals.card.sale_amount, totals.qr.sale_amount, totals.face.sale_amount) == (1_000, 2_000, 1_500)
    result = lane.session.settle({"CD": (1, 1_000, 0, 0), "QR": (1, 2_000, 0, 0), "FC": (1, 1_500, 1, 500)})
    assert result.approved and result.text == "BALANCED"
    assert lane.ledger.batch(TERMINAL, batch).balanced
    assert lane.ledger.find_original(TERMINAL, batch=face.batch, stan=face.stan).status is Status.SETTLED
