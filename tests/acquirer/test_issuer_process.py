"""The simulated issuer in its own process, behind a real host on loopback: answers are on
the issuer's disk before the host hears them, a PIN crosses only under the issuer zone
key, and an issuer process that dies answers 98, is replaced, and gets a reversal advice
for every request it left unanswered."""
from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

from acquirer.protocol import ResponseCode

from .conftest import MEASUREMENT



def balance(lane, card=None) -> int:
    return lane.issuer.account((card or lane.card).pan).balance  # the desk's connection: the file itself


def decisions(lane, operation: str) -> list[tuple[str, str]]:
    """(stan, code) of the issuer's decisions of one kind, read from its file."""
    db = sqlite3.connect(lane.host.service.state / "issuer.db")
    try:
        return db.execute("SELECT stan, code FROM decisions WHERE operation = ? ORDER BY id", (operation,)).fetchall()
    finally:
        db.close()


def issuer_pid(lane) -> int:
    proc = lane.host.service.issuer_process._proc
    assert proc is not None and proc.returncode is None
    return proc.pid


def test_a_sale_is_decided_in_the_issuer_process_and_on_its_disk_before_the_answer(lane):
    before = balance(lane)
    out = lane.session.sale(1234, lane.card_data(1234))
    assert out.approved
    assert issuer_pid(lane) != os.getpid() and lane.host.service.issuer_process.started == 1
    assert balance(lane) == before - 1234  # read through another connection: committed


def test_a_pin_crosses_to_the_issuer_under_its_zone_key_after_the_terminal_keys_rotate(lane):
    card = lane.card  # its PIN on file is 1234
    lane.session.sign_on(MEASUREMENT)  # a new TPK: the issuer process never held the old one either
    right = lane.keys.pin_block("1234", card.pan)
    assert lane.session.sale(300_00, lane.card_data(300_00, pin_block=right)).approved
    wrong = lane.keys.pin_block("1111", card.pan)
    out = lane.session.sale(300_00, lane.card_data(300_00, pin_block=wrong))
    assert out.code == ResponseCode.INCORRECT_PIN.value and "tries left" in out.text


def test_a_dead_issuer_process_answers_98_is_replaced_and_gets_a_reversal_advice(lane):
    svc = lane.host.service
    assert lane.session.sale(100, lane.card_data(100)).approved
    pid = issuer_pid(lane)
    os.kill(pid, signal.SIGSTOP)  # hung with the next request unread...
    start = balance(lane)
    answer = {}
    sale = threading.Thread(target=lambda: answer.setdefault("out", lane.session.sale(700, lane.card_data(700))))
    sale.start()
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)  # ...then gone
    sale.join(10)
    assert answer["out"].code == ResponseCode.ISSUER_TIMEOUT.value
    assert balance(lane) == start  # never decided
    assert lane.session.sale(200, lane.card_data(200)).approved  # by a new process
    assert svc.issuer_process.started == 2
    deadline = time.time() + 5
    while time.time() < deadline and not decisions(lane, "reversal"):
        time.sleep(0.05)
    (advice,) = decisions(lane, "reversal")
    assert advice == (answer["out"].stan, ResponseCode.ORIGINAL_NOT_FOUND.value)  # nothing approved to undo
    assert balance(lane) == start - 200


def test_requests_and_answers_cross_the_pipe_whole():
    """Both travel as plain tuples: every field must survive (a new field must be added there)."""
    import pickle

    from acquirer.channels.base import CardAuthorisation, CardResult, Operation

    request = CardAuthorisation(Operation.REFUND, "6214988600000100001", "01", "2712", 100, "156", "T0000001",
                                "898440358120001", "000002", {0x9F26: bytes(8)}, bytes(16), "issuer-sim.ZPK", 500,
                                "000001", ("relay-suspected",))
    answer = CardResult(ResponseCode.APPROVED, "A1B2C3", bytes(10), "refunded", 12_345)
    assert pickle.loads(pickle.dumps(request)) == request and pickle.loads(pickle.dumps(answer)) == answer
    assert "6214988600000100001" not in repr(request)


def test_the_issuer_process_reads_the_same_requests_as_the_pipe_carries():
    """Requests and answers are built off the pipe without the dataclasses' __init__
    (base._authorisation, base.card_result): they must be exactly what the host sent,
    whatever pieces the pipe delivers them in, with objects repeated inside a message (the
    unpickler's memo) and messages of every kind."""
    import random

    from acquirer.channels.base import CardAuthorisation, CardResult, Operation, card_result
    from acquirer.childproc import Messages, pack

    rng = random.Random(5)
    same = b"\x01\x56"  # one object twice in a message: the second is a memo reference
    sent = [(n, CardAuthorisation(op, f"62149886{n:011d}", "01", "2712", 100 + n, "156", f"T{n % 3:07d}",
                                  "898440358120001", f"{n:06d}",
                                  {0x9F1A: same, 0x5F2A: same, 0x9F26: bytes([n]) * 8} if n % 4 else {},
                                  bytes(16) if n % 5 == 0 else None, "channel/issuer-sim/ZPK" if n % 5 == 0 else None,
                                  500 if op is not Operation.SALE else None, "000001" if n % 2 else None,
                                  ("relay-suspected",) if n % 7 == 0 else ()))
            for n, op in zip(range(60), [*Operation] * 15)]
    answers = [(n, CardResult(code, f"{n:06d}" if n % 2 else "", bytes([n]) * 10 if n % 3 else b"", f"text {n}",
                              n * 100 if n % 4 else None))
               for n, code in zip(range(60), [*ResponseCode] * 60)]
    wire = b"".join(pack(m) for m in sent + answers)
    messages, got, at = Messages(), [], 0
    while at < len(wire):
        piece = wire[at:at + rng.randrange(1, 700)]
        got += messages.feed(piece)
        at += len(piece)
    assert got == sent + answers
    assert all(type(r) is type(s) and vars(r) == vars(s) for (_, r), (_, s) in zip(got, sent + answers))
    assert all(type(r.operation) is Operation for _, r in got[:60]) and all(
        type(r.code) is ResponseCode for _, r in got[60:])
    assert card_result(ResponseCode.APPROVED, "000001", b"\x01" * 10, "approved", 5) == CardResult(
        ResponseCode.APPROVED, "000001", b"\x01" * 10, "approved", 5)
    assert vars(card_result(ResponseCode.INVALID_CARD, text="x")) == vars(CardResult(ResponseCode.INVALID_CARD,
                                                                                    text="x"))


