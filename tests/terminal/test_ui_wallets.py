"""QR and face sales in the cashier UI, driven with Pilot against the real stack: the host
with its QR channel to the three simulated wallets and face pay, the TEE process (which
seals the face template and takes the passcode on its scrambled keypad), pcscd with the
vpcd reader for the card. The customer is the demo's own panel: payment codes rendered
to PNG and read by zbar through the scanner source, face photos through the simulated
camera, the merchant QR photographed (rendered to PNG) and paid in the wallet app."""
from __future__ import annotations

import pytest

from acquirer.channels.qr import PollPolicy
from acquirer.wallets.codes import Wallet
from acquirer.wallets.customer_cli import WalletAppError
from acquirer.wallets.threaded import ThreadedWallets
from hardware.scanners import ShownPictures
from terminal.app import TerminalApp, TerminalConfig
from terminal.demo import FACE_PASSCODE, WALLET_ACCOUNT, WALLET_PASSWORD, Customer
from terminal.face.capture import ShownPhotos
from terminal.journal import Journal
from terminal.ui.app import CashierApp
from terminal.ui.merchant_qr import MerchantQrScreen
from terminal.ui.pin import KEY_POSITIONS, PinScreen
from tests.face.conftest import frames, photos  # noqa: F401  (the session's templates, the model loaded once)

from .tee_fixtures import *  # noqa: F401,F403  (lane_location)
from .tee_fixtures import MERCHANT, SITE_SPEC, TERMINAL, build_card_lane
from .test_ui import screen_text, sell, shown_result, wait_for

pytestmark = pytest.mark.pcsc
START = 1_000_00


@pytest.fixture
def pay_lane(tmp_path, private_pcscd, insert_card, lane_location, photos):  # noqa: F811
    """The card lane with wallets (limit without password CNY 200) and Obama enrolled for face
    pay; the host takes still photos (no liveness check), as in the demo."""
    yield from _pay_lane(tmp_path, private_pcscd, insert_card, lane_location, photos, face_liveness=False)


@pytest.fixture
def live_pay_lane(tmp_path, private_pcscd, insert_card, lane_location, photos):  # noqa: F811
    """The same, with a host that requires the head-turn check."""
    yield from _pay_lane(tmp_path, private_pcscd, insert_card, lane_location, photos, face_liveness=True)


def _pay_lane(tmp_path, private_pcscd, insert_card, lane_location, photos, face_liveness):  # noqa: F811
    wallets = ThreadedWallets({WALLET_ACCOUNT: START}, WALLET_PASSWORD, no_password_limit=200_00,
                              notify_schedule=(0, 0, 0), http_timeout=3.0, reuse_keys=True).start()
    try:
        book = wallets.services.books[Wallet.ALIPAY]
        book.add_account("obama", WALLET_PASSWORD, START)
        book.agree("obama", WALLET_PASSWORD)
        wallets.services.save(tmp_path / "host" / "wallets" / "providers.json")
        for lane in build_card_lane(tmp_path, private_pcscd, insert_card, lane_location, qr_wait=0.5, face_liveness=face_liveness,
                                    qr_poll=PollPolicy(first=0.2, factor=1.5, max_interval=1.0, total=20.0)):
            lane.host.service.face.enrol_templates(
                "obama", [photos["obama.jpg"].template, photos["obama2.jpg"].template], "alipay:obama",
                FACE_PASSCODE)
            lane.wallets = wallets
            yield lane
    finally:
        wallets.stop()


class LaneCustomer(Customer):
    """The demo's customer panel, with the lane's test card for key 1."""

    def tap(self, key: str) -> str:
        self.lane.tap()
        return "test card"


def make_app(lane, tmp_path, faces=None, tap_timeout: float = 10) -> CashierApp:
    config = TerminalConfig(TERMINAL, MERCHANT, port=lane.host.port, state_dir=lane.state, location=SITE_SPEC)
    terminal = TerminalApp(config, lane.keys, lane.session, Journal(lane.state / "journal.db"))
    scanner, faces = ShownPictures(name="test camera"), faces or ShownPhotos()
    customer = LaneCustomer(None, tmp_path, (None, None), lane.wallets, scanner, faces, tmp_path / "shown")
    customer.lane = lane
    return CashierApp(terminal, customer=customer, tap_timeout=tap_timeout, scanner=scanner, faces=faces,
                      scanner_label="test camera")


