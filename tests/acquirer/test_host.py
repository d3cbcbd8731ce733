"""Card transactions through a real host on loopback: sale, replay, void, refund, reversal,
query, settlement, and every refusal with a precise code and nothing stored."""
from __future__ import annotations

import socket

import pytest

from acquirer.ledger import Event, Status
from acquirer.protocol import Frame, ResponseCode, decode, read_frame_blocking
from keys.emv import CardFamily
from keys.tlv import flatten
from tests.acquirer.cards import personalise
from tests.acquirer.conftest import TERMINAL

R = ResponseCode


def balance(lane, card=None) -> int:
    return lane.issuer.account((card or lane.card).pan).balance


def journal_events(lane) -> list[str]:
    return [r.event.value for r in lane.ledger.journal()]


def test_sale_is_approved_with_an_arpc_and_journaled(lane):
    before = balance(lane)
    out = lane.session.sale(1234, lane.card_data(1234))
    assert out.approved and len(out.rrn) == 12 and len(out.auth_code) == 6
    assert flatten(bytes.fromhex(out.fields["55"]))[0x91][-2:] == b"00"  # ARPC || ARC
    assert balance(lane) == before - 1234
    txn = lane.ledger.find_original(TERMINAL, batch=out.batch, stan=out.stan)
    assert txn.status is Status.APPROVED and txn.masked_pan == "621498*********0304"
    assert journal_events(lane) == [Event.AUTHORISED.value]


@pytest.mark.parametrize("family", [CardFamily.EMV_TDES])
def test_international_card_sale(lane, family):
    card = personalise(lane.host.service.hsm, lane.issuer, family, profile="intl")
    assert lane.session.sale(500, lane.card_data(500, card)).approved


