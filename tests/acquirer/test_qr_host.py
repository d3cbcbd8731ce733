"""QR payments through a real host on loopback, from the terminal's online session to the
simulated wallets and back: customer codes read from PNGs, merchant QR codes paid with
the customer's wallet app, replays, void, refund, reversal and query."""
from __future__ import annotations

import pytest

from acquirer.ledger import Channel, Event, Status, TxnKind
from acquirer.protocol import PrivateTag, ResponseCode
from acquirer.wallets.codes import Wallet, wallet_of_code, wallet_of_merchant_qr
from acquirer.wallets.customer_cli import WalletAppError, pay_merchant_qr, payment_code, read_qr, render_png
from tests.acquirer.conftest import TERMINAL, WALLET_PASSWORD

R = ResponseCode


def scanned_code(lane, wallet: Wallet, tmp_path, account: str = "alice") -> str:
    """The customer shows a code; the scanner reads it from the picture."""
    code = lane.wallets.run(payment_code(lane.wallets.app_url(wallet), account, WALLET_PASSWORD))["code"]
    return read_qr(render_png(code, tmp_path / f"{wallet.value}-code.png"))


def txn(lane, out):
    return lane.ledger.find_original(TERMINAL, batch=out.batch, stan=out.stan)


def order_id(out) -> str:
    return f"{TERMINAL}-{out.batch}-{out.stan}"


@pytest.mark.parametrize("wallet", list(Wallet))
def test_a_customer_code_read_from_a_png_pays_through_each_wallet(wallet_lane, wallet, tmp_path):
    lane = wallet_lane
    code = scanned_code(lane, wallet, tmp_path)
    assert wallet_of_code(code) is wallet
    out = lane.session.qr_sale(1_234, code)
    assert out.approved, out
    assert lane.wallets.balance(wallet) == 100_000 - 1_234
    assert out.private[PrivateTag.ORDER_ID].decode() == order_id(out)
    assert out.private[PrivateTag.CHANNEL].decode() == wallet.value
    assert len(out.rrn) == 12 and len(out.auth_code) == 6
    sale = txn(lane, out)
    assert (sale.kind, sale.channel, sale.status, sale.amount) == (TxnKind.QR, Channel.QR, Status.APPROVED, 1_234)
    assert lane.host.service.qr.channel.orders.get(order_id(out)).state.value == "SUCCESS"


def test_a_replayed_code_is_refused_and_charges_once(wallet_lane, tmp_path):
    lane = wallet_lane
    code = scanned_code(lane, Wallet.WECHAT, tmp_path)
    assert lane.session.qr_sale(500, code).approved
    again = lane.session.qr_sale(500, code)  # the same code photographed and shown again
    assert again.code == R.SUSPECTED_FRAUD.value and "already used" in again.text
    assert lane.wallets.balance(Wallet.WECHAT) == 100_000 - 500
    assert txn(lane, again).status is Status.DECLINED


def test_a_code_no_wallet_issued_is_refused_before_any_wallet_is_asked(wallet_lane):
    out = wallet_lane.session.qr_sale(500, "123456")
    assert out.code == R.INVALID_CARD.value


@pytest.mark.parametrize("wallet", list(Wallet))
def test_a_merchant_qr_shown_by_the_terminal_is_paid_with_the_wallet_app(wallet_lane, wallet, tmp_path):
    lane = wallet_lane
    shown = lane.session.precreate(2_580, wallet.value)
    assert shown.approved and wallet_of_merchant_qr(shown.code_url) is wallet
    assert txn(lane, shown) is None  # an unpaid QR moves no money
    png = render_png(shown.code_url, tmp_path / "merchant.png")
    paid = lane.wallets.run(pay_merchant_qr(lane.wallets.services.app_urls, "alice", WALLET_PASSWORD, str(png)))
    assert (paid["wallet"], paid["amount"], paid["status"]) == (wallet.value, 2_580, "SUCCESS")
    out = lane.session.wait_paid(shown, timeout=10)
    assert out.approved, out
    assert (out.batch, out.stan) == (shown.batch, shown.stan)  # the sale is the QR's own
    sale = txn(lane, out)
    assert (sale.kind, sale.channel, sale.status, sale.rrn) == (TxnKind.QR_MERCHANT, Channel.QR, Status.APPROVED,
                                                                out.rrn)
    assert lane.wallets.balance(wallet) == 100_000 - 2_580
    again = lane.session.wait_paid(shown, timeout=1)  # asked again: the same answer, booked once
    assert again.approved and again.rrn == out.rrn
    assert [r.event for r in lane.ledger.journal()].count(Event.AUTHORISED) == 1


def test_the_terminal_waits_while_the_customer_has_not_paid(wallet_lane, tmp_path):
    lane = wallet_lane
    shown = lane.session.precreate(990, "unionpay")
    q = lane.session.query(shown.batch, shown.stan)
    assert q.code == R.USER_PAYING.value and "WAITING" in q.text
    sent = []
    real = lane.session._financial

    def pay_after_the_first_wait(fields, reversible):
        out = real(fields, reversible)
        sent.append(out.code)
        if len(sent) == 1:  # the customer scans while the terminal waits
            lane.wallets.run(pay_merchant_qr(lane.wallets.services.app_urls, "bob", WALLET_PASSWORD, shown.code_url))
        return out
    lane.session._financial = pay_after_the_first_wait
    out = lane.session.wait_paid(shown, timeout=10)
    lane.session._financial = real
    assert sent[0] == R.USER_PAYING.value and out.approved
    assert lane.wallets.balance(Wallet.UNIONPAY, "bob") == 5_000 - 990


