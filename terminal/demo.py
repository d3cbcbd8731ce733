"""The one-command demo: an acquirer, the three wallet simulators, a private pcscd with
the virtual reader, test cards, face enrolment of the sample photos, the terminal's
secure world, and the cashier UI, all on embedded defaults.

    pos demo [--state var/demo] [--fresh]

Everything is made here (merchant, terminal, card personalisation, issuer accounts,
wallet accounts, face templates), nothing is fetched; a second start reuses what the
first made. The wallets keep their books in memory: balances start afresh each time.

The customer side is a panel of keys in the UI (`Customer.help`): while the terminal
waits, 1-3 tap a card, 4-6 show a wallet's payment code to the scanner (a PNG read by
zbar), 7-9 show a face photo to the camera, c confirms a payment in the wallet app;
while the merchant QR is shown, p scans it with the wallet app and pays.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from hardware.location.simfile import write_position

MERCHANT, TERMINAL = "898440358120001", "T0000001"
DEMO_PIN = "123456"
SITE = (31.2304, 121.4737)  # the demo shop (People's Square, Shanghai); the fence is 500 m around it
CARDS = {"1": ("pboc-sm-debit", "UnionPay SM card"), "2": ("qvsdc-rsa", "international card"),
         "3": ("hce-wallet", "phone (HCE)")}
WALLET_PASSWORD = "pay-2468"  # every demo wallet account's payment password
WALLET_ACCOUNT = "alice"  # shows payment codes and scans merchant QRs, in every wallet
NO_PASSWORD_LIMIT = 200_00  # above CNY 200 a shown code waits for the customer to confirm in the app
FACE_CUSTOMER, FACE_WALLET, FACE_PASSCODE = "obama", "alipay:obama", "802413"
FACES = Path(__file__).resolve().parents[1] / "tests" / "data" / "faces"
FACE_ENROL = ("obama.jpg", "obama2.jpg")
FACE_KEYS = {"7": ("obama3.jpg", "enrolled customer"), "8": ("astronaut.png", "face nobody enrolled"),
             "9": ("coffee.png", "photo without a face")}
CODE_KEYS = {"4": "alipay", "5": "wechat", "6": "unionpay"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Customer:
    """The customer's side of the counter: puts a demo card on the virtual reader, shows a
    wallet's payment code (a PNG the scanner reads), holds up a face photo, scans the
    merchant's QR and confirms payments in the wallet app."""

    pcscd: object
    cards_dir: Path
    hsm_paths: tuple[Path, Path]
    wallets: object = None  # acquirer.wallets.threaded.ThreadedWallets
    scanner: object = None  # hardware.scanners.ShownPictures
    faces: object = None  # terminal.face.capture.ShownPhotos
    pictures: Path = Path(".")
    apps: dict = field(default_factory=dict)
    current: object = None
    last_wallet: str = "alipay"
    lock: threading.Lock = field(default_factory=threading.Lock)
    shown: int = 0
    position_file: Path | None = None  # the simulated receiver the terminal's TEE reads
    site: tuple[float, float] = SITE  # where the shop is

    def carry(self) -> str:
        """Someone carries the terminal 4 km east (across the river, in the demo), or
        brings it back to the shop."""
        import json

        from geographiclib.geodesic import Geodesic

        if self.position_file is None:
            return "This terminal has no simulated receiver to move"
        try:
            here = json.loads(self.position_file.read_text())
            home = abs(here["latitude"] - self.site[0]) + abs(here["longitude"] - self.site[1]) < 1e-6
        except (OSError, ValueError, KeyError):
            home = False
        away = Geodesic.WGS84.Direct(self.site[0], self.site[1], 90.0, 4_000.0)
        write_position(self.position_file, *((away["lat2"], away["lon2"]) if home else self.site))
        return ("The terminal is carried 4 km away (press m again to bring it back); try a sale" if home else
                "The terminal is back in the shop")

    def help(self, where: str) -> str:
        if where == "merchant-qr":
            return "Demo customer: p scans this QR with the wallet app and pays"
        return ("Demo customer:  tap  1 UnionPay card  2 international card  3 phone\n"
                "  show a payment code  4 Alipay  5 WeChat Pay  6 UnionPay   c confirm it in the wallet app\n"
                "  show a face  7 enrolled customer  8 a face nobody enrolled  9 a photo without a face")

    def press(self, key: str, qr_url: str | None = None) -> str:
        if key in CARDS:
            return f"The customer taps the {self.tap(key)}..."
        if key in CODE_KEYS and self.wallets is not None:
            return self.show_code(CODE_KEYS[key])
        if key in FACE_KEYS and self.faces is not None:
            return self.show_face(key)
        if key == "c" and self.wallets is not None:
            return self.confirm()
        if key == "p" and qr_url and self.wallets is not None:
            return self.pay_qr(qr_url)
        return ""

    def _picture(self, name: str) -> Path:
        self.shown += 1
        self.pictures.mkdir(parents=True, exist_ok=True)
        return self.pictures / f"{self.shown:04d}-{name}.png"

    def show_code(self, wallet: str) -> str:
        from acquirer.wallets.codes import Wallet
        from acquirer.wallets.customer_cli import payment_code, render_png

        code = self.wallets.run(payment_code(self.wallets.app_url(Wallet(wallet)), WALLET_ACCOUNT,
                                             WALLET_PASSWORD))["code"]
        png = render_png(code, self._picture(f"{wallet}-code"))
        self.last_wallet = wallet
        self.scanner.show(png)
        return f"The customer shows the {wallet} payment code ({png.name}) to the scanner..."

    def show_face(self, key: str) -> str:
        name, what = FACE_KEYS[key]
        self.faces.show(FACES / name)
        return f"The customer looks at the camera ({what}: {name})..."

    def confirm(self) -> str:
        from acquirer.wallets.codes import Wallet
        from acquirer.wallets.customer_cli import confirm

        done = self.wallets.run(confirm(self.wallets.app_url(Wallet(self.last_wallet)), WALLET_ACCOUNT,
                                        WALLET_PASSWORD))
        return f"The customer confirmed CNY {done['amount'] / 100:,.2f} in the {self.last_wallet} app"

    def pay_qr(self, url: str) -> str:
        """Photograph the QR on the screen (a PNG of it) and pay it with the wallet it belongs to."""
        from acquirer.wallets.customer_cli import pay_merchant_qr, render_png

        png = render_png(url, self._picture("merchant-qr"))
        paid = self.wallets.run(pay_merchant_qr(self.wallets.services.app_urls, WALLET_ACCOUNT, WALLET_PASSWORD,
                                                str(png)))
        return f"The customer paid CNY {paid['amount'] / 100:,.2f} with {paid['wallet']}: waiting for the host..."

    def tap(self, key: str) -> str:
        from hardware.emvcard import load_card
        from hardware.vcard import VirtualCard
        from keys.hsm import HSM

        profile, label = CARDS[key]
        with self.lock:
            self.lift()
            app = self.apps.get(profile)
            if app is None:
                hsm = HSM.open(*self.hsm_paths)
                try:
                    app = self.apps[profile] = load_card(profile, self.cards_dir, hsm)
                finally:
                    hsm.close()
            self.current = VirtualCard(app, port=self.pcscd.vpcd_port)
            self.current.insert(timeout=5)
        threading.Timer(8.0, self.lift).start()  # a customer takes the card away after a while
        return label

    def lift(self) -> None:
        card, self.current = self.current, None
        if card is not None:
            card.remove(wait=False)


