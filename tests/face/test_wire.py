"""The face sale's private fields end to end: the terminal's TDK seals the template
(59/DF02), its TPK encrypts the passcode (59/DF0C); the host opens them with the HSM."""
from __future__ import annotations

import argparse
import io

import numpy as np
import pytest

from acquirer.face import FaceDecline, FaceWireError, passcode_pan
from acquirer.face import wire
from acquirer.face.cli import register
from acquirer.protocol import PrivateTag, ResponseCode, describe, private_fields, read_private
from keys.hsm import terminal_key_name
from keys.errors import PinBlockError
from keys.model import Key
from keys.pinblock import PinBlockFormat, decrypt_pin_block, encrypt_pin_block
from keys.symmetric import seal_field
from terminal.face.capture import ImageFile
from terminal.face.checkout import (FaceCapture, capture_face, face_private_fields, face_template_field,
                                    passcode_block)
from tests.face.conftest import FACES

TID = "T0000001"


@pytest.fixture
def terminal_keys(hsm):
    """The same TDK and TPK on both sides, as sign-on would leave them."""
    tdk, tpk = Key.generate("SM4", "TDK"), Key.generate("SM4", "TPK")
    hsm.import_clear(terminal_key_name(TID, "TDK"), tdk)
    hsm.import_clear(terminal_key_name(TID, "TPK"), tpk)
    return tdk, tpk


def test_a_face_sale_goes_from_the_terminal_to_a_payment(pay, photos, hsm, terminal_keys):
    tdk, tpk = terminal_keys
    capture = FaceCapture(photos["obama3.jpg"].template, True, "test")
    df02 = face_template_field(capture, lambda clear: seal_field(tdk.cipher, clear))
    assert len(df02) == 544 and photos["obama3.jpg"].template.tobytes()[:16] not in df02
    doc = {"t": "0200", "11": "000123", "59": private_fields(face_private_fields(df02))}
    assert "FACE_TEMPLATE=<544 bytes masked>" in describe(doc)
    assert df02.hex().upper()[:32] not in describe(doc)

    sealed = read_private(doc)[PrivateTag.FACE_TEMPLATE]
    candidate = pay.identify(sealed, lambda b: hsm.open_data(terminal_key_name(TID, "TDK"), b))
    assert candidate.customer_id == "obama"

    df0c = passcode_block(lambda pin, pan: encrypt_pin_block(PinBlockFormat.SM4, tpk.cipher, pin, pan),
                          "802413", doc["11"])
    assert len(df0c) == 16
    # the host side: until the HSM has a passcode-token operation, decrypt as the pipeline would
    passcode = decrypt_pin_block(PinBlockFormat.SM4, tpk.cipher, df0c, passcode_pan(doc["11"]))
    assert pay.confirm_passcode(candidate, passcode).wallet_account == "W-OBAMA"


def test_a_template_sealed_under_another_key_is_a_format_error(pay, photos, hsm, terminal_keys):
    other = Key.generate("SM4", "TDK")
    df02 = wire.seal_template(photos["obama3.jpg"].template, True, lambda c: seal_field(other.cipher, c))
    with pytest.raises(FaceDecline) as exc:
        pay.identify(df02, lambda b: hsm.open_data(terminal_key_name(TID, "TDK"), b))
    assert exc.value.code is ResponseCode.FORMAT_ERROR and "DF02" in exc.value.reason


def test_a_template_of_another_model_is_refused(photos):
    clear = bytearray(wire.pack(photos["obama.jpg"].template, True))
    clear[4:8] = b"\x00\x00\x00\x00"
    with pytest.raises(FaceWireError, match="another|made by face model 00000000"):
        wire.unpack(bytes(clear))
    with pytest.raises(FaceWireError, match="128 finite"):
        wire.pack(np.zeros(64, np.float32), True)


def test_the_passcode_block_is_bound_to_the_stan(terminal_keys):
    _, tpk = terminal_keys
    block = passcode_block(lambda pin, pan: encrypt_pin_block(PinBlockFormat.SM4, tpk.cipher, pin, pan),
                           "802413", "000123")
    try:  # replayed into another request, whose STAN makes another PAN field
        replayed = decrypt_pin_block(PinBlockFormat.SM4, tpk.cipher, block, passcode_pan("000124"))
    except PinBlockError:
        replayed = None
    assert replayed != "802413"
    assert decrypt_pin_block(PinBlockFormat.SM4, tpk.cipher, block, passcode_pan("000123")) == "802413"
    with pytest.raises(FaceWireError, match="STAN"):
        passcode_pan("12")


def test_an_image_file_gives_a_template_flagged_without_liveness(photos):
    capture = capture_face(ImageFile(FACES / "obama2.jpg"), None)
    assert capture.liveness is False
    assert np.linalg.norm(capture.template - photos["obama2.jpg"].template) < 1e-4
    assert "array" not in repr(capture)


def test_the_cli_enrols_lists_and_unlocks(tmp_path, monkeypatch, capsys):
    parser = argparse.ArgumentParser(prog="acquirer")
    parser.add_argument("--state", default=str(tmp_path))
    register(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str, stdin: str = "") -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        args = parser.parse_args(list(argv))
        return args.func(args)

    assert run("face", "enrol", "--customer", "C001", "--wallet", "W-9", "--passcode-stdin",
               "--photo", str(FACES / "biden.jpg"), stdin="640213\n") == 0
    out = capsys.readouterr().out
    assert "customer C001 enrolled: 1 templates" in out and "640213" not in out
    assert run("face", "enrol", "--customer", "C002", "--wallet", "W-8", "--passcode-stdin",
               "--photo", str(FACES / "coffee.png"), stdin="640213\n") == 2
    assert "no face found" in capsys.readouterr().err
    assert run("face", "enrol", "--customer", "C003", "--wallet", "W-8", "--photo", "nope.jpg") == 2
    assert run("face", "list") == 0
    assert "C001" in capsys.readouterr().out
    assert run("face", "unlock", "--customer", "C001", "--operator", "ops") == 0
    assert run("face", "unlock", "--customer", "C404") == 2
    assert run("face", "events", "--customer", "C001") == 0
    assert "unlocked" in capsys.readouterr().out
