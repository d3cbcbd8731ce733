"""The merchant's static aggregated code ("one code for every wallet") through a real host:
the terminal fetches and prints it, pyzbar reads the PNG, each wallet's app opens the
acquirer's page over HTTP, orders at its own wallet and pays with the password; the sale
is in the ledger, the settlement report and a clean channel reconciliation. Forged and
revoked codes, locked merchants and terminals, bad amounts and a wallet that is down
are refused with nothing stored; a repeated order request never charges twice."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import urllib.error
import urllib.request

import pytest

from acquirer.ledger import Channel, Event, MerchantRate, Status, TxnKind, txn_id_for
from acquirer.static_codes import StaticCodeError
from acquirer.wallet_flows import host_records
from acquirer.wallets.clock import bill_date
from acquirer.wallets.codes import Wallet
from acquirer.wallets.customer_cli import WalletAppError, pay_static_code, read_qr, user_agent
from terminal.online import HostRefused
from terminal.static_qr import fetch_static_qr
from tests.acquirer.conftest import MERCHANT, TERMINAL, WALLET_PASSWORD


def codes(lane):
    return lane.host.service.static_codes


def on_host(lane, coro):
    """Run a coroutine on the host's own event loop (the QR channel lives there)."""
    return asyncio.run_coroutine_threadsafe(coro, lane.host._loop).result(30)


def pay(lane, wallet: Wallet, url: str, amount: int, account: str = "alice") -> dict:
    return lane.wallets.run(pay_static_code(lane.wallets.services.app_urls, wallet, account, WALLET_PASSWORD, url,
                                            amount))


def post_order(lane, body: dict, agent: str = "") -> tuple[int, dict]:
    """The wallet page's order request, sent by hand."""
    request = urllib.request.Request(f"{codes(lane).base_url}/s/order", json.dumps(body).encode(),
                                     {"Content-Type": "application/json", "User-Agent": agent})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def order_body(code, **kw) -> dict:
    return {"token": code.token, "wallet": "alipay", "amount": 1_000, "buyer": "b1", "request_id": "req-00000001",
            **kw}


def reconcile(lane):
    lane.wallets.run(lane.wallets.services.notifier.drain())
    channel = lane.host.service.qr.channel
    return on_host(lane, channel.reconcile(bill_date(time.time()), host_records(lane.ledger.transactions())))


def nothing_stored(lane, code) -> None:
    assert codes(lane).open_requests() == [] and codes(lane).request_of_order(f"{code.terminal_id}-000001-000001") \
        is None
    assert lane.ledger.transactions(code.terminal_id) == []
    assert lane.host.service.qr.channel.orders.host_records() == []
    assert all(lane.wallets.balance(w) == 100_000 for w in Wallet)


@pytest.mark.parametrize("wallet", list(Wallet))
def test_the_printed_static_code_is_paid_through_each_wallet(wallet_lane, wallet, tmp_path):
    lane = wallet_lane
    code = codes(lane).issue(MERCHANT)
    url = fetch_static_qr(lane.session, tmp_path / "static.png")  # the terminal asks the host, prints a PNG
    scanned = read_qr(tmp_path / "static.png")  # the customer's camera
    assert scanned == url == codes(lane).url(code) and code.token in url
    paid = pay(lane, wallet, scanned, 1_888)
    assert (paid["wallet"], paid["amount"], paid["status"], paid["merchant"]) == (wallet.value, 1_888, "SUCCESS",
                                                                                  "Corner shop")
    assert paid["booked"] and paid["acquirer_state"] == "SUCCESS"
    assert lane.wallets.balance(wallet) == 100_000 - 1_888
    order_id = paid["order_id"]
    terminal_id, batch, stan = order_id.split("-")
    assert terminal_id == code.terminal_id
    sale = lane.ledger.get(txn_id_for(terminal_id, batch, stan))
    assert (sale.kind, sale.channel, sale.status, sale.amount, sale.merchant_id) == (
        TxnKind.QR_MERCHANT, Channel.QR, Status.APPROVED, 1_888, MERCHANT)
    report = lane.ledger.merchant_report(MERCHANT, dt.datetime.now(lane.ledger.business_tz).date(), MerchantRate(38))
    assert [(r.channel, r.sale_count, r.sale_amount) for r in report.rows] == [(Channel.QR, 1, 1_888)]
    assert reconcile(lane).clean


