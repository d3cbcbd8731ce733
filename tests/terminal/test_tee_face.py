"""Face pay's two TEE commands through the real TEE process: the passcode typed on the
scrambled keypad becomes a PIN block bound to one request's STAN (the host's HSM reads
it), and the face template is sealed under the TDK, only when it is one."""
from __future__ import annotations

import numpy as np
import pytest

from acquirer.face.passcode import PEPPER_KEY
from acquirer.face.wire import open_template, passcode_pan
from keys.errors import PinBlockError
from keys.hsm import terminal_key_name
from terminal.tee.api import ErrorCode, TeeError

from .tee_fixtures import *  # noqa: F401,F403
from .tee_fixtures import TERMINAL

PASSCODE = "802413"


def type_digits(keys, digits: str) -> None:
    layout = keys.passcode_begin()
    assert (layout.min_digits, layout.max_digits) == (6, 12) and sorted(layout.layout) == list(range(10))
    for d in digits:
        keys.pin_key(layout.layout.index(int(d)))


def test_a_passcode_block_opens_at_the_host_for_its_stan_only(tee_lane):
    hsm = tee_lane.host.service.hsm
    tpk = terminal_key_name(TERMINAL, "TPK")
    type_digits(tee_lane.keys, PASSCODE)
    block = tee_lane.keys.passcode_enter("000123")
    assert PASSCODE.encode() not in block
    expected = hsm.token(PEPPER_KEY, PASSCODE.encode())
    assert hsm.passcode_token(block, passcode_pan("000123"), tpk, PEPPER_KEY) == expected
    try:  # another request's STAN: the block does not open, or not to this passcode
        other = hsm.passcode_token(block, passcode_pan("000124"), tpk, PEPPER_KEY)
    except PinBlockError:
        other = None
    assert other != expected
    with pytest.raises(TeeError) as exc:  # the digits are gone after the block was made
        tee_lane.keys.passcode_enter("000125")
    assert exc.value.code is ErrorCode.BAD_STATE


def test_a_short_passcode_a_bad_stan_and_the_wrong_enter_are_refused(tee_lane):
    keys = tee_lane.keys
    type_digits(keys, "80241")
    with pytest.raises(TeeError) as exc:
        keys.passcode_enter("000001")
    assert exc.value.code is ErrorCode.BAD_PARAMETERS and "at least 6" in exc.value.detail
    type_digits(keys, PASSCODE)
    with pytest.raises(TeeError) as exc:
        keys.passcode_enter("12345")
    assert exc.value.code is ErrorCode.BAD_PARAMETERS
    with pytest.raises(TeeError) as exc:  # a card PIN's enter never turns a passcode into a block
        keys.pin_enter()
    assert exc.value.code is ErrorCode.BAD_STATE


def test_a_face_template_is_sealed_under_the_tdk_and_nothing_else_is(tee_lane):
    hsm = tee_lane.host.service.hsm
    template = np.linspace(-0.2, 0.2, 128, dtype=np.float32)
    sealed = tee_lane.keys.seal_face_template(template, False)
    opened = open_template(sealed, lambda b: hsm.open_data(terminal_key_name(TERMINAL, "TDK"), b))
    assert np.array_equal(opened.template, template) and opened.liveness is False
    for bad in (template[:100], np.full(128, np.nan, dtype=np.float32)):
        with pytest.raises(TeeError) as exc:
            tee_lane.keys.seal_face_template(bad, True)
        assert exc.value.code is ErrorCode.BAD_PARAMETERS
