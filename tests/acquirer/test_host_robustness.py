"""Provisioning refusals and hostile input: each gets a precise code or a closed connection,
nothing is stored, and the host keeps serving the others."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from acquirer.protocol import (Field60, Frame, PrivateTag, ResponseCode, TxnType, decode, encode, private_fields,
                               read_frame_blocking)
from keys.emv import CardFamily
from keys.errors import EnvelopeError
from keys.tlv import encode_dict
from terminal.online import HostRefused, HostUnavailable, OnlineSession
from terminal.secure.keystore import SecureKeys
from terminal.secure.sealed import SealedStore
from tests.acquirer.cards import luhn_complete, personalise
from tests.acquirer.conftest import MEASUREMENT, MERCHANT, TERMINAL, at_site, start_host

R = ResponseCode


def _events(lane):
    return [r.event.value for r in lane.ledger.journal()]


def test_locked_terminal_is_refused_everything_until_unlocked(lane):
    lane.host.service.registry.set_locked(TERMINAL, True, reason="test")
    out = lane.session.sale(100, lane.card_data(100))
    assert out.code == R.TERMINAL_LOCKED.value
    with pytest.raises(HostRefused, match="L1"):
        lane.session.sign_on(MEASUREMENT)
    assert _events(lane) == []
    lane.host.service.registry.set_locked(TERMINAL, False)
    lane.session.sign_on(MEASUREMENT)
    assert lane.session.sale(100, lane.card_data(100)).approved


def test_unknown_software_measurement_is_refused_at_sign_on(lane):
    with pytest.raises(HostRefused, match="K1: terminal software measurement is not on the allowed list"):
        lane.session.sign_on(bytes(32))


def test_sign_on_rotates_working_keys(lane):
    before = lane.keys.check_values()
    lane.session.sign_on(MEASUREMENT)
    after = lane.keys.check_values()
    assert before["TMK"] == after["TMK"]
    assert all(before[u] != after[u] for u in ("TPK", "TAK", "TDK"))
    hsm = lane.host.service.hsm
    assert hsm.info(f"terminal/{TERMINAL}/TAK").kcv == after["TAK"]
    assert lane.session.sale(100, lane.card_data(100)).approved


def test_activation_code_is_single_use_and_wrong_codes_count(tmp_path):
    host = start_host(tmp_path / "host")
    try:
        reg = host.service.registry
        reg.add_merchant(MERCHANT, "Shop")
        code = reg.add_terminal(TERMINAL, MERCHANT)
        keys = SecureKeys(SealedStore(tmp_path / "tee"))
        s = OnlineSession("127.0.0.1", host.port, TERMINAL, MERCHANT, keys, tmp_path / "j.db")
        with pytest.raises(HostRefused, match="wrong activation code"):
            s.activate("00000000" if code != "00000000" else "11111111")
        s.activate(code)
        other = SecureKeys(SealedStore(tmp_path / "tee2"))
        s2 = OnlineSession("127.0.0.1", host.port, TERMINAL, MERCHANT, other, tmp_path / "j2.db")
        with pytest.raises(HostRefused, match="no activation pending"):
            s2.activate(code)
        # the other device cannot fetch the TMK either: its request is not signed by the bound key
        other.pin_host_key(host.service.hsm.public_key("host/SIGN").to_bytes())
        with pytest.raises(HostRefused, match="K1"):
            s2.download_keys()
        s.close()
        s2.close()
    finally:
        host.stop()


def test_an_envelope_for_another_terminal_is_refused_by_the_secure_world(lane):
    hsm = lane.host.service.hsm
    env = hsm.export_envelope(f"terminal/{TERMINAL}/TMK", lane.keys._device.public_key, "T0000009", "host/SIGN",
                              nonce=bytes(16))
    with pytest.raises(EnvelopeError, match="another terminal"):
        lane.keys.install_tmk(env, TERMINAL, bytes(16))


def _send(port: int, data: bytes, read: bool = True, timeout: float = 5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if not read:
            return None
        try:
            frame = read_frame_blocking(s)
        except (OSError, ValueError):
            return "closed"
        return "closed" if frame is None else decode(frame.message)


def test_malformed_message_gets_format_error_and_nothing_is_stored(lane):
    # the bitmap promises fields 3, 4, 11 and 41; the message stops inside field 4
    bad = Frame(bytes.fromhex("0200") + bytes.fromhex("3020000000800000") + bytes.fromhex("000000" "0000")).encode()
    answer = _send(lane.host.port, bad)
    assert answer["t"] == "0210" and answer["39"] == R.FORMAT_ERROR.value
    garbage = Frame(b"\x99" * 30).encode()
    assert _send(lane.host.port, garbage) == "closed"
    assert _events(lane) == []
    assert lane.session.sale(100, lane.card_data(100)).approved  # still serving


def test_an_mti_the_dialect_does_not_speak_closes_the_connection_and_nothing_is_stored(lane):
    msg = encode({"t": "0999", "11": "000001", "41": TERMINAL, "42": MERCHANT})
    assert _send(lane.host.port, Frame(msg).encode()) == "closed"
    assert _events(lane) == []
    assert lane.session.sale(100, lane.card_data(100)).approved  # still serving


def test_private_data_that_is_not_ber_tlv_gets_a_format_error_naming_field_59(lane):
    # a tag with no length: field 59 cannot be read, so the request goes no further
    msg = encode({"t": "0200", "3": "000000", "4": "000000000100", "11": "000123", "41": TERMINAL, "42": MERCHANT,
                  "59": "DF03"})
    answer = _send(lane.host.port, Frame(msg).encode())
    assert answer["t"] == "0210" and answer["39"] == R.FORMAT_ERROR.value
    assert answer["44"].startswith("field 59: private data is not BER-TLV")
    assert _events(lane) == []
    assert lane.session.sale(100, lane.card_data(100)).approved


def test_unknown_terminal_is_told_so(lane):
    from acquirer.protocol import encode
    msg = encode({"t": "0800", "11": "000001", "41": "T9999999", "42": MERCHANT, "60": "9900000030160"})
    assert _send(lane.host.port, Frame(msg).encode())["39"] == R.TERMINAL_NOT_REGISTERED.value


def test_oversized_frame_closes_the_connection_and_the_host_serves_on(lane):
    assert _send(lane.host.port, b"\xff\xff" + b"x" * 100) == "closed"
    assert lane.session.sale(100, lane.card_data(100)).approved


def test_slow_loris_is_cut_off(lane):
    # half a frame, then silence: the host's read timeout (2 s here) closes the connection
    with socket.create_connection(("127.0.0.1", lane.host.port), timeout=10) as s:
        s.sendall(b"\x00\x40\x60\x00")
        started = time.monotonic()
        assert s.recv(10) == b""  # closed by the host, not by us
        assert time.monotonic() - started < 9
    assert lane.host.service.server.stats["timeouts"] >= 1
    assert lane.session.sale(100, lane.card_data(100)).approved


def test_many_terminals_in_parallel(lane, tmp_path):
    """Terminals selling at the same time, each on its own connection, all complete."""
    from keys.emv import CardFamily
    from tests.acquirer.cards import luhn_complete, personalise
    from tests.acquirer.conftest import provision

    lanes = []
    for i in range(4):
        tid = f"T000010{i}"
        keys, session = provision(lane.host, tid, tmp_path / tid)
        card = personalise(lane.host.service.hsm, lane.issuer, CardFamily.PBOC_SM4, profile=f"p{i}",
                           pan=luhn_complete(f"621498866010{i:06d}"), replace=True)
        lanes.append((keys, session, card))
    outcomes = []

    def one(keys, session, card):
        try:
            for n in range(5):
                data = lane.card_data(100 + n, card, keys=keys)
                outcomes.append(session.sale(100 + n, data).code)
        finally:
            session.close()
    threads = [threading.Thread(target=one, args=args) for args in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes == ["00"] * 20


class _BlackHole:
    """A TCP proxy that forwards the terminal's request to the host and drops the answer:
    the host went away between request and response, as far as the terminal can tell."""

    def __init__(self, target_port: int):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.target = target_port
        self.forwarded = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        conn, _ = self.server.accept()
        frame = read_frame_blocking(conn)
        with socket.create_connection(("127.0.0.1", self.target)) as up:
            up.sendall(frame.encode())
            read_frame_blocking(up)  # the host committed and answered; the answer is lost
        self.forwarded.set()
        conn.close()


def test_host_gone_between_request_and_response_reverses_exactly_once(lane, tmp_path):
    start = lane.issuer.account(lane.card.pan).balance
    hole = _BlackHole(lane.host.port)
    cut = lane.new_session(timeout=2.0, port=hole.port)
    with pytest.raises(HostUnavailable, match="offline, reversal queued"):
        cut.sale(4321, lane.card_data(4321))
    assert hole.forwarded.wait(5)
    assert cut.pending_reversals() == 1
    cut.close()
    # the host restarts on the same files; the terminal (restarted too) sends its reversal first
    state = lane.host.service.state
    lane.host.stop()
    lane.host = start_host(state)
    again = lane.new_session()
    assert again.pending_reversals() == 1
    assert again.flush_reversals() == 1
    assert again.pending_reversals() == 0
    assert lane.issuer.account(lane.card.pan).balance == start
    events = [r.event.value for r in lane.ledger.journal()]
    assert events.count("AUTHORISED") == 1 and events.count("REVERSED") == 1
    assert again.flush_reversals() == 0
    lane.session = again


def test_pipelined_sales_of_one_terminal_keep_their_location_reports_in_order(lane):
    # the host checks fix signatures on worker threads; the fence check must still see a
    # terminal's report counters in the order the requests came, or it refuses replays
    s, keys, service = lane.session, lane.keys, lane.host.service
    cards = [lane.card] + [personalise(service.hsm, service.issuer, CardFamily.PBOC_SM4,
                                       pan=luhn_complete(f"62149886601000{k:04d}")) for k in range(1, 3)]
    frames = []
    for n in range(12):
        amount, card = 100 + n, cards[n % 3]  # four taps per card: under the velocity rule
        fields = {"t": "0200", "3": "000000", "4": f"{amount:012d}", "11": s.next_stan(), "22": "071", "23": "001",
                  "25": "00", "35": keys.seal(f"{card.pan}D2712201{'0' * 8}".encode()).hex().upper(),
                  "41": TERMINAL, "42": MERCHANT, "49": "156",
                  "55": encode_dict(card.field55(amount)).hex().upper(),
                  "60": Field60(TxnType.SALE.value, s.batch).encode(),
                  "59": private_fields({PrivateTag.LOCATION: at_site(keys)()})}
        frames.append(Frame(encode(fields, keys.mac), 0, 1).encode())
    with socket.create_connection(("127.0.0.1", lane.host.port), timeout=10) as sock:
        sock.sendall(b"".join(frames))  # all in flight at once
        codes = [decode(read_frame_blocking(sock).message)["39"] for _ in frames]
    assert codes == ["00"] * len(frames)
    assert lane.host.service.fences.store.last_fix(TERMINAL).counter >= len(frames)