def balance(lane, wallet: Wallet, account: str = WALLET_ACCOUNT) -> int:
    return lane.wallets.balance(wallet, account)


async def start_sale(pilot, amount: str) -> None:
    await pilot.press("s")
    await pilot.press(*("full_stop" if c == "." else c for c in amount), "enter")
    await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ == "CollectScreen")


async def enter_passcode(pilot, digits: str) -> None:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, PinScreen) and pilot.app.screen.pad_layout)
    pad = pilot.app.screen.pad_layout
    keys = {p: k for k, p in KEY_POSITIONS.items()}
    await pilot.press(*(keys[pad.index(int(d))] for d in digits))
    await pilot.press("enter")


async def test_qr_sale_with_the_customers_code_then_refund(pay_lane, tmp_path):
    app = make_app(pay_lane, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_sale(pilot, "12.50")
        await pilot.press("5")  # the customer shows the WeChat Pay code
        done = await shown_result(pilot)
        assert done.result.approved, done.result.message
        text = screen_text(app)
        assert "PAID BY WeChat Pay code" in text and "AMOUNT  CNY 12.50" in text
        assert balance(pay_lane, Wallet.WECHAT) == START - 12_50
        await pilot.press("enter", "h")
        await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ == "HistoryScreen")
        await pilot.press("f")
        await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ == "RefundAmountScreen")
        pilot.app.screen.query_one("#refund-amount").value = "2.50"
        await pilot.press("enter")
        refund = await shown_result(pilot)
        assert refund.result.approved and refund.result.entry.kind == "refund"
        assert balance(pay_lane, Wallet.WECHAT) == START - 10_00


async def test_a_code_above_the_no_password_limit_waits_for_the_customer(pay_lane, tmp_path):
    app = make_app(pay_lane, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_sale(pilot, "250")
        await pilot.press("4")  # Alipay code, above CNY 200: the wallet asks the customer to confirm
        await wait_for(pilot, lambda: "User paying" in screen_text(app))
        await pilot.press("c")  # the customer confirms in the wallet app
        done = await shown_result(pilot)
        assert done.result.approved, done.result.message
        assert balance(pay_lane, Wallet.ALIPAY) == START - 250_00


async def test_merchant_qr_paid_with_the_wallet_app(pay_lane, tmp_path):
    app = make_app(pay_lane, tmp_path)
    async with app.run_test(size=(120, 50)) as pilot:
        await start_sale(pilot, "25.80")
        await pilot.press("u")  # the cashier shows the UnionPay QR
        await wait_for(pilot, lambda: isinstance(app.screen, MerchantQrScreen) and app.screen.shown is not None)
        assert "▀" in str(app.screen.query_one("#merchant-qr").render())  # drawn on the screen
        await pilot.press("p")  # the customer photographs it and pays in the app
        done = await shown_result(pilot)
        assert done.result.approved, done.result.message
        assert "PAID BY UnionPay QR merchant QR" in screen_text(app)
        assert balance(pay_lane, Wallet.UNIONPAY) == START - 25_80


async def test_a_withdrawn_merchant_qr_cannot_be_paid(pay_lane, tmp_path):
    app = make_app(pay_lane, tmp_path)
    async with app.run_test(size=(120, 50)) as pilot:
        await start_sale(pilot, "9.00")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, MerchantQrScreen) and app.screen.shown is not None)
        url = app.screen.shown.url
        await pilot.press("escape")
        # back on the collect screen, once drawn (switching and mounting are separate steps)
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CollectScreen"
                       and "QR withdrawn" in screen_text(app))
        with pytest.raises(WalletAppError) as refused:  # too late: the wallet refuses
            app.customer.pay_qr(url)
        assert refused.value.reason == "order_closed"
        assert balance(pay_lane, Wallet.ALIPAY) == START


