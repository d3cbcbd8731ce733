"""Channel reconciliation: every provider's daily bill against the host's records."""
from __future__ import annotations

from acquirer.protocol import ResponseCode
from acquirer.wallets.adapter import BillRow
from acquirer.wallets.book import BillEntry
from acquirer.wallets.codes import Wallet
from acquirer.wallets.customer_cli import pay_merchant_qr
from acquirer.wallets.demo import wallet_world
from acquirer.wallets.reconcile import HostRecord, reconcile
from tests.acquirer.test_wallet_payments import MERCHANT, PASSWORD, TERMINAL, run


async def busy_day(world) -> None:
    """Sales in every wallet, a refund, a QR paid by notify, a charge reversed after a timeout."""
    for n, wallet in enumerate(Wallet):
        code = await world.customer_code(wallet)
        assert (await world.channel.pay_customer_code(f"S-{n}", code, 1_000 + n, MERCHANT, TERMINAL)).code \
            is ResponseCode.APPROVED
    assert (await world.channel.refund("S-0", "S-0-r1", 250)).code is ResponseCode.APPROVED
    made = await world.channel.precreate("Q-1", 3_300, MERCHANT, TERMINAL, Wallet.WECHAT)
    await pay_merchant_qr(world.services.app_urls, "alice", PASSWORD, made.code_url)
    world.services.faults("unionpay-direct").inject("pay", "timeout_after")
    code = await world.customer_code(Wallet.UNIONPAY)
    assert (await world.channel.pay_customer_code("T-1", code, 4_400, MERCHANT, TERMINAL)).state == "REVERSED"
    await world.notifier.drain()


def test_clean_after_a_busy_day_and_dirty_when_a_bill_row_is_missing_extra_or_wrong():
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            world.channel.adapters["unionpay-direct"].config.timeout = 0.3  # it will hang once, after charging
            await busy_day(world)
            report = await world.reconcile()
            assert report.clean, report.describe()
            assert report.matched == 6  # five sales (one reversed, netting zero) and one refund

            wechat = world.services.books[Wallet.WECHAT]
            wechat.tamper.drop.add("Q-1")  # the wallet's bill lost a paid QR order
            alipay = world.services.books[Wallet.ALIPAY]
            alipay.tamper.amounts["S-0"] = 1_001  # shows 10.01 for a 10.00 sale
            stray = BillEntry(world.services.provider("unionpay-direct").merchant, "PAY", "7962000", "GHOST-1", 777,
                              world.clock())
            world.services.books[Wallet.UNIONPAY].tamper.extra.append(stray)  # charged, never booked by us
            report = await world.reconcile()
            assert not report.clean
            assert [(d.order_id, d.host_amount, d.bill_amount) for d in report.of_kind("missing")] == \
                [("Q-1", 3_300, None)]
            assert [(d.order_id, d.host_amount, d.bill_amount, d.provider) for d in report.of_kind("mismatch")] == \
                [("S-0", 1_000, 1_001, report.of_kind("mismatch")[0].provider)]
            assert [(d.order_id, d.bill_amount, d.provider) for d in report.of_kind("extra")] == \
                [("GHOST-1", 777, "unionpay-direct")]
            assert "missing  Q-1" in report.describe()
    run(scenario())


def test_matching_rules_on_plain_rows():
    bill = [BillRow("p", Wallet.ALIPAY, "PAY", "A", 100), BillRow("p", Wallet.ALIPAY, "PAY", "R", 50),
            BillRow("p", Wallet.ALIPAY, "REFUND", "A", 30, refund_id="A-r"),
            BillRow("p", Wallet.ALIPAY, "PAY", "X", 70), BillRow("p", Wallet.ALIPAY, "REVERSAL", "X", 70)]
    host = [HostRecord("A", 100, "SUCCESS"), HostRecord("R", 50, "REVERSED"), HostRecord("A", 30, "REFUND", "A-r"),
            HostRecord("F", 10, "FAILED"), HostRecord("B", 5, "REFUND", "B-r")]
    report = reconcile(bill, host, "2025-06-18")
    assert [(d.kind, d.order_id, d.refund_id) for d in report.differences] == [
        ("mismatch", "R", ""),  # we reversed it, the wallet still has it paid
        ("missing", "B", "B-r")]  # a refund the bill does not show
    assert report.matched == 4  # A, F (no money either side), X (paid and reversed), refund A-r
