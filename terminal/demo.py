"""The one-command demo: an acquirer, a private pcscd with the virtual reader, test cards,
the terminal's secure world, and the cashier UI, all on embedded defaults.

    pos demo [--state var/demo] [--fresh]

Everything is made here (merchant, terminal, card personalisation, issuer accounts),
nothing is fetched. The customer side is a panel of keys in the UI: while the terminal
waits for a tap, 1 taps the UnionPay SM card, 2 the international card, 3 the phone.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hardware.location.simfile import write_position

MERCHANT, TERMINAL = "898440358120001", "T0000001"
DEMO_PIN = "123456"
SITE = (31.2304, 121.4737)  # the demo shop (People's Square, Shanghai); the fence is 500 m around it
CARDS = {"1": ("pboc-sm-debit", "UnionPay SM card"), "2": ("qvsdc-rsa", "international card"),
         "3": ("hce-wallet", "phone (HCE)")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Customer:
    """The customer's side of the counter: puts a demo card on the virtual reader."""

    pcscd: object
    cards_dir: Path
    hsm_paths: tuple[Path, Path]
    apps: dict = field(default_factory=dict)
    current: object = None
    lock: threading.Lock = field(default_factory=threading.Lock)

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

    def start_host(self) -> int:
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "acquirer.cli", "--state", str(self.host_state), "serve",
                                 "--port", str(port), "--metrics-port", "0"],
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

    def start_terminal(self, port: int, code: str | None):
        from acquirer.registry import Registry
        from terminal.app import TerminalApp, TerminalConfig

        if not self.position_file.exists():  # the terminal stands in the shop until someone carries it away
            write_position(self.position_file, *SITE)
        config = TerminalConfig(TERMINAL, MERCHANT, port=port, state_dir=self.term_state,
                                reader=self.pcscd.reader_names[0], ca_keys=str(self.cards_dir / "ca_keys.toml"),
                                location=f"file:{self.position_file}")
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


def run(state: str = "var/demo", fresh: bool = False, headless_check: bool = False) -> int:
    demo = Demo(Path(state), fresh)
    try:
        demo.say("preparing the acquirer (merchant, terminal, issuer accounts, test cards)")
        code = demo.prepare_host()
        port = demo.start_host()
        demo.say(f"acquirer listening on 127.0.0.1:{port}")
        demo.start_reader()
        demo.say(f"private pcscd up with reader '{demo.pcscd.reader_names[0]}'")
        terminal = demo.start_terminal(port, code)
        demo.say(f"terminal {TERMINAL} signed on; batch {terminal.session.batch}")
        if headless_check:
            return 0
        from terminal.ui.app import CashierApp

        customer = Customer(demo.pcscd, demo.cards_dir, (demo.host_state / "hsm.db", demo.host_state / "lmk"))
        CashierApp(terminal, customer=customer, reader_label=demo.pcscd.reader_names[0]).run()
        customer.lift()
        return 0
    finally:
        demo.stop()
