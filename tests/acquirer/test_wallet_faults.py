"""A wallet that lies, hangs or breaks: a clear outcome, no double charge, clean books."""
from __future__ import annotations

import pytest

from acquirer.protocol import ResponseCode
from acquirer.wallets.codes import Wallet
from acquirer.wallets.demo import wallet_world
from acquirer.wallets.serve import DEFAULT_PROVIDERS
from tests.acquirer.test_wallet_payments import MERCHANT, PASSWORD, TERMINAL, assert_reconciled, run, scanned_code

PROVIDERS = [(p.name, p.wallet) for p in DEFAULT_PROVIDERS]  # alipay-direct signs RSA2, the rest SM2


def hang_up_soon(world, provider: str) -> None:
    """The host gives this provider 0.3 s (real time: a hung wallet is a socket that stays silent)."""
    world.channel.adapters[provider].config.timeout = 0.3


@pytest.mark.parametrize("provider,wallet", PROVIDERS)
def test_bad_wallet_signature_is_never_a_payment(provider, wallet, tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            world.services.faults(provider).inject("pay", "bad_signature")  # charged, answer forged
            code = await scanned_code(world, wallet, tmp_path)
            result = await world.channel.pay_customer_code("BS-1", code, 700, MERCHANT, TERMINAL, designated=provider)
            assert result.code is ResponseCode.SYSTEM_ERROR, result
            assert "signature" in result.text and result.state == "REVERSED"
            assert world.wallet_order(provider, "BS-1").status.value == "REVERSED"
            assert world.balance(wallet) == 100_000  # what the wallet took went back
            await assert_reconciled(world)
    run(scenario())


@pytest.mark.parametrize("provider,wallet", PROVIDERS)
def test_wallet_timeout_after_charging_is_reversed_and_never_charged_twice(provider, wallet, tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            hang_up_soon(world, provider)
            faults = world.services.faults(provider)
            faults.inject("pay", "timeout_after")  # the wallet charges, the answer never comes
            code = await scanned_code(world, wallet, tmp_path)
            result = await world.channel.pay_customer_code("TO-1", code, 900, MERCHANT, TERMINAL, designated=provider)
            assert result.code is ResponseCode.ISSUER_TIMEOUT and result.state == "REVERSED", result
            assert world.balance(wallet) == 100_000
            retry = await world.channel.pay_customer_code("TO-1", code, 900, MERCHANT, TERMINAL, designated=provider)
            assert (retry.code, retry.state) == (ResponseCode.ISSUER_TIMEOUT, "REVERSED")
            assert faults.taken == [("pay", "timeout_after")]  # the retry was answered from the book
            again = await world.channel.pay_customer_code("TO-2", code, 900, MERCHANT, TERMINAL, designated=provider)
            assert again.code is ResponseCode.SUSPECTED_FRAUD  # the code was spent by the reversed payment
            assert world.balance(wallet) == 100_000
            await assert_reconciled(world)
    run(scenario())


def test_timeout_before_processing_buries_the_order_id(tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            hang_up_soon(world, "unionpay-direct")
            world.services.faults("unionpay-direct").inject("pay", "timeout")
            code = await scanned_code(world, Wallet.UNIONPAY, tmp_path)
            result = await world.channel.pay_customer_code("TO-3", code, 300, MERCHANT, TERMINAL)
            assert result.code is ResponseCode.ISSUER_TIMEOUT and result.state == "REVERSED"
            assert world.wallet_order("unionpay-direct", "TO-3").status.value == "REVERSED"  # a tombstone
            fresh = await world.channel.pay_customer_code("TO-4", code, 300, MERCHANT, TERMINAL)
            assert fresh.code is ResponseCode.APPROVED  # the code was never spent
            assert world.balance(Wallet.UNIONPAY) == 100_000 - 300
            await assert_reconciled(world)
    run(scenario())


@pytest.mark.parametrize("kind", ["http_500", "system_error"])
def test_gateway_error_is_resolved_by_query_then_reversed(kind, tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            world.services.faults("wechat-direct").inject("pay", kind)
            code = await scanned_code(world, Wallet.WECHAT, tmp_path)
            result = await world.channel.pay_customer_code("GE-1", code, 400, MERCHANT, TERMINAL)
            assert result.code is ResponseCode.SYSTEM_ERROR and result.state == "REVERSED", result
            assert "did not take the payment" in result.text
            assert world.balance(Wallet.WECHAT) == 100_000
            await assert_reconciled(world)
    run(scenario())


def test_reversal_that_keeps_failing_stays_pending_until_retried(tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            hang_up_soon(world, "alipay-isv")
            faults = world.services.faults("alipay-isv")
            faults.inject("pay", "timeout_after").inject("reverse", "http_500", times=3)
            code = await scanned_code(world, Wallet.ALIPAY, tmp_path)
            result = await world.channel.pay_customer_code("RV-1", code, 1_000, MERCHANT, TERMINAL,
                                                           designated="alipay-isv")
            assert result.code is ResponseCode.ISSUER_TIMEOUT and result.state == "REVERSAL_PENDING"
            assert world.balance(Wallet.ALIPAY) == 100_000 - 1_000  # not yet given back
            retry = await world.channel.pay_customer_code("RV-1", code, 1_000, MERCHANT, TERMINAL)
            assert retry.state == "REVERSED"  # a retried request finishes the reversal, it does not pay
            assert world.balance(Wallet.ALIPAY) == 100_000
            assert await world.channel.retry_reversals() == []
            await assert_reconciled(world)
    run(scenario())


def test_unreachable_provider_fails_over_without_charging_twice(tmp_path):
    async def scenario():
        async with wallet_world(password=PASSWORD) as world:
            config = world.channel.adapters["alipay-direct"].config
            working, config.base_url = config.base_url, "http://127.0.0.1:9"  # nothing listens there
            results = []
            for n in range(2):  # equal priority: at least one of these is routed to alipay-direct first
                code = await scanned_code(world, Wallet.ALIPAY, tmp_path)
                results.append(await world.channel.pay_customer_code(f"UR-{n}", code, 100, MERCHANT, TERMINAL))
            assert [r.code for r in results] == [ResponseCode.APPROVED] * 2
            assert {r.provider for r in results} == {"alipay-isv"}
            failed_over = [d for d in world.router.decisions if "alipay-direct" in
                           {v.channel for v in d.verdicts if v.cause == "order"}]
            assert failed_over  # the second decision for that order excluded the unreachable route
            assert world.balance(Wallet.ALIPAY) == 100_000 - 200
            report = await world.reconcile()
            assert list(report.unavailable) == ["alipay-direct"] and not report.clean  # no bill is not "clean"
            config.base_url = working
            await assert_reconciled(world)
    run(scenario())