def test_a_request_message_gives_the_issuer_process_the_request_pickling_it_would():
    """request_message sends a request's fields, not the object: what the child builds from
    them (base._authorisation) must be what unpickling the object gave, field for field."""
    import pickle

    from acquirer.channels.base import CardAuthorisation, Operation, _authorisation
    from acquirer.channels.remote import request_message
    from acquirer.childproc import Messages, pack

    sent = [CardAuthorisation(op, f"62149886{n:011d}", "01", "2712", 100 + n, "156", "T0000001", "898440358120001",
                              f"{n:06d}", {0x9F26: bytes([n]) * 8} if n % 2 else {}, bytes(16) if n % 3 == 0 else None,
                              "channel/issuer-sim/ZPK" if n % 3 == 0 else None, 500 if n % 4 else None,
                              "000001" if n % 4 else None, ("relay-suspected",) if n % 5 == 0 else ())
            for n, op in zip(range(12), [*Operation] * 3)]
    got = Messages().feed(b"".join(request_message(n, r) for n, r in enumerate(sent)))
    for n, (request, (ident, fields)) in enumerate(zip(sent, got)):
        built, unpickled = _authorisation(*fields), pickle.loads(pack(request)[4:])
        assert ident == n and built == unpickled == request
        assert type(built.operation) is Operation and vars(built) == vars(unpickled)


def _issuer_child(tmp_path, answer_every: str):
    """The issuer's process as the host starts it, on accounts with one PBOC card."""
    import subprocess

    from acquirer.channels.issuer import IssuerSimulator
    from acquirer.childproc import PROJECT_ROOT, Messages, command
    from keys.emv import CardFamily
    from keys.hsm import HSM
    from tests.acquirer.cards import personalise

    hsm = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    issuer = IssuerSimulator(hsm, tmp_path / "issuer.db", durable=False)
    card = personalise(hsm, issuer, CardFamily.PBOC_SM4, balance=10_000)
    zpk = issuer.zpk_name
    issuer.close()
    hsm.close()
    argv, env = command("acquirer.channels.remote", str(tmp_path / "hsm.db"), str(tmp_path / "lmk"),
                        str(tmp_path / "issuer.db"), zpk, answer_every)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=PROJECT_ROOT)
    messages = Messages()
    ready: list = []
    while not ready:
        ready = messages.feed(os.read(proc.stdout.fileno(), 1 << 16))
    assert ready == [("ready",)]
    return proc, messages, card


def _sales(card, amounts) -> bytes:
    from acquirer.channels.base import CardAuthorisation, Operation
    from acquirer.channels.remote import request_message

    return b"".join(request_message(n, CardAuthorisation(Operation.SALE, card.pan, card.psn, "2712", amount, "156", "T0000001",
                                               "898440358120001", f"{n:06d}", card.field55(amount)))
                    for n, amount in enumerate(amounts, 1))


def test_the_issuer_process_answers_each_commit_in_one_message_after_the_commit(tmp_path):
    """Requests waiting together are decided in order and committed as a group; its answers
    leave as one message, the list of (id, result), once they are in the file; no more than
    answer_every decisions are held back."""
    proc, messages, card = _issuer_child(tmp_path, "2")
    outside = sqlite3.connect(tmp_path / "issuer.db")
    try:
        proc.stdin.write(_sales(card, (4_000, 9_000, 5_000)))  # one write: the child reads all three at once
        proc.stdin.flush()
        got: list = []
        while sum(map(len, got)) < 3:
            got += messages.feed(os.read(proc.stdout.fileno(), 1 << 16))
            stored = outside.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
            assert stored >= sum(map(len, got))  # every answer read is a decision on disk
        assert [[ident for ident, _ in group] for group in got] == [[1, 2], [3]]
        results = [result for group in got for _, result in group]
        assert [r.code for r in results] == [ResponseCode.APPROVED, ResponseCode.INSUFFICIENT_FUNDS,
                                             ResponseCode.APPROVED]
        assert results[2].balance == 10_000 - 4_000 - 5_000
    finally:
        outside.close()
        proc.stdin.close()
        assert proc.wait(30) == 0
        proc.stdout.close()