class Demo:
    def __init__(self, state: Path, fresh: bool = False):
        self.state = state
        if fresh and state.exists():
            shutil.rmtree(state)
        self.host_state = state / "acquirer"
        self.term_state = state / "terminal"
        self.cards_dir = state / "cards"
        self.position_file = state / "position.json"  # the simulated receiver the TEE reads
        for d in (self.host_state, self.term_state, self.cards_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._procs: list[subprocess.Popen] = []
        self.pcscd = None
        self.terminal = None
        self.wallets = None

    def say(self, text: str) -> None:
        print(f"demo: {text}", flush=True)

    def prepare_host(self) -> str | None:
        """Merchant, terminal, the demo cards' issuer accounts; the activation code if new."""
        from acquirer.channels.issuer import IssuerSimulator
        from acquirer.registry import Registry, TerminalStatus
        from hardware.emvcard import load_card
        from keys.hsm import HSM

        hsm = HSM.open(self.host_state / "hsm.db", self.host_state / "lmk")
        reg = Registry(self.host_state / "registry.db")
        issuer = IssuerSimulator(hsm, self.host_state / "issuer.db", durable=False)
        try:
            if not reg.merchants():
                reg.add_merchant(MERCHANT, "Demo corner shop", latitude=SITE[0], longitude=SITE[1], radius_m=500)
            code = None
            t = reg.find_terminal(TERMINAL)
            if t is None:
                code = reg.add_terminal(TERMINAL, MERCHANT)
            elif t.status is not TerminalStatus.ACTIVE:
                code = reg.new_activation_code(TERMINAL)
            self._enrol_faces(hsm)
            for profile, label in CARDS.values():
                card = load_card(profile, self.cards_dir, hsm).profile
                if issuer.account(card.pan) is None:
                    issuer.open_account(card.pan, profile=card.name, family=card.family,
                                        expiry=f"{card.expiry[0] % 100:02d}{card.expiry[1]:02d}", psn=card.psn,
                                        balance=100_000_00, pin=DEMO_PIN)
            return code
        finally:
            issuer.close()
            reg.close()
            hsm.close()

    def _enrol_faces(self, hsm) -> None:
        """The sample photos' customer, linked to a wallet account, once. A customer the
        last session locked (too many wrong passcodes) is unlocked: a demo starts clean."""
        from acquirer.face import FacePay

        if not all((FACES / name).is_file() for name in FACE_ENROL):
            self.say(f"face photos not found in {FACES}: face pay is off")
            return
        pay = FacePay(self.host_state / "face.db", hsm, require_liveness=False)
        try:
            known = pay.store.customer(FACE_CUSTOMER)
            if known is None:
                self.say("enrolling the sample face (computing templates)")
                pay.enrol(FACE_CUSTOMER, [FACES / n for n in FACE_ENROL], FACE_WALLET, FACE_PASSCODE)
            elif known.locked:
                pay.unlock(FACE_CUSTOMER, operator="demo", reason="demo restart")
        finally:
            pay.close()

    def start_wallets(self):
        """The three wallet simulators (books in memory) and their accounts; the host's
        credentials for them go to its state before it starts."""
        from acquirer.wallets.codes import Wallet
        from acquirer.wallets.threaded import ThreadedWallets

        self.wallets = ThreadedWallets({WALLET_ACCOUNT: 5_000_00}, WALLET_PASSWORD,
                                       no_password_limit=NO_PASSWORD_LIMIT, notify_schedule=(0, 2, 5, 15)).start()
        wallet, account = FACE_WALLET.split(":")
        book = self.wallets.services.books[Wallet(wallet)]
        book.add_account(account, WALLET_PASSWORD, 2_000_00)
        book.agree(account, WALLET_PASSWORD)  # face pay may debit it once face and passcode match
        self.wallets.services.save(self.host_state / "wallets" / "providers.json")
        return self.wallets

    def start_host(self) -> int:
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "acquirer.cli", "--state", str(self.host_state), "serve",
                                 "--port", str(port), "--metrics-port", "0", "--qr-wait", "2",
                                 "--face-liveness", "off"],
                                stdout=subprocess.PIPE, stderr=open(self.state / "acquirer.log", "a"), text=True)
        self._procs.append(proc)
        line = proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"the acquirer did not start (see {self.state / 'acquirer.log'})")
        return port

    def start_reader(self):
        from hardware.pcscd import PrivatePcscd
        from hardware.reader import PcscContext

        self.pcscd = PrivatePcscd().start()
        self._keepalive = PcscContext()  # pcscd --auto-exit quits without a client
        return self.pcscd

    def location(self) -> str:
        """The TEE's location source: the one saved in Settings, else the demo's simulated
        receiver (a file the demo writes: the terminal stands in the shop)."""
        from terminal.settings import DeviceSettings, SettingsError

        try:
            saved = DeviceSettings.load(self.term_state).location
        except SettingsError as exc:
            self.say(f"{exc}; using the demo's simulated receiver")
            saved = ""
        return saved or f"file:{self.position_file}"

    def start_terminal(self, port: int, code: str | None):
        from acquirer.registry import Registry
        from terminal.app import TerminalApp, TerminalConfig

        if not self.position_file.exists():  # the terminal stands in the shop until someone carries it away
            write_position(self.position_file, *SITE)
        config = TerminalConfig(TERMINAL, MERCHANT, port=port, state_dir=self.term_state,
                                reader=self.pcscd.reader_names[0], ca_keys=str(self.cards_dir / "ca_keys.toml"),
                                location=self.location())
        os.environ.update(self.pcscd.env)  # the TEE process inherits the way to our pcscd
        self.terminal = TerminalApp.start(config)
        reg = Registry(self.host_state / "registry.db")
        try:
            reg.allow_measurement(self.terminal.measurement(), "demo terminal build", actor="demo")
        finally:
            reg.close()
        if self.terminal.keys.status().state == "TAMPERED":
            raise RuntimeError("the terminal's sealed store is damaged: run `pos demo --fresh`")
        if code is not None:
            self.say("activating the terminal, downloading its master key, signing on")
            self.terminal.provision(code)
        else:
            self.terminal.sign_on()
        return self.terminal

    def stop(self) -> None:
        if self.terminal is not None:
            self.terminal.close()
        for proc in self._procs:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.pcscd is not None:
            self._keepalive.close()
            self.pcscd.stop()
        if self.wallets is not None:
            self.wallets.stop()


