"""The TEE boundary: across a whole working day (provisioning, a sale without PIN, a sale
with PIN, a void, a refund, a query, settlement), no frame the TEE returns to the normal
world holds a full PAN, the PIN, track 2 or any clear key."""
from __future__ import annotations

import pytest

from acquirer.protocol import EntryMode
from hardware.emvcard.perso import track2 as track2_of
from keys.hsm import terminal_key_name
from terminal.secure.sealed import SealedStore
from terminal.tee.secure_world import card_data
from terminal.tee.wire import decode

from .tee_fixtures import *  # noqa: F401,F403
from .tee_fixtures import PIN, TERMINAL

pytestmark = pytest.mark.pcsc


def needles(secret: bytes | str, name: str) -> dict[bytes, str]:
    """The forms a secret could take in a frame: raw, hex both cases, ASCII."""
    raw = secret.encode() if isinstance(secret, str) else secret
    found = {raw: name}
    if isinstance(secret, bytes):
        found[secret.hex().encode()] = f"{name} (hex)"
        found[secret.hex().upper().encode()] = f"{name} (HEX)"
    return found


def secrets_of(lane) -> dict[bytes, str]:
    pan = lane.pan
    track2 = track2_of(lane.card.profile)  # tag 57 as the chip holds it
    out = {}
    out.update(needles(pan, "PAN"))
    out.update(needles(bytes.fromhex(pan[:16]), "PAN (BCD)"))
    out.update(needles(track2, "track 2"))
    out.update(needles(track2.hex().upper().rstrip("F"), "track 2 (text)"))
    out.update(needles(PIN, "PIN"))
    out.update(needles(bytes.fromhex(PIN), "PIN (BCD)"))
    sealed = SealedStore(lane.tee.state_dir).load()  # the test may unseal: it is not the normal world
    out.update(needles(bytes.fromhex(sealed["device_key"]), "device private key"))
    for usage, entry in sealed["keys"].items():
        out.update(needles(bytes.fromhex(entry["key"]), f"{usage} (terminal copy)"))
    hsm = lane.host.service.hsm
    for usage in ("TMK", "TPK", "TAK", "TDK"):
        out.update(needles(hsm._get(terminal_key_name(TERMINAL, usage)).material, f"{usage} (host copy)"))
    return out


def test_no_frame_from_the_tee_carries_pan_pin_track2_or_a_key(card_lane):
    lane, keys, session = card_lane, card_lane.keys, card_lane.session
    lane.tap()

    small = keys.transact(5_000, timeout_s=10)
    sale = session.sale(5_000, card_data(small))
    assert sale.approved, sale.text

    large = keys.transact(150_000, timeout_s=10)
    assert large.cvm == "ONLINE_PIN"
    pad = keys.pin_begin(large.handle)
    for digit in PIN:
        keys.pin_key(pad.layout.index(int(digit)))
    pin_block = keys.pin_enter()
    with_pin = session.sale(150_000, card_data(large, pin_block))
    assert with_pin.approved and card_data(large, pin_block).entry_mode is EntryMode.CONTACTLESS_PIN
    keys.end_transaction(large.handle)

    assert session.void(with_pin, 150_000).approved
    assert session.refund(sale.batch, sale.stan, 2_000, sale.rrn).approved
    assert session.query(sale.batch, sale.stan).approved
    settled = session.settle({"CD": (1, 5_000, 1, 2_000)})
    assert settled.approved and settled.text == "BALANCED", settled.text

    frames = lane.frames
    assert len(frames) > 30  # provisioning, both taps, the keypad, every MAC and check
    assert any(small.masked_pan.encode() in f for f in frames)  # the observer saw the card outcomes
    for needle, name in secrets_of(lane).items():
        leaks = [i for i, frame in enumerate(frames) if needle in frame]
        assert not leaks, f"{name} found in TEE frames {leaks}"
    for frame in frames:  # and nothing but the typed answers crossed
        reply = decode(frame)
        assert set(reply) == {"id", "code", "detail", "result"}