def test_a_merchant_qr_nobody_pays_is_closed_at_the_deadline(wallet_lane, tmp_path):
    lane = wallet_lane
    shown = lane.session.precreate(700, "alipay")
    out = lane.session.wait_paid(shown, timeout=0.6)
    assert out.code == R.ISSUER_TIMEOUT.value and "closed" in out.text
    assert lane.session.pending_reversals() == 0
    with pytest.raises(WalletAppError) as exc:  # too late for the customer
        lane.wallets.run(pay_merchant_qr(lane.wallets.services.app_urls, "alice", WALLET_PASSWORD, shown.code_url))
    assert exc.value.reason == "order_closed"
    assert lane.wallets.balance(Wallet.ALIPAY) == 100_000
    assert lane.host.service.qr.channel.orders.get(order_id(shown)).state.value in ("CLOSED", "REVERSED")


def test_void_of_a_qr_sale_refunds_the_wallet(wallet_lane, tmp_path):
    lane = wallet_lane
    sale = lane.session.qr_sale(2_000, scanned_code(lane, Wallet.ALIPAY, tmp_path))
    void = lane.session.void(sale, 2_000)
    assert void.approved, void
    assert lane.wallets.balance(Wallet.ALIPAY) == 100_000
    assert txn(lane, sale).status is Status.VOIDED
    assert txn(lane, void).channel is Channel.QR
    assert lane.session.void(sale, 2_000).code == R.INVALID_TRANSACTION.value


def test_partial_refunds_of_a_merchant_qr_sale_never_exceed_it(wallet_lane, tmp_path):
    lane = wallet_lane
    shown = lane.session.precreate(5_000, "wechat")
    lane.wallets.run(pay_merchant_qr(lane.wallets.services.app_urls, "alice", WALLET_PASSWORD, shown.code_url))
    sale = lane.session.wait_paid(shown, timeout=10)
    assert lane.session.refund(sale.batch, sale.stan, 3_000).approved
    over = lane.session.refund(sale.batch, sale.stan, 2_500)
    assert over.code == R.ORIGINAL_AMOUNT_INCORRECT.value and "2000" in over.text
    assert lane.session.refund(sale.batch, sale.stan, 2_000, sale.rrn).approved
    assert lane.wallets.balance(Wallet.WECHAT) == 100_000
    assert txn(lane, sale).refunded_amount == 5_000


def test_a_reversed_qr_sale_is_given_back_at_the_wallet(wallet_lane, tmp_path):
    lane = wallet_lane
    sale = lane.session.qr_sale(900, scanned_code(lane, Wallet.UNIONPAY, tmp_path))
    assert lane.wallets.balance(Wallet.UNIONPAY) == 100_000 - 900
    # the reversal the session queues when a sale gets no answer, sent twice
    for _ in range(2):
        lane.session._queue_reversal(sale.fields)
        assert lane.session.flush_reversals() == 1
    assert lane.wallets.balance(Wallet.UNIONPAY) == 100_000
    assert txn(lane, sale).status is Status.REVERSED
    assert [r.event for r in lane.ledger.journal()].count(Event.REVERSED) == 1


def test_query_of_a_qr_sale(wallet_lane, tmp_path):
    lane = wallet_lane
    sale = lane.session.qr_sale(800, scanned_code(lane, Wallet.WECHAT, tmp_path))
    q = lane.session.query(sale.batch, sale.stan)
    assert q.approved and q.rrn == sale.rrn and q.text == "QR APPROVED"
    assert q.private[PrivateTag.ORDER_ID].decode() == order_id(sale)


def test_card_sales_still_work_beside_the_wallets(wallet_lane):
    lane = wallet_lane
    sale = lane.session.sale(1_000, lane.card_data(1_000))
    assert sale.approved and lane.session.void(sale, 1_000).approved


def test_a_paid_sale_the_ledger_refuses_is_given_back_at_the_wallet(wallet_lane, tmp_path):
    from acquirer.protocol import Field60, TxnType

    lane = wallet_lane
    code = scanned_code(lane, Wallet.ALIPAY, tmp_path)
    stan = f"{int(lane.session._get('stan', '0')) + 1:06d}"  # the STAN the sale below will use
    # its reversal overtakes it (sent by another path after a timeout): the ledger must refuse the sale
    lane.session._queue_reversal({"t": "0200", "3": "000000", "4": f"{1_100:012d}", "11": stan, "22": "032",
                                  "41": TERMINAL, "42": lane.session.merchant_id, "49": "156",
                                  "60": Field60(TxnType.QR_SALE.value, lane.session.batch).encode()})
    assert lane.session.flush_reversals() == 1
    out = lane.session.qr_sale(1_100, code)
    assert out.stan == stan and out.code == R.INVALID_TRANSACTION.value
    assert lane.wallets.balance(Wallet.ALIPAY) == 100_000  # paid at the wallet, then given back
    assert lane.host.service.qr.channel.orders.get(order_id(out)).state.value == "REVERSED"
    assert txn(lane, out) is None