async def test_face_sale_wrong_passcode_then_right(pay_lane, tmp_path):
    app = make_app(pay_lane, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_sale(pilot, "15.00")
        await pilot.press("9")  # a photo without a face: a plain message, the wait goes on
        await wait_for(pilot, lambda: "Face not usable" in screen_text(app))
        await pilot.press("7")  # the enrolled customer
        await enter_passcode(pilot, "111112")
        await wait_for(pilot, lambda: isinstance(app.screen, PinScreen) and "Wrong passcode" in screen_text(app))
        assert "tries left" in screen_text(app)
        await enter_passcode(pilot, FACE_PASSCODE)
        done = await shown_result(pilot)
        assert done.result.approved, done.result.message
        assert "PAID BY face, Alipay" in screen_text(app) and FACE_PASSCODE not in screen_text(app)
        assert balance(pay_lane, Wallet.ALIPAY, "obama") == START - 15_00


async def test_an_unknown_face_is_declined_with_a_next_step(pay_lane, tmp_path):
    app = make_app(pay_lane, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_sale(pilot, "3.00")
        await pilot.press("8")
        done = await shown_result(pilot)
        assert not done.result.approved and "not recognised" in screen_text(app).lower()
        assert "pays by card or QR" in screen_text(app)


async def test_settlement_with_card_qr_and_face_sales(pay_lane, tmp_path):
    app = make_app(pay_lane, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        assert (await sell(pilot, "10.00")).result.approved  # card (key 1 taps it)
        await pilot.press("enter")
        pay_lane.card.vcard.remove()  # the card leaves the reader: the next sales are not card sales
        pay_lane.card.vcard = None
        await start_sale(pilot, "20.00")
        await pilot.press("6")
        assert (await shown_result(pilot)).result.approved
        await pilot.press("enter")
        await start_sale(pilot, "15.00")
        await pilot.press("7")
        await enter_passcode(pilot, FACE_PASSCODE)
        assert (await shown_result(pilot)).result.approved
        await pilot.press("enter", "t")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "SettlementScreen")
        table = str(app.screen.query_one("#totals").render_line(0))
        await pilot.press("s")
        settled = await shown_result(pilot)
        assert settled.result.approved and settled.result.message == "BALANCED", (settled.result.message, table)
        totals = pay_lane.host.service.ledger.totals(TERMINAL, settled.result.next_step.split()[1])
        assert (totals.card.sale_amount, totals.qr.sale_amount, totals.face.sale_amount) == (10_00, 20_00, 15_00)


async def test_face_pay_with_a_live_camera_and_the_head_turn_check(live_pay_lane, tmp_path, frames):  # noqa: F811
    """`pos run --camera`: the cashier presses f, the customer turns the head as asked (here
    a synthetic turn, tests/face/synth.py), and a host that requires liveness accepts it."""
    from terminal.face.capture import CameraFaces, SimulatedCamera
    from terminal.face.liveness import Challenge
    from tests.face.test_liveness import sequence

    camera = CameraFaces(SimulatedCamera(sequence(frames, "obama3.jpg")), new_challenge=lambda: Challenge("left"))
    app = make_app(live_pay_lane, tmp_path, faces=camera)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_sale(pilot, "6.60")
        await pilot.press("f")
        await wait_for(pilot, lambda: "turn your head to your left" in screen_text(app))
        await enter_passcode(pilot, FACE_PASSCODE)
        done = await shown_result(pilot)
        assert done.result.approved, done.result.message
        assert balance(live_pay_lane, Wallet.ALIPAY, "obama") == START - 6_60


async def test_a_still_photo_is_refused_by_a_host_that_requires_liveness(live_pay_lane, tmp_path):
    app = make_app(live_pay_lane, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_sale(pilot, "6.60")
        await pilot.press("7")
        done = await shown_result(pilot)
        assert not done.result.approved and "use the camera, not a photo" in screen_text(app)


async def test_the_reader_keeps_waiting_for_a_tap_while_a_code_or_face_may_come(pay_lane, tmp_path):
    app = make_app(pay_lane, tmp_path, tap_timeout=1)
    async with app.run_test(size=(120, 40)) as pilot:
        await start_sale(pilot, "4.00")
        await pilot.pause(2.5)  # two tap waits ran out in the TEE; the reader was asked again each time
        assert "Card reader" not in screen_text(app)
        await pilot.press("1")
        done = await shown_result(pilot)
        assert done.result.approved and done.result.channel == "card", done.result.message
