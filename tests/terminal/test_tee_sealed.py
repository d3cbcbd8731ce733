"""Device identity and sealed storage in the TEE: a tampered, swapped or orphaned sealed
store stops every command with SECURITY until the terminal is re-provisioned."""
from __future__ import annotations

import shutil

import pytest

from acquirer.protocol import ResponseCode
from terminal.online import HostRefused
from keys.sm2 import SM2PrivateKey
from terminal.tee import Command, ErrorCode, TeeError, TeeState, TeeSupervisor, api
from terminal.tee.secure_world import TeeKeys

from .tee_fixtures import *  # noqa: F401,F403
from .tee_fixtures import TERMINAL, provision

# Valid parameters for every command but STATUS and RESET_PROVISIONING.
SAMPLE_PARAMS = {
    Command.SIGN_KEY_DOWNLOAD: api.KeyDownloadRequest(TERMINAL, bytes(16)),
    Command.PIN_HOST_KEY: api.HostKey(b"\x04" + bytes(64)),
    Command.INSTALL_TMK: api.TmkEnvelope(b"envelope", TERMINAL, bytes(16)),
    Command.INSTALL_WORKING_KEYS: api.WorkingKeys("", {}),
    Command.ATTEST: api.Challenge(bytes(16)),
    Command.MAC: api.MacInput(b"0200"),
    Command.VERIFY_MAC: api.MacCheck(b"0200", bytes(8)),
    Command.TRANSACT: api.TransactRequest(100, 1000),
    Command.END_TRANSACTION: api.TransactionHandle(bytes(16)),
    Command.PIN_BEGIN: api.TransactionHandle(bytes(16)),
    Command.PIN_KEY: api.PinPosition(3),
    Command.PIN_BACKSPACE: api.Empty(),
    Command.PIN_ENTER: api.Empty(),
    Command.PIN_CANCEL: api.Empty(),
    Command.LOCATION_REPORT: api.LocationRequest(TERMINAL, 1000, 60_000, 0),
    Command.PASSCODE_BEGIN: api.Empty(),
    Command.PASSCODE_ENTER: api.PasscodeRequest("000001"),
    Command.SEAL_FACE_TEMPLATE: api.FaceTemplate(bytes(512), False),
}


def test_sample_params_cover_every_guarded_command():
    assert set(SAMPLE_PARAMS) | {Command.STATUS, Command.RESET_PROVISIONING} == set(Command)


def first_start(state) -> str:
    with TeeSupervisor(state) as supervisor:
        keys = TeeKeys(supervisor)
        device = keys.device_id
        keys.close()
    return device


def assert_refuses_everything(keys: TeeKeys) -> None:
    status = keys.status()
    assert status.state == TeeState.TAMPERED.value and status.device_id == ""
    for command, params in SAMPLE_PARAMS.items():
        with pytest.raises(TeeError) as info:
            keys.client.invoke(command, params)
        assert info.value.code is ErrorCode.SECURITY, command.name
        assert "re-provision" in info.value.detail


def reset_gives_a_fresh_identity(keys: TeeKeys, old_device: str) -> None:
    status = keys.reset_provisioning()
    assert status.state == TeeState.NOT_PROVISIONED.value
    assert status.device_id.startswith("DEV-") and status.device_id != old_device
    assert keys.client.invoke(Command.SIGN_KEY_DOWNLOAD, SAMPLE_PARAMS[Command.SIGN_KEY_DOWNLOAD]).signature


def test_first_start_creates_an_identity_that_persists_sealed(tmp_path):
    state = tmp_path / "tee"
    device = first_start(state)
    assert device.startswith("DEV-")
    assert first_start(state) == device
    assert sorted(p.name for p in state.iterdir()) == ["device.secret", "sealed.bin", "tee.log"]
    assert (state / "device.secret").stat().st_mode & 0o777 == 0o600
    assert device.encode() not in (state / "sealed.bin").read_bytes()  # sealed, not merely stored


