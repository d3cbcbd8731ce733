"""The three signing styles and the notify resource encryption, and what they refuse."""
from __future__ import annotations

import json
import logging

import pytest

from acquirer.wallets.adapter import WalletSignatureError
from acquirer.wallets.codes import CODE_RULES, Wallet, mask_code, new_code, wallet_of_code, wallet_of_merchant_qr
from acquirer.wallets.signing import (RSA2, SM2, decrypt_resource, encrypt_resource, new_signer, nonce_str,
                                      parse_wechat_authorization, sign_b64, sorted_params, verify_b64,
                                      wechat_answer_message, wechat_authorization, wechat_request_message)
from acquirer.wallets.demo import wallet_world
from hardware.scanners.payment_codes import PAYMENT_CODE_RULES
from keys.errors import DecryptionError
from tests.acquirer.test_wallet_payments import MERCHANT, PASSWORD, TERMINAL, run, scanned_code


def test_host_code_table_equals_the_scanners_table():
    # duplicated on purpose (acquirer may not import hardware): this keeps the two equal
    ours = {(r.wallet.value, tuple(r.lengths), r.prefixes) for r in CODE_RULES}
    theirs = {(r.wallet.value, tuple(sorted(r.lengths)), r.prefixes) for r in PAYMENT_CODE_RULES}
    assert ours == theirs


@pytest.mark.parametrize("wallet", list(Wallet))
def test_issued_codes_classify_as_their_wallet_and_mask(wallet):
    code = new_code(wallet)
    assert wallet_of_code(f" {code}\r\n") is wallet
    assert wallet_of_code(code[:-1] + "a") is None and wallet_of_code("１" + code[1:]) is None
    assert mask_code(code) == code[:4] + "*" * (len(code) - 6) + code[-2:]
    assert wallet_of_merchant_qr("weixin://wxpay/bizpayurl?pr=abc") is Wallet.WECHAT


def test_sorted_params_leave_out_signature_fields_and_empty_values():
    params = {"b": "2", "a": "1", "sign": "x", "sign_type": "SM2", "empty": ""}
    assert sorted_params(params) == "a=1&b=2&sign_type=SM2"
    assert sorted_params(params, ("sign", "sign_type")) == "a=1&b=2"


@pytest.mark.parametrize("algorithm", [RSA2, SM2])
def test_signatures_verify_only_with_the_right_key_and_text(algorithm):
    signer, other = new_signer(algorithm), new_signer(algorithm)
    sig = sign_b64(signer, "a=1&b=2")
    assert verify_b64(signer.verifier, sig, "a=1&b=2")
    assert not verify_b64(signer.verifier, sig, "a=1&b=3")
    assert not verify_b64(other.verifier, sig, "a=1&b=2")
    assert not verify_b64(signer.verifier, "not base64!", "a=1&b=2")


def test_wechat_messages_and_authorization_header():
    assert wechat_request_message("GET", "/v3/x?mchid=1", "1700000000", "N", "") == "GET\n/v3/x?mchid=1\n1700000000\nN\n\n"
    assert wechat_answer_message("1", "N", "{}") == "1\nN\n{}\n"
    header = wechat_authorization("190001", "SERIAL", "1700000000", "NONCE", "c2ln")
    assert header.startswith("WECHATPAY2-SM2-WITH-SM3 ")
    assert parse_wechat_authorization(header)["serial_no"] == "SERIAL"
    with pytest.raises(ValueError):
        parse_wechat_authorization("WECHATPAY2-SHA256-RSA2048 mchid=\"1\"")


def test_notify_resource_is_sm4_gcm_with_authenticated_associated_data():
    key = bytes(range(16))
    resource = encrypt_resource(key, b'{"out_trade_no":"Q-1"}', "transaction")
    assert len(resource["nonce"]) == 12 and resource["algorithm"] == "AEAD_SM4_GCM"
    assert decrypt_resource(key, resource) == b'{"out_trade_no":"Q-1"}'
    with pytest.raises(DecryptionError):
        decrypt_resource(key, {**resource, "associated_data": "refund"})
    with pytest.raises(DecryptionError):
        decrypt_resource(bytes(16), resource)


def test_signed_wechat_notify_with_an_altered_resource_is_refused():
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            await world.channel.precreate("N-1", 100, MERCHANT, TERMINAL, Wallet.WECHAT)
            gateway, adapter = world.services.gateways["wechat-direct"], world.channel.adapters["wechat-direct"]
            order = gateway.book.orders[(world.services.provider("wechat-direct").merchant, "N-1")]
            _, body = gateway.notify_message(gateway.contracts[order.merchant], order)
            data = json.loads(body)
            data["resource"]["associated_data"] = "refund"  # the platform signs it again: only the AEAD can tell
            text = json.dumps(data)
            with pytest.raises(WalletSignatureError, match="SM4-GCM"):
                adapter.parse_notify(gateway.signed_headers(text), text.encode())
    run(scenario())


def test_replayed_wechat_request_is_refused_by_the_wallet():
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            p = world.services.provider("wechat-direct")
            path, ts, nonce = f"/v3/pay/transactions/out-trade-no/X?mchid={p.merchant}", str(int(world.clock())), nonce_str()
            sig = sign_b64(p.signer, wechat_request_message("GET", path, ts, nonce, ""))
            headers = {"Authorization": wechat_authorization(p.merchant, p.key_serial, ts, nonce, sig)}
            statuses = []
            for _ in range(2):
                async with world.stack.session.get(p.base_url + path, headers=headers) as resp:
                    statuses.append((resp.status, (await resp.json())["code"]))
            assert statuses == [(404, "ORDER_NOT_EXIST"), (401, "SIGN_ERROR")]
    run(scenario())


def test_no_full_payment_code_or_password_reaches_a_log(tmp_path, caplog):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            codes = []
            for wallet in Wallet:
                code = await scanned_code(world, wallet, tmp_path)
                codes.append(code)
                await world.channel.pay_customer_code(f"L-{wallet.value}", code, 100, MERCHANT, TERMINAL)
                await world.channel.pay_customer_code(f"L2-{wallet.value}", code, 100, MERCHANT, TERMINAL)  # replay
            return codes
    with caplog.at_level(logging.DEBUG):
        codes = run(scenario())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "already used" in text or "code_used" in text  # the refusals were logged, masked
    for code in codes:
        assert code not in text
    assert PASSWORD not in text


def test_host_key_in_the_hsm_signs_wallet_requests(tmp_path):
    from keys.hsm import HSM, channel_key_name
    from keys.model import KeyAlgorithm, KeyUsage
    from acquirer.wallets.signing import HSMSigner

    hsm = HSM.open(tmp_path / "hsm.db", tmp_path / "lmk")
    name = channel_key_name("wechat-direct", KeyUsage.SIGN)
    hsm.generate(name, KeyAlgorithm.SM2, KeyUsage.SIGN)
    signer = HSMSigner(hsm, name)

    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            config = world.services.provider("wechat-direct")
            gateway = world.services.gateways["wechat-direct"]
            gateway.contracts[config.merchant].verifier = signer.verifier  # the public key we registered
            config.signer = signer
            code = await world.customer_code(Wallet.WECHAT)
            result = await world.channel.pay_customer_code("HSM-1", code, 100, MERCHANT, TERMINAL)
            assert result.code.value == "00"
    try:
        run(scenario())
    finally:
        hsm.close()