def run(state: str = "var/demo", fresh: bool = False, headless_check: bool = False) -> int:
    demo = Demo(Path(state), fresh)
    try:
        demo.say("preparing the acquirer (merchant, terminal, issuer accounts, test cards, face enrolment)")
        code = demo.prepare_host()
        demo.start_wallets()
        demo.say("wallet simulators up: Alipay, WeChat Pay, UnionPay QR")
        port = demo.start_host()
        demo.say(f"acquirer listening on 127.0.0.1:{port}")
        demo.start_reader()
        demo.say(f"private pcscd up with reader '{demo.pcscd.reader_names[0]}'")
        terminal = demo.start_terminal(port, code)
        demo.say(f"terminal {TERMINAL} signed on; batch {terminal.session.batch}")
        if headless_check:
            return 0
        from hardware.scanners import ShownPictures
        from terminal.face.capture import ShownPhotos
        from terminal.settings import SCANNER_LABELS, DeviceSettings, open_scanner
        from terminal.ui.app import CashierApp

        scanner, faces = ShownPictures(name="demo camera"), ShownPhotos()
        customer = Customer(demo.pcscd, demo.cards_dir, (demo.host_state / "hsm.db", demo.host_state / "lmk"),
                            demo.wallets, scanner, faces, demo.state / "customer",
                            position_file=demo.position_file if demo.location().startswith("file:") else None)
        try:
            choice = DeviceSettings.load(demo.term_state, scanner="demo").scanner
            chosen = open_scanner(choice, scanner)
        except Exception as exc:  # a saved scanner that is not here now: the demo's own
            demo.say(f"saved scanner not usable ({exc}); using the demo camera")
            choice, chosen = "demo", scanner
        CashierApp(terminal, customer=customer, reader_label=demo.pcscd.reader_names[0], scanner=chosen,
                   scanner_label=SCANNER_LABELS[choice], faces=faces, demo_scanner=scanner).run()
        customer.lift()
        return 0
    finally:
        demo.stop()