def test_a_repeated_order_request_is_the_same_order_and_charges_once(wallet_lane):
    lane = wallet_lane
    code = codes(lane).issue(MERCHANT)
    body = order_body(code, wallet="wechat", amount=2_500)
    status, first = post_order(lane, body)
    assert status == 200, first
    status, again = post_order(lane, body)  # the page retried: same request id
    assert status == 200 and (again["order_id"], again["code_url"]) == (first["order_id"], first["code_url"])
    scan = lane.wallets.services.app_urls[Wallet.WECHAT]
    from acquirer.wallets.customer_cli import _post

    lane.wallets.run(_post(scan, "scan", {"account": "alice", "password": WALLET_PASSWORD, "qr": first["code_url"]}))
    with pytest.raises(WalletAppError) as exc:  # the wallet's order, paid twice? never
        lane.wallets.run(_post(scan, "scan", {"account": "alice", "password": WALLET_PASSWORD,
                                              "qr": first["code_url"]}))
    assert exc.value.reason == "order_paid"
    status, after = post_order(lane, body)  # and the page once more, after the payment
    assert status == 200 and after["order_id"] == first["order_id"] and after["state"] == "SUCCESS"
    assert lane.wallets.balance(Wallet.WECHAT) == 100_000 - 2_500
    deadline = time.monotonic() + 10
    while lane.ledger.transactions(code.terminal_id) == [] and time.monotonic() < deadline:
        time.sleep(0.05)  # the host's watcher books it on the notify
    assert [r.event for r in lane.ledger.journal()].count(Event.AUTHORISED) == 1
    assert post_order(lane, {**body, "amount": 2_600})[1]["error"] == "request_reused"
    assert reconcile(lane).clean


def test_forged_and_revoked_codes_are_refused_with_nothing_stored(wallet_lane):
    lane = wallet_lane
    code = codes(lane).issue(MERCHANT)
    forged = code.token[:-1] + ("0" if code.token[-1] != "0" else "1")
    other_merchant = "898440358120002" + code.token[15:]  # a real MAC moved to another merchant id
    for token in (forged, other_merchant, "nonsense", ""):
        status, answer = post_order(lane, order_body(code, token=token))
        assert (status, answer["error"]) == (404, "token_unknown"), token
    codes(lane).revoke(MERCHANT, "sticker stolen")
    status, answer = post_order(lane, order_body(code))
    assert (status, answer["error"]) == (410, "token_revoked")
    with pytest.raises(WalletAppError) as exc:  # the customer's app sees it on opening the page
        pay(lane, Wallet.ALIPAY, codes(lane).url(code), 500)
    assert exc.value.reason == "token_revoked"
    with pytest.raises(HostRefused) as refused:  # and the terminal has nothing to print
        lane.session.static_qr()
    assert refused.value.code == "12"
    nothing_stored(lane, code)
    rotated = codes(lane).issue(MERCHANT, rotate=True)
    assert rotated.token != code.token and rotated.terminal_id == code.terminal_id
    assert post_order(lane, order_body(code))[1]["error"] == "token_revoked"
    assert codes(lane).issue(MERCHANT, rotate=True).token != rotated.token
    assert post_order(lane, order_body(rotated))[1]["error"] == "token_revoked"  # rotation revokes the old one


def test_locked_merchant_or_terminal_bad_amounts_and_wallets_are_refused_precisely(wallet_lane):
    lane = wallet_lane
    code = codes(lane).issue(MERCHANT, max_amount=50_000)
    registry = lane.host.service.registry
    registry.set_merchant_locked(MERCHANT, True, reason="under review")
    assert post_order(lane, order_body(code)) == (403, {"error": "merchant_locked",
                                                        "message": "this merchant cannot take payments now"})
    registry.set_merchant_locked(MERCHANT, False)
    registry.set_locked(code.terminal_id, True)
    assert post_order(lane, order_body(code))[1]["error"] == "terminal_locked"
    registry.set_locked(code.terminal_id, False)
    for amount in (0, -5, 50_001, "10.00", 12.5, True, None):
        status, answer = post_order(lane, order_body(code, amount=amount))
        assert (status, answer["error"]) == (400, "amount_out_of_range"), amount
    assert post_order(lane, order_body(code, wallet="paypal"))[1]["error"] == "wallet_unknown"
    assert post_order(lane, order_body(code, wallet=""))[1]["error"] == "wallet_unknown"  # no wallet, no app
    mixed = post_order(lane, order_body(code, wallet="alipay"), agent=user_agent(Wallet.WECHAT))
    assert mixed[1]["error"] == "wallet_unknown" and "wechat app" in mixed[1]["message"]
    assert post_order(lane, order_body(code, request_id="short"))[1]["error"] == "format"
    nothing_stored(lane, code)
    by_agent = post_order(lane, order_body(code, wallet=""), agent=user_agent(Wallet.UNIONPAY))
    assert by_agent[0] == 200 and by_agent[1]["wallet"] == "unionpay"  # the in-app browser said which wallet