def _raw_exchange(port: int, frame: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(frame)
        return read_frame_blocking(s).message


def _capture_next_request(lane, amount):
    """Build the exact frame the session would send for a sale, without sending it."""
    from acquirer.protocol import encode
    sent = {}
    real = lane.session._exchange

    def capture(fields, maced):
        sent["frame"] = Frame(encode(fields, lane.keys.mac if maced else None), 0, 1).encode()
        return real(fields, maced)
    lane.session._exchange = capture
    out = lane.session.sale(amount, lane.card_data(amount))
    lane.session._exchange = real
    return out, sent["frame"]


def test_replayed_request_gets_the_original_answer_and_charges_once(lane):
    out, frame = _capture_next_request(lane, 700)
    after_first = balance(lane)
    again = decode(_raw_exchange(lane.host.port, frame))
    assert again["39"] == "00" and again["37"] == out.rrn and again["38"] == out.auth_code
    assert balance(lane) == after_first
    assert journal_events(lane).count(Event.AUTHORISED.value) == 1


def test_wrong_mac_is_refused_and_stores_nothing(lane):
    _, frame = _capture_next_request(lane, 300)
    events = journal_events(lane)
    tampered = bytearray(frame)
    tampered[-1] ^= 0x01
    assert decode(_raw_exchange(lane.host.port, bytes(tampered)))["39"] == R.MAC_ERROR.value
    body = bytearray(frame)
    body[40] ^= 0x01  # inside the MAC-ed data
    assert decode(_raw_exchange(lane.host.port, bytes(body)))["39"] in (R.MAC_ERROR.value, R.FORMAT_ERROR.value)
    assert journal_events(lane) == events


def test_void_in_the_open_batch_credits_the_card(lane):
    start = balance(lane)
    sale = lane.session.sale(2000, lane.card_data(2000))
    void = lane.session.void(sale, 2000)
    assert void.approved
    assert balance(lane) == start
    assert lane.ledger.find_original(TERMINAL, batch=sale.batch, stan=sale.stan).status is Status.VOIDED
    again = lane.session.void(sale, 2000)
    assert again.code == R.INVALID_TRANSACTION.value


def test_partial_refunds_never_exceed_what_remains(lane):
    start = balance(lane)
    sale = lane.session.sale(5000, lane.card_data(5000))
    assert lane.session.refund(sale.batch, sale.stan, 3000).approved
    over = lane.session.refund(sale.batch, sale.stan, 2500)
    assert over.code == R.ORIGINAL_AMOUNT_INCORRECT.value and "2000" in over.text
    assert lane.session.refund(sale.batch, sale.stan, 2000).approved
    assert balance(lane) == start
    assert lane.ledger.find_original(TERMINAL, batch=sale.batch, stan=sale.stan).refunded_amount == 5000


def test_refund_of_an_unknown_original(lane):
    assert lane.session.refund("000001", "999999", 100).code == R.ORIGINAL_NOT_FOUND.value


def test_query_by_stan(lane):
    sale = lane.session.sale(800, lane.card_data(800))
    q = lane.session.query(sale.batch, sale.stan)
    assert q.approved and q.rrn == sale.rrn and "SALE APPROVED" in q.text


def test_declines_are_journaled_with_their_code(lane):
    card = personalise(lane.host.service.hsm, lane.issuer, CardFamily.PBOC_SM4, profile="poor", balance=100,
                       replace=True)
    out = lane.session.sale(5000, lane.card_data(5000, card))
    assert out.code == R.INSUFFICIENT_FUNDS.value
    assert journal_events(lane)[-1] == Event.DECLINED.value


def test_reversal_is_idempotent(lane):
    start = balance(lane)
    sale = lane.session.sale(900, lane.card_data(900))
    # queue the reversal the session would send after a timeout, then send it twice
    lane.session._queue_reversal({"t": "0200", "3": "000000", "4": f"{900:012d}", "11": sale.stan, "22": "072",
                                  "41": TERMINAL, "42": lane.session.merchant_id, "49": "156",
                                  "60": f"22{sale.batch}000" + "60"})
    assert lane.session.flush_reversals() == 1
    assert balance(lane) == start
    lane.session._queue_reversal({"t": "0200", "3": "000000", "4": f"{900:012d}", "11": sale.stan, "22": "072",
                                  "41": TERMINAL, "42": lane.session.merchant_id, "49": "156",
                                  "60": f"22{sale.batch}000" + "60"})
    assert lane.session.flush_reversals() == 1
    assert balance(lane) == start
    assert journal_events(lane).count(Event.REVERSED.value) == 1
    assert lane.ledger.find_original(TERMINAL, batch=sale.batch, stan=sale.stan).status is Status.REVERSED


def test_settlement_balanced_closes_the_batch(lane):
    a = lane.session.sale(1000, lane.card_data(1000))
    lane.session.sale(2000, lane.card_data(2000))
    lane.session.refund(a.batch, a.stan, 400)
    result = lane.session.settle({"CD": (2, 3000, 1, 400)})
    assert result.approved and result.text == "BALANCED"
    assert lane.session.batch == f"{int(a.batch) + 1:06d}"
    assert lane.ledger.current_batch(TERMINAL) == lane.session.batch
    assert lane.session.sale(100, lane.card_data(100)).approved  # the new batch takes sales


def test_settlement_not_balanced_then_upload_reports_differences(lane):
    a = lane.session.sale(1000, lane.card_data(1000))
    result = lane.session.settle({"CD": (2, 3000, 0, 0)})
    assert result.approved and result.text.startswith("NOT BALANCED")
    upload = lane.session.upload_batch([(a.stan, "sale", "CD", 1000, a.rrn), ("000999", "sale", "CD", 2000, "")])
    assert upload.approved and upload.text.startswith("1 DIFFERENCES")
    assert lane.ledger.current_batch(TERMINAL) == lane.session.batch != a.batch


def test_sale_after_settlement_with_the_old_batch_is_told_to_sign_on(lane):
    lane.session.settle({})
    lane.session._set("batch", "000001")  # a terminal that missed the settlement answer
    assert lane.session.sale(100, lane.card_data(100)).code == R.SIGN_ON_AGAIN.value


def test_the_single_process_host_sells_voids_refunds_and_settles(tmp_path):
    """`acquirer serve --ledger-writer thread --issuer inline`: the ledger writer is a thread
    and the issuer a companion of it, as before the child processes."""
    from .conftest import _lane

    for lane in _lane(tmp_path, ledger_process=False, issuer_process=False):
        svc = lane.host.service
        assert svc.issuer_process is None and hasattr(svc.writer, "_thread")
        start = balance(lane)
        a = lane.session.sale(1000, lane.card_data(1000))
        b = lane.session.sale(2000, lane.card_data(2000))
        assert a.approved and b.approved and lane.session.void(b, 2000).approved
        assert lane.session.refund(a.batch, a.stan, 400).approved
        assert balance(lane) == start - 600
        assert lane.session.settle({"CD": (1, 1000, 1, 400)}).text == "BALANCED"
