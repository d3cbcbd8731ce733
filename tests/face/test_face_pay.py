"""Face pay at the host: enrolment, 1:N identification, passcode step-up and lockout,
over a real HSM and real SQLite files."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from acquirer.face import FaceDecline, FaceEnrolError, FacePay, FaceStoreError
from acquirer.face.service import CANDIDATE_TTL_S
from acquirer.protocol import ResponseCode
from tests.face.conftest import FACES

R = ResponseCode


def identify(pay, photo, liveness=True):
    return pay.identify_template(photo.template, liveness=liveness)


def test_a_customer_enrolled_from_photos_is_recognised_in_another_photo(tmp_path, hsm, photos):
    pay = FacePay(tmp_path / "enrol.db", hsm)
    result = pay.enrol("C-OBAMA", [FACES / "obama.jpg", FACES / "obama2.jpg"], "W-6222-0001", "802413")
    assert result.templates == 2 and result.spread < 0.5 and not result.notes
    candidate = identify(pay, photos["obama3.jpg"])
    assert candidate.customer_id == "C-OBAMA" and candidate.wallet_account == "W-6222-0001"
    assert candidate.distance < 0.5 and candidate.step_up == "PASSCODE"
    with pytest.raises(FaceDecline) as exc:
        identify(pay, photos["biden.jpg"])
    assert exc.value.code is R.DO_NOT_HONOR and "not recognised" in exc.value.reason
    pay.close()


def test_each_enrolled_customer_is_told_apart(pay, photos):
    assert identify(pay, photos["obama3.jpg"]).customer_id == "obama"
    assert identify(pay, photos["biden.jpg"]).customer_id == "biden"
    assert identify(pay, photos["astronaut.png"]).customer_id == "collins"


def test_the_right_passcode_completes_the_payment(pay, photos):
    payment = pay.confirm_passcode(identify(pay, photos["obama3.jpg"]), "802413")
    assert payment.customer_id == "obama" and payment.wallet_account == "W-OBAMA"


def test_a_wrong_passcode_declines(pay, photos):
    candidate = identify(pay, photos["obama3.jpg"])
    with pytest.raises(FaceDecline) as exc:
        pay.confirm_passcode(candidate, "802414")
    assert exc.value.code is R.INCORRECT_PIN and "2 tries left" in exc.value.reason
    assert pay.store.customer("obama").failures == 1


def test_repeated_wrong_passcodes_lock_face_pay_until_an_operator_unlocks(pay, photos, tmp_path, hsm, clock):
    candidate = identify(pay, photos["obama3.jpg"])
    codes = []
    for _ in range(3):
        with pytest.raises(FaceDecline) as exc:
            pay.confirm_passcode(candidate, "111112")
        codes.append(exc.value.code)
    assert codes == [R.INCORRECT_PIN, R.INCORRECT_PIN, R.PIN_TRIES_EXCEEDED]
    with pytest.raises(FaceDecline) as exc:  # even the right passcode now
        pay.confirm_passcode(candidate, "802413")
    assert exc.value.code is R.PIN_TRIES_EXCEEDED
    with pytest.raises(FaceDecline) as exc:  # and the face alone no longer gets a candidate
        identify(pay, photos["obama.jpg"])
    assert exc.value.code is R.PIN_TRIES_EXCEEDED
    assert identify(pay, photos["biden.jpg"]).customer_id == "biden"  # others are unaffected

    pay.close()  # the lock is on disk, not in memory
    again = FacePay(tmp_path / "face.db", hsm, clock=clock)
    with pytest.raises(FaceStoreError, match="operator"):
        again.unlock("obama", operator="")
    again.unlock("obama", operator="risk-li", reason="customer called back")
    payment = again.confirm_passcode(identify(again, photos["obama3.jpg"]), "802413")
    assert payment.customer_id == "obama"
    events = [e[2] for e in again.store.events("obama")]
    assert events == ["enrolled", "passcode_failed", "passcode_failed", "passcode_failed", "locked", "unlocked"]
    again.close()


def test_a_right_passcode_resets_the_count_of_wrong_ones(pay, photos):
    candidate = identify(pay, photos["obama3.jpg"])
    for _ in range(2):
        with pytest.raises(FaceDecline):
            pay.confirm_passcode(candidate, "000001")
    pay.confirm_passcode(candidate, "802413")
    assert pay.store.customer("obama").failures == 0


def test_a_candidate_expires(pay, photos, clock):
    candidate = identify(pay, photos["obama3.jpg"])
    clock.t += CANDIDATE_TTL_S + 1
    with pytest.raises(FaceDecline) as exc:
        pay.confirm_passcode(candidate, "802413")
    assert exc.value.code is R.INVALID_TRANSACTION


def test_a_template_without_the_liveness_check_is_refused_unless_allowed(pay, photos, tmp_path, hsm):
    with pytest.raises(FaceDecline) as exc:
        identify(pay, photos["obama3.jpg"], liveness=False)
    assert exc.value.code is R.NOT_PERMITTED_TERMINAL
    lax = FacePay(tmp_path / "face.db", hsm, require_liveness=False)
    assert identify(lax, photos["obama3.jpg"], liveness=False).customer_id == "obama"
    lax.close()


def test_a_face_close_to_two_customers_is_refused_not_guessed(pay, photos):
    # a twin enrolled behind enrolment's back (enrol itself refuses one this close)
    twin = photos["obama.jpg"].template + np.float32(0.02)
    pay.gallery.add("twin", twin[None, :])
    with pytest.raises(FaceDecline, match="more than one customer") as exc:
        identify(pay, photos["obama3.jpg"])
    assert exc.value.code is R.DO_NOT_HONOR


def test_templates_at_rest_are_not_plaintext(pay, photos, tmp_path):
    stored = photos["obama.jpg"].template, photos["obama2.jpg"].template, photos["biden.jpg"].template
    def on_disk() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("face.db"))

    data = on_disk()  # while open: the WAL holds the recent writes
    pay.close()
    data += on_disk()
    assert len(data) > 4096
    for t in stored:
        raw = t.astype("<f4").tobytes()
        for i in range(0, len(raw) - 16, 16):  # any 4 consecutive floats would give it away
            assert raw[i:i + 16] not in data
        assert t.astype("<f8").tobytes()[:16] not in data
    assert b"802413" not in data and b"590217" not in data  # passcodes neither


def _move_biden_to_collins(db):
    # someone editing the file behind the host's back: Biden's sealed template, with its tag
    db.execute("UPDATE templates SET (sealed, tag)=(SELECT sealed, tag FROM templates WHERE customer_id='biden') "
               "WHERE customer_id='collins'")


def _flip_one_bit(db):
    # CBC alone would pass this: one garbled block, and the same bit flipped in the next
    row_id, sealed = db.execute("SELECT id, sealed FROM templates WHERE customer_id='biden'").fetchone()
    edited = bytearray(sealed)
    edited[100] ^= 1
    db.execute("UPDATE templates SET sealed=? WHERE id=?", (bytes(edited), row_id))


@pytest.mark.parametrize("edit", [_move_biden_to_collins, _flip_one_bit])
def test_an_edited_template_row_is_detected(pay, tmp_path, hsm, edit):
    pay.close()
    db = sqlite3.connect(tmp_path / "face.db")
    edit(db)
    db.commit()
    db.close()
    with pytest.raises(FaceStoreError, match="altered"):
        FacePay(tmp_path / "face.db", hsm)


@pytest.mark.parametrize("photos_, message", [
    (["obama.jpg", "biden.jpg"], "photos 1 and 2 do not show the same person"),
    (["obama.jpg", "coffee.png"], "photo 2 .*coffee.png.*no face found"),
])
def test_enrolment_refuses_bad_photos_and_stores_nothing(tmp_path, hsm, photos_, message):
    pay = FacePay(tmp_path / "face.db", hsm)
    with pytest.raises(FaceEnrolError, match=message):
        pay.enrol("C1", [FACES / p for p in photos_], "W-1", "802413")
    assert pay.store.customer("C1") is None and len(pay.gallery) == 0 and not list(pay.store.templates())
    pay.close()


def test_enrolment_refuses_the_same_face_under_a_second_customer(pay, photos):
    with pytest.raises(FaceEnrolError, match="from enrolled customer obama .*same person twice"):
        pay.enrol_templates("obama-2", [photos["obama3.jpg"].template], "W-OTHER", "802413")
    assert pay.store.customer("obama-2") is None


@pytest.mark.parametrize("customer, wallet, passcode, message", [
    ("C 1", "W-1", "802413", "customer id"),
    ("C1", "", "802413", "wallet account"),
    ("C1", "W-1", "1234", "6 to 12 digits"),
    ("C1", "W-1", "12345a", "digits only"),
    ("C1", "W-1", "123456", "run like 123456"),
    ("C1", "W-1", "777777", "repeated digit"),
])
def test_enrolment_refuses_bad_details(tmp_path, hsm, photos, customer, wallet, passcode, message):
    pay = FacePay(tmp_path / "face.db", hsm)
    with pytest.raises(FaceEnrolError, match=message):
        pay.enrol_templates(customer, [photos["obama3.jpg"].template], wallet, passcode)
    assert not pay.store.customers()
    pay.close()


def test_re_enrolment_needs_replace_and_keeps_a_lock(pay, photos):
    t = [photos["obama3.jpg"].template]
    with pytest.raises(FaceEnrolError, match="already enrolled"):
        pay.enrol_templates("obama", t, "W-OBAMA", "802413")
    candidate = identify(pay, photos["obama3.jpg"])
    for _ in range(3):
        with pytest.raises(FaceDecline):
            pay.confirm_passcode(candidate, "000001")
    pay.enrol_templates("obama", t, "W-OBAMA-2", "640213", replace=True)
    assert len(pay.gallery) == 3 and pay.store.customer("obama").locked
    with pytest.raises(FaceDecline) as exc:
        identify(pay, photos["obama.jpg"])
    assert exc.value.code is R.PIN_TRIES_EXCEEDED


def test_a_withdrawn_customer_is_no_longer_recognised(pay, photos):
    pay.withdraw("biden", operator="ops", reason="consent withdrawn")
    with pytest.raises(FaceDecline, match="not recognised"):
        identify(pay, photos["biden.jpg"])
    assert not [r for r in pay.store.templates() if r[1] == "biden"]