def test_a_wallet_that_is_down_is_refused_and_nothing_is_booked(wallet_lane):
    lane = wallet_lane
    code = codes(lane).issue(MERCHANT)
    lane.wallets.services.faults("wechat-direct").always("precreate", "http_500")
    status, answer = post_order(lane, order_body(code, wallet="wechat"))
    assert (status, answer["error"]) == (503, "wallet_unavailable")
    assert post_order(lane, order_body(code, wallet="wechat"))[1]["error"] == "order_closed"  # that order is over
    assert lane.ledger.transactions(code.terminal_id) == []
    assert lane.wallets.balance(Wallet.WECHAT) == 100_000
    assert reconcile(lane).clean


def test_the_terminal_gets_no_code_before_one_is_issued(wallet_lane):
    with pytest.raises(HostRefused) as refused:
        wallet_lane.session.static_qr()
    assert refused.value.code == "12" and "no static code" in refused.value.text
    with pytest.raises(StaticCodeError):
        codes(wallet_lane).revoke(MERCHANT)


def test_operator_prints_the_code_and_the_customer_cli_pays_it(wallet_lane, tmp_path, monkeypatch, capsys):
    from acquirer.cli import main as acquirer_main
    from acquirer.wallets.customer_cli import main as wallet_main

    lane = wallet_lane
    state = tmp_path / "host"
    assert acquirer_main(["--state", str(state), "merchant", "qr", MERCHANT, "--png", str(tmp_path / "s.png"),
                          "--max-amount", "80000"]) == 0
    printed = capsys.readouterr().out
    url = read_qr(tmp_path / "s.png")
    assert url in printed and "SQ000001" in printed and "800.00" in printed
    assert codes(lane).current(MERCHANT).max_amount == 80_000
    monkeypatch.setenv("SOFTPOS_WALLET_PASSWORD", WALLET_PASSWORD)
    assert wallet_main(["--endpoints", str(state / "wallets" / "providers.json"), "pay", str(tmp_path / "s.png"),
                        "--account", "bob", "--wallet", "unionpay", "--amount", "12.34"]) == 0
    out = capsys.readouterr().out
    assert "paid 12.34 CNY to Corner shop with unionpay" in out and "booked by the acquirer" in out
    assert lane.wallets.balance(Wallet.UNIONPAY, "bob") == 5_000 - 1_234
    assert wallet_main(["--endpoints", str(state / "wallets" / "providers.json"), "pay", url, "--account", "bob"]) == 2
    assert "--wallet" in capsys.readouterr().err
    from terminal.cli import main as pos_main

    assert pos_main(["static-qr", "--port", str(lane.host.port), "--terminal", TERMINAL, "--merchant", MERCHANT,
                     "--state", str(tmp_path / "terminal"), "--out", str(tmp_path / "t.png"), "--text"]) == 0
    assert read_qr(tmp_path / "t.png") == url and url in capsys.readouterr().out  # the terminal prints the same
    assert acquirer_main(["--state", str(state), "merchant", "qr", MERCHANT, "--revoke"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert reconcile(lane).clean


def test_an_order_paid_while_the_host_was_down_is_booked_when_it_starts_again(wallet_lane, tmp_path):
    from acquirer.channels.qr import PollPolicy
    from acquirer.wallets.customer_cli import _post
    from tests.acquirer.conftest import start_host

    lane = wallet_lane
    code = codes(lane).issue(MERCHANT)
    status, order = post_order(lane, order_body(code, wallet="alipay", amount=4_321))
    assert status == 200
    lane.host.stop()  # the host goes away with the order open; the wallet's notifies find nobody
    lane.wallets.run(_post(lane.wallets.services.app_urls[Wallet.ALIPAY], "scan",
                           {"account": "alice", "password": WALLET_PASSWORD, "qr": order["code_url"]}))
    lane.wallets.run(lane.wallets.services.notifier.drain())
    again = start_host(tmp_path / "host", qr_wait=0.5, qr_poll=PollPolicy(first=0.2, factor=1.5, max_interval=1.0,
                                                                          total=3.0))
    try:
        terminal_id, batch, stan = order["order_id"].split("-")
        deadline = time.monotonic() + 10
        while (again.service.ledger.get(txn_id_for(terminal_id, batch, stan)) is None
               or again.service.static_codes.open_requests()) and time.monotonic() < deadline:
            time.sleep(0.05)  # resumed at start: the watcher queries the wallet, books it, then closes the request
        sale = again.service.ledger.get(txn_id_for(terminal_id, batch, stan))
        assert sale is not None and (sale.status, sale.amount) == (Status.APPROVED, 4_321)
        assert again.service.static_codes.open_requests() == []
        assert lane.wallets.balance(Wallet.ALIPAY) == 100_000 - 4_321
    finally:
        again.stop()


def test_no_device_can_act_as_the_virtual_terminal(wallet_lane, tmp_path):
    from terminal.online import OnlineSession
    from terminal.secure.keystore import SecureKeys
    from terminal.secure.sealed import SealedStore

    lane = wallet_lane
    code = codes(lane).issue(MERCHANT)
    assert lane.host.service.registry.terminal(code.terminal_id).usable
    intruder = OnlineSession("127.0.0.1", lane.host.port, code.terminal_id, MERCHANT,
                             SecureKeys(SealedStore(tmp_path / "intruder")), tmp_path / "intruder.db", timeout=5.0)
    try:
        with pytest.raises(HostRefused) as refused:  # it has no device key: nothing can prove to be it
            intruder.download_keys()
        assert refused.value.code == "K1"
        with pytest.raises(HostRefused) as refused:
            intruder.activate("12345678")
        assert refused.value.code == "05" and "no activation pending" in refused.value.text
    finally:
        intruder.close()


def test_the_ledger_reconciles_with_the_bills_across_sales_voids_refunds_and_static_code(wallet_lane, tmp_path):
    from tests.acquirer.test_qr_host import scanned_code

    lane = wallet_lane
    sale = lane.session.qr_sale(2_000, scanned_code(lane, Wallet.ALIPAY, tmp_path))
    assert lane.session.void(sale, 2_000).approved  # a full refund at the wallet
    other = lane.session.qr_sale(3_000, scanned_code(lane, Wallet.UNIONPAY, tmp_path))
    assert lane.session.refund(other.batch, other.stan, 1_000).approved
    assert pay(lane, Wallet.WECHAT, codes(lane).url(codes(lane).issue(MERCHANT)), 700)["booked"]
    records = {(r.status, r.amount) for r in host_records(lane.ledger.transactions())}
    assert records == {("SUCCESS", 2_000), ("REFUND", 2_000), ("SUCCESS", 3_000), ("REFUND", 1_000),
                       ("SUCCESS", 700)}
    report = reconcile(lane)
    assert report.clean and report.matched == 5, report.describe()


def test_the_risk_engine_screens_static_code_orders_per_buyer(wallet_lane):
    """The card velocity rule applies per buyer: the sixth order of one buyer in a minute is
    declined before any wallet is asked; another buyer is not affected."""
    lane = wallet_lane
    code = codes(lane).issue(MERCHANT)
    for n in range(5):
        status, body = post_order(lane, order_body(code, request_id=f"req-velocity-{n}", amount=100 + n))
        assert status == 200, body
    orders_before = len(lane.host.service.qr.channel.orders.host_records())
    status, body = post_order(lane, order_body(code, request_id="req-velocity-5", amount=105))
    assert (status, body["error"]) == (403, "declined_by_risk") and "too many taps" in body["message"]
    assert len(lane.host.service.qr.channel.orders.host_records()) == orders_before  # no wallet was asked
    status, body = post_order(lane, order_body(code, request_id="req-velocity-5", amount=105))
    assert (status, body["error"]) == (409, "order_closed")  # the same request stays declined
    status, body = post_order(lane, order_body(code, request_id="req-other-buyer", buyer="b2"))
    assert status == 200, body
    (stored,) = lane.host.service.risk.engine.explain(txn_id_for(code.terminal_id, "000001", "000006"))
    assert stored.action == "decline" and stored.card_token == "alipay:b1"


def test_a_printed_code_takes_a_bounded_number_of_new_orders_a_minute(wallet_lane):
    """The code is public: beyond the cap new orders are refused (429) before any wallet is
    asked; a page retrying its own request still gets its order; a minute later it flows again."""
    lane = wallet_lane
    code = codes(lane).issue(MERCHANT)
    sales = lane.host.service.static_site.sales
    now = [1000.0]
    sales.orders_per_minute, sales.clock = 3, lambda: now[0]
    made = [post_order(lane, order_body(code, request_id=f"req-flood-{n}", buyer=f"b{n}")) for n in range(3)]
    assert [status for status, _ in made] == [200, 200, 200]
    orders = len(lane.host.service.qr.channel.orders.host_records())
    status, body = post_order(lane, order_body(code, request_id="req-flood-3", buyer="b3"))
    assert (status, body["error"]) == (429, "too_many_orders")
    assert len(lane.host.service.qr.channel.orders.host_records()) == orders and \
        codes(lane).request(MERCHANT, "req-flood-3") is None  # nothing asked, nothing stored
    status, again = post_order(lane, order_body(code, request_id="req-flood-0", buyer="b0"))
    assert status == 200 and again["order_id"] == made[0][1]["order_id"]
    now[0] += 61.0
    assert post_order(lane, order_body(code, request_id="req-flood-3", buyer="b3"))[0] == 200
