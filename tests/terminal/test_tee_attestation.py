"""Attestation: the TEE measures the installed code itself, signs it over the host's
nonce with the device key, and the host accepts only allowed measurements, once."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from acquirer.protocol import MTI, NetworkCode, PrivateTag, ResponseCode, TxnType, read_private
from acquirer.protocol.attestation import verify
from acquirer.service import ThreadedHost
from keys.sm2 import SM2PublicKey
from terminal.online import HostRefused, OnlineSession
from terminal.tee import Command, ErrorCode, TeeError, api
from terminal.tee.card import KernelConfigFile
from terminal.tee.measurement import MEASURED, measure, measured_files

from .tee_fixtures import *  # noqa: F401,F403
from .tee_fixtures import MERCHANT, TERMINAL


def fake_install(root: Path) -> Path:
    for package in MEASURED:
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text(f"# {package}\n")
    (root / "terminal" / "online.py").write_text("SESSION = 1\n")
    return root


def test_the_tee_measures_the_installed_code_and_the_shipped_kernel_config(tee_keys):
    shipped = KernelConfigFile.read(None)
    assert shipped.path.name == "default_config.toml" and shipped.raw
    assert tee_keys.measurement() == measure(shipped.raw) == measure(shipped.path)
    assert measure(shipped.raw) != measure(None)


def test_measurement_covers_content_names_and_kernel_config_but_not_order_or_caches(tmp_path):
    root = fake_install(tmp_path / "a")
    base = measure(root=root)
    assert measure(root=shutil.copytree(root, tmp_path / "b")) == base  # where it is installed does not count
    (root / "terminal" / "__pycache__").mkdir()
    (root / "terminal" / "__pycache__" / "online.cpython-311.pyc").write_bytes(b"compiled")
    (root / "terminal" / "notes.txt").write_text("not code")
    assert measure(root=root) == base
    assert "terminal/online.py" in measured_files(root)
    (root / "terminal" / "online.py").write_text("SESSION = 2\n")
    assert measure(root=root) != base
    (root / "terminal" / "online.py").write_text("SESSION = 1\n")
    os.rename(root / "terminal" / "online.py", root / "terminal" / "offline.py")
    assert measure(root=root) != base
    os.rename(root / "terminal" / "offline.py", root / "terminal" / "online.py")
    config = tmp_path / "kernel.toml"
    config.write_text("cvm_limit = 30000\n")
    with_config = measure(config, root=root)
    assert with_config != base
    config.write_text("cvm_limit = 99999\n")
    assert measure(config, root=root) != with_config


def test_evidence_carries_the_tees_own_measurement_under_the_device_key(tee_keys):
    status = tee_keys.status()
    nonce = os.urandom(16)
    evidence = tee_keys.client.invoke(Command.ATTEST, api.Challenge(nonce)).evidence
    ev = verify(evidence, SM2PublicKey.from_bytes(status.device_public_key), status.device_id, nonce)
    assert ev.measurement == status.measurement
    # The command has no way to name another measurement, and the facade refuses one.
    assert [f for f in api.Challenge.__dataclass_fields__] == ["nonce"]
    with pytest.raises(TeeError) as info:
        tee_keys.attest(bytes(32), nonce)
    assert info.value.code is ErrorCode.BAD_PARAMETERS


def test_the_tee_signs_no_arbitrary_data():
    """Purpose-bound signing only: a generic SIGN would let the normal world forge evidence."""
    assert not any("SIGN" == c.name for c in Command)
    assert api.SIGNATURES[Command.SIGN_KEY_DOWNLOAD][0] is api.KeyDownloadRequest


def test_the_host_refuses_a_measurement_it_does_not_know(tmp_path, tee_keys):
    host = ThreadedHost(tmp_path / "host", read_timeout=2.0, idle_timeout=30.0).start()
    try:
        host.service.registry.add_merchant(MERCHANT, "shop", latitude=31.23, longitude=121.47)
        code = host.service.registry.add_terminal(TERMINAL, MERCHANT)
        session = OnlineSession("127.0.0.1", host.port, TERMINAL, MERCHANT, tee_keys, tmp_path / "j.db", timeout=5.0)
        session.activate(code)
        session.download_keys()
        with pytest.raises(HostRefused) as refused:
            session.sign_on()
        assert refused.value.code == ResponseCode.ATTESTATION_FAILED.value
        assert "allowed list" in refused.value.text
        session.close()
    finally:
        host.stop()


def test_a_replayed_sign_on_is_refused(tee_lane, monkeypatch):
    session = tee_lane.session
    sent = []
    real_exchange = session._exchange

    def recording(fields, maced):
        sent.append(dict(fields))
        return real_exchange(fields, maced)

    monkeypatch.setattr(session, "_exchange", recording)
    session.sign_on()
    sign_on = next(f for f in sent if f["60"][8:11] == NetworkCode.SIGN_ON.value)
    assert PrivateTag.ATTESTATION in read_private(sign_on)

    # 1. The recorded sign-on again, as is: its challenge was used up.
    replay = real_exchange(dict(sign_on, **{"11": session.next_stan()}), False)
    assert replay["39"] == ResponseCode.ATTESTATION_FAILED.value
    assert "challenge" in replay["44"]
    # 2. After asking for a fresh challenge: the old evidence answers another nonce.
    challenge = real_exchange(session._base(MTI.NETWORK_REQUEST, TxnType.SIGN_ON, NetworkCode.CHALLENGE.value), False)
    assert challenge["39"] == ResponseCode.APPROVED.value
    replay = real_exchange(dict(sign_on, **{"11": session.next_stan()}), False)
    assert replay["39"] == ResponseCode.ATTESTATION_FAILED.value
    assert "nonce" in replay["44"]
    # The genuine terminal still signs on, with fresh evidence from the TEE.
    assert set(session.sign_on()) == {"TPK", "TAK", "TDK"}