def test_a_tampered_byte_stops_every_command_until_reset(tmp_path):
    state = tmp_path / "tee"
    device = first_start(state)
    blob = bytearray((state / "sealed.bin").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (state / "sealed.bin").write_bytes(bytes(blob))
    with TeeSupervisor(state) as supervisor:
        keys = TeeKeys(supervisor)
        assert "integrity" in keys.status().detail
        assert_refuses_everything(keys)
        reset_gives_a_fresh_identity(keys, device)
        keys.close()


def test_another_devices_sealed_file_is_refused(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    device = first_start(ours)
    first_start(theirs)
    shutil.copyfile(theirs / "sealed.bin", ours / "sealed.bin")
    with TeeSupervisor(ours) as supervisor:
        keys = TeeKeys(supervisor)
        assert_refuses_everything(keys)
        reset_gives_a_fresh_identity(keys, device)
        keys.close()


def test_a_deleted_device_secret_makes_the_store_unreadable(tmp_path):
    state = tmp_path / "tee"
    device = first_start(state)
    (state / "device.secret").unlink()
    with TeeSupervisor(state) as supervisor:
        keys = TeeKeys(supervisor)
        assert_refuses_everything(keys)
        reset_gives_a_fresh_identity(keys, device)
        keys.close()


def test_a_store_swapped_while_running_is_caught_at_the_next_command(tee, tee_keys):
    sealed = tee.state_dir / "sealed.bin"
    old = sealed.read_bytes()
    tee_keys.pin_host_key(SM2PrivateKey.generate().public_key.to_bytes())  # a write: the file changes
    assert sealed.read_bytes() != old
    sealed.write_bytes(old)  # roll back to an older copy of this very device
    with pytest.raises(TeeError) as info:
        tee_keys.client.invoke(Command.SIGN_KEY_DOWNLOAD, SAMPLE_PARAMS[Command.SIGN_KEY_DOWNLOAD])
    assert info.value.code is ErrorCode.SECURITY
    assert tee_keys.status().state == TeeState.TAMPERED.value


def test_after_a_reset_the_host_must_activate_the_terminal_again(tee_lane):
    keys, session = tee_lane.keys, tee_lane.session
    old_device = keys.device_id
    keys.reset_provisioning()
    with pytest.raises(TeeError) as info:
        keys.mac(b"0200")
    assert info.value.code is ErrorCode.NOT_PROVISIONED
    with pytest.raises(HostRefused) as refused:
        session.sign_on()  # the host holds the old device key: the new one's evidence fails
    assert refused.value.code == ResponseCode.ATTESTATION_FAILED.value
    code = tee_lane.registry.new_activation_code(TERMINAL)
    again = provision(tee_lane.host, keys, tee_lane.state, code=code)
    assert tee_lane.registry.terminal(TERMINAL).device_id == keys.device_id != old_device
    assert keys.status().state == TeeState.READY.value
    again.close()


def test_report_counters_never_repeat_across_restarts_and_seal_once_per_reserve(tmp_path):
    from terminal.secure.keystore import SecureKeys
    from terminal.secure.sealed import SealedStore

    store = SealedStore(tmp_path / "sealed")
    keys = SecureKeys(store)
    saves = []
    real_save = store.save
    store.save = lambda data: (saves.append(1), real_save(data))[1]
    first = [keys.next_counter("location") for _ in range(2 * SecureKeys.COUNTER_RESERVE)]
    assert first == list(range(1, 2 * SecureKeys.COUNTER_RESERVE + 1))
    assert len(saves) == 2  # one seal per reserve, not per report
    keys.next_counter("location")  # 129: a new reserve up to 192, then the terminal dies
    again = SecureKeys(SealedStore(tmp_path / "sealed"))
    assert again.next_counter("location") == 3 * SecureKeys.COUNTER_RESERVE + 1  # a gap, never a repeat
